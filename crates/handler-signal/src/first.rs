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
//! table points at the fault's siginfo and context (in the signal frame,
//! above the handler's own frames), so a dump triggered from inside it
//! (`abort()`/`raise()`: a nested signal the thread sends itself;
//! `exit()`: an `atexit` hook; `_exit()`: interposed by libcrashmon)
//! reports that fault, not the abort. A `raise()` that stays pending until
//! the handler returns is seen when it returns. A handler that resets to
//! `SIG_DFL` and returns re-faults into our handler, which then dumps
//! first.
//!
//! A handler that leaves by `siglongjmp`/`longjmp` (libcrashmon interposes
//! them and calls [`leaving_handler`] first) or by a C++ exception leaves
//! its entry behind only in the second case. A stale entry is never used
//! blindly: an entry counts only for code running below its frame (stack
//! pointer), with the fault's signal still blocked (if the handler was
//! called with it blocked), with the frame's pointers where a signal frame
//! keeps them, and with that frame still holding the fault it held when
//! the handler was called (signal, code, address, program counter and
//! stack pointer, compared with a snapshot).
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

use libc::{c_int, c_void, siginfo_t};

use crate::chain::{self, Origin};
use crate::state::{CRASHING_TID, DUMP_DONE, INSTALL_PID, REPLY_TIMEOUT_MS};
use crate::sys::{self, getpid, gettid};

/// A function that may handle a crash signal before crashmon dumps:
/// returns non-zero if it handled it (execution resumes per the context it
/// left), 0 to let crashmon report the crash. It runs in the signal
/// handler, on the alternate stack: it must be async-signal-safe. It may
/// unwind (a C++ exception thrown from it, with `-fnon-call-exceptions`).
pub type FirstChanceHandler = unsafe extern "C-unwind" fn(c_int, *mut siginfo_t, *mut c_void) -> c_int;

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
    /// Whether the handler runs with `sig` blocked (not `SA_NODEFER`).
    blocked: AtomicBool,
    /// The fault as the frame held it on entry: `si_code`, `si_addr`, pc,
    /// stack pointer.
    code: AtomicI32,
    addr: AtomicUsize,
    pc: AtomicUsize,
    sp: AtomicUsize,
}

const ENTRIES: usize = 128;
static TABLE: [Entry; ENTRIES] = [const {
    Entry {
        tid: AtomicI32::new(0),
        info: AtomicUsize::new(0),
        uc: AtomicUsize::new(0),
        sig: AtomicI32::new(0),
        blocked: AtomicBool::new(false),
        code: AtomicI32::new(0),
        addr: AtomicUsize::new(0),
        pc: AtomicUsize::new(0),
        sp: AtomicUsize::new(0),
    }
}; ENTRIES];
/// Where the next search for an entry of an exited thread starts.
static RECLAIM_FROM: AtomicU32 = AtomicU32::new(0);

/// How far above the stack pointer of code nested in a handler the fault's
/// frame may be (the handler's own frames, on any stack).
const MAX_NESTING: usize = 1 << 20;
/// How far from a signal frame's `ucontext` its siginfo (above it on
/// x86-64, below on aarch64) and its floating-point state may be (the
/// x86-64 XSAVE area is at most a few KiB).
const MAX_FRAME: usize = 64 << 10;

/// What a signal frame says about its fault: `si_code`, `si_addr`, pc and
/// stack pointer.
///
/// # Safety
/// `info`/`uc` point to readable memory of their types' sizes.
unsafe fn snapshot(info: *const siginfo_t, uc: *mut c_void) -> (c_int, usize, usize, usize) {
    // SAFETY: per the contract.
    unsafe {
        (
            (*info).si_code,
            (*info).si_addr() as usize,
            crate::handler::program_counter(uc) as usize,
            crate::handler::stack_pointer(uc) as usize,
        )
    }
}

