//! The code that runs inside the signal handler.
//!
//! Rules (signal-safety(7)): no allocation, no locks, no formatting, no
//! `std` I/O. Only atomics, statics and raw syscalls. The crash context, the
//! outgoing message and the reply buffer live in statics, never on the
//! (small, alternate) signal stack. One crash is dumped: an atomic
//! compare-exchange on the thread id picks it; other crashing threads wait on
//! a futex with a bounded timeout. Afterwards the previous dispositions are
//! restored and the signal is re-raised so the process dies by its own signal.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::mem::{MaybeUninit, size_of};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use crashmon_protocol as proto;
use libc::{c_int, c_void, siginfo_t};

/// The signals crashmon catches.
pub(crate) const SIGNALS: [c_int; 7] =
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGABRT, libc::SIGTRAP, libc::SIGSYS];

/// A static cell written only while no handler can run (install) or by the
/// single thread that won the crash gate.
struct Shared<T>(UnsafeCell<T>);
// SAFETY: access is serialised by INSTALLED (install/uninstall happen before
// handlers are active or after they are removed) and by CRASHING_TID (only
// the thread that won the compare-exchange touches the crash buffers).
unsafe impl<T> Sync for Shared<T> {}

static SOCKET_FD: AtomicI32 = AtomicI32::new(-1);
/// The pid that installed the handler: a forked child (same handlers, same
/// socket) must not speak on its parent's connection.
static INSTALL_PID: AtomicI32 = AtomicI32::new(0);
/// Crashes declined because they happened in a forked child.
static FORKED_CHILD_CRASHES: AtomicU32 = AtomicU32::new(0);
static REPLY_TIMEOUT_MS: AtomicU32 = AtomicU32::new(10_000);
static HANDLERS_ACTIVE: AtomicBool = AtomicBool::new(false);
/// 0 while no crash is being handled, else the tid of the thread handling it.
static CRASHING_TID: AtomicI32 = AtomicI32::new(0);
/// Futex word: becomes 1 when the dumping thread is done.
static DUMP_DONE: AtomicU32 = AtomicU32::new(0);

static OLD_ACTIONS: Shared<[MaybeUninit<libc::sigaction>; SIGNALS.len()]> =
    Shared(UnsafeCell::new([MaybeUninit::uninit(); SIGNALS.len()]));
static CONTEXT: Shared<MaybeUninit<crash_context::CrashContext>> = Shared(UnsafeCell::new(MaybeUninit::uninit()));
static SEND_BUF: Shared<[u8; proto::MAX_MESSAGE_LEN]> = Shared(UnsafeCell::new([0; proto::MAX_MESSAGE_LEN]));
static RECV_BUF: Shared<[u8; proto::MAX_MESSAGE_LEN]> = Shared(UnsafeCell::new([0; proto::MAX_MESSAGE_LEN]));

/// The request id the signal path uses; requests from normal context use
/// other ids, so the crashing thread only takes its own reply.
pub(crate) const SIGNAL_REQUEST_ID: u32 = u32::MAX;

/// Size of the alternate signal stack we install when the thread has none or
/// a smaller one.
pub(crate) const ALT_STACK_SIZE: usize = 64 * 1024;

/// Errors from installing the handlers.
#[derive(Debug)]
pub(crate) struct SigactionFailed {
    pub(crate) signal: c_int,
    pub(crate) errno: i32,
}

/// Install our handler for every signal in [`SIGNALS`], remembering the
/// previous dispositions.
pub(crate) fn install(fd: c_int, reply_timeout_ms: u32) -> Result<(), SigactionFailed> {
    SOCKET_FD.store(fd, Ordering::SeqCst);
    INSTALL_PID.store(getpid(), Ordering::SeqCst);
    REPLY_TIMEOUT_MS.store(reply_timeout_ms.max(1), Ordering::SeqCst);
    CRASHING_TID.store(0, Ordering::SeqCst);
    DUMP_DONE.store(0, Ordering::SeqCst);
    // SAFETY: handlers are not active yet (HANDLERS_ACTIVE is false), so no
    // one else reads OLD_ACTIONS; the sigaction structs are plain data.
    unsafe {
        let old = &mut *OLD_ACTIONS.0.get();
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = handle_signal as extern "C" fn(c_int, *mut siginfo_t, *mut c_void) as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        for (i, &sig) in SIGNALS.iter().enumerate() {
            if libc::sigaction(sig, &action, old[i].as_mut_ptr()) != 0 {
                let errno = *libc::__errno_location();
                // Roll back the ones already installed.
                for (j, &prev) in SIGNALS.iter().enumerate().take(i) {
                    libc::sigaction(prev, old[j].as_ptr(), ptr::null_mut());
                }
                return Err(SigactionFailed { signal: sig, errno });
            }
        }
    }
    HANDLERS_ACTIVE.store(true, Ordering::SeqCst);
    Ok(())
}

