//! File system helpers: explicit modes, `O_NOFOLLOW`, fsync, directory checks.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::DbError;

/// Mode of every directory the database creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the database creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Builds the `map_err` closure for an I/O error on `path`.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DbError {
    let path = path.to_path_buf();
    move |source| DbError::Io { op, path, source }
}

/// Creates `path` with mode 0700 whatever the umask. Returns whether it was
/// created (`false` if it already existed).
pub(crate) fn create_dir(path: &Path) -> Result<bool, DbError> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {
            // The umask may have removed bits from DIR_MODE; put them back.
            fs::set_permissions(path, Permissions::from_mode(DIR_MODE)).map_err(io_err("set permissions of", path))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("create directory", path)(e)),
    }
}

/// Creates `path` and its missing parents, each with mode 0700. Existing
/// directories are left alone.
pub(crate) fn create_dir_all(path: &Path) -> Result<(), DbError> {
    let missing: Vec<&Path> = path
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| fs::symlink_metadata(p).is_err())
        .collect();
    for dir in missing.into_iter().rev() {
        create_dir(dir)?;
    }
    Ok(())
}

/// Checks that `path` is a real directory, owned by us, not writable by
/// group or others.
pub(crate) fn validate_dir(path: &Path) -> Result<(), DbError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DbError::NotFound { path: path.to_path_buf() });
        }
        Err(e) => return Err(io_err("inspect", path)(e)),
    };
    let path = path.to_path_buf();
    if meta.file_type().is_symlink() {
        return Err(DbError::Symlink { path });
    }
    if !meta.is_dir() {
        return Err(DbError::NotADirectory { path });
    }
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(DbError::WrongOwner { path, owner: meta.uid(), uid });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(DbError::InsecureMode { path, mode: meta.mode() & 0o7777 });
    }
    Ok(())
}

/// Creates a new file for writing: `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600
/// whatever the umask.
pub(crate) fn create_file(path: &Path) -> Result<File, DbError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(io_err("create", path))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE)).map_err(io_err("set permissions of", path))?;
    Ok(file)
}

/// Reads a whole regular file without following a symlink (and without
/// blocking on a FIFO someone put in its place).
pub(crate) fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut file =
        OpenOptions::new().read(true).custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits()).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether `path` is a regular file (not following symlinks).
pub(crate) fn is_file(path: &Path) -> Result<bool, DbError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// Removes a file; a file that is already gone is not an error. Returns
/// whether it was removed by this call.
pub(crate) fn remove_file(path: &Path) -> Result<bool, DbError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Makes the entries of directory `path` durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), DbError> {
    File::open(path).and_then(|dir| dir.sync_all()).map_err(io_err("sync directory", path))
}

/// The paths of the entries of directory `path`.
pub(crate) fn dir_entries(path: &Path) -> Result<Vec<PathBuf>, DbError> {
    fs::read_dir(path)
        .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect())
        .map_err(io_err("read directory", path))
}
