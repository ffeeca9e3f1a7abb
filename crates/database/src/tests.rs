//! Tests against the real file system, in temporary directories.

use std::collections::BTreeMap;
use std::fs::{self, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use nix::sys::stat::{Mode, umask};
use tempfile::TempDir;

use super::*;

/// The umask is process-wide and tests run in parallel: the umask test takes
/// this for writing, every other test for reading.
static UMASK_LOCK: RwLock<()> = RwLock::new(());

struct Fixture {
    _guard: RwLockReadGuard<'static, ()>,
    dir: TempDir,
    db: Database,
}

fn fixture() -> Fixture {
    let guard = UMASK_LOCK.read().unwrap_or_else(PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_or_create(&dir.path().join("db")).unwrap();
    Fixture { _guard: guard, dir, db }
}

fn id(s: &str) -> ReportId {
    s.parse().unwrap()
}

fn metadata(captured_at_ms: u64) -> Metadata {
    let mut m = Metadata::new(
        ReportId::new_random(),
        captured_at_ms,
        1234,
        CrashInfo::from_signal(11, 1, Some(0x10), Some(1235)),
    );
    m.exe = Some(PathBuf::from("/usr/bin/app"));
    m.annotations.insert("version".into(), "1.2.3".into());
    m
}

fn commit(db: &Database, bytes: &[u8], captured_at_ms: u64) -> ReportId {
    let mut dump = db.begin_dump().unwrap();
    dump.file.write_all(bytes).unwrap();
    db.commit_dump(dump, &metadata(captured_at_ms)).unwrap()
}

/// Puts a report with a chosen id straight into `pending/`.
fn put_pending(db: &Database, id: ReportId, captured_at_ms: u64) {
    let m = Metadata { id, ..metadata(captured_at_ms) };
    let dir = db.root().join("pending");
    fs::write(dir.join(format!("{id}.json")), serde_json::to_vec(&m).unwrap()).unwrap();
    fs::write(dir.join(format!("{id}.dmp")), b"MDMP").unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Restores the umask on drop, even if the test fails.
struct UmaskGuard(Mode);

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        umask(self.0);
    }
}

#[test]
fn layout_has_exact_modes_whatever_the_umask() {
    let _lock = UMASK_LOCK.write().unwrap_or_else(PoisonError::into_inner);
    let tmp = tempfile::tempdir().unwrap();
    let tmp_mode = mode(tmp.path());
    // 000 would let 0777/0666 through; 277 strips our own write bits.
    for (i, mask) in [0o000, 0o277].into_iter().enumerate() {
        let _restore = UmaskGuard(umask(Mode::from_bits_truncate(mask)));
        let root = tmp.path().join(format!("parent{i}/db"));
        let db = Database::open_or_create(&root).unwrap();
        let id = commit(&db, b"MDMP", 1);
        db.write_report(id, b"{}").unwrap();
        let failed = db.record_failure(&metadata(2)).unwrap();

        for dir in [root.parent().unwrap(), &root] {
            assert_eq!(mode(dir), 0o700, "{} under umask {mask:03o}", dir.display());
        }
        for sub in ["new", "pending", "completed", "failed"] {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub} under umask {mask:03o}");
        }
        let files = [
            root.join("settings.json"),
            root.join(format!("pending/{id}.dmp")),
            root.join(format!("pending/{id}.json")),
            root.join(format!("pending/{id}.report.json")),
            root.join(format!("failed/{failed}.json")),
        ];
        for file in files {
            assert_eq!(mode(&file), 0o600, "{} under umask {mask:03o}", file.display());
        }
        let dump = db.begin_dump().unwrap();
        assert_eq!(mode(&dump.path), 0o600);
    }
    // A directory that already existed is left alone.
    assert_eq!(mode(tmp.path()), tmp_mode);
}

#[test]
fn refuses_a_symlinked_root() {
    let f = fixture();
    let link = f.dir.path().join("link");
    std::os::unix::fs::symlink(f.db.root(), &link).unwrap();
    for result in [Database::open_or_create(&link), Database::open_existing(&link)] {
        let err = result.unwrap_err();
        assert!(matches!(err, DbError::Symlink { ref path } if path == &link), "{err:?}");
        assert!(err.to_string().ends_with("link is a symlink; refusing to use it"), "{err}");
    }
}

#[test]
fn refuses_group_or_world_writable_directories() {
    let f = fixture();
    fs::set_permissions(f.db.root(), Permissions::from_mode(0o770)).unwrap();
    let err = Database::open_existing(f.db.root()).unwrap_err();
    assert!(matches!(err, DbError::InsecureMode { mode: 0o770, .. }), "{err:?}");
    assert!(err.to_string().contains("is group- or world-writable (mode 0770)"), "{err}");
    assert!(Database::open_or_create(f.db.root()).is_err());

    // A readable root is fine, a world-writable subdirectory is not.
    fs::set_permissions(f.db.root(), Permissions::from_mode(0o755)).unwrap();
    Database::open_existing(f.db.root()).unwrap();
    let pending = f.db.root().join("pending");
    fs::set_permissions(&pending, Permissions::from_mode(0o703)).unwrap();
    let err = Database::open_existing(f.db.root()).unwrap_err();
    assert!(matches!(err, DbError::InsecureMode { ref path, mode: 0o703 } if *path == pending), "{err:?}");
}

