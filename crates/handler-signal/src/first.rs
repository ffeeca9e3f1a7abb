//! Handlers that see a fault before our dump.
//!
//! Runtimes recover from some crash signals in normal operation: a JVM or
//! a garbage collector from faults on its guard pages, a wasm runtime from
//! traps, a `sigsetjmp` probe from touching memory that may be unmapped, a
//! sandbox from seccomp's SIGSYS. Such a program must keep working with
//! crashmon installed, so two kinds of handlers run *before* we dump:
//!
//! - a handler the app set through the interposed `sigaction`/`signal`
//!   after [`crate::install`] ([`chain::Origin::Late`]), for signals the
//!   kernel generated (`si_code > 0`): what the program would have seen
//!   without us. A raise/abort still goes to our dump first;
//! - a function registered with [`set_first_chance_handler`] (Crashpad's
//!   and Breakpad's "first chance handler"), for every crash signal: it
//!   returns non-zero if it handled the signal.
//!
//! If such a handler gives up, we still dump, and the dump describes the
//! original fault: while it runs, this thread's entry in a small lock-free
//! table points at the fault's siginfo and context (on the alternate stack,
//! below which the handler runs), so a dump triggered from inside it (it
//! calls `abort()`, `raise()`, `exit()`/`_exit()`) reports that fault, not
//! the abort. A handler that resets to `SIG_DFL` and returns re-faults into
//! our handler, which then dumps first. A handler that `siglongjmp`s out
//! leaves a stale entry, recognised by its position: a later signal is not
//! nested below it on the same alternate stack.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use libc::{c_int, c_void, siginfo_t};

use crate::chain::{self, Origin};
use crate::state::{CRASHING_TID, DUMP_DONE, INSTALL_PID};
use crate::sys::{self, getpid, gettid};

/// A function that may handle a crash signal before crashmon dumps:
/// returns non-zero if it handled it (execution resumes per the context it
/// left), 0 to let crashmon report the crash. It runs in the signal
/// handler, on the alternate stack: it must be async-signal-safe.
pub type FirstChanceHandler = unsafe extern "C" fn(c_int, *mut siginfo_t, *mut c_void) -> c_int;

static FIRST_CHANCE: AtomicUsize = AtomicUsize::new(0);

/// Register (or with `None` remove) the function every crash signal is
/// offered to before crashmon dumps. See [`FirstChanceHandler`].
///
/// # Safety
/// `handler` must be safe to call with a signal's kernel-provided
/// arguments, in a signal handler, on any thread.
pub unsafe fn set_first_chance_handler(handler: Option<FirstChanceHandler>) {
    FIRST_CHANCE.store(handler.map_or(0, |f| f as usize), Ordering::SeqCst);
}

/// Threads that are inside a handler we called first, with the fault it is
/// handling. Only the owning thread writes an entry after claiming it.
struct Entry {
    tid: AtomicI32,
    info: AtomicUsize,
    uc: AtomicUsize,
    sig: AtomicI32,
}

const ENTRIES: usize = 64;
static TABLE: [Entry; ENTRIES] = [const {
    Entry { tid: AtomicI32::new(0), info: AtomicUsize::new(0), uc: AtomicUsize::new(0), sig: AtomicI32::new(0) }
}; ENTRIES];

/// This thread's entry while a first-chance handler runs; cleared on drop
/// (when the handler returns; a `siglongjmp` skips the drop, see the module
/// docs).
struct Inside(Option<usize>);

impl Inside {
    /// Record the fault for this thread, if the handler runs on the
    /// alternate stack (otherwise nothing tells a stale entry from a live
    /// one, and a nested dump reports its own context instead).
    fn enter(tid: i32, sig: c_int, info: *mut siginfo_t, uc: *mut c_void) -> Inside {
        if !sys::alt_stack_range().is_some_and(|(low, high)| (low..high).contains(&(uc as usize))) {
            return Inside(None);
        }
        let Some(i) = claim(tid) else { return Inside(None) };
        let e = &TABLE[i];
        e.sig.store(sig, Ordering::Relaxed);
        e.info.store(info as usize, Ordering::Relaxed);
        e.uc.store(uc as usize, Ordering::Release);
        Inside(Some(i))
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            TABLE[i].uc.store(0, Ordering::Release);
            TABLE[i].tid.store(0, Ordering::Release);
        }
    }
}

/// This thread's entry: its own (stale: a `siglongjmp` left it), a free
/// one, or one of a thread that no longer exists.
fn claim(tid: i32) -> Option<usize> {
    if let Some(i) = TABLE.iter().position(|e| e.tid.load(Ordering::Acquire) == tid) {
        return Some(i);
    }
    for (i, e) in TABLE.iter().enumerate() {
        if e.tid.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return Some(i);
        }
    }
    let pid = getpid();
    for (i, e) in TABLE.iter().enumerate() {
        let owner = e.tid.load(Ordering::Acquire);
        if owner != 0
            && !sys::thread_exists(pid, owner)
            && e.tid.compare_exchange(owner, tid, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            return Some(i);
        }
    }
    None
}

