//! The crashmon crash database: a directory of minidumps and their metadata.
//!
//! ```text
//! <db>/                        0700, owned by us; symlinks and group/world-writable modes refused
//!   settings.json              {"schema_version":1,"client_id":"<uuid>","uploads_enabled":false}
//!   new/                       dumps being written and temporary files; emptied by sweep_new()
//!   new/<id>.dmp.spare, .json.spare   a monitor's files for its next dump (SpareDump)
//!   pending/<id>.dmp           finished dumps waiting for upload
//!   pending/<id>.json          their Metadata
//!   pending/<id>.report.json   symbolicated report (optional)
//!   completed/                 uploaded reports, same files
//!   failed/                    reports rejected for good, same files; also <id>.json alone
//!                              for crashes that could not be dumped at all
//! ```
//!
//! A report is in a state directory when `<state>/<id>.dmp` is there (or, for
//! a crash without dump, when `failed/<id>.json` is there and no `.dmp` exists
//! anywhere). Directories are created 0700 and files 0600 whatever the umask;
//! files are opened with `O_NOFOLLOW` and created with `O_EXCL`. Report ids
//! are always parsed UUIDs, so no name built from one can escape the database.
//!
//! Every change is written to a temporary file in `new/`, fsynced and renamed
//! into place, so readers never see a partial file, and the metadata of a
//! report is in place before its dump appears: a visible `.dmp` always has its
//! `.json`. Files left behind by a crash midway are ignored by [`Database::list`]
//! and removed by [`Database::sweep_new`].
//!
//! A dump is published in two steps so that the crashed app need not wait for
//! the second: [`Database::make_durable`] fsyncs the dump, `new/<id>.json` and
//! `new/` (one journal commit), then [`Database::publish`] renames both into
//! `pending/` and fsyncs it. A complete dump whose writer died between the two
//! is published by the next [`Database::sweep_new`].
//!
//! Concurrency: readers may run at any time. Changes to one report should come
//! from one process at a time (the monitor commits, the uploader moves
//! reports on). `sweep_new` may run next to live writers: a dump in `new/`
//! is `flock`ed by its writer, and the sweep touches only unlocked ones.

mod error;
mod fsutil;
mod metadata;
mod retention;
mod signals;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use error::DbError;
use fsutil::{
    create_dir, create_dir_all, create_file, io_err, is_file, read_file, remove_file, sync_dir, validate_dir,
};
pub use metadata::{
    Attachment, Breadcrumb, CrashInfo, CrashKind, METADATA_SCHEMA_VERSION, Metadata, SymbolicationStatus, UploadState,
};
pub use retention::{PruneStats, Retention};
pub use signals::{signal_code_name, signal_name};

/// Environment variable naming the database directory. Read by the callers
/// (e.g. as a command-line default), not by [`default_path`].
pub const DATABASE_ENV: &str = "CRASHMON_DATABASE";

/// The default database directory: `$XDG_DATA_HOME/crashmon` if
/// `XDG_DATA_HOME` is set (to an absolute path), else
/// `$HOME/.local/share/crashmon`. `None` if neither variable is usable.
pub fn default_path() -> Option<PathBuf> {
    default_path_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn default_path_from(xdg_data_home: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let usable = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    usable(xdg_data_home)
        .or_else(|| usable(home).map(|home| home.join(".local/share")))
        .map(|data| data.join("crashmon"))
}

/// The id of a report: a random UUID, shown hyphenated and lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReportId(uuid::Uuid);

impl ReportId {
    /// A fresh random (v4) id.
    pub fn new_random() -> ReportId {
        ReportId(uuid::Uuid::new_v4())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }

    /// Parses a file name stem, accepting only the canonical hyphenated
    /// lowercase form this crate writes.
    fn from_file_stem(stem: &str) -> Option<ReportId> {
        let id = ReportId(uuid::Uuid::try_parse(stem).ok()?);
        (id.to_string() == stem).then_some(id)
    }
}

impl From<uuid::Uuid> for ReportId {
    fn from(uuid: uuid::Uuid) -> ReportId {
        ReportId(uuid)
    }
}

impl fmt::Display for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for ReportId {
    type Err = uuid::Error;

    /// Parses a full UUID (any form `uuid` accepts).
    fn from_str(s: &str) -> Result<ReportId, uuid::Error> {
        uuid::Uuid::try_parse(s).map(ReportId)
    }
}

/// Where a report is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportState {
    /// Being written (`new/`); never listed.
    New,
    /// Waiting for upload (`pending/`).
    Pending,
    /// Uploaded (`completed/`).
    Completed,
    /// Rejected for good (`failed/`).
    Failed,
}

impl ReportState {
    /// The states of finished reports, in listing order.
    const STORED: [ReportState; 3] = [ReportState::Pending, ReportState::Completed, ReportState::Failed];

    /// The name of this state's directory in the database.
    pub fn dir_name(self) -> &'static str {
        match self {
            ReportState::New => "new",
            ReportState::Pending => "pending",
            ReportState::Completed => "completed",
            ReportState::Failed => "failed",
        }
    }
}

impl fmt::Display for ReportState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The files that make up a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Dump,
    Metadata,
    Report,
}

impl FileKind {
    fn suffix(self) -> &'static str {
        match self {
            FileKind::Dump => ".dmp",
            FileKind::Metadata => ".json",
            FileKind::Report => ".report.json",
        }
    }

    /// Splits a file name of the database into report id and kind.
    fn parse(name: &str) -> Option<(ReportId, FileKind)> {
        [FileKind::Report, FileKind::Metadata, FileKind::Dump]
            .into_iter()
            .find_map(|kind| Some((ReportId::from_file_stem(name.strip_suffix(kind.suffix())?)?, kind)))
    }
}

/// Where a finished report lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    state: ReportState,
    has_dump: bool,
}

/// Database-wide settings, `settings.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Schema version of the settings (1).
    pub schema_version: u32,
    /// Random id of this installation, sent along with uploads.
    pub client_id: uuid::Uuid,
    /// Whether the user agreed to upload reports.
    #[serde(default)]
    pub uploads_enabled: bool,
}