#[test]
fn open_existing_requires_the_whole_layout() {
    let f = fixture();
    let missing = f.dir.path().join("nothing");
    let err = Database::open_existing(&missing).unwrap_err();
    assert!(matches!(err, DbError::NotFound { ref path } if *path == missing), "{err:?}");
    assert_eq!(err.to_string(), format!("database directory {} does not exist", missing.display()));
    assert!(!missing.exists(), "open_existing must not create anything");

    fs::remove_dir(f.db.root().join("completed")).unwrap();
    let err = Database::open_existing(f.db.root()).unwrap_err();
    assert!(matches!(err, DbError::NotFound { ref path } if path.ends_with("completed")), "{err:?}");
    // open_or_create repairs it.
    Database::open_or_create(f.db.root()).unwrap();
    Database::open_existing(f.db.root()).unwrap();

    let file = f.dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let err = Database::open_or_create(&file).unwrap_err();
    assert!(matches!(err, DbError::NotADirectory { .. }), "{err:?}");
}

#[test]
fn commit_publishes_dump_and_metadata() {
    let f = fixture();
    let mut dump = f.db.begin_dump().unwrap();
    assert_eq!(dump.path, f.db.root().join(format!("new/{}.dmp", dump.id)));
    dump.file.write_all(b"MDMP and more").unwrap();
    let expected = dump.id;
    let mut m = metadata(42);
    m.dump_size = Some(1); // replaced by the real size
    let id = f.db.commit_dump(dump, &m).unwrap();

    assert_eq!(id, expected);
    assert_eq!(names(&f.db.root().join("new")), Vec::<String>::new());
    assert_eq!(names(&f.db.root().join("pending")), [format!("{id}.dmp"), format!("{id}.json")]);
    let pending = f.db.root().join("pending");
    assert_eq!(fs::read(pending.join(format!("{id}.dmp"))).unwrap(), b"MDMP and more");
    let stored: Metadata = serde_json::from_slice(&fs::read(pending.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(stored, Metadata { id, dump_size: Some(13), ..m });

    let entries = f.db.list().unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!((entry.id, entry.state), (id, ReportState::Pending));
    assert_eq!(entry.dump_path.as_deref(), Some(pending.join(format!("{id}.dmp")).as_path()));
    assert_eq!(entry.report_path, None);
    assert_eq!(entry.read_report().unwrap(), None);
    assert_eq!(entry.metadata.crash.code_name.as_deref(), Some("SEGV_MAPERR"));
}

#[test]
fn abandon_removes_the_partial_dump() {
    let f = fixture();
    let dump = f.db.begin_dump().unwrap();
    let path = dump.path.clone();
    let json = path.with_extension("json");
    assert!(path.exists());
    assert_eq!(fs::read(&json).unwrap(), b"", "begin_dump creates the empty metadata file");
    f.db.abandon_dump(dump).unwrap();
    assert!(!path.exists());
    assert!(!json.exists(), "the empty metadata file goes with the dump");
    assert_eq!(names(&f.db.root().join("new")), Vec::<String>::new());
    assert!(f.db.list().unwrap().is_empty());
}

#[test]
fn sweep_removes_partial_files_and_old_leftovers() {
    let f = fixture();
    let kept = commit(&f.db, b"MDMP", 1);
    let failure = f.db.record_failure(&metadata(2)).unwrap();
    let mut partial = f.db.begin_dump().unwrap();
    partial.file.write_all(b"MD").unwrap();
    drop(partial); // the writer died
    drop(f.db.begin_dump().unwrap());
    // A writer that is still alive (another monitor): its dump must survive.
    let live = f.db.begin_dump().unwrap();
    // A fresh temporary file may be someone's atomic write in progress.
    fs::write(f.db.root().join("new/junk.tmp"), b"x").unwrap();
    // A commit interrupted between metadata and dump.
    let orphan = f.db.root().join(format!("pending/{}.json", ReportId::new_random()));
    fs::write(&orphan, b"{}").unwrap();

    assert_eq!(f.db.sweep_new().unwrap().removed, 2);
    // (begin_dump creates the dump's empty metadata file with it.)
    let mut live_names = vec![format!("{}.dmp", live.id), format!("{}.json", live.id), "junk.tmp".to_owned()];
    live_names.sort();
    assert_eq!(names(&f.db.root().join("new")), live_names);
    drop(live);
    assert!(orphan.exists(), "a fresh orphan may be a commit in progress");

    // Now the writer is gone and the grace period is over: the dump it left,
    // the temporary file and the orphan all go.
    assert_eq!(f.db.sweep(Duration::ZERO).unwrap().removed, 3);
    assert!(!orphan.exists());
    assert_eq!(names(&f.db.root().join("new")), Vec::<String>::new());
    let listed: Vec<ReportId> = f.db.list().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(listed, [failure, kept]);
    assert_eq!(f.db.sweep(Duration::ZERO).unwrap().removed, 0);
}

#[test]
fn transition_moves_all_files() {
    let f = fixture();
    let id = commit(&f.db, b"MDMP", 1);
    f.db.write_report(id, br#"{"frames":[]}"#).unwrap();
    f.db.transition(id, ReportState::Completed).unwrap();

    assert_eq!(names(&f.db.root().join("pending")), Vec::<String>::new());
    assert_eq!(names(&f.db.root().join("new")), Vec::<String>::new());
    assert_eq!(
        names(&f.db.root().join("completed")),
        [format!("{id}.dmp"), format!("{id}.json"), format!("{id}.report.json")]
    );
    let entry = f.db.find(&id.to_string()).unwrap();
    assert_eq!(entry.state, ReportState::Completed);
    assert_eq!(entry.metadata.id, id);
    assert_eq!(entry.read_report().unwrap().unwrap(), br#"{"frames":[]}"#);

    f.db.transition(id, ReportState::Completed).unwrap(); // no-op
    let err = f.db.transition(id, ReportState::New).unwrap_err();
    assert!(matches!(err, DbError::InvalidTransition { from: ReportState::Completed, .. }), "{err:?}");
    f.db.transition(id, ReportState::Failed).unwrap();
    assert_eq!(f.db.list().unwrap()[0].state, ReportState::Failed);
    assert_eq!(names(&f.db.root().join("completed")), Vec::<String>::new());

    let unknown = ReportId::new_random();
    let err = f.db.transition(unknown, ReportState::Completed).unwrap_err();
    assert!(matches!(err, DbError::NoSuchReport { .. }), "{err:?}");
}

#[test]
fn interrupted_transitions_never_show_a_report_twice() {
    let f = fixture();
    let id = commit(&f.db, b"MDMP", 1);
    let pending_json = f.db.root().join(format!("pending/{id}.json"));
    // Crashed after linking the metadata into the targets, before the rename.
    for target in ["completed", "failed"] {
        fs::hard_link(&pending_json, f.db.root().join(format!("{target}/{id}.json"))).unwrap();
    }
    let entries = f.db.list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].id, entries[0].state), (id, ReportState::Pending));

    // Retrying replaces the stale copy.
    f.db.transition(id, ReportState::Failed).unwrap();
    let entries = f.db.list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, ReportState::Failed);
    assert!(entries[0].has_dump());

    assert_eq!(f.db.sweep(Duration::ZERO).unwrap().removed, 1);
    assert_eq!(names(&f.db.root().join("completed")), Vec::<String>::new());
    assert_eq!(f.db.list().unwrap().len(), 1);
}