/// The connected monitor socket, if the handler is installed.
pub(crate) fn socket_fd() -> Option<c_int> {
    let fd = SOCKET_FD.load(Ordering::SeqCst);
    (fd >= 0 && HANDLERS_ACTIVE.load(Ordering::SeqCst) && INSTALL_PID.load(Ordering::SeqCst) == getpid()).then_some(fd)
}

/// The configured reply timeout.
pub(crate) fn reply_timeout_ms() -> u64 {
    u64::from(REPLY_TIMEOUT_MS.load(Ordering::SeqCst))
}

/// Whether some thread is handling a fatal crash right now.
pub(crate) fn crash_in_progress() -> bool {
    CRASHING_TID.load(Ordering::SeqCst) != 0
}

/// Claim the one fatal report of this process for the calling thread (used
/// by the panic hook before it aborts). Returns false if another thread
/// already owns it, after waiting (bounded) for that thread to finish.
pub(crate) fn claim_fatal() -> bool {
    let tid = gettid();
    match CRASHING_TID.compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => true,
        Err(owner) if owner == tid => false,
        Err(_) => {
            futex_wait(&DUMP_DONE, 0, reply_timeout_ms() + 2_000);
            false
        }
    }
}

/// Mark the fatal report finished (wakes other crashing threads).
pub(crate) fn fatal_done() {
    DUMP_DONE.store(1, Ordering::SeqCst);
    futex_wake_all(&DUMP_DONE);
}

/// Put the previous dispositions back (used by the guard's `Drop`).
pub(crate) fn uninstall() {
    if HANDLERS_ACTIVE.swap(false, Ordering::SeqCst) {
        restore_previous();
    }
    SOCKET_FD.store(-1, Ordering::SeqCst);
}

fn restore_previous() {
    // SAFETY: OLD_ACTIONS was fully written by `install` before
    // HANDLERS_ACTIVE was set; sigaction is async-signal-safe.
    unsafe {
        let old = &*OLD_ACTIONS.0.get();
        for (i, &sig) in SIGNALS.iter().enumerate() {
            libc::sigaction(sig, old[i].as_ptr(), ptr::null_mut());
        }
    }
}

/// Make sure the calling thread has an alternate signal stack of at least
/// [`ALT_STACK_SIZE`], so a stack overflow can still be handled. The stack
/// is kept until the thread exits (the main thread's: forever).
pub(crate) fn ensure_alt_stack() -> Result<(), i32> {
    if let Some(stack) = AltStack::install()? {
        core::mem::forget(stack);
    }
    Ok(())
}

/// An alternate signal stack this crate mapped for the calling thread: a
/// guard page below [`ALT_STACK_SIZE`] bytes of stack. Dropping it (on the
/// same thread) disables it, if it is still the thread's, and unmaps it.
#[derive(Debug)]
pub struct AltStack {
    mem: *mut c_void,
    len: usize,
}

