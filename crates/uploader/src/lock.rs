//! The per-report upload lock.
//!
//! An uploader holds an exclusive, non-blocking `flock` on the report's
//! dump file itself, `<db>/pending/<id>.dmp`, from before it reads the
//! metadata until after the report has been moved on (or its retry state
//! written). No extra lock file is created, so none is ever left behind or
//! unlinked while someone waits on it.
//!
//! - `flock` locks belong to the open file description, so two threads of
//!   one process exclude each other just like two processes do.
//! - The lock follows the inode when `Database::transition` renames the dump
//!   to `completed/` or `failed/`. So after locking, the uploader checks that
//!   `pending/<id>.dmp` still is the inode it locked; if the report moved
//!   meanwhile (another uploader finished it), it is not sent again.
//! - The dump is then read through the locked descriptor, so what is sent is
//!   exactly what was locked.
//! - The kernel drops the lock if the uploader dies, so a crash never leaves
//!   a report stuck.
//!
//! Together: a report is sent only by the holder of its lock, only while it
//! is in `pending/`, and leaves `pending/` before the lock is released, so
//! two uploaders never send it twice. (A crash after the server accepted but
//! before the move re-sends it later; for Sentry the event id, derived from
//! the report id, lets the server drop the copy.)

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

/// The result of trying to lock a report.
#[derive(Debug)]
pub(crate) enum Locked {
    /// Ours until dropped; the dump open for reading.
    Yes(ReportLock),
    /// Another uploader holds it.
    Busy,
    /// The dump is no longer at this path (the report moved).
    Gone,
}

/// An exclusive lock on a pending report's dump.
#[derive(Debug)]
pub(crate) struct ReportLock {
    file: Flock<File>,
}

impl ReportLock {
    /// The locked dump file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

/// Tries to lock the dump at `dump_path` (a `pending/<id>.dmp`).
pub(crate) fn try_lock(dump_path: &Path) -> io::Result<Locked> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(dump_path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Locked::Gone),
        Err(e) => return Err(e),
    };
    let locked_meta = file.metadata()?;
    if !locked_meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the dump is not a regular file"));
    }
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => file,
        Err((_, Errno::EWOULDBLOCK)) => return Ok(Locked::Busy),
        Err((_, errno)) => return Err(io::Error::from(errno)),
    };
    // Still the same file at the pending path?
    match std::fs::symlink_metadata(dump_path) {
        Ok(now) if now.dev() == locked_meta.dev() && now.ino() == locked_meta.ino() => {
            Ok(Locked::Yes(ReportLock { file }))
        }
        Ok(_) => Ok(Locked::Gone),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Locked::Gone),
        Err(e) => Err(e),
    }
}
