//! `crashmon monitor`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use crashmon_database::{Database, ReportId};
use crashmon_monitor::MonitorConfig;

use crate::Context;
use crate::exit::{self, WithCode};

/// `crashmon monitor` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serve the one client connected on this inherited socket fd (sidecar mode; used by the handler)
    #[arg(long, value_name = "N", conflicts_with = "socket")]
    pub client_fd: Option<i32>,
    /// Listen on this Unix socket path for many clients [default: $XDG_RUNTIME_DIR/crashmon/monitor.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Upload each report after it is filed
    #[command(flatten)]
    pub target: crate::cmd::upload::TargetArgs,
    /// Keep each dump within this many bytes: the crashing thread and the first 20 threads keep their whole stacks, other threads at most 2 KiB of stack
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(64 * 1024..))]
    pub max_dump_size: Option<u64>,
    /// Keep at most this many bytes of each attached file (its tail)
    #[arg(long, value_name = "BYTES", default_value_t = crashmon_monitor::DEFAULT_MAX_ATTACHMENT_SIZE)]
    pub max_attachment_size: u64,
    /// Do not report crashes whose signature matches PATTERN (`*` wildcards); they are moved to failed/ with the rule (repeatable)
    #[arg(long, value_name = "PATTERN")]
    pub ignore_signature: Vec<String>,
    /// Do not dump crashes of apps with annotation KEY set to VALUE (`*` wildcards); recorded in failed/ with the rule (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = crashmon_monitor::FilterRules::parse_annotation_rule)]
    pub ignore_annotation: Vec<(String, String)>,
    /// Retention while running: keep at most this many reports
    #[arg(long, value_name = "N")]
    pub max_reports: Option<usize>,
    /// Retention while running: keep at most this many bytes of reports [default: 128 MiB]
    #[arg(long, value_name = "BYTES")]
    pub max_db_size: Option<u64>,
    /// Reports waiting for symbolication at most; beyond that, reports are filed unsymbolicated (crash loops)
    #[arg(long, value_name = "N", default_value_t = crate::postprocess::DEFAULT_QUEUE_CAPACITY,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub postprocess_queue: usize,
}

/// Default socket path of a shared monitor.
pub fn default_socket() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("crashmon/monitor.sock"))
}

/// Run the monitor until its client leaves (sidecar) or forever (socket).
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    tracing::debug!("monitor starting");
    // A shared monitor stops gracefully on SIGTERM/SIGINT: block them before
    // any thread starts, so that only the signal thread takes them.
    let term = if args.client_fd.is_none() {
        match crashmon_monitor::shutdown::TermSignals::block() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("cannot block SIGTERM ({e}); the monitor will not shut down gracefully");
                None
            }
        }
    } else {
        None
    };
    // Take the inherited fd before anything else could open (and reuse) fds.
    let client = match args.client_fd {
        Some(n) => Some(
            crashmon_monitor::owned_from_inherited(n)
                .ok_or_else(|| anyhow::anyhow!("--client-fd {n} is not an open file descriptor"))
                .code(exit::USAGE)?,
        ),
        None => None,
    };
    // Validate the target before anything touches the disk.
    let upload =
        args.target.resolve()?.map(|(target, explicit)| (target, crate::cmd::upload::options(explicit, None, true)));
    let db_path = ctx.database_path()?;
    let db = Database::open_or_create(&db_path)
        .with_context(|| format!("cannot use the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    let db = Arc::new(db);
    // The configuration's [filter] rules, then the command line's.
    let cfg = &ctx.config;
    let filters = crashmon_monitor::FilterRules {
        ignore_signatures: cfg.filter.ignore_signatures.value.iter().cloned().chain(args.ignore_signature).collect(),
        ignore_annotations: cfg
            .filter
            .ignore_annotations
            .value
            .clone()
            .into_iter()
            .chain(args.ignore_annotation)
            .collect(),
    };
    let defaults = crate::postprocess::PostProcessOptions::default();
    let post = crate::postprocess::PostProcessOptions {
        retention: crashmon_database::Retention {
            max_count: args.max_reports.or(defaults.retention.max_count),
            max_bytes: args.max_db_size.or(defaults.retention.max_bytes),
            ..defaults.retention
        },
        queue_capacity: args.postprocess_queue,
        filters: filters.clone(),
        ..defaults
    };
    let config = MonitorConfig {
        database: db,
        after_capture: Some(Arc::new(crate::postprocess::PostProcess::new(upload, post, ctx.program))),
        max_clients: cfg.monitor.max_clients.value,
        fault: crashmon_monitor::Fault::from_env(),
        options: crashmon_monitor::MonitorOptions {
            capture: crashmon_monitor::CaptureOptions {
                max_dump_size: args.max_dump_size.or(cfg.monitor.max_dump_size.as_ref().map(|s| s.value)),
                ..Default::default()
            },
            filters,
            max_attachment_size: args.max_attachment_size,
        },
        stats: Arc::default(),
        spare: Arc::default(),
    };
    // Partial dumps of monitors that died (their writer's lock is gone) are
    // removed; complete ones (the monitor died after its reply, before
    // publishing) are published, then post-processed like any other report.
    let sweep = |config: &MonitorConfig| match config.database.sweep_new() {
        Ok(stats) => postprocess_recovered(config, &stats.recovered),
        Err(e) => {
            tracing::warn!("cannot sweep partial dumps: {e}");
            0
        }
    };
    match client {
        Some(fd) => {
            // Serve the app first (it may be crashing right now), sweep after.
            crashmon_monitor::serve_client(&config, fd).code(exit::USAGE)?;
            // The final sweep below publishes what a retry has not yet.
            config.stats.stop_republishing();
            if let Some(hook) = &config.after_capture {
                hook.drain(crashmon_monitor::SHUTDOWN_GRACE * 6);
            }
            if sweep(&config) > 0
                && let Some(hook) = &config.after_capture
            {
                hook.drain(crashmon_monitor::SHUTDOWN_GRACE * 6);
            }
        }
        None => {
            let path = args
                .socket
                .or_else(|| ctx.config.monitor.socket.as_ref().map(|s| s.value.clone()))
                .or_else(default_socket)
                .ok_or_else(|| anyhow::anyhow!("no socket path: pass --socket or set XDG_RUNTIME_DIR"))
                .code(exit::USAGE)?;
            sweep(&config);
            crashmon_monitor::serve_socket(&config, &path, term).code(exit::USAGE)?;
        }
    }
    Ok(exit::OK)
}

/// Hands the reports a sweep just published from `new/` (their monitor
/// died between its reply and its own post-processing) to the
/// post-processing queue, so they are symbolicated, filtered and uploaded
/// like the others. Only these: the sweep held each one's lock while
/// publishing it, so no other monitor is post-processing it. Returns how
/// many were queued.
fn postprocess_recovered(config: &MonitorConfig, recovered: &[ReportId]) -> usize {
    let Some(hook) = &config.after_capture else { return 0 };
    for &id in recovered {
        tracing::info!(report = %id, "post-processing a report recovered from new/");
        hook.after_capture(&config.database, id);
    }
    recovered.len()
}
