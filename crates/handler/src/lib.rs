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

mod attach;
mod breadcrumbs;
mod connect;
pub use connect::find_monitor_in;
mod filter;
mod request;
mod signal;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use attach::{AttachError, MAX_ATTACHMENTS as MAX_ATTACHED_FILES, attach_file, detach_file};
#[cfg(feature = "tracing-layer")]
pub use breadcrumbs::BreadcrumbLayer;
#[cfg(feature = "log")]
pub use breadcrumbs::LogAdapter;
pub use breadcrumbs::{Level, breadcrumb};
pub use crashmon_handler_signal::CONTEXT_LEN;
pub use crashmon_handler_signal::FirstChanceHandler;
pub use filter::{ErrorReports, Filtered, ReportFilter, Stats, stats};
pub use request::{
    DumpError, MAX_ANNOTATIONS, PanicMode, ReportId, annotate, annotations_dropped, annotations_truncated,
    remove_annotation, report_error, request_dump,
};
pub use signal::{rearm, set_first_chance_handler};

thread_local! {
    static THREAD_ALT_STACK: std::cell::RefCell<Option<signal::AltStack>> = const { std::cell::RefCell::new(None) };
}

/// Give the calling thread an alternate signal stack (64 KiB and a guard
/// page) unless it already has one that large, so that a stack overflow on
/// this thread can still be reported. The stack is unmapped when the thread
/// exits.
///
/// [`install`] does this for the thread that calls it; `std::thread`s get
/// one from Rust's std. Threads that C code creates with `pthread_create`
/// have none: `libcrashmon.so` (the C API, and `crashmon run`) interposes
/// `pthread_create` and calls this at the start of every new thread; a Rust
/// app that creates threads through C libraries can call it at the start of
/// such threads (e.g. from a thread-start callback).
pub fn ensure_thread_alt_stack() -> std::io::Result<()> {
    match signal::AltStack::install() {
        Ok(None) => Ok(()),
        Ok(Some(stack)) => {
            // A thread-local's destructor runs at thread exit, also when the
            // thread ends with pthread_exit.
            THREAD_ALT_STACK.with(|slot| *slot.borrow_mut() = Some(stack));
            Ok(())
        }
        Err(errno) => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Environment variable naming the `crashmon` executable to spawn as monitor.
pub const MONITOR_ENV: &str = "CRASHMON_MONITOR";

/// How the handler reaches its monitor.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MonitorConnection {
    /// Spawn a private monitor (`crashmon monitor --client-fd N`) connected by
    /// a socket pair. This is the default.
    Spawn {
        /// The monitor executable. `None`: `$CRASHMON_MONITOR`, then next to
        /// the current executable, then on `PATH`, `crashmon-monitor` (the
        /// lean monitor) before `crashmon` at each place.
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
    /// Whether [`install`] waits for a sidecar it spawned to answer the
    /// handshake (up to `connect_timeout`). Default `true`: a monitor that
    /// cannot start (a bad configuration, an unusable database, the wrong
    /// binary) makes `install` fail with [`InstallError::Handshake`].
    /// `false` saves the monitor's start-up (~2 ms) at app start, for
    /// short-lived programs: `install` returns once the monitor is
    /// exec'd, a crash in the first milliseconds waits for the monitor in
    /// the socket, and a monitor that fails after its exec is seen only at
    /// the first crash, which then goes unreported. A shared monitor
    /// (`MonitorConnection::Socket`) is always waited for.
    pub wait_for_monitor: bool,
    /// What happens on a Rust panic. Default: report it, then abort.
    pub panic: PanicMode,
    /// Which handled errors are reported (crashes always are). Default: all.
    pub filter: ReportFilter,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        HandlerConfig {
            monitor: MonitorConnection::default(),
            database: None,
            reply_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            wait_for_monitor: true,
            panic: PanicMode::default(),
            filter: ReportFilter::default(),
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
    /// The configured crash database cannot be used.
    #[error("cannot use the crash database {path}: {reason}")]
    Database {
        /// The configured path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
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
    config.filter.validate().map_err(InstallError::InvalidConfig)?;
    if let Some(db) = &config.database {
        check_database(db).map_err(|reason| InstallError::Database { path: db.clone(), reason })?;
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

/// The database directory must be, or be creatable in, a writable
/// directory: find its nearest existing ancestor and check it.
fn check_database(db: &std::path::Path) -> Result<(), String> {
    if db.as_os_str().is_empty() {
        return Err("the path is empty".into());
    }
    let mut at = Some(db);
    while let Some(p) = at {
        match std::fs::metadata(p) {
            Ok(meta) if !meta.is_dir() => return Err(format!("{} is not a directory", p.display())),
            Ok(_) => {
                return nix::unistd::access(p, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK)
                    .map_err(|e| format!("{} is not writable: {e}", p.display()));
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                at = p.parent().filter(|p| !p.as_os_str().is_empty());
            }
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    // A relative path whose first component does not exist: it is created
    // in the current directory.
    nix::unistd::access(".", nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("the current directory is not writable: {e}"))
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
    filter::set_filter(config.filter.clone());
    request::install_panic_hook(config.panic);
    tracing::debug!(monitor_pid = connected.monitor_pid, "crashmon handler installed");
    Ok(Guard { socket: connected.socket, monitor_pid: connected.monitor_pid, child: connected.child })
}

#[cfg(test)]
mod tests {
    use super::*;

    // These configurations are refused before anything is spawned or
    // installed, so no monitor is needed.

    #[test]
    fn zero_timeouts_are_refused() {
        let config = HandlerConfig { reply_timeout: Duration::ZERO, ..Default::default() };
        assert!(matches!(install(config), Err(InstallError::InvalidConfig(m)) if m.contains("reply_timeout")));
        let config = HandlerConfig { connect_timeout: Duration::ZERO, ..Default::default() };
        assert!(matches!(install(config), Err(InstallError::InvalidConfig(m)) if m.contains("connect_timeout")));
    }

    #[test]
    fn a_database_under_a_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("crashmon-handler-test-{}", std::process::id()));
        std::fs::write(&dir, b"not a directory").unwrap();
        let config = HandlerConfig { database: Some(dir.join("db")), ..Default::default() };
        let result = install(config);
        let _ = std::fs::remove_file(&dir);
        match result {
            Err(InstallError::Database { reason, .. }) => assert!(reason.contains("is not a directory"), "{reason}"),
            other => panic!("expected a Database error, got {other:?}"),
        }
    }

    #[test]
    fn an_out_of_range_sample_rate_is_refused() {
        let filter = ReportFilter { handled_error_sample_rate: 2.0, ..Default::default() };
        let config = HandlerConfig { filter, ..Default::default() };
        assert!(matches!(install(config), Err(InstallError::InvalidConfig(m)) if m.contains("sample_rate")));
        assert!(!INSTALLED.load(Ordering::SeqCst), "a refused config leaves nothing installed");
    }
}
