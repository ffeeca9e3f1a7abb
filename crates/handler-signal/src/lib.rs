//! crashmon's signal path: everything that runs after a fatal signal
//! arrives, in a `#![no_std]` crate without `alloc`, so that no `Box`,
//! `format!`, `Mutex` or `println!` can reach it (signal-safety(7)). Only
//! atomics, statics and raw system calls.
//!
//! `crashmon-handler` calls [`install`] once it is connected to a monitor;
//! from then on a crash signal ([`SIGNALS`]) runs this crate's handler: an
//! atomic compare-exchange picks the one crash to dump, the crash context is
//! filled in a static and sent as a `DumpRequest`, the thread waits (bounded)
//! for the monitor's `DumpComplete`, then the handler that was there before
//! ours runs and the signal is re-raised so the process dies by it.
//!
//! Dispositions set after [`install`] are not lost: a library that
//! interposes `sigaction`/`signal` (libcrashmon.so) routes crash signals to
//! [`sigaction`]/[`signal`], which keep our handler and chain to the app's;
//! other code can call [`rearm`]. See `ARCHITECTURE.md`.
//!
//! `crash-context` is used for its plain data types only (the layouts
//! minidump-writer reads); it is a `std` crate, but none of its functions
//! runs here.
//!
//! `unsafe` lives in the named modules `sys` (one FFI call per block),
//! `altstack`, `chain` (the saved dispositions, the real `sigaction`),
//! `first` (handlers that see a fault before our dump) and `handler` (the
//! handler and its static buffers), each with `// SAFETY:` notes.
#![no_std]

mod altstack;
mod chain;
mod first;
mod handler;
mod reply;
mod sys;

use core::sync::atomic::Ordering;

use libc::c_int;

pub use altstack::{AltStack, ensure_alt_stack};
pub use chain::{SignalFlavor, real_sigaction, resolve_real_sigaction, set_interposition, sigaction, signal};
pub use first::{FirstChanceHandler, leaving_handler, report_before_exit, set_first_chance_handler};
pub use handler::copy_float_state;
pub use reply::{Reply, wait_reply_into};
pub use sys::{getpid, gettid, set_ptracer};

/// The signals crashmon catches.
pub const SIGNALS: [c_int; 7] =
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGABRT, libc::SIGTRAP, libc::SIGSYS];

/// The request id the signal path uses; requests from normal context use
/// other ids, so the crashing thread only takes its own reply.
pub const SIGNAL_REQUEST_ID: u32 = u32::MAX;

/// Size of the alternate signal stack we install when the thread has none or
/// a smaller one.
pub const ALT_STACK_SIZE: usize = 64 * 1024;

/// Size of the crash context the monitor expects in a dump request.
pub const CONTEXT_LEN: usize = core::mem::size_of::<crash_context::CrashContext>();
const _: () = assert!(CONTEXT_LEN <= crashmon_protocol::CONTEXT_CAPACITY);

mod state {
    //! The signal path's state: atomics only.
    use core::sync::atomic::{AtomicI32, AtomicU32};

    pub(crate) static SOCKET_FD: AtomicI32 = AtomicI32::new(-1);
    /// The pid that installed the handler: a forked child (same handlers,
    /// same socket) must not speak on its parent's connection.
    pub(crate) static INSTALL_PID: AtomicI32 = AtomicI32::new(0);
    /// Crashes declined because they happened in a forked child.
    pub(crate) static FORKED_CHILD_CRASHES: AtomicU32 = AtomicU32::new(0);
    pub(crate) static REPLY_TIMEOUT_MS: AtomicU32 = AtomicU32::new(10_000);
    /// 0 while no crash is being handled, else the tid of the thread
    /// handling it.
    pub(crate) static CRASHING_TID: AtomicI32 = AtomicI32::new(0);
    /// Futex word: becomes 1 when the dumping thread is done.
    pub(crate) static DUMP_DONE: AtomicU32 = AtomicU32::new(0);
}

use state::{CRASHING_TID, DUMP_DONE, FORKED_CHILD_CRASHES, INSTALL_PID, REPLY_TIMEOUT_MS, SOCKET_FD};

/// `sigaction` failed for `signal` while installing (nothing was left
/// installed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigactionFailed {
    /// The signal.
    pub signal: c_int,
    /// The errno.
    pub errno: i32,
}

