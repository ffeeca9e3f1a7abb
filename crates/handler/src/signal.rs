//! The signal path lives in the `#![no_std]`, no-alloc crate
//! `crashmon-handler-signal` (everything that runs after a fatal signal
//! arrives); this module re-exports it to the rest of the handler and adds
//! what needs `std`: the panic hook's crash context (normal context only,
//! it returns a heap buffer) and the documented [`rearm`].
#![allow(unsafe_code)]

use core::mem::{MaybeUninit, size_of};

pub(crate) use crashmon_handler_signal::*;

/// Put crashmon's handler back for every crash signal (SIGSEGV, SIGBUS,
/// SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS) whose disposition was replaced
/// after [`crate::install`], e.g. by `libc::sigaction`/`signal_hook` in a
/// Rust app or a C library that installs its own crash handler. The
/// replacing disposition is kept as the one crashmon chains to: a handler
/// still runs after the dump, `SIG_DFL` still ends the process by the
/// signal, `SIG_IGN` still ignores signals sent by other processes.
///
/// Call it after initialising code that installs signal handlers. Returns
/// how many signals were re-armed (0 when nothing had changed, or when the
/// handler is not installed). C and C++ programs linked with
/// `libcrashmon.so` (or run under `crashmon run`) do not need it: the
/// library interposes `signal` and `sigaction`, so a crash signal's
/// disposition is never taken from crashmon in the first place.
pub fn rearm() -> u32 {
    crashmon_handler_signal::rearm()
}

/// Register (`Some`) or remove (`None`) a function every crash signal is
/// offered to before crashmon dumps, for runtimes that recover from some
/// faults (a garbage collector's or a wasm runtime's guard pages, a JIT's
/// traps): it returns non-zero if it handled the signal (execution resumes
/// per the context it left), 0 to let crashmon report the crash. It runs in
/// the signal handler, on the alternate stack, so it must be
/// async-signal-safe. If it calls `abort()` instead, the report still
/// describes the original fault. Crashpad's and Breakpad's "first chance
/// handler".
///
/// # Safety
/// `handler` must be safe to call with a signal's kernel-provided
/// arguments in a signal handler.
pub unsafe fn set_first_chance_handler(handler: Option<crashmon_handler_signal::FirstChanceHandler>) {
    // SAFETY: the caller's promise, per the same contract.
    unsafe { crashmon_handler_signal::set_first_chance_handler(handler) };
}

/// The crash context of the calling thread as if it had sent itself
/// SIGABRT (`si_code` SI_TKILL), for a panic's report: the dump's exception
/// then names SIGABRT at the panic hook's frame. Normal context only (it
/// returns a heap buffer); the raw bytes of a `CrashContext`.
pub(crate) fn abort_context_bytes() -> Vec<u8> {
    let mut ctx: Box<MaybeUninit<crash_context::CrashContext>> = Box::new(MaybeUninit::zeroed());
    let p = ctx.as_mut_ptr();
    // SAFETY: `p` points to a zeroed CrashContext (plain data, valid when
    // zeroed); getcontext fills the ucontext of this thread, whose fpregs
    // pointer then points into that same context.
    unsafe {
        if crash_context::crash_context_getcontext(&mut (*p).context) != 0 {
            return Vec::new();
        }
        copy_float_state((&mut (*p).context as *mut crash_context::ucontext_t).cast(), p);
        let si = &mut (*p).siginfo;
        si.ssi_signo = libc::SIGABRT as u32;
        si.ssi_code = libc::SI_TKILL;
        si.ssi_pid = getpid() as u32;
        si.ssi_uid = libc::getuid();
        (*p).pid = getpid();
        (*p).tid = gettid();
        core::slice::from_raw_parts(p.cast::<u8>(), size_of::<crash_context::CrashContext>()).to_vec()
    }
}
