//! Raw system calls, each async-signal-safe (signal-safety(7)) and each
//! wrapping one FFI call. Nothing here allocates or locks.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};

use libc::c_int;

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The process id (a raw `getpid`, so a forked child sees its own).
pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// The calling thread's `errno`.
pub(crate) fn errno() -> i32 {
    // SAFETY: the errno location is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

/// CLOCK_MONOTONIC in milliseconds.
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Wait while `*word == expected`, at most `timeout_ms`.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout_ms: u64) {
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

/// Wake every waiter on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX);
    }
}

/// Write `parts` to stderr with one `write` each.
pub(crate) fn write_stderr(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: each slice is valid for its length.
        unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}

/// Send one datagram (`MSG_NOSIGNAL`: no SIGPIPE when the monitor is
/// gone); false unless it all went out.
pub(crate) fn send_all(fd: c_int, buf: &[u8]) -> bool {
    loop {
        // SAFETY: buf is valid for len bytes.
        let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return r as usize == buf.len();
        }
        if errno() != libc::EINTR {
            return false;
        }
    }
}

/// `poll` one fd for input: >0 readable, 0 timeout, <0 error (errno set).
pub(crate) fn poll_in(fd: c_int, timeout_ms: c_int) -> c_int {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) }
}

/// Non-blocking `recv` into `buf`: bytes read, 0 at EOF, <0 error.
pub(crate) fn recv_nonblocking(fd: c_int, buf: &mut [u8]) -> isize {
    // SAFETY: buf is valid for its length.
    unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) }
}

/// `prctl(PR_SET_DUMPABLE, 1)`.
pub(crate) fn set_dumpable() {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
}

/// `prctl(PR_SET_PTRACER, pid)`: under Yama, only `pid` (and our
/// ancestors) may ptrace this process. Errors are errno values.
pub fn set_ptracer(pid: u32) -> Result<(), i32> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_PTRACER, pid as libc::c_ulong, 0, 0, 0) };
    if r == 0 { Ok(()) } else { Err(errno()) }
}

/// Queue `sig` with the siginfo `info` to the calling thread; falls back to
/// `tgkill` (then `si_code` is SI_TKILL).
///
/// # Safety
/// `info` points to a valid siginfo.
pub(crate) unsafe fn requeue_to_self(sig: c_int, info: *const libc::siginfo_t) {
    // SAFETY: per the contract.
    let r = unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, getpid(), gettid(), sig, info) };
    if r != 0 {
        // SAFETY: plain integers.
        unsafe { libc::syscall(libc::SYS_tgkill, getpid(), gettid(), sig) };
    }
}

/// Block every signal on the calling thread; returns the previous mask.
pub(crate) fn block_all() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; valid pointers; pthread_sigmask is
    // async-signal-safe.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

/// Set the calling thread's signal mask.
pub(crate) fn set_mask(mask: &libc::sigset_t) {
    // SAFETY: a valid mask pointer.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, core::ptr::null_mut()) };
}

/// Unblock `sig` on the calling thread.
pub(crate) fn unblock(sig: c_int) {
    // SAFETY: valid pointers; sigset_t is plain data.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, core::ptr::null_mut());
    }
}

/// Add `mask` to the calling thread's blocked set; returns the previous one.
pub(crate) fn block(mask: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: valid pointers; sigset_t is plain data.
    unsafe {
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, mask, &mut old);
        old
    }
}

/// Whether thread `tid` of process `pid` still exists (signal 0 probe).
pub(crate) fn thread_exists(pid: i32, tid: i32) -> bool {
    // SAFETY: plain integers; signal 0 only checks.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) };
    r == 0 || errno() != libc::ESRCH
}

/// The calling thread's signal mask.
pub(crate) fn current_mask() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; a query with a valid out pointer.
    unsafe {
        let mut mask: libc::sigset_t = core::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut mask);
        mask
    }
}

/// Whether `sig` is pending for the calling thread (or its process).
pub(crate) fn is_pending(sig: c_int) -> bool {
    // SAFETY: sigset_t is plain data; valid pointers; sigpending and
    // sigismember are async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigpending(&mut set) == 0 && libc::sigismember(&set, sig) == 1
    }
}