/// Install our handler for every signal in [`SIGNALS`] (on the alternate
/// stack), saving the previous dispositions; crashes are reported on the
/// connected `SOCK_SEQPACKET` socket `fd`. Normal context.
pub fn install(fd: c_int, reply_timeout_ms: u32) -> Result<(), SigactionFailed> {
    SOCKET_FD.store(fd, Ordering::SeqCst);
    INSTALL_PID.store(getpid(), Ordering::SeqCst);
    REPLY_TIMEOUT_MS.store(reply_timeout_ms.max(1), Ordering::SeqCst);
    CRASHING_TID.store(0, Ordering::SeqCst);
    DUMP_DONE.store(0, Ordering::SeqCst);
    first::register_exit_hook();
    chain::install_all(&handler::our_action()).map_err(|(signal, errno)| SigactionFailed { signal, errno })
}

/// Put the saved dispositions back (the guard's `Drop`).
pub fn uninstall() {
    chain::uninstall_all();
    SOCKET_FD.store(-1, Ordering::SeqCst);
}

/// Put our handler back for every crash signal whose disposition was
/// changed without going through [`sigaction`]/[`signal`] (e.g. a Rust app
/// calling `libc::sigaction` after install): the new disposition becomes
/// the one we chain to. Returns how many signals were re-armed.
pub fn rearm() -> u32 {
    chain::rearm(&handler::our_action())
}

/// The connected monitor socket, if the handler is installed in this
/// process (not in a forked child).
pub fn socket_fd() -> Option<c_int> {
    let fd = SOCKET_FD.load(Ordering::SeqCst);
    (fd >= 0 && chain::HANDLERS_ACTIVE.load(Ordering::SeqCst) && INSTALL_PID.load(Ordering::SeqCst) == getpid())
        .then_some(fd)
}

/// The configured reply timeout.
pub fn reply_timeout_ms() -> u64 {
    u64::from(REPLY_TIMEOUT_MS.load(Ordering::SeqCst))
}

/// Whether some thread is handling a fatal crash right now.
pub fn crash_in_progress() -> bool {
    CRASHING_TID.load(Ordering::SeqCst) != 0
}

/// Claim the one fatal report of this process for the calling thread (used
/// by the panic hook before it aborts). Returns false if another thread
/// already owns it, after waiting (bounded) for that thread to finish.
pub fn claim_fatal() -> bool {
    let tid = gettid();
    match CRASHING_TID.compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => true,
        Err(owner) if owner == tid => false,
        Err(_) => {
            sys::futex_wait(&DUMP_DONE, 0, reply_timeout_ms() + 2_000);
            false
        }
    }
}

/// Mark the fatal report finished (wakes other crashing threads).
pub fn fatal_done() {
    DUMP_DONE.store(1, Ordering::SeqCst);
    sys::futex_wake_all(&DUMP_DONE);
}

/// How many crashes were declined because they happened in a forked child
/// of the process that installed the handler.
pub fn forked_child_crashes() -> u32 {
    FORKED_CHILD_CRASHES.load(Ordering::Relaxed)
}

/// Send one datagram; false if the monitor is gone. Signal-safe.
pub fn send_datagram(fd: c_int, buf: &[u8]) -> bool {
    sys::send_all(fd, buf)
}