#[test]
fn list_is_newest_first_and_skips_corrupt_metadata() {
    let f = fixture();
    let old = commit(&f.db, b"MDMP", 100);
    let newest = commit(&f.db, b"MDMP", 300);
    let middle = commit(&f.db, b"MDMP", 200);
    let failure = f.db.record_failure(&metadata(250)).unwrap();
    f.db.transition(middle, ReportState::Completed).unwrap();
    let corrupt = commit(&f.db, b"MDMP", 400);
    fs::write(f.db.root().join(format!("pending/{corrupt}.json")), b"{\"id\": tru").unwrap();
    // Metadata behind a symlink is not followed.
    let linked = commit(&f.db, b"MDMP", 500);
    let json = f.db.root().join(format!("pending/{linked}.json"));
    let elsewhere = f.dir.path().join("elsewhere.json");
    fs::rename(&json, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &json).unwrap();
    // Files that are not reports are ignored.
    fs::write(f.db.root().join("pending/README"), b"hello").unwrap();
    fs::write(f.db.root().join("pending/NOT-A-UUID.dmp"), b"").unwrap();

    let entries = f.db.list().unwrap();
    let listed: Vec<(ReportId, ReportState)> = entries.iter().map(|e| (e.id, e.state)).collect();
    assert_eq!(
        listed,
        [
            (newest, ReportState::Pending),
            (failure, ReportState::Failed),
            (middle, ReportState::Completed),
            (old, ReportState::Pending),
        ]
    );
    let err = f.db.find(&corrupt.to_string()).unwrap_err();
    assert!(matches!(err, DbError::Corrupt { ref path, .. } if path.ends_with(format!("{corrupt}.json"))), "{err:?}");
}

#[test]
fn find_by_id_or_prefix() {
    let f = fixture();
    let a = id("abcd0000-0000-4000-8000-000000000001");
    let b = id("abcd1111-0000-4000-8000-000000000002");
    let c = id("12345678-9abc-4def-8000-000000000003");
    for (n, id) in [a, b, c].into_iter().enumerate() {
        put_pending(&f.db, id, n as u64);
    }

    assert_eq!(f.db.find("abcd0000-0000-4000-8000-000000000001").unwrap().id, a);
    assert_eq!(f.db.find("abcd0000000040008000000000000001").unwrap().id, a);
    assert_eq!(f.db.find("abcd0").unwrap().id, a);
    assert_eq!(f.db.find("ABCD1").unwrap().id, b);
    assert_eq!(f.db.find("12345678-9a").unwrap().id, c);

    let err = f.db.find("abcd").unwrap_err();
    assert!(matches!(err, DbError::AmbiguousId { count: 2, ref query } if query == "abcd"), "{err:?}");
    let err = f.db.find("ffff").unwrap_err();
    assert!(matches!(err, DbError::NoSuchReport { ref query } if query == "ffff"), "{err:?}");
    let err = f.db.find("ffffffff-0000-4000-8000-000000000000").unwrap_err();
    assert!(matches!(err, DbError::NoSuchReport { .. }), "{err:?}");
    for bad in ["abc", "", "../../etc/passwd", "abcz"] {
        let err = f.db.find(bad).unwrap_err();
        assert!(matches!(err, DbError::InvalidQuery { .. }), "{bad:?}: {err:?}");
    }
}

