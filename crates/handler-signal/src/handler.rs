//! The signal handler itself and the crash buffers it fills.
//!
//! The crash context, the outgoing message and the reply buffer live in
//! statics, never on the (small, alternate) signal stack. One crash is
//! dumped: an atomic compare-exchange on the thread id picks it; other
//! crashing threads wait on a futex with a bounded timeout. Afterwards the
//! saved dispositions are restored and the signal is re-raised so the
//! process dies by its own signal.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::mem::{MaybeUninit, size_of};
use core::ptr;
use core::sync::atomic::Ordering;

use crashmon_protocol as proto;
use libc::{c_int, c_void, siginfo_t};

use crate::state::{CRASHING_TID, DUMP_DONE, FORKED_CHILD_CRASHES, INSTALL_PID, REPLY_TIMEOUT_MS, SOCKET_FD};
use crate::sys::{self, getpid, gettid};
use crate::{SIGNAL_REQUEST_ID, decimal};
use crate::{chain, first};

/// A static cell written only by the single thread that won the crash gate.
struct Shared<T>(UnsafeCell<T>);
// SAFETY: access is serialised by CRASHING_TID: only the thread that won
// the compare-exchange touches the crash buffers.
unsafe impl<T> Sync for Shared<T> {}

static CONTEXT: Shared<MaybeUninit<crash_context::CrashContext>> = Shared(UnsafeCell::new(MaybeUninit::uninit()));
static SEND_BUF: Shared<[u8; proto::MAX_MESSAGE_LEN]> = Shared(UnsafeCell::new([0; proto::MAX_MESSAGE_LEN]));
static RECV_BUF: Shared<[u8; proto::MAX_MESSAGE_LEN]> = Shared(UnsafeCell::new([0; proto::MAX_MESSAGE_LEN]));

/// Handlers may unwind (a C++ exception thrown from an app's handler that
/// we call, with `-fnon-call-exceptions`), so the whole chain is
/// `C-unwind`.
type SigactionHandler = extern "C-unwind" fn(c_int, *mut siginfo_t, *mut c_void);

/// The address of our handler.
pub(crate) fn ours() -> usize {
    handle_signal as SigactionHandler as usize
}

/// Our `struct sigaction`: [`handle_signal`] on the alternate stack.
pub(crate) fn our_action() -> libc::sigaction {
    // SAFETY: struct sigaction is plain data; all zeroes is valid.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = handle_signal as SigactionHandler as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    action
}

/// Signals that a fault produces again when the handler returns (the faulting
/// instruction re-executes), as long as the kernel generated them.
fn refaults(sig: c_int, code: c_int) -> bool {
    code > 0 && matches!(sig, libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL)
}

/// Restore the saved dispositions and arrange for `sig` to be delivered
/// again once the handler returns, so the process dies by its own signal.
///
/// When not `dumped` (we declined: no monitor, a forked child, a second
/// crash), the saved disposition simply takes over: the kernel delivers
/// the re-raised or re-faulting signal to it.
///
/// When `dumped`, a saved handler that is a function is called directly
/// (chaining: an app's own crash handler still runs), then the default
/// action is set so the process dies by `sig` even if that handler returns.
/// One exception: a stack overflow skips the saved handler, because
/// Rust's std turns the overflow it sees into SIGABRT.
///
/// # Safety
/// `info` and `uc` are the kernel-provided arguments of the signal being
/// handled.
unsafe fn restore_and_reraise(sig: c_int, info: *mut siginfo_t, uc: *mut c_void, dumped: bool) {
    chain::deactivate();
    chain::restore_all();
    // SAFETY: `info` is the kernel-provided siginfo for this signal.
    let code = unsafe { (*info).si_code };
    if dumped {
        // SAFETY: per the contract.
        if !unsafe { is_stack_overflow(sig, info, uc) } {
            // SAFETY: per the contract.
            unsafe { call_saved(sig, info, uc) };
        }
        chain::set_default(sig);
    }
    if refaults(sig, code) {
        return;
    }
    // SAFETY: re-queue the same siginfo to this very thread; the signal is
    // blocked while we are in its handler, so it is delivered (to the
    // restored disposition) right after we return.
    unsafe { sys::requeue_to_self(sig, info) };
}

