//! The part of crashmon that is linked into an application.
//!
//! [`install`] connects the process to a crashmon monitor (by default it
//! spawns `crashmon monitor --client-fd N` as a sidecar over a socket pair),
//! allows only that monitor to ptrace the process (`PR_SET_PTRACER`) and
//! installs handlers for fatal signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
//! SIGABRT, SIGTRAP, SIGSYS) on an alternate stack, plus a panic hook. When the
//! process crashes, the handler sends the crash context to the monitor, waits for the
//! dump to be durable (bounded by [`HandlerConfig::reply_timeout`]), restores
//! the previous handlers and re-raises the signal, so the process dies by its
//! own signal whether or not the monitor is alive.
//!
//! Handled errors are reported with [`request_dump`] / [`report_error`]: the
//! monitor dumps the live process and it keeps running.
//!
//! ```no_run
//! let _guard = crashmon_handler::install(crashmon_handler::HandlerConfig::default())
//!     .expect("crash reporting unavailable");
//! // ... the application runs; a crash now produces a report ...
//! ```

mod breadcrumbs;
mod connect;
mod request;
mod signal;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[cfg(feature = "tracing-layer")]
pub use breadcrumbs::BreadcrumbLayer;
pub use breadcrumbs::{Level, breadcrumb};
pub use request::{
    DumpError, MAX_ANNOTATIONS, PanicMode, ReportId, annotate, annotations_dropped, annotations_truncated,
    remove_annotation, report_error, request_dump,
};
pub use signal::CONTEXT_LEN;

/// Environment variable naming the `crashmon` executable to spawn as monitor.
pub const MONITOR_ENV: &str = "CRASHMON_MONITOR";

/// How the handler reaches its monitor.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MonitorConnection {
    /// Spawn a private monitor (`crashmon monitor --client-fd N`) connected by
    /// a socket pair. This is the default.
    Spawn {
        /// The `crashmon` executable. `None`: `$CRASHMON_MONITOR`, then
        /// `crashmon` next to the current executable, then `crashmon` on `PATH`.
        exe: Option<PathBuf>,
        /// Extra arguments placed after `monitor` (e.g. `--upload URL`).
        args: Vec<OsString>,
    },
    /// Connect to a shared monitor listening on this Unix socket path
    /// (`crashmon monitor --socket PATH`).
    Socket(PathBuf),
}

impl Default for MonitorConnection {
    fn default() -> Self {
        MonitorConnection::Spawn { exe: None, args: Vec::new() }
    }
}

/// Settings for [`install`].
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// How to reach the monitor.
    pub monitor: MonitorConnection,
    /// Crash database for a spawned monitor (`--database`). `None` leaves the
    /// choice to the monitor (`$CRASHMON_DATABASE` or the platform default).
    pub database: Option<PathBuf>,
    /// How long a crashing process waits for the monitor to finish its dump
    /// before it re-raises anyway. Default 10 s.
    pub reply_timeout: Duration,
    /// How long [`install`] waits for the monitor to answer the handshake.
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// What happens on a Rust panic. Default: report it, then abort.
    pub panic: PanicMode,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        HandlerConfig {
            monitor: MonitorConnection::default(),
            database: None,
            reply_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            panic: PanicMode::default(),
        }
    }
}

/// Why [`install`] failed. The process is left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// A handler is already installed in this process.
    #[error("the crashmon handler is already installed in this process")]
    AlreadyInstalled,
    /// A setting is out of range.
    #[error("invalid handler configuration: {0}")]
    InvalidConfig(&'static str),
    /// No `crashmon` executable to spawn as monitor.
    #[error("cannot find the crashmon executable (set {MONITOR_ENV} or HandlerConfig monitor exe)")]
    MonitorNotFound,
    /// Spawning the monitor failed.
    #[error("cannot start the monitor {exe}: {source}")]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to the monitor's socket failed.
    #[error("cannot connect to the monitor socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The monitor did not complete the handshake.
    #[error("the monitor did not answer the handshake: {0}")]
    Handshake(String),
    /// A signal handler could not be installed.
    #[error("sigaction for signal {signal} failed: {source}")]
    Sigaction {
        /// The signal number.
        signal: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A system call needed for installation failed.
    #[error("{call} failed: {source}")]
    Os {
        /// Which call.
        call: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Keeps the crash handler installed; dropping it restores the previous
/// signal handlers and disconnects from the monitor.
#[must_use = "the crash handler is uninstalled when the guard is dropped"]
#[derive(Debug)]
pub struct Guard {
    socket: OwnedFd,
    monitor_pid: u32,
    child: Option<Child>,
}

impl Guard {
    /// The pid of the monitor serving this process.
    pub fn monitor_pid(&self) -> u32 {
        self.monitor_pid
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        signal::uninstall();
        // Closing our end tells the monitor we are gone.
        let _ = nix::sys::socket::shutdown(self.socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(mut child) = self.child.take() {
            // Reap the sidecar when it exits, without blocking the app.
            let _ = std::thread::Builder::new().name("crashmon-reaper".into()).spawn(move || child.wait());
        }
        INSTALLED.store(false, Ordering::SeqCst);
    }
}

/// Connect to a monitor and install the crash handlers.
///
/// Returns [`InstallError::AlreadyInstalled`] if a [`Guard`] is alive.
pub fn install(config: HandlerConfig) -> Result<Guard, InstallError> {
    if config.reply_timeout.is_zero() {
        return Err(InstallError::InvalidConfig("reply_timeout must be greater than zero"));
    }
    if config.connect_timeout.is_zero() {
        return Err(InstallError::InvalidConfig("connect_timeout must be greater than zero"));
    }
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(InstallError::AlreadyInstalled);
    }
    match install_inner(config) {
        Ok(guard) => Ok(guard),
        Err(e) => {
            INSTALLED.store(false, Ordering::SeqCst);
            Err(e)
        }
    }
}

fn install_inner(config: HandlerConfig) -> Result<Guard, InstallError> {
    let connected = connect::connect(&config)?;
    let os = |call| move |e: nix::errno::Errno| InstallError::Os { call, source: e.into() };

    // Only the monitor may ptrace us. Without Yama the call fails with
    // EINVAL, and then any same-uid process could anyway.
    match signal::set_ptracer(connected.monitor_pid) {
        Ok(()) | Err(libc::EINVAL) => {}
        Err(e) => return Err(os("prctl(PR_SET_PTRACER)")(nix::errno::Errno::from_raw(e))),
    }
    signal::ensure_alt_stack().map_err(|e| os("sigaltstack")(nix::errno::Errno::from_raw(e)))?;
    let timeout_ms = u32::try_from(config.reply_timeout.as_millis()).unwrap_or(u32::MAX);
    signal::install(connected.socket.as_raw_fd(), timeout_ms).map_err(|f| InstallError::Sigaction {
        signal: f.signal,
        source: std::io::Error::from_raw_os_error(f.errno),
    })?;
    request::install_panic_hook(config.panic);
    tracing::debug!(monitor_pid = connected.monitor_pid, "crashmon handler installed");
    Ok(Guard { socket: connected.socket, monitor_pid: connected.monitor_pid, child: connected.child })
}