/// Record, for this thread, the fault a handler we call first is about to
/// handle. Returns the entry to [`leave`] when the handler returns (no
/// guard value: a `siglongjmp` may jump over this frame, which Rust allows
/// only for frames without destructors).
///
/// # Safety
/// Kernel-provided arguments of the signal being handled.
unsafe fn enter(tid: i32, sig: c_int, info: *mut siginfo_t, uc: *mut c_void, blocked: bool) -> Option<usize> {
    let i = claim(tid)?;
    let e = &TABLE[i];
    // SAFETY: per the contract.
    let (code, addr, pc, sp) = unsafe { snapshot(info, uc) };
    e.uc.store(0, Ordering::Release);
    e.sig.store(sig, Ordering::Relaxed);
    e.info.store(info as usize, Ordering::Relaxed);
    e.blocked.store(blocked, Ordering::Relaxed);
    e.code.store(code, Ordering::Relaxed);
    e.addr.store(addr, Ordering::Relaxed);
    e.pc.store(pc, Ordering::Relaxed);
    e.sp.store(sp, Ordering::Relaxed);
    e.uc.store(uc as usize, Ordering::Release);
    Some(i)
}

/// The handler returned: free the entry.
fn leave(entry: Option<usize>) {
    if let Some(i) = entry {
        TABLE[i].uc.store(0, Ordering::Release);
        TABLE[i].tid.store(0, Ordering::Release);
    }
}

/// Called by libcrashmon's interposed `longjmp`/`siglongjmp` before it
/// jumps: if this thread is inside a handler we called first (its stack
/// pointer below the fault's frame), the jump leaves that handler, so its
/// entry goes. (A jump within the handler itself loses the entry too: a
/// dump from there then reports its own signal.) Signal-safe.
pub fn leaving_handler() {
    // The common case (no handler we called is running anywhere) costs a
    // scan of the table, no system call: programs may longjmp a lot.
    if TABLE.iter().all(|e| e.uc.load(Ordering::Relaxed) == 0) {
        return;
    }
    let tid = gettid();
    let marker = 0u8;
    let sp = &raw const marker as usize;
    for e in &TABLE {
        if e.tid.load(Ordering::Acquire) == tid {
            let uc = e.uc.load(Ordering::Acquire);
            if uc != 0 && sp < uc {
                e.uc.store(0, Ordering::Release);
                e.tid.store(0, Ordering::Release);
            }
        }
    }
}