/// Call the handler saved behind ours for `sig`, if it is a function (not
/// SIG_DFL / SIG_IGN).
///
/// # Safety
/// As [`restore_and_reraise`].
unsafe fn call_saved(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) {
    let Some(i) = chain::index(sig) else { return };
    let saved = chain::load(i);
    let handler = saved.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN || handler == handle_signal as SigactionHandler as usize {
        return;
    }
    // SAFETY: per the contract.
    unsafe { call_action(sig, info, uc, &saved) };
}

/// Call `action`'s handler (a function) as the kernel would: with its
/// `sa_mask` added to the blocked set and `sig` blocked unless
/// `SA_NODEFER`, one or three arguments per `SA_SIGINFO`.
///
/// # Safety
/// `info` and `uc` are the kernel-provided arguments of the signal `sig`
/// being handled; `action` is an action the app installed for `sig`.
pub(crate) unsafe fn call_action(sig: c_int, info: *mut siginfo_t, uc: *mut c_void, action: &libc::sigaction) {
    let mut blocked = action.sa_mask;
    if blocks_itself(sig, action) {
        // SAFETY: a valid sigset_t and signal number.
        unsafe { libc::sigaddset(&mut blocked, sig) };
    }
    let previous = sys::block(&blocked);
    if !blocks_itself(sig, action) {
        sys::unblock(sig);
    }
    let handler = action.sa_sigaction;
    // SAFETY: the app installed this function as a handler for `sig` with
    // these flags, so it has the matching signature.
    unsafe {
        if action.sa_flags & libc::SA_SIGINFO != 0 {
            let f: SigactionHandler = core::mem::transmute(handler);
            f(sig, info, uc);
        } else {
            let f: extern "C-unwind" fn(c_int) = core::mem::transmute(handler);
            f(sig);
        }
    }
    sys::set_mask(&previous);
}

/// Whether `sig` is blocked while `action`'s handler runs, as the kernel
/// does it: unless `SA_NODEFER`, or if `sa_mask` has it anyway.
pub(crate) fn blocks_itself(sig: c_int, action: &libc::sigaction) -> bool {
    // SAFETY: a valid sigset_t and signal number.
    action.sa_flags & libc::SA_NODEFER == 0 || unsafe { libc::sigismember(&action.sa_mask, sig) } == 1
}

/// A fault near the interrupted stack pointer: the thread ran out of stack.
///
/// # Safety
/// As [`restore_and_reraise`].
unsafe fn is_stack_overflow(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) -> bool {
    const NEAR: u64 = 64 * 1024;
    // SAFETY: per the contract.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
    if !(sig == libc::SIGSEGV || sig == libc::SIGBUS) || code <= 0 || uc.is_null() {
        return false;
    }
    // SAFETY: `uc` is the signal's ucontext.
    let sp = unsafe { stack_pointer(uc) };
    addr.abs_diff(sp) < NEAR
}

/// # Safety
/// `uc` is the signal's ucontext.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn program_counter(uc: *mut c_void) -> u64 {
    // SAFETY: per the contract.
    unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RIP as usize] as u64 }
}

/// # Safety
/// `uc` is the signal's ucontext.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn program_counter(uc: *mut c_void) -> u64 {
    // SAFETY: per the contract.
    unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.pc }
}

/// # Safety
/// `uc` is the signal's ucontext.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn stack_pointer(uc: *mut c_void) -> u64 {
    // SAFETY: per the contract.
    unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSP as usize] as u64 }
}

/// # Safety
/// `uc` is the signal's ucontext.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn stack_pointer(uc: *mut c_void) -> u64 {
    // SAFETY: per the contract.
    unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.sp }
}