#[test]
fn recorded_failures_are_failed_without_dump() {
    let f = fixture();
    let mut m = metadata(7);
    m.failure = Some("ptrace refused: EPERM".into());
    let id = f.db.record_failure(&m).unwrap();
    assert_ne!(id, m.id, "record_failure allocates the id");

    let entry = f.db.find(&id.to_string()).unwrap();
    assert_eq!(entry.state, ReportState::Failed);
    assert!(!entry.has_dump());
    assert_eq!(entry.dump_path, None);
    assert_eq!(entry.metadata, Metadata { id, ..m });
    assert_eq!(names(&f.db.root().join("failed")), [format!("{id}.json")]);

    let err = f.db.transition(id, ReportState::Completed).unwrap_err();
    assert!(matches!(err, DbError::InvalidTransition { .. }), "{err:?}");
    // sweep must not take it for a leftover.
    assert_eq!(f.db.sweep(Duration::ZERO).unwrap().removed, 0);
    assert_eq!(f.db.list().unwrap().len(), 1);
}

#[test]
fn update_metadata_and_write_report() {
    let f = fixture();
    let id = commit(&f.db, b"MDMP", 1);
    let mut m = f.db.find(&id.to_string()).unwrap().metadata;
    m.upload.attempts = 3;
    m.upload.last_error = Some("HTTP 503".into());
    m.symbolication = Some(SymbolicationStatus::Failed { reason: "no symbols".into() });
    f.db.update_metadata(id, &m).unwrap();
    assert_eq!(f.db.list().unwrap()[0].metadata, m);

    let other = Metadata { id: ReportId::new_random(), ..m.clone() };
    let err = f.db.update_metadata(id, &other).unwrap_err();
    assert!(matches!(err, DbError::IdMismatch { .. }), "{err:?}");
    let err = f.db.update_metadata(other.id, &other).unwrap_err();
    assert!(matches!(err, DbError::NoSuchReport { .. }), "{err:?}");

    let err = f.db.write_report(id, b"not json").unwrap_err();
    assert!(matches!(err, DbError::InvalidReport { .. }), "{err:?}");
    f.db.write_report(id, b"[1]").unwrap();
    f.db.write_report(id, b"[2]").unwrap();
    assert_eq!(f.db.list().unwrap()[0].read_report().unwrap().unwrap(), b"[2]");
    assert_eq!(names(&f.db.root().join("new")), Vec::<String>::new());
}

#[test]
fn settings_round_trip_and_stable_client_id() {
    let f = fixture();
    let settings = f.db.settings().unwrap();
    assert_eq!(settings.schema_version, 1);
    assert!(!settings.uploads_enabled);
    let raw: serde_json::Value = serde_json::from_slice(&fs::read(f.db.root().join("settings.json")).unwrap()).unwrap();
    assert_eq!(raw["client_id"], settings.client_id.to_string());

    let changed = Settings { uploads_enabled: true, ..settings.clone() };
    f.db.write_settings(&changed).unwrap();
    let reopened = Database::open_or_create(f.db.root()).unwrap();
    assert_eq!(reopened.settings().unwrap(), changed);
    assert_eq!(Database::open_existing(f.db.root()).unwrap().settings().unwrap().client_id, settings.client_id);

    let other = Database::open_or_create(&f.dir.path().join("other")).unwrap();
    assert_ne!(other.settings().unwrap().client_id, settings.client_id);
}

#[test]
fn metadata_parses_without_optional_fields() {
    let json = r#"{"id": "abcd0000-0000-4000-8000-000000000001",
                   "captured_at_ms": 5, "pid": 42, "crash": {"kind": "panic"}}"#;
    let m: Metadata = serde_json::from_str(json).unwrap();
    let expected = Metadata::new(id("abcd0000-0000-4000-8000-000000000001"), 5, 42, CrashInfo::new(CrashKind::Panic));
    assert_eq!(m, expected);
    assert_eq!(m.schema_version, 1);
    assert_eq!(m.upload, UploadState::default());

    let mut full = metadata(9);
    full.symbolication = Some(SymbolicationStatus::Failed { reason: "boom".into() });
    full.upload.next_attempt_ms = Some(10);
    let value = serde_json::to_value(&full).unwrap();
    assert_eq!(value["symbolication"], serde_json::json!({"status": "failed", "reason": "boom"}));
    assert_eq!(value["crash"]["kind"], "signal");
    assert_eq!(value["crash"]["signal_name"], "SIGSEGV");
    assert_eq!(value["id"], full.id.to_string());
    assert_eq!(serde_json::from_value::<Metadata>(value).unwrap(), full);
    let ok: SymbolicationStatus = serde_json::from_str(r#"{"status":"ok"}"#).unwrap();
    assert_eq!(ok, SymbolicationStatus::Ok);
}

