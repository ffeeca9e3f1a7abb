//! RELIABILITY B2 and B6: the monitor dies at the worst moments. The app
//! still dies by its own signal, nothing unparseable reaches pending/, a
//! published dump survives, and partial files are swept at the next start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crashmon_test_support::{bin, death_signal, files_with_ext, read_ready, wait_for, wait_timeout};

/// Run the crasher (segv) with the sidecar monitor; `fault` is injected into
/// the monitor. Returns how long the app took to die.
fn crash(db: &Path, fault: Option<&str>) -> Duration {
    let mut cmd = Command::new(bin("crasher"));
    cmd.args(["--crash", "segv"])
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .stdout(Stdio::piped());
    match fault {
        Some(f) => cmd.env("CRASHMON_FAULT_INJECT", f),
        None => cmd.env_remove("CRASHMON_FAULT_INJECT"),
    };
    let mut child = cmd.spawn().expect("spawn crasher");
    read_ready(&mut child, Duration::from_secs(10)).expect("crasher ready");
    let started = Instant::now();
    let status = wait_timeout(&mut child, Duration::from_secs(15)).expect("app terminated within 15 s");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "died by its own signal: {status:?}");
    started.elapsed()
}

fn assert_parses(dump: &Path) {
    let md = minidump::Minidump::read_path(dump).expect("dump parses");
    let _: minidump::MinidumpException<'_> = md.get_stream().expect("exception stream");
    let _: minidump::MinidumpThreadList<'_> = md.get_stream().expect("thread list");
    let _: minidump::MinidumpModuleList = md.get_stream().expect("module list");
    let _: minidump::MinidumpSystemInfo = md.get_stream().expect("system info");
}

/// The next monitor start sweeps what a dead monitor left in new/, and the
/// next crash is captured normally.
fn next_crash_sweeps_and_works(db: &Path, pending_before: usize) {
    crash(db, None);
    let pending = wait_for(Duration::from_secs(5), || {
        let p = files_with_ext(&db.join("pending"), "dmp");
        (p.len() == pending_before + 1).then_some(p)
    })
    .expect("the next crash is dumped");
    for p in &pending {
        assert_parses(p);
    }
    // A sidecar sweeps once its app is served (after symbolication).
    wait_for(Duration::from_secs(60), || files_with_ext(&db.join("new"), "dmp").is_empty().then_some(()))
        .expect("partial dump swept from new/");
}

/// B2: the monitor dies while the app is stopped for its dump.
#[test]
fn monitor_dies_mid_dump() {
    let db = tempfile::tempdir().unwrap();
    let took = crash(db.path(), Some("die-mid-dump"));
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(files_with_ext(&db.path().join("pending"), "dmp").is_empty(), "no dump published");
    assert_eq!(files_with_ext(&db.path().join("new"), "dmp").len(), 1, "the partial dump is left in new/");
    next_crash_sweeps_and_works(db.path(), 0);
}

/// B6: killed after the dump is written, before it is published.
#[test]
fn monitor_dies_before_publish() {
    let db = tempfile::tempdir().unwrap();
    crash(db.path(), Some("die-before-publish"));
    assert!(files_with_ext(&db.path().join("pending"), "dmp").is_empty(), "nothing unpublished in pending/");
    assert!(files_with_ext(&db.path().join("pending"), "json").is_empty());
    next_crash_sweeps_and_works(db.path(), 0);
}

/// B6: killed after publishing, before the reply: the dump survives and the
/// app, seeing the connection close, dies by its own signal at once.
#[test]
fn monitor_dies_before_reply() {
    let db = tempfile::tempdir().unwrap();
    let took = crash(db.path(), Some("die-before-reply"));
    assert!(took < Duration::from_secs(5), "the app noticed the monitor's death: {took:?}");
    let pending = files_with_ext(&db.path().join("pending"), "dmp");
    assert_eq!(pending.len(), 1, "the published dump survives");
    assert_parses(&pending[0]);
    next_crash_sweeps_and_works(db.path(), 1);
}