impl AltStack {
    /// Give the calling thread an alternate signal stack unless it already
    /// has one of at least [`ALT_STACK_SIZE`] bytes (then `Ok(None)`).
    /// Errors are errno values.
    pub(crate) fn install() -> Result<Option<AltStack>, i32> {
        // SAFETY: sigaltstack/mmap/mprotect with valid pointers.
        unsafe {
            let mut current: libc::stack_t = core::mem::zeroed();
            if libc::sigaltstack(ptr::null(), &mut current) == 0
                && current.ss_flags & libc::SS_DISABLE == 0
                && current.ss_size >= ALT_STACK_SIZE
            {
                return Ok(None);
            }
            let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
            let len = ALT_STACK_SIZE + page;
            let mem = libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if mem == libc::MAP_FAILED {
                return Err(*libc::__errno_location());
            }
            // Guard page at the low end: an overflow of the handler itself
            // faults instead of scribbling over other memory.
            libc::mprotect(mem, page, libc::PROT_NONE);
            let stack =
                libc::stack_t { ss_sp: mem.cast::<u8>().add(page).cast(), ss_flags: 0, ss_size: ALT_STACK_SIZE };
            if libc::sigaltstack(&stack, ptr::null_mut()) != 0 {
                let errno = *libc::__errno_location();
                libc::munmap(mem, len);
                return Err(errno);
            }
            Ok(Some(AltStack { mem, len }))
        }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: sigaltstack with valid pointers; the mapping is ours and
        // no longer the thread's signal stack when it is unmapped.
        unsafe {
            let mut current: libc::stack_t = core::mem::zeroed();
            if libc::sigaltstack(ptr::null(), &mut current) == 0 {
                let ours = current.ss_sp.cast::<u8>() >= self.mem.cast::<u8>()
                    && current.ss_sp.cast::<u8>() < self.mem.cast::<u8>().add(self.len);
                if ours {
                    if current.ss_flags & libc::SS_ONSTACK != 0 {
                        // Running on it (cannot happen outside a handler):
                        // leak rather than pull the stack from under us.
                        return;
                    }
                    let disable = libc::stack_t { ss_sp: ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
                    libc::sigaltstack(&disable, ptr::null_mut());
                }
            }
            libc::munmap(self.mem, self.len);
        }
    }
}

pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Wait while `*word == expected`, at most `timeout_ms`.
fn futex_wait(word: &AtomicU32, expected: u32, timeout_ms: u64) {
    let deadline = now_ms() + timeout_ms;
    while word.load(Ordering::SeqCst) == expected {
        let now = now_ms();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        let ts = libc::timespec { tv_sec: (left / 1000) as _, tv_nsec: ((left % 1000) * 1_000_000) as _ };
        // SAFETY: `word` is a valid aligned u32 for the duration of the call.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                &ts as *const libc::timespec,
            );
        }
    }
}

fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX);
    }
}

/// Signals that a fault produces again when the handler returns (the faulting
/// instruction re-executes), as long as the kernel generated them.
fn refaults(sig: c_int, code: c_int) -> bool {
    code > 0 && matches!(sig, libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL)
}

/// Restore the previous dispositions and arrange for `sig` to be delivered
/// again once the handler returns, so the process dies by its own signal.
///
/// When not `dumped` (we declined: no monitor, a forked child, a second
/// crash), the previous disposition simply takes over: the kernel delivers
/// the re-raised or re-faulting signal to it.
///
/// When `dumped`, a previous handler that is a function is called directly
/// (chaining: an app's own crash handler still runs), then the default
/// action is set so the process dies by `sig` even if that handler returns.
/// One exception: a stack overflow skips the previous handler, because
/// Rust's std turns the overflow it sees into SIGABRT.
///
/// # Safety
/// `info` and `uc` are the kernel-provided arguments of the signal being
/// handled.
unsafe fn restore_and_reraise(sig: c_int, info: *mut siginfo_t, uc: *mut c_void, dumped: bool) {
    restore_previous();
    // SAFETY: `info` is the kernel-provided siginfo for this signal.
    let code = unsafe { (*info).si_code };
    if dumped {
        // SAFETY: per the contract.
        if !unsafe { is_stack_overflow(sig, info, uc) } {
            // SAFETY: per the contract; the previous action was saved by
            // `install` and is valid.
            unsafe { call_previous(sig, info, uc) };
        }
        set_default(sig);
    }
    if refaults(sig, code) {
        return;
    }
    // SAFETY: re-queue the same siginfo to this very thread; the signal is
    // blocked while we are in its handler, so it is delivered (to the
    // restored disposition) right after we return.
    unsafe {
        let r = libc::syscall(libc::SYS_rt_tgsigqueueinfo, getpid(), gettid(), sig, info);
        if r != 0 {
            libc::syscall(libc::SYS_tgkill, getpid(), gettid(), sig);
        }
    }
}

/// Call the handler that was installed before ours for `sig`, if it is a
/// function (not SIG_DFL / SIG_IGN).
///
/// # Safety
/// As [`restore_and_reraise`].
unsafe fn call_previous(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) {
    let Some(i) = SIGNALS.iter().position(|&s| s == sig) else { return };
    // SAFETY: OLD_ACTIONS[i] was written by `install` before the handlers
    // became active.
    let old = unsafe { (*OLD_ACTIONS.0.get())[i].assume_init() };
    let handler = old.sa_sigaction;
    if handler == libc::SIG_DFL
        || handler == libc::SIG_IGN
        || handler == handle_signal as extern "C" fn(c_int, *mut siginfo_t, *mut c_void) as usize
    {
        return;
    }
    // SAFETY: the app installed this function as a handler for `sig` with
    // these flags, so it has the matching signature.
    unsafe {
        if old.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) = core::mem::transmute(handler);
            f(sig, info, uc);
        } else {
            let f: extern "C" fn(c_int) = core::mem::transmute(handler);
            f(sig);
        }
    }
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
unsafe fn stack_pointer(uc: *mut c_void) -> u64 {
    // SAFETY: per the contract.
    unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSP as usize] as u64 }
}

