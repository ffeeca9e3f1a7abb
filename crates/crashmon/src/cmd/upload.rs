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
            // Then the configuration file's (validated when it was loaded).
            _ => match &crate::config::global().upload.target {
                Some(s) => Ok(Some((parsed(&s.value, &format!("config {}", s.origin))?, false))),
                None => Ok(None),
            },
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
    /// Bound on each whole request (connect, send, reply), in seconds [default: upload.timeout_secs, else 60]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: Option<u64>,
    /// Bound on connecting (DNS, TCP, proxy, TLS handshake), in seconds [default: upload.connect_timeout_secs, else 10]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: Option<u64>,
    /// Proxy for every request (http://[USER:PASS@]HOST:PORT); default: https_proxy/http_proxy/all_proxy unless no_proxy names the host
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// PEM file of CA certificates to trust instead of the built-in roots
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Print JSON (see docs/json-schema.md)
    #[arg(long)]
    pub json: bool,
}

/// Upload options for an explicit (or not) target: the `[upload]` settings
/// of the configuration, `timeout_secs` over them when given.
pub fn options(explicit: bool, timeout_secs: Option<u64>, compress: bool) -> UploadOptions {
    let mut o = crate::config::global().apply_upload(UploadOptions::default());
    o.ignore_consent = explicit;
    if let Some(t) = timeout_secs {
        o.timeout = std::time::Duration::from_secs(t);
    }
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

/// One result line: short id and what happened.
fn result_line(id: &str, r: &Result<Outcome, String>) -> String {
    let short = &id[..8.min(id.len())];
    match r {
        Ok(o) => format!("{short}  {o}\n"),
        Err(e) => format!("{short}  error: {e}\n"),
    }
}

/// A progress bar on stderr when it is a terminal and output is for people;
/// hidden otherwise.
fn progress_bar(show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("uploading {bar:30} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar
}

/// `crashmon upload`.
pub fn upload(ctx: &Context, args: UploadArgs) -> anyhow::Result<u8> {
    let db_path = ctx.database_path()?;
    let (target, explicit) = args
        .target
        .resolve()?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no upload target: pass --upload URL or --dsn DSN, set {UPLOAD_ENV} or upload.url in the config"
            )
        })
        .code(exit::USAGE)?;
    let opts = {
        let mut o = options(explicit, args.timeout, !args.no_compress);
        o.force = !args.ids.is_empty();
        if let Some(t) = args.connect_timeout {
            o.connect_timeout = std::time::Duration::from_secs(t);
        }
        if args.proxy.is_some() {
            o.proxy = args.proxy.clone();
        }
        if args.ca_file.is_some() {
            o.ca_file = args.ca_file.clone();
        }
        o
    };
    crashmon_uploader::check_options(&opts, &target).context("bad upload option").code(exit::USAGE)?;
    let db = Database::open_existing(&db_path)
        .with_context(|| format!("cannot open the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    let bar = progress_bar(!args.json && !ctx.quiet);
    // People get each line as soon as its report is done; JSON comes whole
    // at the end.
    let emit = |id: &str, r: &Result<Outcome, String>| {
        bar.inc(1);
        if !args.json {
            let line = result_line(id, r);
            bar.suspend(|| crate::print_out(&line))
        } else {
            Ok(())
        }
    };
    let mut printed: anyhow::Result<()> = Ok(());
    let results: Vec<(String, Result<Outcome, String>)> = if args.ids.is_empty() {
        let mut on_event = |event: crashmon_uploader::BatchEvent<'_>| match event {
            crashmon_uploader::BatchEvent::Start { total } => bar.set_length(total as u64),
            crashmon_uploader::BatchEvent::Done { result: (id, r) } => {
                let r = match r {
                    Ok(outcome) => Ok(outcome.clone()),
                    Err(e) => Err(e.to_string()),
                };
                if printed.is_ok() {
                    printed = emit(&id.to_string(), &r);
                }
            }
            _ => {}
        };
        crashmon_uploader::upload_pending_with(&db, &target, &opts, &SystemClock, &|_| true, &mut on_event)
            .code(exit::FAILURE)?
            .into_iter()
            .map(|(id, r)| (id.to_string(), r.map_err(|e| e.to_string())))
            .collect()
    } else {
        let entries = args.ids.iter().map(|q| db.find(q).code(exit::NO_SUCH_REPORT)).collect::<Result<Vec<_>, _>>()?;
        bar.set_length(entries.len() as u64);
        let mut v = Vec::new();
        for entry in entries {
            bar.set_message(entry.id.to_string()[..8].to_owned());
            let r = crashmon_uploader::upload_report(&db, entry.id, &target, &opts, &SystemClock)
                .map_err(|e| e.to_string());
            if printed.is_ok() {
                printed = emit(&entry.id.to_string(), &r);
            }
            v.push((entry.id.to_string(), r));
        }
        v
    };
    bar.finish_and_clear();
    printed?;
    let rejected = results.iter().any(|(_, r)| matches!(r, Ok(Outcome::Rejected { .. })));
    let unfinished = results.iter().any(|(_, r)| match r {
        Ok(o) => {
            !o.is_success()
                && !matches!(o, Outcome::Rejected { .. } | Outcome::NotPending { .. } | Outcome::Filtered { .. })
        }
        Err(_) => true,
    });
    if args.json {
        let lines: Vec<Line> = results
            .iter()
            .map(|(id, r)| Line { id: id.clone(), outcome: r.as_ref().ok().cloned(), error: r.as_ref().err().cloned() })
            .collect();
        let doc = serde_json::json!({ "schema_version": 1, "target": target.to_string(), "results": lines });
        crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else if results.is_empty() {
        eprintln!("nothing to upload in {}", db.root().display());
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