/// This thread's entry: its own (stale: a `siglongjmp` left it), a free
/// one, or one of a thread that no longer exists (a few probed per call).
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
    let start = RECLAIM_FROM.fetch_add(8, Ordering::Relaxed) as usize;
    for k in 0..8 {
        let i = (start + k) % ENTRIES;
        let e = &TABLE[i];
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

/// The fault this thread is handling in a first-chance handler, for code
/// running at stack pointer `sp` with signal mask `mask`: the entry counts
/// if that code runs below the fault's frame, with the fault's signal
/// blocked (if the handler was called with it blocked), and the frame's
/// pointers look like a signal frame's.
fn outer(tid: i32, sp: usize, mask: &libc::sigset_t) -> Option<(c_int, *mut siginfo_t, *mut c_void)> {
    let e = TABLE.iter().find(|e| e.tid.load(Ordering::Acquire) == tid)?;
    let uc = e.uc.load(Ordering::Acquire);
    let info = e.info.load(Ordering::Relaxed);
    let sig = e.sig.load(Ordering::Relaxed);
    if uc == 0 || !(sp < uc && uc - sp <= MAX_NESTING) || !(sp < info && info.abs_diff(uc) <= MAX_FRAME) {
        return None;
    }
    // SAFETY: a valid sigset_t and signal number.
    if e.blocked.load(Ordering::Relaxed) && unsafe { libc::sigismember(mask, sig) } != 1 {
        return None;
    }
    // SAFETY: `uc` and `info` lie above our stack pointer, within a signal
    // frame's reach of each other: live stack memory of this thread.
    let now = unsafe {
        if (*(info as *const siginfo_t)).si_signo != sig || !fp_state_in_frame(uc) {
            return None;
        }
        snapshot(info as *const siginfo_t, uc as *mut c_void)
    };
    let then = (
        e.code.load(Ordering::Relaxed),
        e.addr.load(Ordering::Relaxed),
        e.pc.load(Ordering::Relaxed),
        e.sp.load(Ordering::Relaxed),
    );
    (now == then).then_some((sig, info as *mut siginfo_t, uc as *mut c_void))
}

/// Whether the floating-point state a ucontext points to lies just above it
/// (where the kernel puts it), or is absent.
///
/// # Safety
/// `uc` points to readable memory of a ucontext's size.
#[cfg(target_arch = "x86_64")]
unsafe fn fp_state_in_frame(uc: usize) -> bool {
    // SAFETY: per the contract.
    let fp = unsafe { (*(uc as *const libc::ucontext_t)).uc_mcontext.fpregs } as usize;
    fp == 0 || (uc < fp && fp - uc <= MAX_FRAME)
}

/// aarch64 keeps the floating-point state inside the ucontext.
///
/// # Safety
/// None needed; for symmetry with x86-64.
#[cfg(target_arch = "aarch64")]
unsafe fn fp_state_in_frame(_uc: usize) -> bool {
    true
}

/// For a signal this thread sent itself (`abort()`, `raise()`) while it
/// runs a first-chance handler: the original fault, to report instead of
/// the signal at hand. `uc` is the context of the signal being handled.
///
/// # Safety
/// `uc` is a valid ucontext of a signal being handled on this thread.
pub(crate) unsafe fn outer_fault(tid: i32, uc: *mut c_void) -> Option<(c_int, *mut siginfo_t, *mut c_void)> {
    if uc.is_null() {
        return None;
    }
    // SAFETY: per the contract; the mask of the interrupted code.
    let (sp, mask) =
        unsafe { (crate::handler::stack_pointer(uc) as usize, (*uc.cast::<libc::ucontext_t>()).uc_sigmask) };
    outer(tid, sp, &mask)
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
    // Inside a first-chance handler already (e.g. it aborts): the outermost
    // fault stays the one to report.
    // SAFETY: kernel-provided context.
    let nested = unsafe { outer_fault(tid, uc) }.is_some();
    // Not offered again to a registered function that is already running
    // on this thread (it gave up with abort(), say).
    let registered = if nested { 0 } else { FIRST_CHANCE.load(Ordering::SeqCst) };
    if registered != 0 {
        // SAFETY: kernel-provided arguments.
        let entry = unsafe { enter(tid, sig, info, uc, true) };
        // SAFETY: the app registered this function with this signature.
        let f: FirstChanceHandler = unsafe { core::mem::transmute(registered) };
        // SAFETY: kernel-provided arguments, per the contract.
        let handled = unsafe { f(sig, info, uc) } != 0;
        leave(entry);
        if handled {
            return true;
        }
    }
    // SAFETY: `info` is the kernel-provided siginfo.
    if unsafe { (*info).si_code } <= 0 || nested {
        // Sent by a process (dump first), or a new fault inside a handler
        // we called first (reported as itself; offering it back to an
        // `SA_NODEFER` handler would recurse until the stack is gone).
        return false;
    }
    let Some(i) = chain::index(sig) else { return false };
    let saved = chain::load_saved(i);
    if saved.origin != Origin::Late || !saved.is_function() || saved.action.sa_sigaction == crate::handler::ours() {
        return false;
    }
    if saved.action.sa_flags & libc::SA_RESETHAND != 0 {
        chain::reset_one_shot(i, saved.action.sa_sigaction);
    }
    let blocked = crate::handler::blocks_itself(sig, &saved.action);
    // SAFETY: kernel-provided arguments.
    let entry = unsafe { enter(tid, sig, info, uc, blocked) };
    // SAFETY: per the contract; the app installed this handler for `sig`.
    unsafe { crate::handler::call_action(sig, info, uc, &saved.action) };
    leave(entry);
    if sys::is_pending(sig) {
        // It gave up by raising the signal again (after resetting it,
        // typically): still blocked, that signal comes once we return, when
        // this fault's frame is gone. Report the fault now; the raised
        // signal then finds the dump taken, runs what the app set for it
        // and ends the process.
        // SAFETY: the fault's own kernel-provided arguments.
        if unsafe { dump_fault(sig, info, uc, tid) } {
            GAVE_UP.store(tid, Ordering::SeqCst);
        }
    }
    true
}

/// The thread whose handler gave up by raising its signal after we dumped
/// its fault (see [`offer`]): the raised signal is then chained like any
/// signal after a dump.
pub(crate) static GAVE_UP: AtomicI32 = AtomicI32::new(0);

/// Dump the fault (`sig`, `info`, `uc`) from normal or signal context
/// outside `handle_signal`, taking the one-crash gate. If another thread
/// holds it, wait (bounded) for its dump, which ends the process. Returns
/// whether a dump was written.
///
/// # Safety
/// `info`/`uc` are valid: a live signal frame of this thread.
unsafe fn dump_fault(sig: c_int, info: *mut siginfo_t, uc: *mut c_void, tid: i32) -> bool {
    if getpid() != INSTALL_PID.load(Ordering::SeqCst) || !chain::HANDLERS_ACTIVE.load(Ordering::SeqCst) {
        return false;
    }
    match CRASHING_TID.compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => {}
        Err(owner) if owner == tid => return false,
        Err(_) => {
            let budget = u64::from(REPLY_TIMEOUT_MS.load(Ordering::SeqCst)) + 2_000;
            sys::futex_wait(&DUMP_DONE, 0, budget);
            return false;
        }
    }
    // SAFETY: we won the gate; the arguments per the contract.
    let dumped = unsafe { crate::handler::report_crash(sig, info, uc, tid) };
    DUMP_DONE.store(1, Ordering::SeqCst);
    sys::futex_wake_all(&DUMP_DONE);
    dumped
}

