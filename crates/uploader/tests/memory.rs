//! Memory stays bounded whatever the dump's size: a 100 MB (sparse) dump is
//! uploaded by a child process whose peak RSS is then checked. (A proper
//! RSS benchmark with larger dumps belongs to the benchmark suite.)

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use crashmon_database::{Database, ReportId, ReportState};
use crashmon_test_support::receiver::Receiver;
use crashmon_uploader::{Target, upload_report};

const CHILD_DB: &str = "CRASHMON_UPLOADER_MEM_CHILD_DB";
const CHILD_URL: &str = "CRASHMON_UPLOADER_MEM_CHILD_URL";
const CHILD_ID: &str = "CRASHMON_UPLOADER_MEM_CHILD_ID";
const CHILD_COMPRESS: &str = "CRASHMON_UPLOADER_MEM_CHILD_COMPRESS";

const DUMP_SIZE: u64 = 100 << 20;
/// Far below the dump's size; the test binary itself needs a few MiB.
const MAX_RSS_KIB: i64 = 48 << 10;

/// The upload, run in a child process by the test below.
#[test]
fn memory_child() {
    let Some(db) = std::env::var_os(CHILD_DB) else { return };
    let db = Database::open_existing(Path::new(&db)).unwrap();
    let url = std::env::var(CHILD_URL).unwrap();
    let id: ReportId = std::env::var(CHILD_ID).unwrap().parse().unwrap();
    let mut o = opts();
    o.timeout = Duration::from_secs(60);
    o.compress = std::env::var(CHILD_COMPRESS).is_ok();
    let before = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap().max_rss();
    let outcome = upload_report(&db, id, &Target::parse(&url).unwrap(), &o, &clock()).unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    let after = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap().max_rss();
    println!("\nmaxrss_kib before={before} after={after}");
}

fn sparse_report(t: &TestDb) -> ReportId {
    let mut new = t.db.begin_dump().unwrap();
    std::io::Write::write_all(&mut new.file, real_dump()).unwrap();
    new.file.set_len(DUMP_SIZE).unwrap();
    let metadata = crashmon_database::Metadata::new(
        new.id,
        T0,
        1,
        crashmon_database::CrashInfo::new(crashmon_database::CrashKind::Requested),
    );
    t.db.commit_dump(new, &metadata).unwrap()
}

#[test]
fn a_100mb_dump_is_streamed_in_bounded_memory() {
    let t = TestDb::new();
    let receiver = Receiver::builder().record_limit(1 << 20).start();
    for (n, compress) in [false, true].into_iter().enumerate() {
        let id = sparse_report(&t);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "memory_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DB, t.path())
            .env(CHILD_URL, receiver.url("/submit"))
            .env(CHILD_ID, id.to_string())
            .envs(compress.then_some((CHILD_COMPRESS, "1")))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let status = crashmon_test_support::wait_timeout(&mut child, Duration::from_secs(60)).expect("child hung");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        assert!(status.success(), "{out}");
        let after: i64 = out
            .lines()
            .find_map(|l| l.strip_prefix("maxrss_kib before="))
            .and_then(|l| l.split_once(" after="))
            .map(|(_, after)| after.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no rss line in {out}"));
        assert!(after < MAX_RSS_KIB, "peak RSS {after} KiB for a {DUMP_SIZE}-byte dump (compress={compress})");
        assert_eq!(t.state(id), ReportState::Completed);
        let requests = receiver.requests();
        let r = &requests[n];
        assert!(r.truncated);
        assert_eq!(r.wire_len, r.header("content-length").unwrap().parse::<u64>().unwrap());
        if compress {
            assert_eq!(r.header("content-encoding"), Some("gzip"));
            assert!(r.wire_len < DUMP_SIZE / 100);
        } else {
            assert!(r.wire_len > DUMP_SIZE);
        }
        eprintln!("compress={compress}: peak RSS {after} KiB, {} bytes on the wire", r.wire_len);
    }
}
