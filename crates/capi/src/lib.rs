//! crashmon's C API (`include/crashmon.h`), the `LD_PRELOAD` entry point
//! used by `crashmon run`, and the libc functions `libcrashmon.so`
//! interposes (`pthread_create`: alternate signal stacks; `signal`,
//! `sigaction`, `bsd_signal`, `sysv_signal`: crash signals stay reported
//! when the program sets their dispositions after init).
//!
//! Every exported function is in the `ffi` module, the only place with
//! `unsafe`; the logic below works on Rust types.

mod ffi;

use std::cell::RefCell;
use std::ffi::CString;
use std::sync::Mutex;

use crashmon_handler::{DumpError, Guard, HandlerConfig, InstallError};

/// Error codes of the C API (see `crashmon.h`).
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// A NULL or non-UTF-8 argument.
    pub const INVALID: i32 = -1;
    /// Already initialised.
    pub const ALREADY: i32 = -2;
    /// Not initialised.
    pub const NOT_INSTALLED: i32 = -3;
    /// The monitor could not be started or reached.
    pub const MONITOR: i32 = -4;
    /// The monitor could not write the dump.
    pub const FAILED: i32 = -5;
    /// The handler's filter rules left the report out (counted, logged).
    pub const FILTERED: i32 = -6;
}

/// Environment variable that makes the preloaded library install itself.
pub const PRELOAD_ENV: &str = "CRASHMON_PRELOAD";

/// Environment variable that, set to `0`, turns off the library's
/// `signal`/`sigaction` rules for crash signals (read at load time): a
/// disposition the program sets after `crashmon_init` then replaces
/// crashmon's handler, as without the library. For programs that handle
/// crash signals in normal operation (JVMs, garbage collectors, wasm
/// runtimes).
pub const INTERPOSE_SIGNALS_ENV: &str = "CRASHMON_INTERPOSE_SIGNALS";

static GUARD: Mutex<Option<Guard>> = Mutex::new(None);

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn fail(code: i32, message: impl std::fmt::Display) -> i32 {
    set_error(&message.to_string());
    code
}

/// `crashmon_init`.
pub fn init(database: Option<&str>) -> i32 {
    let mut guard = GUARD.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_some() {
        return fail(code::ALREADY, "crashmon_init was already called");
    }
    let config = HandlerConfig { database: database.map(Into::into), ..Default::default() };
    match crashmon_handler::install(config) {
        Ok(g) => {
            *guard = Some(g);
            set_error("");
            code::OK
        }
        Err(e @ InstallError::AlreadyInstalled) => fail(code::ALREADY, e),
        Err(e @ InstallError::InvalidConfig(_)) => fail(code::INVALID, e),
        Err(e) => fail(code::MONITOR, e),
    }
}

fn dump_error(e: DumpError) -> i32 {
    match e {
        DumpError::NotInstalled => fail(code::NOT_INSTALLED, e),
        DumpError::Failed(_) => fail(code::FAILED, e),
        DumpError::Filtered(_) => fail(code::FILTERED, e),
        other => fail(code::MONITOR, other),
    }
}

/// `crashmon_annotate`.
pub fn annotate(key: &str, value: &str) -> i32 {
    match crashmon_handler::annotate(key, value) {
        Ok(()) => code::OK,
        Err(e) => dump_error(e),
    }
}

/// `crashmon_breadcrumb`.
pub fn breadcrumb(level: i32, category: &str, message: &str) -> i32 {
    use crashmon_handler::Level;
    let level = match level {
        0 => Level::Trace,
        1 => Level::Debug,
        2 => Level::Info,
        3 => Level::Warning,
        4 => Level::Error,
        other => return fail(code::INVALID, format!("breadcrumb level {other} is not one of CRASHMON_LEVEL_*")),
    };
    match crashmon_handler::breadcrumb(level, category, message) {
        Ok(()) => code::OK,
        Err(e) => dump_error(e),
    }
}

/// `crashmon_request_dump`: the report id on success.
pub fn request_dump(reason: &str) -> Result<String, i32> {
    crashmon_handler::request_dump(reason).map(|id| id.to_string()).map_err(dump_error)
}

/// `crashmon_shutdown`.
pub fn shutdown() {
    drop(GUARD.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// The preload entry point: install when `CRASHMON_PRELOAD=1` (set by
/// `crashmon run`). The caller has already removed the variable from the
/// environment, so the monitor we spawn (and the app's own children), which
/// inherit `LD_PRELOAD`, do not install themselves again.
fn preload() {
    let rc = init(None);
    if rc != code::OK {
        let msg = LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned());
        eprintln!("crashmon: crash reporting not enabled: {msg}");
    }
}
