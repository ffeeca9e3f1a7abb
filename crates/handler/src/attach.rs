//! Attachments: files the application names (its log file, say) that the
//! monitor copies into the report at crash time.
//!
//! The path is sent to the monitor ahead of time, like an annotation, so the
//! crash path costs nothing extra. The monitor copies at most its
//! attachment size limit of each file (the file's tail), with `O_NOFOLLOW`.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crashmon_protocol as proto;

use crate::request::{DumpError, send_one};
use crate::signal;

/// Most files a process may attach (the monitor enforces the same).
pub const MAX_ATTACHMENTS: usize = 16;

static ATTACHED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Why a file cannot be attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The handler is not installed or the monitor is gone.
    #[error(transparent)]
    Monitor(#[from] DumpError),
    /// Already [`MAX_ATTACHMENTS`] files are attached.
    #[error("at most {MAX_ATTACHMENTS} files can be attached")]
    TooMany,
    /// The path is longer than the protocol allows or contains a NUL byte.
    #[error("attachment path {0:?} is too long (at most 4096 bytes) or contains NUL")]
    BadPath(PathBuf),
}

/// Copy the file at `path` into every report of this process, at crash
/// time. A relative path is made absolute against the current directory
/// now. Attaching the same path twice does nothing.
pub fn attach_file(path: impl AsRef<Path>) -> Result<(), AttachError> {
    let path = std::path::absolute(path.as_ref()).map_err(|_| AttachError::BadPath(path.as_ref().to_path_buf()))?;
    let mut attached = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
    if attached.contains(&path) {
        return Ok(());
    }
    if attached.len() >= MAX_ATTACHMENTS {
        return Err(AttachError::TooMany);
    }
    send(&path, false)?;
    attached.insert(path);
    Ok(())
}

/// Stop attaching `path` (as given to [`attach_file`]).
pub fn detach_file(path: impl AsRef<Path>) -> Result<(), AttachError> {
    let path = std::path::absolute(path.as_ref()).map_err(|_| AttachError::BadPath(path.as_ref().to_path_buf()))?;
    let mut attached = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
    if attached.remove(&path) {
        send(&path, true)?;
    }
    Ok(())
}

fn send(path: &Path, remove: bool) -> Result<(), AttachError> {
    let fd = signal::socket_fd().ok_or(DumpError::NotInstalled)?;
    let msg = proto::Message::Attach(proto::Attach { remove, path: path.as_os_str().as_bytes() });
    let mut buf = vec![0u8; proto::HEADER_LEN + proto::Attach::MAX_PAYLOAD_LEN];
    let n = proto::encode(&msg, &mut buf).map_err(|_| AttachError::BadPath(path.to_path_buf()))?;
    send_one(fd, &buf[..n])?;
    Ok(())
}