extern "C-unwind" fn handle_signal(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) {
    // SAFETY: `info` is the kernel-provided siginfo.
    let code = unsafe { (*info).si_code };
    if code <= 0 && chain::index(sig).is_some_and(|i| chain::load(i).sa_sigaction == libc::SIG_IGN) {
        // Sent by a process (kill, raise) while the app ignores it: without
        // us nothing would happen, so nothing happens. Except `abort()`
        // (a SIGABRT the thread raised): glibc then resets SIGABRT to
        // SIG_DFL behind any interposition and raises it again, so the
        // process dies anyway. Dump it and return; the process goes on to
        // die by glibc's hand (a plain `raise(SIGABRT)` while ignoring it
        // survives, with a report filed).
        // SAFETY: `info` is the kernel-provided siginfo; si_pid is valid
        // for signals a process sent.
        if sig == libc::SIGABRT && code == libc::SI_TKILL && unsafe { (*info).si_pid() } == getpid() {
            // SAFETY: kernel-provided arguments.
            unsafe { report_ignored_abort(sig, info, uc) };
        }
        return;
    }
    // SAFETY: kernel-provided arguments.
    if unsafe { first::offer(sig, info, uc) } {
        // A handler that runs before our dump took it (see `first`).
        return;
    }
    let tid = gettid();
    let pid = getpid();
    if pid != INSTALL_PID.load(Ordering::SeqCst) {
        // A child forked without exec: the connection is the parent's, and
        // the monitor only dumps the process it is connected to. Decline
        // (one stderr line) and let the saved disposition end the child.
        FORKED_CHILD_CRASHES.fetch_add(1, Ordering::Relaxed);
        let (mut a, mut b) = ([0u8; 10], [0u8; 10]);
        sys::write_stderr(&[
            b"crashmon: crash in forked child pid ",
            decimal(pid as u32, &mut a),
            b" (signal ",
            decimal(sig as u32, &mut b),
            b") not reported: the monitor serves its parent only\n",
        ]);
        // SAFETY: kernel-provided arguments.
        unsafe { restore_and_reraise(sig, info, uc, false) };
        return;
    }
    if let Err(owner) = CRASHING_TID.compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst) {
        if owner != tid {
            // Another thread is being dumped. Its re-raise ends the process;
            // wait for that (bounded), then die by our own signal if we are
            // still here.
            let budget = u64::from(REPLY_TIMEOUT_MS.load(Ordering::SeqCst)) + 2_000;
            sys::futex_wait(&DUMP_DONE, 0, budget);
            sys::futex_wait(&DUMP_DONE, 1, 2_000);
        }
        if owner == tid && first::GAVE_UP.load(Ordering::SeqCst) == tid {
            // The signal an app handler raised after giving up on a fault
            // we have dumped (see `first::offer`): chain as after any dump.
            // SAFETY: kernel-provided arguments.
            unsafe { restore_and_reraise(sig, info, uc, true) };
            return;
        }
        // A crash inside our own handler, or the dumping thread is stuck.
        // SAFETY: kernel-provided arguments. Not "dumped": the saved
        // handler must not run a second time, so go straight to default.
        unsafe { restore_and_reraise(sig, info, uc, false) };
        chain::set_default(sig);
        return;
    }
    // Raised by the thread itself (abort, raise) from inside a handler that
    // saw a fault before us: report that fault. (A new fault in such a
    // handler is reported as itself.)
    // SAFETY: `info` is the kernel-provided siginfo; `uc` the context.
    let self_sent = code <= 0 && unsafe { (*info).si_pid() } == pid;
    // SAFETY: `uc` is the kernel-provided context.
    let outer = if self_sent { unsafe { first::outer_fault(tid, uc) } } else { None };
    let (rsig, rinfo, ruc) = outer.unwrap_or((sig, info, uc));
    let dumped = chain::HANDLERS_ACTIVE.load(Ordering::SeqCst)
        // SAFETY: we won the gate, so we are the only user of the crash
        // buffers; the arguments are this signal's, or the live frame of
        // the fault this one is nested in (checked by `outer_fault`).
        && unsafe { report_crash(rsig, rinfo, ruc, tid) };
    DUMP_DONE.store(1, Ordering::SeqCst);
    sys::futex_wake_all(&DUMP_DONE);
    // SAFETY: kernel-provided arguments.
    unsafe { restore_and_reraise(sig, info, uc, dumped) };
}

/// `abort()` while SIGABRT is ignored: dump (unless a dump is under way),
/// then give the gate back, since glibc's abort ends the process itself.
///
/// # Safety
/// Kernel-provided arguments of the signal being handled.
unsafe fn report_ignored_abort(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) {
    let tid = gettid();
    if getpid() != INSTALL_PID.load(Ordering::SeqCst)
        || !chain::HANDLERS_ACTIVE.load(Ordering::SeqCst)
        || CRASHING_TID.compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst).is_err()
    {
        return;
    }
    // SAFETY: the raising thread's own fault, if it was handling one in a
    // first-chance handler; else this signal.
    let (rsig, rinfo, ruc) = unsafe { first::outer_fault(tid, uc) }.unwrap_or((sig, info, uc));
    // SAFETY: we won the gate; valid frame per the contract.
    unsafe { report_crash(rsig, rinfo, ruc, tid) };
    // Wake threads that crashed meanwhile (they end the process by their
    // own signal), then give the gate back.
    DUMP_DONE.store(1, Ordering::SeqCst);
    sys::futex_wake_all(&DUMP_DONE);
    CRASHING_TID.store(0, Ordering::SeqCst);
    DUMP_DONE.store(0, Ordering::SeqCst);
}