#[test]
fn ids_states_and_file_names() {
    let uuid = uuid::Uuid::parse_str("ABCD0000-0000-4000-8000-000000000001").unwrap();
    let id = ReportId::from(uuid);
    assert_eq!(id.to_string(), "abcd0000-0000-4000-8000-000000000001");
    assert_eq!(id.as_uuid(), &uuid);
    assert_eq!("abcd0000".parse::<ReportId>().ok(), None);
    assert_ne!(ReportId::new_random(), ReportId::new_random());
    assert_eq!(ReportState::Completed.to_string(), "completed");
    assert_eq!(serde_json::to_string(&ReportState::Failed).unwrap(), r#""failed""#);

    let name = format!("{id}.report.json");
    assert_eq!(FileKind::parse(&name), Some((id, FileKind::Report)));
    assert_eq!(FileKind::parse(&format!("{id}.dmp")), Some((id, FileKind::Dump)));
    for bad in ["ABCD0000-0000-4000-8000-000000000001.dmp", "abcd000000004000800000000000001.json", "../x.json", ".dmp"]
    {
        assert_eq!(FileKind::parse(bad), None, "{bad}");
    }
}

#[test]
fn default_path_prefers_xdg_data_home() {
    let path = |xdg: Option<&str>, home: Option<&str>| default_path_from(xdg.map(Into::into), home.map(Into::into));
    assert_eq!(path(Some("/data"), Some("/home/u")), Some(PathBuf::from("/data/crashmon")));
    assert_eq!(path(None, Some("/home/u")), Some(PathBuf::from("/home/u/.local/share/crashmon")));
    assert_eq!(path(Some("relative"), Some("/home/u")), Some(PathBuf::from("/home/u/.local/share/crashmon")));
    assert_eq!(path(Some(""), None), None);
    assert_eq!(path(None, None), None);
}

#[test]
fn annotations_survive_a_round_trip_through_the_database() {
    let f = fixture();
    let mut m = metadata(1);
    m.annotations = BTreeMap::from([("a".into(), "1".into()), ("b\n".into(), "\"quoted\"".into())]);
    let mut dump = f.db.begin_dump().unwrap();
    dump.file.write_all(b"x").unwrap();
    let id = f.db.commit_dump(dump, &m).unwrap();
    assert_eq!(f.db.find(&id.to_string()[..8]).unwrap().metadata.annotations, m.annotations);
}

/// A sweep running next to a writer (another monitor starting, or this
/// monitor's own background sweep) never deletes a dump being written.
#[test]
fn concurrent_sweeps_never_take_a_live_dump() {
    let f = fixture();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let db = f.db.clone();
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sweeps = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                db.sweep_new().unwrap();
                sweeps += 1;
            }
            sweeps
        })
    };
    for i in 0..100 {
        let mut dump = f.db.begin_dump().unwrap();
        dump.file.write_all(b"MDMP").unwrap();
        f.db.commit_dump(dump, &metadata(i)).expect("commit while another thread sweeps");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(sweeper.join().unwrap() > 0);
    assert_eq!(f.db.list().unwrap().len(), 100);
}

/// The invariant the sweep relies on, checked directly: while its writer is
/// alive, a `.dmp` in new/ can never be locked by anyone else.
#[test]
fn a_live_writers_dump_is_never_lockable() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture();
    let new_dir = f.db.root().join("new");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let stop = std::sync::Arc::clone(&stop);
        let new_dir = new_dir.clone();
        std::thread::spawn(move || {
            let mut violations = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for entry in fs::read_dir(&new_dir).unwrap().flatten() {
                    let path = entry.path();
                    if path.extension().is_none_or(|e| e != "dmp") {
                        continue;
                    }
                    let Ok(file) = fs::File::open(&path) else { continue };
                    if file.try_lock().is_ok() {
                        // Only a violation if the file is still that .dmp
                        // (not abandoned or moved meanwhile).
                        let same = fs::metadata(&path).is_ok_and(|m| m.ino() == file.metadata().unwrap().ino());
                        violations += u32::from(same);
                    }
                }
            }
            violations
        })
    };
    for _ in 0..20_000 {
        let dump = f.db.begin_dump().unwrap();
        f.db.abandon_dump(dump).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(checker.join().unwrap(), 0, "a live writer's dump was lockable");
}

#[test]
fn prune_removes_oldest_first_within_each_limit() {
    let f = fixture();
    // Five reports captured at t = 1..=5 s, 100-byte dumps.
    let ids: Vec<ReportId> = (1..=5).map(|t| commit(&f.db, &[b'M'; 100], t * 1000)).collect();
    let remaining = |db: &Database| -> Vec<ReportId> {
        let mut v: Vec<ReportId> = db.list().unwrap().iter().map(|e| e.id).collect();
        v.sort_by_key(|id| ids.iter().position(|x| x == id));
        v
    };
    // Count: keep the 4 newest.
    let stats = f.db.prune(&Retention { max_count: Some(4), max_bytes: None, max_age: None }, 10_000).unwrap();
    assert_eq!((stats.removed, stats.kept), (1, 4));
    assert_eq!(remaining(&f.db), ids[1..].to_vec());
    // Age: at t = 10 s with a 6.5 s limit, t = 2 and 3 are too old.
    let age = Retention { max_count: None, max_bytes: None, max_age: Some(Duration::from_millis(6_500)) };
    assert_eq!(f.db.prune(&age, 10_000).unwrap().removed, 2);
    assert_eq!(remaining(&f.db), ids[3..].to_vec());
    // Size: one byte less than the two remaining reports use removes the
    // older one.
    let none = Retention { max_count: None, max_bytes: None, max_age: None };
    let total = f.db.prune(&none, 10_000).unwrap().bytes_kept;
    let stats = f.db.prune(&Retention { max_bytes: Some(total - 1), ..none }, 10_000).unwrap();
    assert_eq!(stats.removed, 1);
    assert!(stats.bytes_kept < total && stats.bytes_freed > 100);
    assert_eq!(remaining(&f.db), vec![ids[4]]);
    // Nothing of the pruned reports is left on disk.
    assert_eq!(names(&f.db.root().join("pending")).len(), 2, "{:?}", names(&f.db.root().join("pending")));
}

