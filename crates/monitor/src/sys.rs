//! The few raw system calls std and nix leave to us: fd ownership.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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
    // Our own children (the symbolicator) must not hold the app's
    // connection open: the app detects the monitor's death by EOF.
    nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).ok()?;
    Some(owned)
}
