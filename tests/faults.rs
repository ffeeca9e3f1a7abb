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
    let ready = read_ready(&mut child, Duration::from_secs(10)).expect("crasher ready");
    let started = Instant::now();
    let status = wait_timeout(&mut child, Duration::from_secs(15)).expect("app terminated within 15 s");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "died by its own signal: {status:?}");
    let took = started.elapsed();
    if fault.is_some() {
        // A sidecar told to die may still be dying (and holding the dump's
        // lock) when its app is gone; what follows needs it gone.
        wait_for(Duration::from_secs(15), || (!crashmon_test_support::process_alive(ready.monitor)).then_some(()))
            .expect("the faulty sidecar is gone");
    }
    took
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

/// B6: killed once the dump is durable in new/ (dump and metadata fsynced),
/// before the reply: the app, seeing the connection close, dies by its own
/// signal at once; the dump is not published by the dead monitor, but it is
/// complete, and the next monitor's sweep publishes it (the crash is not
/// lost).
#[test]
fn monitor_dies_before_reply() {
    let db = tempfile::tempdir().unwrap();
    let took = crash(db.path(), Some("die-before-reply"));
    assert!(took < Duration::from_secs(5), "the app noticed the monitor's death: {took:?}");
    assert!(files_with_ext(&db.path().join("pending"), "dmp").is_empty(), "published only after the reply");
    let durable = files_with_ext(&db.path().join("new"), "dmp");
    assert_eq!(durable.len(), 1, "the durable dump is in new/");
    assert_eq!(files_with_ext(&db.path().join("new"), "json").len(), 1, "with its metadata");
    assert_parses(&durable[0]);
    next_crash_sweeps_and_works(db.path(), 0);
    // The next sidecar's sweep published the first crash's dump too.
    let pending = wait_for(Duration::from_secs(60), || {
        let p = files_with_ext(&db.path().join("pending"), "dmp");
        (p.len() == 2).then_some(p)
    })
    .expect("both crashes in pending/");
    for p in &pending {
        assert_parses(p);
    }
}

/// Start a shared monitor on `db` (it sweeps the database first), wait
/// until it listens, and stop it.
fn start_and_stop_a_monitor(db: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("monitor.sock");
    let child = Command::new(bin("crashmon"))
        .args(["monitor", "--socket"])
        .arg(&sock)
        .env("CRASHMON_DATABASE", db)
        .env_remove("CRASHMON_FAULT_INJECT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn crashmon monitor");
    let _monitor = crashmon_test_support::KillOnDrop(child);
    // The socket is bound after the sweep.
    wait_for(Duration::from_secs(10), || sock.exists().then_some(())).expect("the monitor listens");
}

/// The publish step is off the reply path: the monitor replies once the
/// dump and its metadata are durable in new/, then moves them to pending/
/// while the app dies. Killed right after the reply, it leaves a complete
/// report in new/; the next monitor start publishes exactly one report
/// (and a second start publishes nothing more).
#[test]
fn monitor_dies_after_reply_next_start_publishes_exactly_once() {
    let db = tempfile::tempdir().unwrap();
    let took = crash(db.path(), Some("die-after-reply"));
    assert!(took < Duration::from_secs(5), "the app got its reply: {took:?}");
    let new = db.path().join("new");
    assert!(files_with_ext(&db.path().join("pending"), "dmp").is_empty(), "killed before publishing");
    assert_eq!(files_with_ext(&new, "dmp").len(), 1, "the dump is in new/: {:?}", std::fs::read_dir(&new));
    assert_eq!(files_with_ext(&new, "json").len(), 1, "with its metadata");

    start_and_stop_a_monitor(db.path());
    let pending = files_with_ext(&db.path().join("pending"), "dmp");
    assert_eq!(pending.len(), 1, "published exactly once");
    assert_parses(&pending[0]);
    assert!(files_with_ext(&new, "dmp").is_empty() && files_with_ext(&new, "json").is_empty(), "new/ is empty");
    let entries = crashmon_database::Database::open_existing(db.path()).unwrap().list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, crashmon_database::ReportState::Pending);
    assert_eq!(entries[0].metadata.crash.signal, Some(libc::SIGSEGV));
    assert_eq!(entries[0].metadata.dump_size, std::fs::metadata(&pending[0]).ok().map(|m| m.len()));

    start_and_stop_a_monitor(db.path());
    assert_eq!(files_with_ext(&db.path().join("pending"), "dmp"), pending, "still exactly one report");
}

/// A report recovered from new/ by the sweep (its monitor died after the
/// reply) goes through post-processing like any other: the next monitor
/// symbolicates it (a `.report.json` appears, naming the crash), once.
#[test]
fn recovered_report_is_post_processed_by_the_next_monitor() {
    let db = tempfile::tempdir().unwrap();
    crash(db.path(), Some("die-after-reply"));
    assert_eq!(files_with_ext(&db.path().join("new"), "dmp").len(), 1, "left in new/");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("monitor.sock");
    let log = dir.path().join("monitor.log");
    let child = Command::new(bin("crashmon"))
        .args(["monitor", "--socket"])
        .arg(&sock)
        .env("CRASHMON_DATABASE", db.path())
        .env("CRASHMON_LOG", "info")
        .env_remove("CRASHMON_FAULT_INJECT")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn crashmon monitor");
    let _monitor = crashmon_test_support::KillOnDrop(child);
    let reports = wait_for(Duration::from_secs(60), || {
        let r: Vec<_> = files_with_ext(&db.path().join("pending"), "json")
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".report.json"))
            .collect();
        (!r.is_empty()).then_some(r)
    })
    .unwrap_or_else(|| panic!("no report written: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    assert_eq!(reports.len(), 1);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&reports[0]).unwrap()).unwrap();
    assert_eq!(report["crash"]["signal"], "SIGSEGV", "{:#}", report["crash"]);
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("post-processing a report recovered from new/").count(), 1, "{log}");
}