#[test]
fn prune_skips_a_report_an_uploader_holds() {
    let f = fixture();
    let old = commit(&f.db, b"MDMP", 1_000);
    let _new = commit(&f.db, b"MDMP", 2_000);
    let held = fs::File::open(f.db.root().join(format!("pending/{old}.dmp"))).unwrap();
    held.try_lock().unwrap();
    let stats = f.db.prune(&Retention { max_count: Some(1), max_bytes: None, max_age: None }, 3_000).unwrap();
    assert_eq!((stats.removed, stats.busy, stats.kept), (0, 1, 2), "the newer report is not removed instead");
    drop(held);
    let stats = f.db.prune(&Retention { max_count: Some(1), max_bytes: None, max_age: None }, 3_000).unwrap();
    assert_eq!((stats.removed, stats.busy), (1, 0));
}

#[test]
fn attachments_keep_the_tail_refuse_symlinks_and_fifos_and_go_with_the_report() {
    let f = fixture();
    let db = &f.db;
    let src = f.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let id = commit(db, b"MDMP", 1);
    let log = src.join("app.log");
    fs::write(&log, b"0123456789").unwrap();
    let a = db.store_attachment(id, &log, 4).unwrap();
    assert_eq!((a.name.as_str(), a.size, a.truncated), ("app.log", 4, true));
    let dir = db.attachments_dir(id);
    assert_eq!(fs::read(dir.join("app.log")).unwrap(), b"6789");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("app.log")), 0o600);
    // Same name again: a second copy, not an overwrite.
    let b = db.store_attachment(id, &log, 100).unwrap();
    assert_eq!((b.name.as_str(), b.size, b.truncated), ("1-app.log", 10, false));
    // A symlink (to a secret, say) and a FIFO are refused.
    let secret = src.join("secret");
    fs::write(&secret, b"secret").unwrap();
    std::os::unix::fs::symlink(&secret, src.join("link.log")).unwrap();
    assert!(db.store_attachment(id, &src.join("link.log"), 100).is_err());
    nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    assert!(db.store_attachment(id, &src.join("fifo"), 100).is_err());
    assert_eq!(names(&dir), vec!["1-app.log".to_owned(), "app.log".to_owned()]);
    // Retention removes them with the report.
    db.prune(&Retention { max_count: Some(0), max_bytes: None, max_age: None }, 10).unwrap();
    assert!(!dir.exists());
}

/// A dump made durable whose writer died before publishing it (the monitor
/// killed right after replying to the app): the next sweep publishes it to
/// pending/, exactly once, with its metadata.
#[test]
fn a_durable_dump_whose_writer_died_is_published_once_by_the_sweep() {
    let f = fixture();
    let mut dump = f.db.begin_dump().unwrap();
    dump.file.write_all(b"MDMP and the rest of a dump").unwrap();
    let m = metadata(7);
    let durable = f.db.make_durable(dump, &m).unwrap();
    let id = durable.id;
    assert_eq!(names(&f.db.root().join("new")), [format!("{id}.dmp"), format!("{id}.json")]);
    assert!(f.db.list().unwrap().is_empty(), "not visible before it is published");
    // While the writer lives, a sweep leaves it alone.
    assert_eq!(f.db.sweep(Duration::ZERO).unwrap().removed, 0);
    assert_eq!(names(&f.db.root().join("new")).len(), 2);
    drop(durable); // the writer died

    assert_eq!(f.db.sweep_new().unwrap(), SweepStats { removed: 0, recovered: vec![id] });
    assert_eq!(names(&f.db.root().join("new")), Vec::<String>::new());
    assert_eq!(names(&f.db.root().join("pending")), [format!("{id}.dmp"), format!("{id}.json")]);
    let listed = f.db.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].state, ReportState::Pending);
    assert_eq!(listed[0].metadata.dump_size, Some(27));
    assert_eq!(listed[0].metadata.annotations, m.annotations);
    // Once only.
    assert_eq!(f.db.sweep(Duration::ZERO).unwrap().removed, 0);
    assert_eq!(f.db.list().unwrap().len(), 1);
}

/// Killed between the two renames of `publish`: the metadata is in
/// pending/, the dump still in new/. The sweep finishes the move.
#[test]
fn a_publish_interrupted_between_its_renames_is_finished_by_the_sweep() {
    let f = fixture();
    let mut dump = f.db.begin_dump().unwrap();
    dump.file.write_all(b"MDMP").unwrap();
    let durable = f.db.make_durable(dump, &metadata(1)).unwrap();
    let id = durable.id;
    let root = f.db.root();
    fs::rename(root.join(format!("new/{id}.json")), root.join(format!("pending/{id}.json"))).unwrap();
    drop(durable);
    assert!(f.db.list().unwrap().is_empty());
    f.db.sweep_new().unwrap();
    assert_eq!(names(&root.join("pending")), [format!("{id}.dmp"), format!("{id}.json")]);
    assert_eq!(f.db.list().unwrap().len(), 1);
}

