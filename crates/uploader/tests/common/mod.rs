//! Shared helpers of the uploader's integration tests: a real minidump of a
//! real process carrying secrets, temporary databases, options.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crashmon_database::{CrashInfo, Database, Metadata, ReportId, ReportState};
use crashmon_uploader::{ManualClock, UploadOptions, set_consent};

/// Secrets the dumped process carries.
pub const ENV_SECRET: &str = "hunter2secret";
pub const ARG_SECRET: &str = "opensesame";
pub const SPLIT_ARG_SECRET: &str = "tok3nvalue";

/// A start time for manual clocks.
pub const T0: u64 = 1_700_000_000_000;

/// A real minidump of a live `sh` started with `API_TOKEN=hunter2secret`
/// in its environment and `--password=opensesame --token tok3nvalue` on its
/// command line. Made once per test binary.
pub fn real_dump() -> &'static [u8] {
    static DUMP: OnceLock<Vec<u8>> = OnceLock::new();
    DUMP.get_or_init(|| {
        // `read` blocks on the piped stdin; killing sh leaves no child behind.
        let mut child = Command::new("sh")
            .args(["-c", "read x", "sh", &format!("--password={ARG_SECRET}"), "--token", SPLIT_ARG_SECRET])
            .env("API_TOKEN", ENV_SECRET)
            .env("CRASHMON_TEST_PLAIN", "visible-value")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let pid = child.id() as i32;
        // Let it exec and reach `read`.
        let ok = crashmon_test_support::wait_for(Duration::from_secs(5), || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat.rsplit_once(')')?.1.split_whitespace().next()?.to_owned();
            (cmdline.windows(ARG_SECRET.len()).any(|w| w == ARG_SECRET.as_bytes()) && state == "S").then_some(())
        });
        assert!(ok.is_some(), "sh did not start");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sh.dmp");
        let mut file = File::create(&path).unwrap();
        let result = minidump_writer::minidump_writer::MinidumpWriterConfig::new(pid, pid).write(&mut file);
        let _ = child.kill();
        let _ = child.wait();
        result.expect("write minidump");
        drop(file);
        let bytes = std::fs::read(&path).unwrap();
        assert!(contains(&bytes, ENV_SECRET.as_bytes()), "the raw dump should carry the env secret");
        assert!(contains(&bytes, ARG_SECRET.as_bytes()), "the raw dump should carry the arg secret");
        bytes
    })
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A temporary database with consent given.
pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub db: Database,
}

impl TestDb {
    pub fn new() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_or_create(&dir.path().join("db")).unwrap();
        set_consent(&db, true).unwrap();
        TestDb { dir, db }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// Re-opens the database from disk (as a restarted process would).
    pub fn reopen(&self) -> Database {
        Database::open_existing(&self.path()).unwrap()
    }

    /// Commits `dump` as a new pending report with `annotations`.
    pub fn add(&self, dump: &[u8], annotations: &[(&str, &str)]) -> ReportId {
        static CAPTURED: AtomicU64 = AtomicU64::new(T0);
        let mut new = self.db.begin_dump().unwrap();
        new.file.write_all(dump).unwrap();
        let mut metadata = Metadata::new(
            new.id,
            CAPTURED.fetch_add(1000, Ordering::SeqCst),
            4242,
            CrashInfo::from_signal(11, 1, Some(0x10), Some(4242)),
        );
        metadata.exe = Some(PathBuf::from("/usr/bin/demo-app"));
        metadata.annotations =
            annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        self.db.commit_dump(new, &metadata).unwrap()
    }

    /// Adds a report with the real dump.
    pub fn add_real(&self) -> ReportId {
        self.add(real_dump(), &[])
    }

    pub fn state(&self, id: ReportId) -> ReportState {
        self.db.find(&id.to_string()).unwrap().state
    }

    pub fn metadata(&self, id: ReportId) -> Metadata {
        self.db.find(&id.to_string()).unwrap().metadata
    }

    pub fn root(&self) -> &Path {
        self.db.root()
    }
}

/// Options for loopback tests: no proxy from the environment, short
/// timeout, fixed seed.
pub fn opts() -> UploadOptions {
    let mut o = UploadOptions::default();
    o.use_env_proxy = false;
    o.timeout = Duration::from_secs(5);
    o.rng_seed = Some(7);
    o
}

pub fn clock() -> ManualClock {
    ManualClock::new(T0)
}

/// Checks that `bytes` is a minidump the `minidump` crate reads, with the
/// thread list, module list and system info, and returns its environ
/// stream.
pub fn assert_parses(bytes: &[u8]) -> Vec<u8> {
    let dump = minidump::Minidump::read(bytes).expect("uploaded dump parses");
    let threads = dump.get_stream::<minidump::MinidumpThreadList<'_>>().expect("thread list");
    assert!(!threads.threads.is_empty());
    dump.get_stream::<minidump::MinidumpModuleList>().expect("module list");
    dump.get_stream::<minidump::MinidumpSystemInfo>().expect("system info");
    dump.get_raw_stream(0x4767_0007).expect("environ stream").to_vec()
}