impl Settings {
    /// Settings of a new database: a fresh client id, uploads disabled.
    pub fn fresh() -> Settings {
        Settings { schema_version: 1, client_id: uuid::Uuid::new_v4(), uploads_enabled: false }
    }
}

/// A dump being written to `new/<id>.dmp`, with its (still empty)
/// metadata file `new/<id>.json`. Finish it with [`Database::commit_dump`]
/// or [`Database::abandon_dump`]; one that is simply dropped stays in
/// `new/` until [`Database::sweep_new`], which removes it as partial (its
/// metadata does not parse).
#[derive(Debug)]
pub struct NewDump {
    /// The id the report will have.
    pub id: ReportId,
    /// The dump file, open for writing.
    pub file: File,
    /// Path of the dump file.
    pub path: PathBuf,
    /// `new/<id>.json`, created empty with the dump so that making the
    /// dump durable creates no file on the crashed app's critical path.
    metadata_file: File,
}

impl NewDump {
    /// Writes `bytes` to the dump file, in pieces of at most
    /// [`WRITE_CHUNK`] bytes (see there).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), DbError> {
        write_in_chunks(&mut self.file, bytes).map_err(io_err("write", &self.path))
    }
}

/// A dump's two files made ahead of any crash ([`Database::make_spare`]):
/// `new/<id>.dmp.spare`, locked like a dump in progress, and
/// `new/<id>.json.spare`. [`Database::use_spare`] turns them into a
/// [`NewDump`] with two renames, so that a crash finds its files made
/// (creating them costs ~0.1-0.9 ms on a crash's path, on a thread of its
/// own, in a monitor that has just started). Not being `.dmp` files,
/// spares are no reports; an unlocked one (its monitor is gone) is swept.
#[derive(Debug)]
pub struct SpareDump {
    id: ReportId,
    file: File,
    metadata_file: File,
}

/// Suffix of a spare's names (after `.dmp` and `.json`).
const SPARE_SUFFIX: &str = ".spare";

/// The most one `write(2)` of a big file hands the kernel. On this
/// project's VMs a single multi-megabyte `write` to a new file takes
/// 50-120 ms (the page cache gets large folios of guest memory the host
/// has to fault in again), the same bytes in 256 KiB pieces 2.5-3.5 ms
/// (BENCHMARKS.md, "Scaling"); elsewhere the pieces cost nothing.
pub const WRITE_CHUNK: usize = 256 * 1024;

/// `write_all` in pieces of at most [`WRITE_CHUNK`] bytes.
pub fn write_in_chunks(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    bytes.chunks(WRITE_CHUNK).try_for_each(|chunk| out.write_all(chunk))
}

/// A dump made durable in `new/` with its metadata by
/// [`Database::make_durable`]; [`Database::publish`] moves it into
/// `pending/`. If it is dropped instead, [`Database::sweep_new`] publishes it.
#[derive(Debug)]
pub struct DurableDump {
    /// The report's id.
    pub id: ReportId,
    /// The dump, still open and locked (so no sweep touches it meanwhile).
    file: File,
    /// Its size in bytes.
    pub size: u64,
}

/// A finished report as found in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: ReportId,
    /// Its state (never [`ReportState::New`]).
    pub state: ReportState,
    /// Its metadata.
    pub metadata: Metadata,
    /// The dump, `None` for a crash that could not be dumped.
    pub dump_path: Option<PathBuf>,
    /// The symbolicated report, if one has been written.
    pub report_path: Option<PathBuf>,
}

impl Entry {
    /// Whether the report has a minidump.
    pub fn has_dump(&self) -> bool {
        self.dump_path.is_some()
    }

    /// The symbolicated report's bytes, `None` if there is none (or it moved
    /// away since this entry was read).
    pub fn read_report(&self) -> Result<Option<Vec<u8>>, DbError> {
        let Some(path) = &self.report_path else {
            return Ok(None);
        };
        match read_file(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", path)(e)),
        }
    }
}

/// What [`Database::sweep_new`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// How many files were removed (partial dumps, leftovers).
    pub removed: usize,
    /// The complete dumps found in `new/` whose writer had died, now
    /// published to `pending/` by this sweep (and by no other).
    pub recovered: Vec<ReportId>,
}

/// Whether an unlocked dump in `new/` is a complete report.
#[derive(Debug)]
enum Completeness {
    /// Complete and durable: publish it.
    Complete,
    /// Clearly partial (the reason): remove it.
    Partial(&'static str),
    /// Could not tell (an I/O error): leave it for the next sweep.
    Unknown(DbError),
}

/// What `sweep` did with one dump in `new/`.
enum SweptDump {
    /// Its writer is alive (or it vanished meanwhile): left alone.
    Live,
    /// Complete: published to `pending/`.
    Recovered,
    /// Partial: removed.
    Removed,
}

/// How long a stray file must have been left alone before `sweep_new`
/// removes it, so that it never races with a commit or move in progress.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);
const SETTINGS_FILE: &str = "settings.json";
const ATTACHMENTS_DIR: &str = "attachments";

/// An open crash database.
#[derive(Debug, Clone)]
pub struct Database {
    root: PathBuf,
}

impl Database {
    /// Opens the database at `root`, creating it if missing: `root` and any
    /// missing parents are created 0700 (existing directories are left as
    /// they are), then the subdirectories, then `settings.json` with a fresh
    /// client id. The root must not be a symlink, must be owned by us and
    /// must not be group- or world-writable.
    pub fn open_or_create(root: &Path) -> Result<Database, DbError> {
        let db = Database::at(root)?;
        create_dir_all(&db.root)?;
        validate_dir(&db.root)?;
        for state in [ReportState::New].into_iter().chain(ReportState::STORED) {
            create_dir(&db.dir(state))?;
        }
        db.validate()?;
        db.create_settings()?;
        Ok(db)
    }