/// The fault this thread is handling in a first-chance handler, if the
/// code at stack pointer `sp` runs nested inside that handler: below the
/// fault's frame on the same alternate stack (`low..high`, the thread's).
fn outer(tid: i32, sp: usize, (low, high): (usize, usize)) -> Option<(c_int, *mut siginfo_t, *mut c_void)> {
    let e = TABLE.iter().find(|e| e.tid.load(Ordering::Acquire) == tid)?;
    let uc = e.uc.load(Ordering::Acquire);
    let info = e.info.load(Ordering::Relaxed);
    let sig = e.sig.load(Ordering::Relaxed);
    if uc == 0 || info == 0 || !(low <= sp && sp < uc && uc < high) {
        return None;
    }
    let info = info as *mut siginfo_t;
    // SAFETY: `info` points into the live signal frame above us (checked:
    // we run below `uc` on the same alternate stack, and the frame holds
    // both); a sanity check on its contents guards a reused stack.
    if unsafe { (*info).si_signo } != sig {
        return None;
    }
    Some((sig, info, uc as *mut c_void))
}

/// For a dump triggered while this thread runs a first-chance handler
/// (e.g. it called `abort()`): the original fault, to report instead of
/// the signal at hand. `uc` is the context of the signal being handled.
///
/// # Safety
/// `uc` is a valid ucontext of a signal being handled on this thread.
pub(crate) unsafe fn outer_fault(tid: i32, uc: *mut c_void) -> Option<(c_int, *mut siginfo_t, *mut c_void)> {
    if uc.is_null() {
        return None;
    }
    // SAFETY: per the contract. The kernel saves the thread's alternate
    // stack (not whether the interrupted code ran on it) in `uc_stack`.
    let (sp, stack) = unsafe {
        let u = &*uc.cast::<libc::ucontext_t>();
        let ss = &u.uc_stack;
        (crate::handler::stack_pointer(uc) as usize, (ss.ss_sp as usize, ss.ss_sp as usize + ss.ss_size))
    };
    outer(tid, sp, stack)
}

/// Offer the signal to a handler that runs before our dump. Returns true if
/// one ran and returned (the fault is theirs: return from our handler).
///
/// # Safety
/// `info` and `uc` are the kernel-provided arguments of the signal being
/// handled.
pub(crate) unsafe fn offer(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) -> bool {
    if !chain::HANDLERS_ACTIVE.load(Ordering::SeqCst) {
        return false;
    }
    let tid = gettid();
    if CRASHING_TID.load(Ordering::SeqCst) == tid {
        // A fault inside our own crash path: never hand it out.
        return false;
    }
    let registered = FIRST_CHANCE.load(Ordering::SeqCst);
    if registered != 0 {
        let _inside = Inside::enter(tid, sig, info, uc);
        // SAFETY: the app registered this function with this signature.
        let f: FirstChanceHandler = unsafe { core::mem::transmute(registered) };
        // SAFETY: kernel-provided arguments, per the contract.
        if unsafe { f(sig, info, uc) } != 0 {
            return true;
        }
    }
    // SAFETY: `info` is the kernel-provided siginfo.
    if unsafe { (*info).si_code } <= 0 {
        return false;
    }
    let Some(i) = chain::index(sig) else { return false };
    let saved = chain::load_saved(i);
    if saved.origin != Origin::Late || !saved.is_function() {
        return false;
    }
    if saved.action.sa_flags & libc::SA_RESETHAND != 0 {
        chain::reset_one_shot(i, saved.action.sa_sigaction);
    }
    let _inside = Inside::enter(tid, sig, info, uc);
    // SAFETY: per the contract; the app installed this handler for `sig`.
    unsafe { crate::handler::call_action(sig, info, uc, &saved.action) };
    true
}

/// Called by an interposed `exit`/`_exit`/`_Exit`: if this thread is
/// inside a handler we called first (it gave up on a fault and exits the
/// process), report that fault before the process exits. Returns whether a
/// dump was written. Not for the signal path of other code.
pub fn report_before_exit() -> bool {
    let tid = gettid();
    let marker = 0u8;
    let sp = &raw const marker as usize;
    let Some((sig, info, uc)) = sys::alt_stack_range().and_then(|stack| outer(tid, sp, stack)) else { return false };
    if getpid() != INSTALL_PID.load(Ordering::SeqCst)
        || !chain::HANDLERS_ACTIVE.load(Ordering::SeqCst)
        || CRASHING_TID.compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst).is_err()
    {
        return false;
    }
    // SAFETY: we won the gate; `info`/`uc` are the live frame of the fault
    // this thread is still handling (checked by `outer`).
    let dumped = unsafe { crate::handler::report_crash(sig, info, uc, tid) };
    DUMP_DONE.store(1, Ordering::SeqCst);
    sys::futex_wake_all(&DUMP_DONE);
    dumped
}