/// A dump in new/ without usable metadata is partial, whatever else it
/// looks like: no metadata, metadata cut short, metadata of another size,
/// no minidump signature. All are removed, none published.
#[test]
fn incomplete_dumps_in_new_are_removed_not_published() {
    let f = fixture();
    let root = f.db.root().to_path_buf();
    let durable_with = |bytes: &[u8]| {
        let mut dump = f.db.begin_dump().unwrap();
        dump.file.write_all(bytes).unwrap();
        f.db.make_durable(dump, &metadata(1)).unwrap()
    };
    // Metadata cut short.
    let a = durable_with(b"MDMP");
    let json = root.join(format!("new/{}.json", a.id));
    let text = fs::read(&json).unwrap();
    fs::write(&json, &text[..text.len() / 2]).unwrap();
    // The dump grew after its metadata was written (not what was made durable).
    let b = durable_with(b"MDMP");
    fs::OpenOptions::new().append(true).open(root.join(format!("new/{}.dmp", b.id))).unwrap().write_all(b"x").unwrap();
    // Not a minidump.
    let c = durable_with(b"ELF!");
    // No metadata at all: the writer died while writing the dump.
    let mut d = f.db.begin_dump().unwrap();
    d.file.write_all(b"MDMP").unwrap();
    drop((a, b, c, d));

    assert_eq!(f.db.sweep(Duration::ZERO).unwrap().removed, 4);
    assert_eq!(names(&root.join("new")), Vec::<String>::new());
    assert_eq!(names(&root.join("pending")), Vec::<String>::new());
    assert!(f.db.list().unwrap().is_empty());
}

/// Several monitors starting at once sweep the same orphans: every
/// complete dump is published exactly once.
#[test]
fn concurrent_sweeps_publish_each_orphan_once() {
    let f = fixture();
    let mut ids = Vec::new();
    for i in 0..50 {
        let mut dump = f.db.begin_dump().unwrap();
        dump.file.write_all(b"MDMP").unwrap();
        ids.push(f.db.make_durable(dump, &metadata(i)).unwrap().id); // dropped: writer gone
    }
    let mut recovered: Vec<ReportId> = std::thread::scope(|s| {
        let sweepers: Vec<_> = (0..4).map(|_| s.spawn(|| f.db.sweep_new().unwrap())).collect();
        sweepers.into_iter().flat_map(|h| h.join().unwrap().recovered).collect()
    });
    recovered.sort();
    let mut listed: Vec<ReportId> = f.db.list().unwrap().iter().map(|e| e.id).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
    assert_eq!(recovered, ids, "each orphan reported recovered by exactly one sweep");
    assert_eq!(names(&f.db.root().join("new")), Vec::<String>::new());
    assert_eq!(names(&f.db.root().join("pending")).len(), 100);
}

/// A dump whose completeness cannot be told (its metadata cannot be read:
/// an I/O error, here EISDIR, which fails even for root) is kept for the
/// next sweep, not deleted; clearly partial dumps next to it still go,
/// with their attachments.
#[test]
fn a_dump_whose_metadata_cannot_be_read_is_kept() {
    let f = fixture();
    let root = f.db.root().to_path_buf();
    let src = f.dir.path().join("app.log");
    fs::write(&src, b"log").unwrap();
    // Unknown: new/<id>.json is a directory.
    let mut unreadable = f.db.begin_dump().unwrap();
    unreadable.file.write_all(b"MDMP").unwrap();
    let unreadable_id = unreadable.id;
    fs::remove_file(root.join(format!("new/{unreadable_id}.json"))).unwrap();
    fs::create_dir(root.join(format!("new/{unreadable_id}.json"))).unwrap();
    f.db.store_attachment(unreadable_id, &src, 100).unwrap();
    // Unknown too: no metadata in new/, but pending/<id>.json unreadable.
    let mut moved = f.db.begin_dump().unwrap();
    moved.file.write_all(b"MDMP").unwrap();
    let moved_id = moved.id;
    fs::remove_file(root.join(format!("new/{moved_id}.json"))).unwrap();
    fs::create_dir(root.join(format!("pending/{moved_id}.json"))).unwrap();
    // Partial: no metadata at all.
    let mut partial = f.db.begin_dump().unwrap();
    partial.file.write_all(b"MDMP").unwrap();
    let partial_id = partial.id;
    fs::remove_file(root.join(format!("new/{partial_id}.json"))).unwrap();
    f.db.store_attachment(partial_id, &src, 100).unwrap();
    // Partial: metadata of another id.
    let mut other = f.db.begin_dump().unwrap();
    other.file.write_all(b"MDMP").unwrap();
    let other_id = other.id;
    let m = Metadata { dump_size: Some(4), ..metadata(1) };
    fs::write(root.join(format!("new/{other_id}.json")), serde_json::to_vec(&m).unwrap()).unwrap();
    f.db.store_attachment(other_id, &src, 100).unwrap();
    // Partial: too short for a signature.
    let mut short = f.db.begin_dump().unwrap();
    short.file.write_all(b"MD").unwrap();
    drop((unreadable, moved, partial, other, short)); // the writers died

    let stats = f.db.sweep(Duration::ZERO).unwrap();
    assert_eq!(stats, SweepStats { removed: 3, recovered: vec![] });
    let mut kept = vec![format!("{unreadable_id}.dmp"), format!("{unreadable_id}.json"), format!("{moved_id}.dmp")];
    kept.sort();
    assert_eq!(names(&root.join("new")), kept);
    assert!(root.join(format!("new/{unreadable_id}.json")).is_dir());
    assert!(root.join(format!("pending/{moved_id}.json")).is_dir());
    assert!(f.db.attachments_dir(unreadable_id).exists(), "a kept dump keeps its attachments");
    assert!(!f.db.attachments_dir(partial_id).exists(), "a removed dump's attachments go with it");
    assert!(!f.db.attachments_dir(other_id).exists());
    assert!(f.db.list().unwrap().is_empty());

    // Once the metadata is readable and complete, the next sweep publishes it.
    fs::remove_dir(root.join(format!("new/{unreadable_id}.json"))).unwrap();
    let m = Metadata { id: unreadable_id, dump_size: Some(4), ..metadata(1) };
    fs::write(root.join(format!("new/{unreadable_id}.json")), serde_json::to_vec(&m).unwrap()).unwrap();
    let stats = f.db.sweep(Duration::ZERO).unwrap();
    assert_eq!(stats.recovered, vec![unreadable_id]);
    assert_eq!(f.db.list().unwrap().len(), 1);
    assert!(root.join(format!("new/{moved_id}.dmp")).exists(), "still unknown, still kept");
}

