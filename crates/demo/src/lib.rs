//! The example application behind `crashmon demo` (and the crash triggers
//! the test crasher uses).
//!
//! [`run`] installs the crashmon handler like any application would, then
//! calls through a few ordinary functions that end in the requested crash, so
//! the report shows this crate's own function names and source lines.

pub mod trigger;

use std::hint::black_box;

/// Exit code of a process that was supposed to crash and did not.
pub const FAILED_TO_CRASH: i32 = 222;

/// The crash kinds the demo can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Invalid memory write (SIGSEGV).
    Segv,
    /// `abort()` (SIGABRT).
    Abort,
    /// Access past the end of a mapped file (SIGBUS).
    Bus,
    /// Integer division by zero (SIGFPE).
    Fpe,
    /// Invalid instruction (SIGILL).
    Ill,
    /// Breakpoint (SIGTRAP).
    Trap,
    /// Stack overflow on the main thread (SIGSEGV).
    StackOverflow,
    /// A seccomp-trapped system call (SIGSYS).
    Sys,
    /// A Rust panic (reported, then SIGABRT).
    Panic,
    /// Invalid memory write on a `std::thread` (SIGSEGV).
    ThreadSegv,
    /// Stack overflow on a `std::thread` (SIGSEGV).
    ThreadStackOverflow,
}

impl Kind {
    /// All kinds with their command-line names.
    pub const ALL: [(&'static str, Kind); 11] = [
        ("segv", Kind::Segv),
        ("abort", Kind::Abort),
        ("bus", Kind::Bus),
        ("fpe", Kind::Fpe),
        ("ill", Kind::Ill),
        ("trap", Kind::Trap),
        ("stack-overflow", Kind::StackOverflow),
        ("sys", Kind::Sys),
        ("panic", Kind::Panic),
        ("thread-segv", Kind::ThreadSegv),
        ("thread-stack-overflow", Kind::ThreadStackOverflow),
    ];

    /// Parse a command-line name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// The signal the process must die by.
    pub fn signal(self) -> i32 {
        match self {
            Kind::Segv | Kind::StackOverflow | Kind::ThreadSegv | Kind::ThreadStackOverflow => libc::SIGSEGV,
            Kind::Abort | Kind::Panic => libc::SIGABRT,
            Kind::Sys => libc::SIGSYS,
            Kind::Bus => libc::SIGBUS,
            Kind::Fpe => libc::SIGFPE,
            Kind::Ill => libc::SIGILL,
            Kind::Trap => libc::SIGTRAP,
        }
    }

    /// The function of this crate the crash happens in (for checking reports).
    pub fn crashing_function(self) -> &'static str {
        match self {
            Kind::Segv => "crashmon_demo::trigger::segv",
            Kind::Abort => "crashmon_demo::trigger::abort",
            Kind::Bus => "crashmon_demo::trigger::bus",
            Kind::Fpe => "crashmon_demo::trigger::fpe",
            Kind::Ill => "crashmon_demo::trigger::ill",
            Kind::Trap => "crashmon_demo::trigger::trap",
            Kind::StackOverflow | Kind::ThreadStackOverflow => "crashmon_demo::trigger::stack_overflow::recurse",
            Kind::Sys => "crashmon_demo::trigger::sys",
            Kind::Panic => "crashmon_demo::panic_in_order",
            Kind::ThreadSegv => "crashmon_demo::trigger::segv",
        }
    }
}

/// Crash the calling process the way `kind` says.
#[inline(never)]
pub fn crash(kind: Kind) {
    match kind {
        Kind::Segv => trigger::segv(),
        Kind::Abort => trigger::abort(),
        Kind::Bus => trigger::bus(),
        Kind::Fpe => trigger::fpe(),
        Kind::Ill => trigger::ill(),
        Kind::Trap => trigger::trap(),
        Kind::StackOverflow => trigger::stack_overflow(),
        Kind::Sys => trigger::sys(),
        Kind::Panic => panic_in_order(),
        Kind::ThreadSegv => on_worker_thread(trigger::segv),
        Kind::ThreadStackOverflow => on_worker_thread(trigger::stack_overflow),
    }
}

#[inline(never)]
fn panic_in_order() {
    let items: Vec<u32> = black_box(Vec::new());
    // Indexing an empty order: a plain Rust panic.
    black_box(items[black_box(3)]);
}

/// Run `f` on a named `std::thread` and wait for it.
fn on_worker_thread(f: fn()) {
    let worker = std::thread::Builder::new().name("order-worker".into()).stack_size(256 * 1024).spawn(f);
    if let Ok(handle) = worker {
        let _ = handle.join();
    }
}

/// The demo application: install the handler with `config`, do some "work",
/// crash. Returns only if installing failed or the crash did not happen.
pub fn run(kind: Kind, config: crashmon_handler::HandlerConfig) -> Result<(), crashmon_handler::InstallError> {
    let _guard = crashmon_handler::install(config)?;
    let order = Order { id: black_box(7), items: black_box(3) };
    process_order(&order, kind);
    Ok(())
}

struct Order {
    id: u32,
    items: u32,
}

#[inline(never)]
fn process_order(order: &Order, kind: Kind) {
    black_box(order.id);
    validate_order(order, kind);
}

#[inline(never)]
fn validate_order(order: &Order, kind: Kind) {
    if black_box(order.items) > 0 {
        crash(kind);
    }
}
