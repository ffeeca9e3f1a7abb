//! `crashmon upload` and `crashmon consent`.

use anyhow::Context as _;
use crashmon_database::Database;
use crashmon_uploader::{Outcome, SystemClock, Target, UploadOptions};
use serde::Serialize;

use crate::Context;
use crate::exit::{self, WithCode};

/// Environment variable naming the default upload target (URL or DSN).
/// A target from here needs consent (`crashmon consent enable`); one given
/// on the command line counts as consent.
pub const UPLOAD_ENV: &str = "CRASHMON_UPLOAD";

/// Where to upload, shared by `upload`, `monitor` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Breakpad/Crashpad/Socorro submission URL (a path ending in /submit is Socorro)
    #[arg(long, value_name = "URL", conflicts_with = "dsn")]
    pub upload: Option<String>,
    /// Sentry DSN (https://KEY@HOST/PROJECT_ID)
    #[arg(long, value_name = "DSN")]
    pub dsn: Option<String>,
}

impl TargetArgs {
    /// The target and whether it was given explicitly (which counts as
    /// consent), or `None` if there is none at all.
    pub fn resolve(&self) -> anyhow::Result<Option<(Target, bool)>> {
        let parsed = |s: &str, what: &str| {
            Target::parse(s).with_context(|| format!("bad upload target ({what})")).code(exit::USAGE)
        };
        if let Some(url) = &self.upload {
            return Ok(Some((parsed(url, "--upload")?, true)));
        }
        if let Some(dsn) = &self.dsn {
            return Ok(Some((parsed(dsn, "--dsn")?, true)));
        }
        match std::env::var(UPLOAD_ENV) {
            Ok(s) if !s.is_empty() => Ok(Some((parsed(&s, UPLOAD_ENV)?, false))),
            _ => Ok(None),
        }
    }

    /// The arguments that pass this target on to another crashmon process.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        match (&self.upload, &self.dsn) {
            (Some(u), _) => vec!["--upload".into(), u.into()],
            (None, Some(d)) => vec!["--dsn".into(), d.into()],
            _ => Vec::new(),
        }
    }
}

/// `crashmon upload` arguments.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Reports to upload (ids or unique prefixes); none means all pending (like --all)
    pub ids: Vec<String>,
    /// Upload every pending report that is due
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Do not gzip the request body
    #[arg(long)]
    pub no_compress: bool,
    /// Request timeout in seconds
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Print JSON (see docs/json-schema.md)
    #[arg(long)]
    pub json: bool,
}

/// Upload options for an explicit (or not) target.
pub fn options(explicit: bool, timeout_secs: u64, compress: bool) -> UploadOptions {
    let mut o = UploadOptions::default();
    o.ignore_consent = explicit;
    o.timeout = std::time::Duration::from_secs(timeout_secs);
    o.compress = compress;
    o.product = Some("crashmon".into());
    o.version = Some(env!("CARGO_PKG_VERSION").into());
    o
}

#[derive(Serialize)]
struct Line {
    id: String,
    #[serde(flatten)]
    outcome: Option<Outcome>,
    error: Option<String>,
}

/// `crashmon upload`.
pub fn upload(ctx: &Context, args: UploadArgs) -> anyhow::Result<u8> {
    let db_path = ctx.database_path()?;
    let (target, explicit) = args
        .target
        .resolve()?
        .ok_or_else(|| anyhow::anyhow!("no upload target: pass --upload URL or --dsn DSN, or set {UPLOAD_ENV}"))
        .code(exit::USAGE)?;
    let db = Database::open_existing(&db_path)
        .with_context(|| format!("cannot open the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    let opts = {
        let mut o = options(explicit, args.timeout, !args.no_compress);
        o.force = !args.ids.is_empty();
        o
    };
    let results: Vec<(String, Result<Outcome, String>)> = if args.ids.is_empty() {
        crashmon_uploader::upload_pending(&db, &target, &opts, &SystemClock, &|_| true)
            .code(exit::FAILURE)?
            .into_iter()
            .map(|(id, r)| (id.to_string(), r.map_err(|e| e.to_string())))
            .collect()
    } else {
        let mut v = Vec::new();
        for q in &args.ids {
            let entry = db.find(q).code(exit::NO_SUCH_REPORT)?;
            let r = crashmon_uploader::upload_report(&db, entry.id, &target, &opts, &SystemClock);
            v.push((entry.id.to_string(), r.map_err(|e| e.to_string())));
        }
        v
    };
    let rejected = results.iter().any(|(_, r)| matches!(r, Ok(Outcome::Rejected { .. })));
    let unfinished = results.iter().any(|(_, r)| match r {
        Ok(o) => !o.is_success() && !matches!(o, Outcome::Rejected { .. } | Outcome::NotPending { .. }),
        Err(_) => true,
    });
    if args.json {
        let lines: Vec<Line> = results
            .iter()
            .map(|(id, r)| Line { id: id.clone(), outcome: r.as_ref().ok().cloned(), error: r.as_ref().err().cloned() })
            .collect();
        let doc = serde_json::json!({ "schema_version": 1, "target": target.to_string(), "results": lines });
        crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else {
        let mut out = String::new();
        if results.is_empty() {
            eprintln!("nothing to upload in {}", db.root().display());
        }
        for (id, r) in &results {
            match r {
                Ok(o) => out.push_str(&format!("{}  {o}\n", &id[..8.min(id.len())])),
                Err(e) => out.push_str(&format!("{}  error: {e}\n", &id[..8.min(id.len())])),
            }
        }
        crate::print_out(&out)?;
    }
    Ok(if rejected {
        exit::REJECTED
    } else if unfinished {
        exit::PENDING
    } else {
        exit::OK
    })
}

/// `crashmon consent` arguments.
#[derive(Debug, clap::Args)]
pub struct ConsentArgs {
    /// enable, disable or status
    #[arg(value_enum, default_value = "status")]
    pub action: ConsentAction,
}

/// What `crashmon consent` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ConsentAction {
    /// Allow uploads to a configured target
    Enable,
    /// Nothing leaves the machine (unless a target is passed explicitly)
    Disable,
    /// Show the current setting
    Status,
}

/// `crashmon consent`.
pub fn consent(ctx: &Context, args: ConsentArgs) -> anyhow::Result<u8> {
    let db_path = ctx.database_path()?;
    let db = Database::open_or_create(&db_path)
        .with_context(|| format!("cannot use the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    let enabled = match args.action {
        ConsentAction::Enable => crashmon_uploader::set_consent(&db, true)?.uploads_enabled,
        ConsentAction::Disable => crashmon_uploader::set_consent(&db, false)?.uploads_enabled,
        ConsentAction::Status => crashmon_uploader::consent(&db)?,
    };
    crate::print_out(&format!("uploads {}\n", if enabled { "enabled" } else { "disabled" }))?;
    Ok(exit::OK)
}
