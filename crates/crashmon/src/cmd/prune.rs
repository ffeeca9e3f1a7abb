//! `crashmon prune`: apply retention limits, oldest reports first.

use std::time::Duration;

use anyhow::Context as _;
use crashmon_database::{Database, Retention};

use crate::Context;
use crate::exit::{self, WithCode};

/// `crashmon prune` arguments. Limits not given come from `[retention]` in
/// the configuration file, else the defaults (128 MiB, 365 days, no count
/// limit).
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Keep at most this many reports
    #[arg(long, value_name = "N")]
    pub max_count: Option<usize>,
    /// Keep at most this many bytes of reports
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<u64>,
    /// Remove reports older than this many days
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub max_age: Option<u64>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// The limits the monitor applies after every report: `[retention]` of the
/// configuration over the defaults.
pub fn default_retention() -> Retention {
    crate::config::global().retention()
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    crashmon_uploader::Clock::now_ms(&crashmon_uploader::SystemClock)
}

/// `crashmon prune`.
pub fn prune(ctx: &Context, args: PruneArgs) -> anyhow::Result<u8> {
    let db_path = ctx.database_path()?;
    let db = Database::open_existing(&db_path)
        .with_context(|| format!("cannot open the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    let defaults = ctx.config.retention();
    let limits = Retention {
        max_count: args.max_count.or(defaults.max_count),
        max_bytes: args.max_size.or(defaults.max_bytes),
        max_age: args.max_age.map(|d| Duration::from_secs(d * 86_400)).or(defaults.max_age),
    };
    let stats = db.prune(&limits, now_ms()).code(exit::FAILURE)?;
    if args.json {
        let doc = serde_json::json!({ "schema_version": 1, "result": stats });
        crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else {
        let mut line = format!(
            "removed {} report(s), freed {} bytes; {} kept ({} bytes)",
            stats.removed, stats.bytes_freed, stats.kept, stats.bytes_kept
        );
        if stats.busy > 0 {
            line.push_str(&format!("; {} being uploaded, kept", stats.busy));
        }
        crate::print_out(&(line + "\n"))?;
    }
    Ok(exit::OK)
}