/// Fill the crash context, send it to the monitor and wait for its reply.
/// Returns true if the monitor confirmed a durable dump.
///
/// # Safety
/// Must be called only by the thread that won `CRASHING_TID`, with the
/// kernel-provided `info` and `uc` of the signal being handled.
pub(crate) unsafe fn report_crash(sig: c_int, info: *mut siginfo_t, uc: *mut c_void, tid: i32) -> bool {
    let fd = SOCKET_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return false;
    }
    // An app that made itself non-dumpable cannot be read by the monitor;
    // the crash is more important now.
    sys::set_dumpable();
    // SAFETY: see the function contract; all pointers are valid and the
    // statics are exclusively ours.
    unsafe {
        let ctx = (*CONTEXT.0.get()).as_mut_ptr();
        ptr::write_bytes(ctx, 0, 1);
        let pid = getpid();
        let code = (*info).si_code;
        let address = if refaults(sig, code) || sig == libc::SIGTRAP { (*info).si_addr() as u64 } else { 0 };
        {
            let si = &mut (*ctx).siginfo;
            si.ssi_signo = sig as u32;
            si.ssi_errno = (*info).si_errno;
            si.ssi_code = code;
            si.ssi_addr = address;
            if code <= 0 {
                si.ssi_pid = (*info).si_pid() as u32;
                si.ssi_uid = (*info).si_uid();
            }
        }
        ptr::copy_nonoverlapping(uc.cast::<crash_context::ucontext_t>(), &mut (*ctx).context, 1);
        copy_float_state(uc, ctx);
        (*ctx).pid = pid;
        (*ctx).tid = tid;

        let ctx_bytes = core::slice::from_raw_parts(ctx.cast::<u8>(), size_of::<crash_context::CrashContext>());
        let request = proto::Message::DumpRequest(proto::DumpRequest {
            kind: proto::CrashKind::Signal,
            request_id: SIGNAL_REQUEST_ID,
            signo: sig,
            code,
            pid: pid as u32,
            tid: tid as u32,
            address,
            context: ctx_bytes,
            message: b"",
        });
        let out = &mut *SEND_BUF.0.get();
        let Ok(len) = proto::encode(&request, out) else { return false };
        if !sys::send_all(fd, &out[..len]) {
            return false;
        }
        let buf = &mut *RECV_BUF.0.get();
        let timeout = u64::from(REPLY_TIMEOUT_MS.load(Ordering::SeqCst));
        matches!(crate::reply::wait_reply_into(fd, SIGNAL_REQUEST_ID, timeout, buf), crate::Reply::Complete(_))
    }
}

/// Copy the floating point state the kernel (or `getcontext`) saved, which
/// the context points to, into the crash context.
///
/// # Safety
/// `uc` must be a valid ucontext and `ctx` a valid crash context.
#[cfg(target_arch = "x86_64")]
pub unsafe fn copy_float_state(uc: *mut c_void, ctx: *mut crash_context::CrashContext) {
    // SAFETY: per the contract; fpregs is either null or points into the
    // signal frame.
    unsafe {
        let uc = &*uc.cast::<crash_context::ucontext_t>();
        if !uc.uc_mcontext.fpregs.is_null() {
            ptr::copy_nonoverlapping(uc.uc_mcontext.fpregs, &mut (*ctx).float_state, 1);
        }
    }
}

/// Copy the floating point state the kernel (or `getcontext`) saved into
/// the crash context.
///
/// # Safety
/// `uc` must be a valid ucontext and `ctx` a valid crash context.
#[cfg(target_arch = "aarch64")]
pub unsafe fn copy_float_state(uc: *mut c_void, ctx: *mut crash_context::CrashContext) {
    // SAFETY: per the contract; the kernel puts the fpsimd record first in
    // __reserved and tags it with its magic.
    unsafe {
        let uc = &*uc.cast::<crash_context::ucontext_t>();
        let fp = uc.uc_mcontext.__reserved.as_ptr().cast::<crash_context::fpsimd_context>();
        if (*fp).head.magic == crash_context::FPSIMD_MAGIC {
            ptr::copy_nonoverlapping(fp, &mut (*ctx).float_state, 1);
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("crashmon-handler-signal supports x86_64 and aarch64 Linux");