/// Big writes reach the file in pieces of at most `WRITE_CHUNK` bytes, all
/// of them, in order.
#[test]
fn big_writes_go_in_pieces() {
    struct Recorder {
        bytes: Vec<u8>,
        writes: Vec<usize>,
    }
    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.writes.push(buf.len());
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let data: Vec<u8> = (0..3 * WRITE_CHUNK + 5).map(|i| (i % 251) as u8).collect();
    let mut out = Recorder { bytes: Vec::new(), writes: Vec::new() };
    write_in_chunks(&mut out, &data).unwrap();
    assert_eq!(out.bytes, data);
    assert_eq!(out.writes, vec![WRITE_CHUNK, WRITE_CHUNK, WRITE_CHUNK, 5]);
}

/// A spare becomes a dump in progress with two renames; the report it
/// gives is like any other, and nothing of the spare is left.
#[test]
fn a_spare_becomes_a_dump_that_commits_like_any_other() {
    let f = fixture();
    let spare = f.db.make_spare().unwrap();
    let new = f.db.root().join("new");
    let mut spare_names = names(&new);
    spare_names.sort();
    assert_eq!(spare_names.len(), 2, "{spare_names:?}");
    assert!(spare_names.iter().all(|n| n.ends_with(".spare")), "{spare_names:?}");
    assert!(f.db.list().unwrap().is_empty(), "a spare is no report");
    let mut dump = f.db.use_spare(spare).unwrap();
    let mut in_progress = names(&new);
    in_progress.sort();
    assert_eq!(in_progress, vec![format!("{}.dmp", dump.id), format!("{}.json", dump.id)]);
    dump.write(b"MDMP spare").unwrap();
    let id = f.db.commit_dump(dump, &metadata(7)).unwrap();
    assert_eq!(names(&new), Vec::<String>::new());
    let entry = f.db.list().unwrap().into_iter().find(|e| e.metadata.id == id).expect("listed");
    assert_eq!(fs::read(entry.dump_path.unwrap()).unwrap(), b"MDMP spare");
}

/// A sweep leaves a held spare alone (its monitor is alive: another
/// monitor's sweep, or this one's), removes one whose monitor is gone,
/// and discarding a spare removes both its files.
#[test]
fn sweep_keeps_a_held_spare_and_removes_an_abandoned_one() {
    let f = fixture();
    let held = f.db.make_spare().unwrap();
    let gone = f.db.make_spare().unwrap();
    let gone_id = gone.id;
    drop(gone); // its monitor died
    let new = f.db.root().join("new");
    assert_eq!(names(&new).len(), 4);
    let swept = f.db.sweep_new().unwrap();
    let left = names(&new);
    assert!(left.iter().all(|n| n.starts_with(&held.id.to_string())), "{left:?}");
    assert_eq!(left.len(), 2, "the held spare and its metadata: {left:?}");
    assert!(swept.removed >= 1, "the abandoned spare's dump file went");
    assert!(!left.iter().any(|n| n.starts_with(&gone_id.to_string())), "{left:?}");
    f.db.discard_spare(held).unwrap();
    assert_eq!(names(&new), Vec::<String>::new());
}

/// A spare whose files someone removed cannot be used: the error says so
/// and nothing is left behind.
#[test]
fn a_spare_removed_under_its_owner_gives_an_error_and_no_leftovers() {
    let f = fixture();
    let spare = f.db.make_spare().unwrap();
    let new = f.db.root().join("new");
    for n in names(&new) {
        fs::remove_file(new.join(n)).unwrap();
    }
    let err = f.db.use_spare(spare).unwrap_err().to_string();
    assert!(err.contains("name"), "{err}");
    assert_eq!(names(&new), Vec::<String>::new());
}
