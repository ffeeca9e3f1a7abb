//! `crashmon monitor`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use crashmon_database::Database;
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
    // The watchdog is forked while this process still has one thread.
    let watchdog = match crashmon_monitor::watchdog::Watchdog::fork() {
        Ok(w) => Some(Arc::new(w)),
        Err(e) => {
            tracing::warn!("cannot start the dump watchdog ({e}); a monitor crash mid-dump could leave an app stopped");
            None
        }
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
        args.target.resolve()?.map(|(target, explicit)| (target, crate::cmd::upload::options(explicit, 60, true)));
    let db_path = ctx.database_path()?;
    let db = Database::open_or_create(&db_path)
        .with_context(|| format!("cannot use the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    let db = Arc::new(db);
    let config = MonitorConfig {
        database: db,
        after_capture: Some(Arc::new(crate::postprocess::PostProcess::new(upload)?)),
        max_clients: 1024,
        watchdog,
        fault: crashmon_monitor::Fault::from_env(),
    };
    // Partial dumps of monitors that died (their writer's lock is gone).
    let sweep = |db: &Database| {
        if let Err(e) = db.sweep_new() {
            tracing::warn!("cannot sweep partial dumps: {e}");
        }
    };
    match client {
        Some(fd) => {
            // Serve the app first (it may be crashing right now), sweep after.
            crashmon_monitor::serve_client(&config, fd).code(exit::USAGE)?;
            sweep(&config.database);
        }
        None => {
            let path = args
                .socket
                .or_else(default_socket)
                .ok_or_else(|| anyhow::anyhow!("no socket path: pass --socket or set XDG_RUNTIME_DIR"))
                .code(exit::USAGE)?;
            sweep(&config.database);
            crashmon_monitor::serve_socket(&config, &path).code(exit::USAGE)?;
        }
    }
    Ok(exit::OK)
}