/// Called when the process exits (an `atexit` hook, and libcrashmon's
/// interposed `exit`/`_exit`/`_Exit`): if this thread is inside a handler
/// we called first (it gave up on a fault and exits the process), report
/// that fault before the process exits. If another thread is being dumped
/// right now, wait (bounded) for its dump and its re-raise, which ends the
/// process by its crash signal: an exit must not cut a dump short or hide
/// the crash. Returns whether this thread wrote a dump.
pub fn report_before_exit() -> bool {
    let tid = gettid();
    let marker = 0u8;
    let sp = &raw const marker as usize;
    let mask = sys::current_mask();
    if let Some((sig, info, uc)) = outer(tid, sp, &mask) {
        // SAFETY: `outer` checked that this is the live frame of the fault
        // this thread is still handling.
        return unsafe { dump_fault(sig, info, uc, tid) };
    }
    let owner = CRASHING_TID.load(Ordering::SeqCst);
    if owner != 0 && owner != tid && getpid() == INSTALL_PID.load(Ordering::SeqCst) {
        let budget = u64::from(REPLY_TIMEOUT_MS.load(Ordering::SeqCst)) + 2_000;
        sys::futex_wait(&DUMP_DONE, 0, budget);
        // The dumping thread re-raises its signal right after; give it
        // the moment it needs to end the process.
        sys::futex_wait(&DUMP_DONE, 1, 1_000);
    }
    false
}

/// [`report_before_exit`] as an `atexit` hook.
extern "C" fn report_at_exit() {
    report_before_exit();
}

/// Register the `atexit` hook once. Normal context.
pub(crate) fn register_exit_hook() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.swap(true, Ordering::SeqCst) {
        // SAFETY: registers a function without arguments that only reads
        // atomics and, when a first-chance handler exits, dumps.
        unsafe { libc::atexit(report_at_exit) };
    }
}