    /// Opens an existing database; [`DbError::NotFound`] if `root` or one of
    /// its subdirectories is missing. Validates like
    /// [`open_or_create`](Self::open_or_create).
    pub fn open_existing(root: &Path) -> Result<Database, DbError> {
        let db = Database::at(root)?;
        db.validate()?;
        Ok(db)
    }

    fn at(root: &Path) -> Result<Database, DbError> {
        // Absolute, so the database stays put if the process changes directory.
        let root = std::path::absolute(root).map_err(io_err("resolve", root))?;
        Ok(Database { root })
    }

    fn validate(&self) -> Result<(), DbError> {
        validate_dir(&self.root)?;
        [ReportState::New].into_iter().chain(ReportState::STORED).try_for_each(|state| validate_dir(&self.dir(state)))
    }

    /// The database directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the attachments of report `id` live: `attachments/<id>/` under
    /// the database root. The directory does not move when the report
    /// changes state; it is removed with the report.
    pub fn attachments_dir(&self, id: ReportId) -> PathBuf {
        self.root.join(ATTACHMENTS_DIR).join(id.to_string())
    }

    /// Copies the application's file `source` into the attachments of
    /// report `id` (creating `attachments/<id>/` 0700; the copy is 0600,
    /// created with `O_EXCL|O_NOFOLLOW`). `source` is opened with
    /// `O_NOFOLLOW|O_NONBLOCK` and must be a regular file. At most
    /// `max_size` bytes are kept: the tail of a longer file (the end of a
    /// log is what explains a crash). The copy is named after the file's
    /// base name, prefixed with its index when names collide.
    pub fn store_attachment(&self, id: ReportId, source: &Path, max_size: u64) -> Result<Attachment, DbError> {
        use std::io::{Read, Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        let parent = self.root.join(ATTACHMENTS_DIR);
        create_dir(&parent)?;
        validate_dir(&parent)?;
        let dir = self.attachments_dir(id);
        create_dir(&dir)?;
        validate_dir(&dir)?;
        let mut src = fs::OpenOptions::new()
            .read(true)
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
            .open(source)
            .map_err(io_err("open attachment", source))?;
        let meta = src.metadata().map_err(io_err("inspect attachment", source))?;
        if !meta.is_file() {
            return Err(io_err("open attachment", source)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let len = meta.len();
        let truncated = len > max_size;
        if truncated {
            src.seek(SeekFrom::Start(len - max_size)).map_err(io_err("read attachment", source))?;
        }
        let base = source
            .file_name()
            .map(|n| n.to_string_lossy().replace(['/', '\0'], "_"))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "attachment".into());
        let base = base.trim_start_matches('.').to_owned();
        let base = if base.is_empty() { "attachment".to_owned() } else { base };
        let mut name = base.clone();
        let mut n = 1;
        while fs::symlink_metadata(dir.join(&name)).is_ok() {
            name = format!("{n}-{base}");
            n += 1;
        }
        let dest = dir.join(&name);
        let mut out = create_file(&dest)?;
        let copied = io::copy(&mut src.take(max_size), &mut out).map_err(io_err("copy attachment to", &dest))?;
        out.sync_all().map_err(io_err("sync", &dest))?;
        Ok(Attachment { name, size: copied, truncated })
    }

    /// Deletes the attachments of report `id` (nothing if it has none).
    pub fn remove_attachments(&self, id: ReportId) -> Result<(), DbError> {
        let dir = self.attachments_dir(id);
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // remove_dir_all does not follow symlinks inside the directory.
            Ok(m) if m.is_dir() => fs::remove_dir_all(&dir).map_err(io_err("remove", &dir)),
            Ok(_) => remove_file(&dir).map(|_| ()),
            Err(e) => Err(io_err("inspect", &dir)(e)),
        }
    }

    fn dir(&self, state: ReportState) -> PathBuf {
        self.root.join(state.dir_name())
    }

    fn file(&self, state: ReportState, id: ReportId, kind: FileKind) -> PathBuf {
        self.dir(state).join(format!("{id}{}", kind.suffix()))
    }

    fn settings_path(&self) -> PathBuf {
        self.root.join(SETTINGS_FILE)
    }

    /// Reads `settings.json`.
    pub fn settings(&self) -> Result<Settings, DbError> {
        read_json(&self.settings_path())
    }

    /// Replaces `settings.json` atomically.
    pub fn write_settings(&self, settings: &Settings) -> Result<(), DbError> {
        let path = self.settings_path();
        self.write_atomic(&path, &to_json(settings, &path)?, true)
    }

    fn create_settings(&self) -> Result<(), DbError> {
        let path = self.settings_path();
        if fs::symlink_metadata(&path).is_ok() {
            return Ok(());
        }
        let settings = Settings::fresh();
        // Without replacing: a concurrent creator's client id wins.
        match self.write_atomic(&path, &to_json(&settings, &path)?, false) {
            Err(DbError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
            Ok(()) => {
                let client_id = settings.client_id;
                tracing::info!(path = %path.display(), %client_id, "created database settings");
                Ok(())
            }
        }
    }

    /// Writes `bytes` to a temporary file in `new/`, fsyncs it and moves it
    /// to `dest` (replacing an existing file, or failing with `EEXIST` if
    /// `replace` is false), then fsyncs `dest`'s directory.
    fn write_atomic(&self, dest: &Path, bytes: &[u8], replace: bool) -> Result<(), DbError> {
        let tmp = self.dir(ReportState::New).join(format!("{}.tmp", uuid::Uuid::new_v4()));
        let result = (|| {
            let mut file = create_file(&tmp)?;
            write_in_chunks(&mut file, bytes).and_then(|()| file.sync_all()).map_err(io_err("write", &tmp))?;
            if replace {
                fs::rename(&tmp, dest).map_err(io_err("move into place", dest))
            } else {
                fs::hard_link(&tmp, dest).map_err(io_err("create", dest))
            }
        })();
        // After a rename this finds nothing; otherwise it cleans up.
        let _ = fs::remove_file(&tmp);
        result?;
        sync_dir(dest.parent().unwrap_or(&self.root))
    }

    /// Cleans up after writers that died. In `new/`: a dump whose writer is
    /// gone is published to `pending/` exactly once if it is complete (made
    /// durable by [`make_durable`](Self::make_durable): its metadata
    /// parseable and agreeing with it), and deleted otherwise (a partial
    /// dump); other files (temporaries) are deleted once 60 s old. In the
    /// state directories: files left behind by a commit or move interrupted
    /// more than 60 s ago, i.e. metadata or reports without their dump
    /// (except the metadata-only records of
    /// [`record_failure`](Self::record_failure) in `failed/`). A dump whose
    /// completeness cannot be told (an I/O error reading it or its
    /// metadata) is left for the next sweep. Returns how many files were
    /// removed and which reports were published. Dumps whose writer is
    /// alive (it holds their lock) are never touched, so this may run next
    /// to other monitors.
    ///
    /// Fails only if `new/` cannot be listed; once dumps may have been
    /// published, later errors are logged, so the recovered ids are never
    /// lost.
    pub fn sweep_new(&self) -> Result<SweepStats, DbError> {
        self.sweep(ORPHAN_GRACE)
    }

    fn sweep(&self, grace: Duration) -> Result<SweepStats, DbError> {
        let mut stats = SweepStats::default();
        let new_dir = self.dir(ReportState::New);
        // Dumps first: a complete one takes its metadata along to pending/.
        for path in fsutil::dir_entries(&new_dir)? {
            let Some((id, FileKind::Dump)) = file_name(&path).and_then(FileKind::parse) else {
                continue;
            };
            match self.sweep_dump(id, &path) {
                Ok(SweptDump::Live) => {}
                Ok(SweptDump::Recovered) => stats.recovered.push(id),
                Ok(SweptDump::Removed) => stats.removed += 1,
                Err(e) => tracing::warn!("sweeping the database: {e}"),
            }
        }
        if !stats.recovered.is_empty() {
            let recovered = stats.recovered.len();
            tracing::info!(recovered, "published complete dumps whose monitor died before publishing them");
        }
        if let Err(e) = self.sweep_leftovers(grace, &mut stats.removed) {
            tracing::warn!("sweeping the database: {e}");
        }
        if stats.removed > 0 {
            tracing::info!(removed = stats.removed, "swept the crash database");
        }
        Ok(stats)
    }

    /// The second part of `sweep`: files other than dumps left behind in
    /// `new/` and in the state directories, once left alone for `grace`.
    fn sweep_leftovers(&self, grace: Duration, removed: &mut usize) -> Result<(), DbError> {
        let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let new_dir = self.dir(ReportState::New);
        // Anything else in new/ (temporary files, metadata whose dump
        // is gone) once it has been left alone for `grace`.
        for path in fsutil::dir_entries(&new_dir)? {
            if path.extension().is_some_and(|e| e == "dmp") {
                continue;
            }
            // A spare its monitor holds (locked) stays, with its metadata;
            // one whose monitor is gone (unlocked) goes at once.
            if let Some((id, kind)) =
                file_name(&path).and_then(|n| n.strip_suffix(SPARE_SUFFIX)).and_then(FileKind::parse)
            {
                let (spare, spare_json) = self.spare_paths(id);
                match kind {
                    FileKind::Dump if is_locked(&spare) => continue,
                    FileKind::Dump => {
                        match remove_file(&path).and_then(|gone| remove_file(&spare_json).map(|_| gone)) {
                            Ok(gone) => *removed += usize::from(gone),
                            Err(e) => tracing::warn!("sweeping the database: {e}"),
                        }
                        continue;
                    }
                    _ if may_exist(&spare) => continue,
                    _ => {}
                }
            }
            // The metadata of a dump still in new/ goes with its dump (or
            // with the spare it was renamed from ahead of it: `use_spare`).
            if let Some((id, FileKind::Metadata)) = file_name(&path).and_then(FileKind::parse)
                && (may_exist(&self.file(ReportState::New, id, FileKind::Dump)) || may_exist(&self.spare_paths(id).0))
            {
                continue;
            }
            let old = fs::symlink_metadata(&path)
                .map(|m| now_secs.saturating_sub(Duration::new(m.ctime().max(0).unsigned_abs(), 0)) >= grace)
                .unwrap_or(false);
            if !old {
                continue;
            }
            match remove_file(&path) {
                Ok(gone) => {
                    if gone {
                        tracing::info!(path = %path.display(), "removed a leftover of an interrupted change");
                    }
                    *removed += usize::from(gone)
                }
                Err(e) => tracing::warn!("sweeping the database: {e}"),
            }
        }
        let locations = self.scan()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        for state in ReportState::STORED {
            for path in fsutil::dir_entries(&self.dir(state))? {
                let Some((id, kind)) = file_name(&path).and_then(FileKind::parse) else {
                    continue;
                };
                // Never delete a dump; keep every file where its report is.
                if kind == FileKind::Dump || locations.get(&id).map(|l| l.state) == Some(state) {
                    continue;
                }
                // ctime, not mtime: link() and rename() update it, so it tells
                // when the file got here.
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                let changed = Duration::new(meta.ctime().max(0).unsigned_abs(), 0);
                if now.saturating_sub(changed) < grace {
                    continue;
                }
                match remove_file(&path) {
                    Ok(true) => {
                        tracing::info!(path = %path.display(), "removed a leftover of an interrupted change");
                        *removed += 1;
                    }
                    Ok(false) => {}
                    // One file that cannot go does not stop the sweep.
                    Err(e) => tracing::warn!("sweeping the database: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Sweeps one `new/<id>.dmp`: a dump whose writer holds its lock is
    /// left alone; an unlocked complete one (see `completeness`) is
    /// published to `pending/`; an unlocked one that is clearly partial is
    /// removed, with its metadata and attachments; one whose completeness
    /// cannot be told (an I/O error) is left for the next sweep. The
    /// sweeper holds the dump's lock throughout, so two sweepers never both
    /// publish (or remove) the same dump.
    fn sweep_dump(&self, id: ReportId, path: &Path) -> Result<SweptDump, DbError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
        {
            Ok(f) => f,
            // Gone meanwhile (published or swept by someone else), or not a
            // regular file we may open: not ours to judge.
            Err(_) => return Ok(SweptDump::Live),
        };
        if file.try_lock().is_err() {
            return Ok(SweptDump::Live);
        }
        // Still the file at that name? (Another sweeper may have moved it
        // between our open and our lock.)
        let same = match (file.metadata(), fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev() && a.is_file(),
            _ => false,
        };
        if !same {
            return Ok(SweptDump::Live);
        }
        let new_json = self.file(ReportState::New, id, FileKind::Metadata);
        let reason = match self.completeness(id, &file) {
            Completeness::Complete => {
                self.move_to_pending(id)?;
                tracing::info!(%id, "published a complete dump left in new/ by a monitor that died");
                drop(file);
                return Ok(SweptDump::Recovered);
            }
            Completeness::Unknown(e) => {
                // Possibly a finished report the app was told about: never
                // delete it on an error that may go away.
                tracing::warn!(
                    path = %path.display(),
                    "cannot tell whether a dump left in new/ is complete; leaving it for the next sweep: {e}"
                );
                return Ok(SweptDump::Live);
            }
            Completeness::Partial(reason) => reason,
        };
        // Unlink while holding the lock.
        let gone = remove_file(path)?;
        remove_file(&new_json)?;
        if gone {
            tracing::info!(path = %path.display(), reason, "removed a partial dump whose writer is gone");
            if let Err(e) = self.remove_attachments(id) {
                tracing::warn!("removing the attachments of a partial dump: {e}");
            }
        }
        drop(file);
        Ok(if gone { SweptDump::Removed } else { SweptDump::Live })
    }

    /// Allocates a fresh id and creates `new/<id>.dmp` (`O_CREAT|O_EXCL|O_NOFOLLOW`,
    /// mode 0600) for the dump writer, and its metadata file `new/<id>.json`
    /// (empty until [`make_durable`](Self::make_durable)). Creating a file
    /// costs a directory update (~0.2 ms on ext4 without a journal); both
    /// happen here, which a monitor runs while it captures, not after.
    pub fn begin_dump(&self) -> Result<NewDump, DbError> {
        let id = ReportId::new_random();
        let path = self.file(ReportState::New, id, FileKind::Dump);
        // The writer holds an exclusive lock for as long as the dump is in
        // new/: sweep_new() only removes dumps whose writer is gone, so one
        // monitor's sweep never deletes another's dump in progress. The lock
        // is taken before the file gets its `.dmp` name (a sweeper must never
        // see an unlocked `.dmp` of a live writer); the rename keeps the open
        // file, and so the lock.
        let json_path = self.file(ReportState::New, id, FileKind::Metadata);
        let (file, metadata_file) = create_locked_pair(&path, &json_path)?;
        Ok(NewDump { id, file, path, metadata_file })
    }

    /// Makes a [`SpareDump`]: the two files of a future dump, the dump's
    /// locked before it gets its name (see [`begin_dump`](Self::begin_dump)).
    pub fn make_spare(&self) -> Result<SpareDump, DbError> {
        let id = ReportId::new_random();
        let (path, json_path) = self.spare_paths(id);
        let (file, metadata_file) = create_locked_pair(&path, &json_path)?;
        Ok(SpareDump { id, file, metadata_file })
    }

    /// Turns `spare` into the files of a dump in progress: renames
    /// `new/<id>.json.spare` to `new/<id>.json`, then (still locked)
    /// `new/<id>.dmp.spare` to `new/<id>.dmp`. On error what is left of
    /// the spare is removed and the error returned (then make the files
    /// with [`begin_dump`](Self::begin_dump)).
    pub fn use_spare(&self, spare: SpareDump) -> Result<NewDump, DbError> {
        let SpareDump { id, file, metadata_file } = spare;
        let (spare_path, spare_json) = self.spare_paths(id);
        let path = self.file(ReportState::New, id, FileKind::Dump);
        let json_path = self.file(ReportState::New, id, FileKind::Metadata);
        let renamed = fs::rename(&spare_json, &json_path)
            .map_err(io_err("name", &json_path))
            .and_then(|()| fs::rename(&spare_path, &path).map_err(io_err("name", &path)));
        match renamed {
            Ok(()) => Ok(NewDump { id, file, path, metadata_file }),
            Err(e) => {
                for p in [&spare_path, &path, &spare_json, &json_path] {
                    let _ = remove_file(p);
                }
                Err(e)
            }
        }
    }

    /// Removes an unused spare (its dump file first, while it is locked).
    pub fn discard_spare(&self, spare: SpareDump) -> Result<(), DbError> {
        let (path, json_path) = self.spare_paths(spare.id);
        remove_file(&path)?;
        drop(spare);
        remove_file(&json_path)?;
        Ok(())
    }

    fn spare_paths(&self, id: ReportId) -> (PathBuf, PathBuf) {
        let spare = |kind: FileKind| {
            let mut p = self.file(ReportState::New, id, kind).into_os_string();
            p.push(SPARE_SUFFIX);
            PathBuf::from(p)
        };
        (spare(FileKind::Dump), spare(FileKind::Metadata))
    }

    /// Publishes a finished dump in one go: [`make_durable`](Self::make_durable)
    /// then [`publish`](Self::publish). On error nothing becomes visible;
    /// the dump stays in `new/` until [`sweep_new`](Self::sweep_new).
    pub fn commit_dump(&self, dump: NewDump, metadata: &Metadata) -> Result<ReportId, DbError> {
        let durable = self.make_durable(dump, metadata)?;
        self.publish(durable)
    }

    /// Makes a finished dump durable where it is, in `new/`: writes
    /// `metadata` to `new/<id>.json` (created by
    /// [`begin_dump`](Self::begin_dump)) and fsyncs the dump, the metadata and
    /// `new/` itself, concurrently (so the filesystem can fold them into one
    /// journal commit). The `id` of `metadata` is replaced by the dump's and
    /// `dump_size` by the dump's actual size.
    ///
    /// When this returns, the report survives a crash of this process or of
    /// the machine: if [`publish`](Self::publish) never runs,
    /// [`sweep_new`](Self::sweep_new) finds the dump complete (unlocked, its
    /// metadata parseable, sizes agreeing) and publishes it to `pending/`.
    /// On error the metadata is removed again and the dump stays in `new/`
    /// as a partial file that `sweep_new` deletes.
    pub fn make_durable(&self, dump: NewDump, metadata: &Metadata) -> Result<DurableDump, DbError> {
        let NewDump { id, file, path, metadata_file: mut json_file } = dump;
        // Keep `file` open (and locked) until the dump has left new/.
        let size = file.metadata().map_err(io_err("inspect", &path))?.len();
        let metadata = Metadata { id, dump_size: Some(size), ..metadata.clone() };
        let json_path = self.file(ReportState::New, id, FileKind::Metadata);
        let json = to_json(&metadata, &json_path)?;
        let result = (|| {
            json_file.write_all(&json).map_err(io_err("write", &json_path))?;
            // This is on the crashed app's critical path: three fsyncs at
            // once cost about one journal commit.
            let dir = self.dir(ReportState::New);
            std::thread::scope(|scope| {
                let panicked = |path: &Path| DbError::Io {
                    op: "sync",
                    path: path.to_path_buf(),
                    source: io::Error::other("sync thread panicked"),
                };
                let json_sync = scope.spawn(|| json_file.sync_all().map_err(io_err("sync", &json_path)));
                let dir_sync = scope.spawn(|| sync_dir(&dir));
                let dump_sync = file.sync_all().map_err(io_err("sync", &path));
                let json_sync = json_sync.join().unwrap_or_else(|_| Err(panicked(&json_path)));
                let dir_sync = dir_sync.join().unwrap_or_else(|_| Err(panicked(&dir)));
                dump_sync.and(json_sync).and(dir_sync)
            })
        })();
        if let Err(e) = result {
            // Without its metadata the dump is a partial file for sweep_new.
            let _ = fs::remove_file(&json_path);
            return Err(e);
        }
        tracing::debug!(%id, size, "crash report durable in new/");
        Ok(DurableDump { id, file, size })
    }

    /// Moves a durable dump and its metadata into `pending/`: the metadata
    /// first (a visible `.dmp` always has its `.json`), then the dump, then
    /// one fsync of `pending/` for both renames. On error the report stays
    /// complete in `new/`, and the next [`sweep_new`](Self::sweep_new)
    /// publishes it.
    pub fn publish(&self, dump: DurableDump) -> Result<ReportId, DbError> {
        let DurableDump { id, file, size } = dump;
        self.move_to_pending(id)?;
        tracing::info!(%id, size, "crash report committed");
        // Unlock only now that the dump has left new/.
        drop(file);
        Ok(id)
    }

    /// Renames `new/<id>.json` (unless it already moved) and `new/<id>.dmp`
    /// into `pending/`, then fsyncs `pending/` (a failure of that sync is
    /// logged, not returned: the report has moved).
    fn move_to_pending(&self, id: ReportId) -> Result<(), DbError> {
        let new_json = self.file(ReportState::New, id, FileKind::Metadata);
        let json_path = self.file(ReportState::Pending, id, FileKind::Metadata);
        match fs::rename(&new_json, &json_path) {
            Ok(()) => {}
            // A sweep finishing an interrupted publish: the metadata moved
            // already.
            Err(e) if e.kind() == io::ErrorKind::NotFound && is_file(&json_path)? => {}
            Err(e) => return Err(io_err("move into place", &json_path)(e)),
        }
        let new_dump = self.file(ReportState::New, id, FileKind::Dump);
        let dump_path = self.file(ReportState::Pending, id, FileKind::Dump);
        fs::rename(&new_dump, &dump_path).map_err(io_err("move into place", &dump_path))?;
        // One directory sync makes both renames durable. If it fails the
        // report is published all the same (both names are in pending/, and
        // a retry would find nothing left in new/ to publish): it is only
        // less certain to survive a power cut until the next sync.
        if let Err(e) = sync_dir(&self.dir(ReportState::Pending)) {
            tracing::warn!(%id, "published, but syncing pending/ failed: {e}");
        }
        Ok(())
    }

    /// Whether the unlocked `new/<id>.dmp` (open as `dump`) is a complete
    /// report whose writer died between [`make_durable`](Self::make_durable)
    /// and the end of [`publish`](Self::publish): its metadata (in `new/`,
    /// or already moved to `pending/`) parses, names this id and this
    /// dump's size, and the dump starts with the minidump signature. Then
    /// it fsyncs both files, so the recovered report is as durable as a
    /// published one.
    ///
    /// [`Partial`](Completeness::Partial) only on clear evidence: no
    /// metadata in either place, metadata that does not parse or names
    /// another id or size, no minidump signature. Any other error (reading
    /// the dump or a metadata file, an fsync) is
    /// [`Unknown`](Completeness::Unknown).
    fn completeness(&self, id: ReportId, dump: &File) -> Completeness {
        use std::io::Read;
        let dump_path = self.file(ReportState::New, id, FileKind::Dump);
        let size = match dump.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Completeness::Unknown(io_err("inspect", &dump_path)(e)),
        };
        let mut magic = [0u8; 4];
        match (&*dump).read_exact(&mut magic) {
            Ok(()) if &magic == b"MDMP" => {}
            Ok(()) => return Completeness::Partial("no minidump signature"),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Completeness::Partial("no minidump signature");
            }
            Err(e) => return Completeness::Unknown(io_err("read", &dump_path)(e)),
        }
        let mut partial = "no metadata";
        let mut unknown = None;
        for path in [
            self.file(ReportState::New, id, FileKind::Metadata),
            self.file(ReportState::Pending, id, FileKind::Metadata),
        ] {
            match read_json::<Metadata>(&path) {
                Ok(m) if m.id == id && m.dump_size == Some(size) => {
                    let synced = File::open(&path)
                        .and_then(|f| f.sync_all())
                        .map_err(io_err("sync", &path))
                        .and_then(|()| dump.sync_all().map_err(io_err("sync", &dump_path)));
                    return match synced {
                        Ok(()) => Completeness::Complete,
                        Err(e) => Completeness::Unknown(e),
                    };
                }
                Ok(_) => partial = "metadata of another id or size",
                Err(DbError::Corrupt { .. }) => partial = "metadata does not parse",
                Err(DbError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => unknown = unknown.or(Some(e)),
            }
        }
        // An unreadable metadata file may be the good one.
        match unknown {
            Some(e) => Completeness::Unknown(e),
            None => Completeness::Partial(partial),
        }
    }

    /// Whether report `id` still has its dump in `new/` (being written,
    /// or durable but not yet published).
    pub fn is_in_new(&self, id: ReportId) -> bool {
        is_file(&self.file(ReportState::New, id, FileKind::Dump)).unwrap_or(true)
    }

    /// Removes the dump of a writer that failed.
    pub fn abandon_dump(&self, dump: NewDump) -> Result<(), DbError> {
        let NewDump { id, file, .. } = dump;
        // Unlink while still holding the lock, so no sweeper ever sees this
        // dump unlocked under its name; then its empty metadata file.
        remove_file(&self.file(ReportState::New, id, FileKind::Dump))?;
        drop(file);
        remove_file(&self.file(ReportState::New, id, FileKind::Metadata))?;
        tracing::debug!(%id, "abandoned dump");
        Ok(())
    }

    /// Records a crash that could not be dumped at all as `failed/<id>.json`
    /// under a fresh id (replacing the `id` of `metadata`). It is listed as
    /// [`ReportState::Failed`] without dump.
    pub fn record_failure(&self, metadata: &Metadata) -> Result<ReportId, DbError> {
        let id = ReportId::new_random();
        let metadata = Metadata { id, ..metadata.clone() };
        let path = self.file(ReportState::Failed, id, FileKind::Metadata);
        self.write_atomic(&path, &to_json(&metadata, &path)?, false)?;
        tracing::info!(%id, failure = ?metadata.failure, "recorded a crash without dump");
        Ok(id)
    }

    /// Atomically writes (or replaces) the symbolicated report of `id`,
    /// which must be JSON.
    pub fn write_report(&self, id: ReportId, report_json: &[u8]) -> Result<(), DbError> {
        serde_json::from_slice::<serde::de::IgnoredAny>(report_json)
            .map_err(|source| DbError::InvalidReport { id, source })?;
        let location = self.locate_existing(id)?;
        self.write_atomic(&self.file(location.state, id, FileKind::Report), report_json, true)
    }

    /// Atomically replaces the metadata of `id`, whatever its state.
    /// [`DbError::IdMismatch`] if `metadata.id` is not `id`.
    pub fn update_metadata(&self, id: ReportId, metadata: &Metadata) -> Result<(), DbError> {
        if metadata.id != id {
            return Err(DbError::IdMismatch { id, metadata_id: metadata.id });
        }
        let location = self.locate_existing(id)?;
        let path = self.file(location.state, id, FileKind::Metadata);
        self.write_atomic(&path, &to_json(metadata, &path)?, true)
    }

    /// Moves report `id` to state `to` ([`Pending`](ReportState::Pending),
    /// [`Completed`](ReportState::Completed) or [`Failed`](ReportState::Failed));
    /// moving it to the state it is in does nothing.
    ///
    /// Order: the `.json` and `.report.json` are first hard-linked into the
    /// target directory (through a temporary name in `new/`, replacing stale
    /// copies), then the `.dmp` is renamed — the one step that changes the
    /// state — and only then the old `.json` and `.report.json` are unlinked.
    /// At every moment the directory holding the `.dmp` has its metadata, the
    /// dump exists exactly once (so `list` shows the report once), and a
    /// crash midway leaves only extra links, which `list` ignores and
    /// `sweep_new` removes.
    pub fn transition(&self, id: ReportId, to: ReportState) -> Result<(), DbError> {
        let from = self.locate_existing(id)?;
        if from.state == to {
            return Ok(());
        }
        if to == ReportState::New || !from.has_dump {
            return Err(DbError::InvalidTransition { id, from: from.state, to });
        }
        for kind in [FileKind::Metadata, FileKind::Report] {
            let src = self.file(from.state, id, kind);
            if kind == FileKind::Report && !is_file(&src)? {
                remove_file(&self.file(to, id, kind))?; // a stale copy
                continue;
            }
            let tmp = self.dir(ReportState::New).join(format!("{}.tmp", uuid::Uuid::new_v4()));
            fs::hard_link(&src, &tmp).map_err(io_err("link", &src))?;
            let dest = self.file(to, id, kind);
            let renamed = fs::rename(&tmp, &dest);
            // rename() between two links of one file does nothing and leaves
            // `tmp` behind: `dest` is a stale copy of this same file.
            let _ = fs::remove_file(&tmp);
            renamed.map_err(io_err("move into place", &dest))?;
        }
        sync_dir(&self.dir(to))?;
        let dump = self.file(to, id, FileKind::Dump);
        fs::rename(self.file(from.state, id, FileKind::Dump), &dump).map_err(io_err("move into place", &dump))?;
        sync_dir(&self.dir(to))?;
        for kind in [FileKind::Metadata, FileKind::Report] {
            remove_file(&self.file(from.state, id, kind))?;
        }
        sync_dir(&self.dir(from.state))?;
        tracing::info!(%id, from = %from.state, %to, "crash report moved");
        Ok(())
    }

    /// All reports in `pending/`, `completed/` and `failed/`, newest first
    /// (by `captured_at_ms`). Reports whose metadata cannot be read are
    /// skipped with a warning.
    pub fn list(&self) -> Result<Vec<Entry>, DbError> {
        let mut entries: Vec<Entry> = self
            .scan()?
            .into_iter()
            .filter_map(|(id, location)| match self.entry(id, location) {
                Ok(entry) => Some(entry),
                Err(e) => {
                    tracing::warn!("skipping crash report {id}: {e}");
                    None
                }
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse((e.metadata.captured_at_ms, e.id)));
        Ok(entries)
    }

    /// Finds a report by full id or by a prefix of at least 4 hex digits
    /// (hyphens are ignored).
    pub fn find(&self, query: &str) -> Result<Entry, DbError> {
        let no_such = || DbError::NoSuchReport { query: query.to_owned() };
        if let Ok(id) = query.parse::<ReportId>() {
            let location = self.locate(id)?.ok_or_else(no_such)?;
            return self.entry(id, location);
        }
        let prefix: String = query.chars().filter(|&c| c != '-').collect::<String>().to_ascii_lowercase();
        if !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(DbError::InvalidQuery { query: query.to_owned(), reason: "not hexadecimal" });
        }
        if prefix.len() < 4 {
            return Err(DbError::InvalidQuery { query: query.to_owned(), reason: "give at least 4 hex digits" });
        }
        let matches: Vec<(ReportId, Location)> =
            self.scan()?.into_iter().filter(|(id, _)| id.as_uuid().simple().to_string().starts_with(&prefix)).collect();
        match matches[..] {
            [] => Err(no_such()),
            [(id, location)] => self.entry(id, location),
            _ => Err(DbError::AmbiguousId { query: query.to_owned(), count: matches.len() }),
        }
    }

    /// Reads the entry of `id` at `location`; if it moved meanwhile, looks
    /// for it once more.
    fn entry(&self, id: ReportId, location: Location) -> Result<Entry, DbError> {
        let result = self.entry_at(id, location);
        if let Err(DbError::Io { source, .. }) = &result
            && source.kind() == io::ErrorKind::NotFound
        {
            match self.locate(id)? {
                Some(now) if now != location => return self.entry_at(id, now),
                Some(_) => {}
                None => {
                    return Err(DbError::NoSuchReport { query: id.to_string() });
                }
            }
        }
        result
    }

    fn entry_at(&self, id: ReportId, Location { state, has_dump }: Location) -> Result<Entry, DbError> {
        let mut metadata: Metadata = read_json(&self.file(state, id, FileKind::Metadata))?;
        if metadata.id != id {
            let metadata_id = metadata.id;
            tracing::warn!(%id, %metadata_id, "metadata carries another id; using the file name's");
            metadata.id = id;
        }
        let report = self.file(state, id, FileKind::Report);
        Ok(Entry {
            id,
            state,
            metadata,
            dump_path: has_dump.then(|| self.file(state, id, FileKind::Dump)),
            report_path: is_file(&report)?.then_some(report),
        })
    }

    /// Where report `id` is, if anywhere.
    fn locate(&self, id: ReportId) -> Result<Option<Location>, DbError> {
        for state in ReportState::STORED {
            if is_file(&self.file(state, id, FileKind::Dump))? {
                return Ok(Some(Location { state, has_dump: true }));
            }
        }
        let failed = is_file(&self.file(ReportState::Failed, id, FileKind::Metadata))?;
        Ok(failed.then_some(Location { state: ReportState::Failed, has_dump: false }))
    }

    fn locate_existing(&self, id: ReportId) -> Result<Location, DbError> {
        self.locate(id)?.ok_or_else(|| DbError::NoSuchReport { query: id.to_string() })
    }

    /// Every report of the database and where it is: each `.dmp`, plus each
    /// `failed/<id>.json` whose id has no dump anywhere.
    fn scan(&self) -> Result<BTreeMap<ReportId, Location>, DbError> {
        let mut found = BTreeMap::new();
        let mut dumpless = Vec::new();
        for state in ReportState::STORED {
            for path in fsutil::dir_entries(&self.dir(state))? {
                match file_name(&path).and_then(FileKind::parse) {
                    Some((id, FileKind::Dump)) => {
                        if let Some(other) = found.insert(id, Location { state, has_dump: true }) {
                            tracing::warn!(%id, "dump found in both {} and {state}", other.state);
                        }
                    }
                    Some((id, FileKind::Metadata)) if state == ReportState::Failed => dumpless.push(id),
                    _ => {}
                }
            }
        }
        for id in dumpless {
            found.entry(id).or_insert(Location { state: ReportState::Failed, has_dump: false });
        }
        Ok(found)
    }
}

/// Creates the dump file `path` (created as `<path>.creating`, locked,
/// then renamed, so it never has its name unlocked) and the empty metadata
/// file `json_path`. On error nothing is left (the dump is unlinked while
/// still locked, see `abandon_dump`).
fn create_locked_pair(path: &Path, json_path: &Path) -> Result<(File, File), DbError> {
    let creating = {
        let mut name = path.as_os_str().to_owned();
        name.push(".creating");
        PathBuf::from(name)
    };
    let file = create_file(&creating)?;
    let locked = file.try_lock().map_err(|e| DbError::Io {
        op: "lock",
        path: creating.clone(),
        source: match e {
            fs::TryLockError::Error(e) => e,
            fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
        },
    });
    if let Err(e) = locked.and_then(|()| fs::rename(&creating, path).map_err(io_err("name", path))) {
        let _ = remove_file(&creating);
        return Err(e);
    }
    match create_file(json_path) {
        Ok(metadata_file) => Ok((file, metadata_file)),
        Err(e) => {
            let _ = remove_file(path);
            Err(e)
        }
    }
}

/// Whether something is at `path`; an error other than "not found" (a
/// permission problem, an I/O error) counts as "there", so a sweep keeps
/// what it cannot look at rather than removing what belongs to it.
fn may_exist(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Whether `path` may belong to a live writer: its lock is held by another
/// open file, or it cannot be told (an error other than "not found":
/// EMFILE, EIO... leave the file alone, as `sweep_dump` does).
fn is_locked(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
    {
        Ok(file) => !matches!(file.try_lock(), Ok(())),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DbError> {
    let bytes = read_file(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| DbError::Corrupt { path: path.to_path_buf(), source })
}

fn to_json<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>, DbError> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|e| io_err("encode", path)(e.into()))?;
    json.push(b'\n');
    Ok(json)
}
