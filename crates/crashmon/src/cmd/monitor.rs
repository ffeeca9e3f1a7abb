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

/// The hidden `__watchdog` process (see `crashmon_monitor::watchdog`).
pub fn watchdog_main() -> anyhow::Result<u8> {
    // Its own session's signals are not ours to die of; only EOF ends it.
    let resumed = crashmon_monitor::watchdog::run_watchdog(std::io::stdin().lock());
    for pid in resumed {
        tracing::warn!(pid, "the monitor died mid-dump; resumed the stopped app");
    }
    Ok(exit::OK)
}

/// Run the monitor until its client leaves (sidecar) or forever (socket).
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
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
    // Partial dumps of monitors that died (their writer's lock is gone).
    // In the background: the app is waiting for our hello.
    let sweeper = Arc::clone(&db);
    let _ = std::thread::Builder::new().name("crashmon-sweep".into()).spawn(move || {
        if let Err(e) = sweeper.sweep_new() {
            tracing::warn!("cannot sweep partial dumps: {e}");
        }
    });
    let exe = std::env::current_exe().context("cannot find the crashmon executable")?;
    let watchdog = Some(crashmon_monitor::watchdog::Watchdog::start(exe));
    let config = MonitorConfig {
        database: db,
        after_capture: Some(Arc::new(crate::postprocess::Symbolicate::new(upload)?)),
        max_clients: 1024,
        watchdog,
        fault: crashmon_monitor::Fault::from_env(),
    };
    match client {
        Some(fd) => {
            crashmon_monitor::serve_client(&config, fd).code(exit::USAGE)?;
        }
        None => {
            let path = args
                .socket
                .or_else(default_socket)
                .ok_or_else(|| anyhow::anyhow!("no socket path: pass --socket or set XDG_RUNTIME_DIR"))
                .code(exit::USAGE)?;
            crashmon_monitor::serve_socket(&config, &path).code(exit::USAGE)?;
        }
    }
    Ok(exit::OK)
}
