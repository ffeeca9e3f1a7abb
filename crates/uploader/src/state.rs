//! Per-target rate-limit pauses, shared by every uploader of a database.
//!
//! `<db>/upload-state.json` (mode 0600):
//!
//! ```json
//! {"schema_version":1,"paused":{"collector.example.com:443":{"until_ms":1700000000000,"reason":"HTTP 429: ..."}}}
//! ```
//!
//! keyed by [`Target::host_key`] (`host:port`). A read-modify-write holds an
//! exclusive `flock` on `<db>/upload-state.lock` (created once, never
//! removed, so the lock always names one inode); the new content is written
//! to a temporary file in the database root, fsynced and renamed over the
//! old one, so readers (which take no lock) see the old or the new file,
//! never a partial one. Expired pauses are dropped on each write. A missing
//! or unreadable file means "no pauses" (with a warning if corrupt).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crashmon_database::Database;
use nix::fcntl::{Flock, FlockArg, OFlag};
use serde::{Deserialize, Serialize};

use crate::UploadError;
use crate::target::Target;

/// Name of the pause file in the database root.
pub const STATE_FILE: &str = "upload-state.json";
const LOCK_FILE: &str = "upload-state.lock";
const MAX_STATE_FILE: u64 = 1 << 20;
/// How long to wait for another process's read-modify-write.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A pause of every upload to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetPause {
    /// No request to the target before this time (Unix milliseconds).
    pub until_ms: u64,
    /// The reply that caused it.
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    #[serde(default = "schema_v1")]
    schema_version: u32,
    #[serde(default)]
    paused: BTreeMap<String, TargetPause>,
}

fn schema_v1() -> u32 {
    1
}

fn state_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UploadError {
    let path = path.to_path_buf();
    move |source| UploadError::State { op, path, source }
}

fn read_state(path: &Path) -> Result<StateFile, UploadError> {
    let file =
        match OpenOptions::new().read(true).custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits()).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StateFile::default()),
            Err(e) => return Err(state_err("open", path)(e)),
        };
    if !file.metadata().map_err(state_err("inspect", path))?.is_file() {
        return Err(state_err("read", path)(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATE_FILE).read_to_end(&mut bytes).map_err(state_err("read", path))?;
    match serde_json::from_slice(&bytes) {
        Ok(state) => Ok(state),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring unreadable upload state: {e}");
            Ok(StateFile::default())
        }
    }
}

/// All pauses recorded in the database (expired ones included until the
/// next write).
pub fn paused_targets(db: &Database) -> Result<BTreeMap<String, TargetPause>, UploadError> {
    Ok(read_state(&db.root().join(STATE_FILE))?.paused)
}

/// The pause of `target` if one is in force at `now_ms`.
pub fn target_pause(db: &Database, target: &Target, now_ms: u64) -> Result<Option<TargetPause>, UploadError> {
    Ok(paused_targets(db)?.remove(&target.host_key()).filter(|p| p.until_ms > now_ms))
}

/// Takes the state lock, waiting at most [`LOCK_WAIT`].
fn lock(db: &Database) -> Result<Flock<File>, UploadError> {
    let path = db.root().join(LOCK_FILE);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(state_err("open", &path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((_, errno)) => return Err(state_err("lock", &path)(io::Error::from(errno))),
        }
    }
}

/// Records that nothing may be sent to `target` before `until_ms`; an
/// existing later pause is kept.
pub(crate) fn pause_target(
    db: &Database,
    target: &Target,
    until_ms: u64,
    now_ms: u64,
    reason: &str,
) -> Result<(), UploadError> {
    let _lock = lock(db)?;
    let path = db.root().join(STATE_FILE);
    let mut state = read_state(&path)?;
    state.schema_version = 1;
    state.paused.retain(|_, p| p.until_ms > now_ms);
    let key = target.host_key();
    let keep_existing = state.paused.get(&key).is_some_and(|p| p.until_ms >= until_ms);
    if !keep_existing {
        state.paused.insert(key.clone(), TargetPause { until_ms, reason: reason.to_owned() });
    }
    write_atomic(db.root(), &path, &state)?;
    tracing::warn!(target = %key, until_ms, "uploads to this target paused: {reason}");
    Ok(())
}

fn write_atomic(root: &Path, path: &Path, state: &StateFile) -> Result<(), UploadError> {
    let mut json = serde_json::to_vec_pretty(state).map_err(|e| state_err("encode", path)(e.into()))?;
    json.push(b'\n');
    let tmp: PathBuf = root.join(format!(".{STATE_FILE}.{:016x}.tmp", fastrand::u64(..)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&tmp)
            .map_err(state_err("create", &tmp))?;
        file.set_permissions(Permissions::from_mode(0o600)).map_err(state_err("set permissions of", &tmp))?;
        file.write_all(&json).and_then(|()| file.sync_all()).map_err(state_err("write", &tmp))?;
        fs::rename(&tmp, path).map_err(state_err("move into place", path))
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    File::open(root).and_then(|dir| dir.sync_all()).map_err(state_err("sync", root))
}