/// # Safety
/// `uc` is the signal's ucontext.
#[cfg(target_arch = "aarch64")]
unsafe fn stack_pointer(uc: *mut c_void) -> u64 {
    // SAFETY: per the contract.
    unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.sp }
}

/// Write `parts` to stderr with one `write` each (signal-safe).
fn write_stderr(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: each slice is valid for its length.
        unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
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

/// How many crashes were declined because they happened in a forked child
/// of the process that installed the handler.
pub(crate) fn forked_child_crashes() -> u32 {
    FORKED_CHILD_CRASHES.load(Ordering::Relaxed)
}

extern "C" fn handle_signal(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) {
    let tid = gettid();
    let pid = getpid();
    if pid != INSTALL_PID.load(Ordering::SeqCst) {
        // A child forked without exec: the connection is the parent's, and
        // the monitor only dumps the process it is connected to. Decline
        // (one stderr line) and let the previous disposition end the child.
        FORKED_CHILD_CRASHES.fetch_add(1, Ordering::Relaxed);
        let (mut a, mut b) = ([0u8; 10], [0u8; 10]);
        write_stderr(&[
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
            futex_wait(&DUMP_DONE, 0, budget);
            futex_wait(&DUMP_DONE, 1, 2_000);
        }
        // A crash inside our own handler, or the dumping thread is stuck.
        // SAFETY: kernel-provided arguments. Not "dumped": the previous
        // handler must not run a second time, so go straight to default.
        unsafe { restore_and_reraise(sig, info, uc, false) };
        set_default(sig);
        return;
    }
    let dumped = HANDLERS_ACTIVE.load(Ordering::SeqCst)
        // SAFETY: we won the gate, so we are the only user of the crash
        // buffers; info and uc are valid for the duration of the handler.
        && unsafe { report_crash(sig, info, uc, tid) };
    DUMP_DONE.store(1, Ordering::SeqCst);
    futex_wake_all(&DUMP_DONE);
    // SAFETY: kernel-provided arguments.
    unsafe { restore_and_reraise(sig, info, uc, dumped) };
}

fn set_default(sig: c_int) {
    // SAFETY: a zeroed sigaction with SIG_DFL is valid; sigaction is
    // async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, ptr::null_mut());
    }
}

/// Fill the crash context, send it to the monitor and wait for its reply.
/// Returns true if the monitor confirmed a durable dump.
///
/// # Safety
/// Must be called only by the thread that won `CRASHING_TID`, with the
/// kernel-provided `info` and `uc` of the signal being handled.
unsafe fn report_crash(sig: c_int, info: *mut siginfo_t, uc: *mut c_void, tid: i32) -> bool {
    let fd = SOCKET_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return false;
    }
    // SAFETY: see the function contract; all pointers are valid and the
    // statics are exclusively ours.
    unsafe {
        // An app that made itself non-dumpable cannot be read by the
        // monitor; the crash is more important now.
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);

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
        if !send_all(fd, &out[..len]) {
            return false;
        }
        wait_reply(fd, u64::from(REPLY_TIMEOUT_MS.load(Ordering::SeqCst)))
    }
}

/// Copy the floating point state the kernel saved (pointed to from the
/// context) into the crash context.
///
/// # Safety
/// `uc` must be the signal's ucontext and `ctx` a valid crash context.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_float_state(uc: *mut c_void, ctx: *mut crash_context::CrashContext) {
    // SAFETY: per the contract; fpregs is either null or points into the
    // signal frame.
    unsafe {
        let uc = &*uc.cast::<crash_context::ucontext_t>();
        if !uc.uc_mcontext.fpregs.is_null() {
            ptr::copy_nonoverlapping(uc.uc_mcontext.fpregs, &mut (*ctx).float_state, 1);
        }
    }
}

/// # Safety
/// `uc` must be the signal's ucontext and `ctx` a valid crash context.
#[cfg(target_arch = "aarch64")]
unsafe fn copy_float_state(uc: *mut c_void, ctx: *mut crash_context::CrashContext) {
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
compile_error!("crashmon-handler supports x86_64 and aarch64 Linux");

fn send_all(fd: c_int, buf: &[u8]) -> bool {
    loop {
        // SAFETY: buf is valid for len bytes; MSG_NOSIGNAL avoids SIGPIPE
        // when the monitor is gone.
        let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return r as usize == buf.len();
        }
        // SAFETY: errno location is thread-local and always valid.
        if unsafe { *libc::__errno_location() } != libc::EINTR {
            return false;
        }
    }
}