/// Decimal digits of `n` into `buf`; returns the used tail. Signal-safe.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    extern "C" fn app_handler(_sig: c_int) {}

    fn current(sig: c_int) -> libc::sigaction {
        // SAFETY: struct sigaction is plain data.
        let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: a query with a valid out pointer.
        assert_eq!(unsafe { real_sigaction(sig, core::ptr::null(), &mut old) }, 0);
        old
    }

    fn virtual_query(sig: c_int) -> usize {
        // SAFETY: struct sigaction is plain data.
        let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: a query with a valid out pointer.
        assert_eq!(unsafe { sigaction(sig, core::ptr::null(), &mut old) }, 0);
        old.sa_sigaction
    }

    /// The whole life of the saved dispositions in this test process (one
    /// test, since the dispositions are process-wide): install, a change
    /// through the interposition, a change behind its back and `rearm`,
    /// a SIGTRAP the app ignores, uninstall.
    #[test]
    fn dispositions_set_after_install_are_saved_and_ours_stays() {
        let ours = handler::our_action().sa_sigaction;
        let app = app_handler as extern "C" fn(c_int) as usize;
        let saved = [current(libc::SIGSEGV), current(libc::SIGBUS)];
        let before = saved[0].sa_sigaction;
        install(-1, 1000).unwrap();
        assert_eq!(current(libc::SIGSEGV).sa_sigaction, ours);
        assert_eq!(virtual_query(libc::SIGSEGV), before, "the app sees what was there before us");

        // Through the interposition: saved, ours stays installed.
        // SAFETY: a valid handler.
        let previous = unsafe { signal(libc::SIGSEGV, app, SignalFlavor::Bsd) };
        assert_eq!(previous, before);
        assert_eq!(virtual_query(libc::SIGSEGV), app);
        assert_eq!(current(libc::SIGSEGV).sa_sigaction, ours);
        assert_eq!(rearm(), 0, "nothing to re-arm");

        // Behind its back (as a Rust app's libc::sigaction): rearm takes it.
        // SAFETY: struct sigaction is plain data.
        let mut dfl: libc::sigaction = unsafe { core::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: valid pointers.
        unsafe { real_sigaction(libc::SIGBUS, &dfl, core::ptr::null_mut()) };
        assert_eq!(rearm(), 1);
        assert_eq!(current(libc::SIGBUS).sa_sigaction, ours);
        assert_eq!(virtual_query(libc::SIGBUS), libc::SIG_DFL);

        // The app ignores SIGTRAP: a SIGTRAP it sends itself is ignored as
        // it would be without us (we are still installed for it).
        // SAFETY: a valid handler value.
        unsafe { signal(libc::SIGTRAP, libc::SIG_IGN, SignalFlavor::Bsd) };
        assert_eq!(current(libc::SIGTRAP).sa_sigaction, ours);
        // SAFETY: raising a signal at ourselves; our handler returns.
        assert_eq!(unsafe { libc::raise(libc::SIGTRAP) }, 0);

        // Other signals pass through.
        // SAFETY: a valid handler.
        let old_usr1 = unsafe { signal(libc::SIGUSR1, app, SignalFlavor::Bsd) };
        assert_eq!(current(libc::SIGUSR1).sa_sigaction, app);
        // SAFETY: puts back what was there.
        unsafe { signal(libc::SIGUSR1, old_usr1, SignalFlavor::Bsd) };

        uninstall();
        assert_eq!(current(libc::SIGSEGV).sa_sigaction, app, "uninstall restores the app's latest choice");
        assert_eq!(current(libc::SIGTRAP).sa_sigaction, libc::SIG_IGN);
        assert_eq!(virtual_query(libc::SIGSEGV), app, "with nothing installed a query goes to libc");
        // SAFETY: puts back what was there before the test.
        unsafe {
            real_sigaction(libc::SIGSEGV, &saved[0], core::ptr::null_mut());
            real_sigaction(libc::SIGBUS, &saved[1], core::ptr::null_mut());
        }
    }

    /// The boundary the crate exists for: `#![no_std]` at the root and no
    /// `alloc` anywhere (so `Box`, `Vec`, `format!` cannot be used), and no
    /// `std` outside this test module.
    #[test]
    fn the_crate_stays_no_std_without_alloc() {
        let sources = [
            ("lib.rs", include_str!("lib.rs")),
            ("sys.rs", include_str!("sys.rs")),
            ("altstack.rs", include_str!("altstack.rs")),
            ("chain.rs", include_str!("chain.rs")),
            ("first.rs", include_str!("first.rs")),
            ("handler.rs", include_str!("handler.rs")),
            ("reply.rs", include_str!("reply.rs")),
        ];
        assert!(sources[0].1.lines().any(|l| l == "#![no_std]"));
        for (name, text) in sources {
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for banned in ["extern crate alloc", "alloc::", "extern crate std", "std::"] {
                let hit = code.lines().filter(|l| !l.trim_start().starts_with("//")).any(|l| l.contains(banned));
                assert!(!hit, "{name} uses `{banned}`");
            }
        }
    }

    #[test]
    fn decimal_digits() {
        let mut b = [0u8; 10];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(4_294_967_295, &mut b), b"4294967295");
    }
}
