//! The few raw system calls std and nix leave to us: fd ownership and the
//! watchdog's fork.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Take ownership of a descriptor just returned by `accept4`.
pub(crate) fn owned_from_accept(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful accept4 and no one else
    // holds it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Take ownership of the descriptor named by `--client-fd`.
///
/// Returns `None` if `fd` is not open. The caller must pass a descriptor it
/// inherited and that nothing else in the process uses (the CLI does this once,
/// at start-up).
pub fn owned_from_inherited(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    nix::fcntl::fcntl(
        // SAFETY: fcntl(F_GETFD) on a possibly closed fd is harmless; the
        // borrow does not outlive the call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .ok()?;
    // SAFETY: the fd is open (checked above) and, per the contract, owned by
    // no one else in this process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Our own children (watchdog, symbolicator) must not hold the app's
    // connection open: the app detects the monitor's death by EOF.
    nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).ok()?;
    Some(owned)
}

/// Fork the dump watchdog (see [`crate::watchdog`]). Returns the write end
/// of its pipe and its pid. The child runs only raw, async-signal-safe
/// system calls and never returns, so other threads of this process (and
/// the locks they may hold) do not matter.
pub(crate) fn fork_watchdog() -> std::io::Result<(OwnedFd, i32)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the child only calls async-signal-safe functions and _exit
    // (valid after a fork even in a multi-threaded process).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let fd = read.into_raw_fd();
        // SAFETY: we are the forked child; everything below is raw system
        // calls on our own descriptors and memory.
        unsafe { watchdog_child(fd) }
    }
    drop(read);
    Ok((write, pid))
}

/// # Safety
/// Only in the child of [`fork_watchdog`]; never returns.
unsafe fn watchdog_child(fd: RawFd) -> ! {
    // SAFETY: per the contract: raw system calls only.
    unsafe {
        // Hold nothing of the monitor's: above all not the app's connection
        // (the app must see EOF when the monitor dies) nor the pipe's write
        // end (we must see EOF). Keep stdin/out/err and our read end.
        if fd > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (fd - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (fd + 1) as u32, u32::MAX, 0u32);
        // Signals aimed at the monitor's process group are not for us.
        libc::setsid();
        let mut tracker = crate::watchdog::Tracker::default();
        let mut buf = [0u8; 256];
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n > 0 {
                tracker.feed(&buf[..n as usize]);
                continue;
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break;
        }
        for pid in tracker.in_progress() {
            libc::kill(pid, libc::SIGCONT);
        }
        libc::_exit(0)
    }
}