/// Wait for `DumpComplete`/`DumpFailed`, EOF, or the timeout. True only for
/// `DumpComplete`.
fn wait_reply(fd: c_int, timeout_ms: u64) -> bool {
    // SAFETY: RECV_BUF is ours: the caller holds the crash gate.
    let buf = unsafe { &mut *RECV_BUF.0.get() };
    matches!(wait_reply_into(fd, SIGNAL_REQUEST_ID, timeout_ms, buf), Reply::Complete(_))
}

/// The monitor's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The dump is durable; the report id.
    Complete([u8; 16]),
    /// The monitor could not dump; errno-like code.
    Failed(i32),
    /// No answer in time.
    TimedOut,
    /// The connection is gone.
    Disconnected,
}

/// Wait for the reply to `request_id`, ignoring anything else. Signal-safe
/// (no allocation): `buf` is caller-provided.
pub(crate) fn wait_reply_into(fd: c_int, request_id: u32, timeout_ms: u64, buf: &mut [u8]) -> Reply {
    let deadline = now_ms() + timeout_ms;
    loop {
        let now = now_ms();
        if now >= deadline {
            return Reply::TimedOut;
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, (deadline - now).min(i32::MAX as u64) as c_int) };
        if r < 0 {
            // SAFETY: errno location is always valid.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return Reply::Disconnected;
        }
        if r == 0 {
            return Reply::TimedOut;
        }
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n == 0 {
            return Reply::Disconnected;
        }
        if n < 0 {
            // SAFETY: errno location is always valid.
            let e = unsafe { *libc::__errno_location() };
            if e == libc::EINTR || e == libc::EAGAIN {
                continue;
            }
            return Reply::Disconnected;
        }
        match proto::decode(&buf[..n as usize]) {
            Ok(proto::Message::DumpComplete(c)) if c.request_id == request_id => return Reply::Complete(c.report_id),
            Ok(proto::Message::DumpFailed(f)) if f.request_id == request_id => return Reply::Failed(f.errno),
            // Anything else (another request's answer, garbage): keep waiting.
            _ => {}
        }
    }
}

/// Send one datagram; false if the monitor is gone. Signal-safe.
pub(crate) fn send_datagram(fd: c_int, buf: &[u8]) -> bool {
    send_all(fd, buf)
}

/// The crash context of the calling thread as if it had sent itself
/// SIGABRT (`si_code` SI_TKILL), for a panic's report: the dump's exception
/// then names SIGABRT at the panic hook's frame. Normal context only (it
/// returns a heap buffer); the raw bytes of a `CrashContext`.
pub(crate) fn abort_context_bytes() -> Vec<u8> {
    let mut ctx: Box<MaybeUninit<crash_context::CrashContext>> = Box::new(MaybeUninit::zeroed());
    let p = ctx.as_mut_ptr();
    // SAFETY: `p` points to a zeroed CrashContext (plain data, valid when
    // zeroed); getcontext fills the ucontext of this thread.
    unsafe {
        if crash_context::crash_context_getcontext(&mut (*p).context) != 0 {
            return Vec::new();
        }
        copy_float_state((&mut (*p).context as *mut crash_context::ucontext_t).cast(), p);
        let si = &mut (*p).siginfo;
        si.ssi_signo = libc::SIGABRT as u32;
        si.ssi_code = libc::SI_TKILL;
        si.ssi_pid = getpid() as u32;
        // SAFETY: getuid cannot fail.
        si.ssi_uid = libc::getuid();
        (*p).pid = getpid();
        (*p).tid = gettid();
        core::slice::from_raw_parts(p.cast::<u8>(), size_of::<crash_context::CrashContext>()).to_vec()
    }
}

/// Size of the crash context the monitor expects in a dump request.
pub const CONTEXT_LEN: usize = size_of::<crash_context::CrashContext>();
const _: () = assert!(CONTEXT_LEN <= proto::CONTEXT_CAPACITY);

/// `prctl(PR_SET_PTRACER, pid)`: under Yama, only `pid` (and our ancestors)
/// may ptrace this process.
pub(crate) fn set_ptracer(pid: u32) -> Result<(), i32> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_PTRACER, pid as libc::c_ulong, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        // SAFETY: errno location is always valid.
        Err(unsafe { *libc::__errno_location() })
    }
}
