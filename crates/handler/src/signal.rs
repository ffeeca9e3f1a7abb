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
    (fd >= 0 && HANDLERS_ACTIVE.load(Ordering::SeqCst)).then_some(fd)
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
/// [`ALT_STACK_SIZE`], so a stack overflow can still be handled.
pub(crate) fn ensure_alt_stack() -> Result<(), i32> {
    // SAFETY: sigaltstack/mmap/mprotect with valid pointers; the mapping is
    // leaked on purpose (the thread may use it until it exits).
    unsafe {
        let mut current: libc::stack_t = core::mem::zeroed();
        if libc::sigaltstack(ptr::null(), &mut current) == 0
            && current.ss_flags & libc::SS_DISABLE == 0
            && current.ss_size >= ALT_STACK_SIZE
        {
            return Ok(());
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
        // Guard page at the low end: an overflow of the handler itself faults
        // instead of scribbling over other memory.
        libc::mprotect(mem, page, libc::PROT_NONE);
        let stack = libc::stack_t { ss_sp: mem.cast::<u8>().add(page).cast(), ss_flags: 0, ss_size: ALT_STACK_SIZE };
        if libc::sigaltstack(&stack, ptr::null_mut()) != 0 {
            let errno = *libc::__errno_location();
            libc::munmap(mem, len);
            return Err(errno);
        }
    }
    Ok(())
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
/// again once the handler returns.
///
/// When `dumped`, the crash has been filed and the process must die by its
/// own signal, so `sig` gets the default action rather than the previous
/// handler (Rust's std, for one, turns a stack overflow it sees into an
/// abort). Otherwise the previous handler gets its chance.
fn restore_and_reraise(sig: c_int, info: *mut siginfo_t, dumped: bool) {
    restore_previous();
    if dumped {
        set_default(sig);
    }
    // SAFETY: `info` is the kernel-provided siginfo for this signal.
    let code = unsafe { (*info).si_code };
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

extern "C" fn handle_signal(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) {
    let tid = gettid();
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
        restore_and_reraise(sig, info, true);
        return;
    }
    let dumped = HANDLERS_ACTIVE.load(Ordering::SeqCst)
        // SAFETY: we won the gate, so we are the only user of the crash
        // buffers; info and uc are valid for the duration of the handler.
        && unsafe { report_crash(sig, info, uc, tid) };
    DUMP_DONE.store(1, Ordering::SeqCst);
    futex_wake_all(&DUMP_DONE);
    restore_and_reraise(sig, info, dumped);
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
