//! The spine, end to end: a real crasher process with the handler, a real
//! monitor process, a real minidump parsed by the `minidump` crate, the
//! symbolicated report read back through `crashmon show --json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crashmon_test_support::{Ready, bin, death_signal, line_of, read_ready, wait_for, wait_timeout, workspace_root};
use minidump::{
    CrashReason, Minidump, MinidumpException, MinidumpModuleList, MinidumpSystemInfo, MinidumpThreadList, Module,
};

fn crasher(db: &Path, args: &[&str]) -> (Child, Ready) {
    let mut child = Command::new(bin("crasher"))
        .args(args)
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn crasher");
    let ready = read_ready(&mut child, Duration::from_secs(10)).expect("crasher did not report ready within 10 s");
    (child, ready)
}

/// The single `.dmp` in `pending/`, waiting up to 5 s.
fn pending_dump(db: &Path) -> PathBuf {
    crashmon_test_support::one_pending_dump(db, Duration::from_secs(5))
}

fn assert_segv_dump(dump: &Path, ready: Ready) {
    let md = Minidump::read_path(dump).expect("the dump parses");
    let sys: MinidumpSystemInfo = md.get_stream().expect("system info stream");
    let exc: MinidumpException<'_> = md.get_stream().expect("exception stream");
    let reason = exc.get_crash_reason(sys.os, sys.cpu);
    assert!(matches!(reason, CrashReason::LinuxSigsegv(_)), "{reason:?}");
    assert_eq!(reason.to_string(), "SIGSEGV / SEGV_MAPERR");
    assert_eq!(exc.get_crash_address(sys.os, sys.cpu), crashmon_demo::trigger::SEGV_ADDRESS as u64);
    assert_eq!(exc.get_crashing_thread_id(), ready.tid as u32);
    let threads: MinidumpThreadList<'_> = md.get_stream().expect("thread list stream");
    assert!(threads.threads.iter().any(|t| t.raw.thread_id == ready.tid as u32), "crashing thread listed");
    let modules: MinidumpModuleList = md.get_stream().expect("module list stream");
    assert!(modules.iter().any(|m| m.code_file().ends_with("/crasher")), "the crasher is in the module list");
}

fn show_json(db: &Path, id: &str) -> serde_json::Value {
    let out = Command::new(bin("crashmon"))
        .args(["show", "--json", id])
        .env("CRASHMON_DATABASE", db)
        .output()
        .expect("crashmon show");
    assert!(out.status.success(), "crashmon show failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("show --json prints JSON")
}

fn wait_symbolicated(db: &Path, dump: &Path) -> serde_json::Value {
    let id = dump.file_stem().unwrap().to_str().unwrap().to_owned();
    wait_for(Duration::from_secs(90), || {
        let doc = show_json(db, &id);
        (!doc["report"].is_null()).then_some(doc)
    })
    .expect("report symbolicated within 90 s")
}

fn assert_report_names_crash_site(doc: &serde_json::Value, ready: Ready) {
    let report = &doc["report"];
    assert_eq!(report["crash"]["reason"], "SIGSEGV / SEGV_MAPERR", "{report:#}");
    assert_eq!(report["crash"]["address"], crashmon_demo::trigger::SEGV_ADDRESS as u64);
    let idx = report["crashing_thread"].as_u64().expect("crashing thread index") as usize;
    let thread = &report["threads"][idx];
    assert_eq!(thread["tid"], ready.tid);
    // The first frame outside the standard library (in a debug build
    // `core::ptr::write_volatile` is a real frame above it).
    let top = thread["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| !f["function"].as_str().unwrap_or("").starts_with("core::"))
        .expect("a non-core frame");
    assert_eq!(top["function"], "crashmon_demo::trigger::segv", "{thread:#}");
    let trigger_rs = workspace_root().join("crates/demo/src/trigger.rs");
    assert!(top["file"].as_str().unwrap().ends_with("crates/demo/src/trigger.rs"), "{top:#}");
    assert_eq!(top["line"], line_of(&trigger_rs, "write_volatile(p, 42)"), "{top:#}");
    // The callers are there too, with their lines.
    let lib_rs = workspace_root().join("crates/demo/src/lib.rs");
    let frames = thread["frames"].as_array().unwrap();
    let crash_call = frames
        .iter()
        .find(|f| f["function"] == "crashmon_demo::crash")
        .unwrap_or_else(|| panic!("crashmon_demo::crash in {thread:#}"));
    assert_eq!(crash_call["line"], line_of(&lib_rs, "Kind::Segv => trigger::segv()"));
    assert!(frames.iter().any(|f| f["function"] == "crasher::main"), "{thread:#}");
    assert!(report["signature"].as_str().unwrap().contains("crashmon_demo::trigger::segv"), "{report:#}");
    assert_eq!(doc["metadata"]["crash"]["signal_name"], "SIGSEGV");
    assert_eq!(doc["metadata"]["pid"], ready.pid);
}

#[test]
fn segv_on_main_thread_with_sidecar_monitor() {
    let db = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut child, ready) = crasher(db.path(), &["--crash", "segv"]);
    assert_eq!(ready.tid, ready.pid, "the crash happens on the main thread");
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("crasher died within 10 s");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    // The dump is durable before the app dies: it must already be there.
    let dump = pending_dump(db.path());
    eprintln!("crash to death: {:?}", started.elapsed());
    assert_segv_dump(&dump, ready);
    let doc = wait_symbolicated(db.path(), &dump);
    assert_report_names_crash_site(&doc, ready);
    // A spare made while the crash began, and the symbolication's
    // temporary files, go soon after; nothing stays.
    let new = db.path().join("new");
    wait_for(Duration::from_secs(10), || std::fs::read_dir(&new).unwrap().next().is_none().then_some(()))
        .unwrap_or_else(|| panic!("nothing left in new/: {:?}", std::fs::read_dir(&new).unwrap().collect::<Vec<_>>()));
}

/// A shared monitor on a socket path serves the app just the same.
#[test]
fn segv_with_shared_monitor_socket() {
    let db = tempfile::tempdir().unwrap();
    let sock = db.path().join("run/monitor.sock");
    let mut monitor = crashmon_test_support::KillOnDrop(
        Command::new(bin("crashmon"))
            .args(["monitor", "--socket"])
            .arg(&sock)
            .env("CRASHMON_DATABASE", db.path().join("db"))
            .spawn()
            .expect("spawn monitor"),
    );
    wait_for(Duration::from_secs(10), || sock.exists().then_some(())).expect("monitor socket within 10 s");
    let (mut child, ready) = crasher(&db.path().join("db"), &["--crash", "segv", "--socket", sock.to_str().unwrap()]);
    assert_eq!(ready.monitor as u32, monitor.0.id());
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("crasher died within 10 s");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV));
    let dump = pending_dump(&db.path().join("db"));
    assert_segv_dump(&dump, ready);
    let doc = wait_symbolicated(&db.path().join("db"), &dump);
    assert_report_names_crash_site(&doc, ready);
    // The monitor is still serving after the crash.
    assert!(monitor.0.try_wait().unwrap().is_none(), "monitor still running");
}

/// RELIABILITY B1: the monitor is gone before the crash; the app still dies by
/// its own signal, promptly, and not by SIGPIPE.
#[test]
fn app_dies_by_own_signal_when_monitor_was_killed() {
    let db = tempfile::tempdir().unwrap();
    let (mut child, ready) = crasher(db.path(), &["--crash", "segv", "--wait-stdin"]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(ready.monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(5), || (!crashmon_test_support::process_alive(ready.monitor)).then_some(()))
        .expect("monitor gone");
    let started = Instant::now();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(2)).expect("app died within 2 s");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // install() does not wait for the sidecar, so it may have been killed
    // before it even created the database: no pending/ is no dump too.
    let pending = std::fs::read_dir(db.path().join("pending"));
    assert!(pending.map_or(true, |mut d| d.next().is_none()), "no dump without a monitor");
}

/// RELIABILITY B3 (spine part): a stopped monitor cannot hold the app: it
/// dies by its own signal within the reply timeout + 2 s.
#[test]
fn app_dies_within_timeout_when_monitor_is_stopped() {
    let db = tempfile::tempdir().unwrap();
    let (mut child, ready) = crasher(db.path(), &["--crash", "abort", "--wait-stdin", "--reply-timeout-ms", "500"]);
    let monitor = nix::unistd::Pid::from_raw(ready.monitor);
    nix::sys::signal::kill(monitor, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = Instant::now();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = wait_timeout(&mut child, Duration::from_millis(2_500)).expect("app died within timeout + 2 s");
    assert_eq!(death_signal(&status), Some(libc::SIGABRT), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(450), "it did wait for the monitor first");
    let _ = nix::sys::signal::kill(monitor, nix::sys::signal::Signal::SIGKILL);
}

/// `crashmon list --group`: reports grouped by crash signature, with counts.
#[test]
fn list_groups_reports_by_signature() {
    let db = tempfile::tempdir().unwrap();
    for kind in ["segv", "segv", "abort"] {
        let (mut child, _) = crasher(db.path(), &["--crash", kind]);
        wait_timeout(&mut child, Duration::from_secs(10)).expect("crasher died");
    }
    // Wait until all three are symbolicated.
    wait_for(Duration::from_secs(90), || {
        let n = std::fs::read_dir(db.path().join("pending"))
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".report.json"))
            .count();
        (n == 3).then_some(())
    })
    .expect("three symbolicated reports");
    let out = Command::new(bin("crashmon"))
        .args(["list", "--group", "--json"])
        .env("CRASHMON_DATABASE", db.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let groups = doc["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{doc:#}");
    assert_eq!(groups[0]["count"], 2);
    assert!(groups[0]["signature"].as_str().unwrap().contains("crashmon_demo::trigger::segv"), "{doc:#}");
    assert_eq!(groups[1]["count"], 1);
    assert!(groups[1]["signature"].as_str().unwrap().contains("crashmon_demo::trigger::abort"), "{doc:#}");
    assert!(groups[0]["first_seen_ms"].as_u64() <= groups[0]["last_seen_ms"].as_u64());
}

/// `crashmon prune --max-count`: real reports, the oldest go first.
#[test]
fn prune_keeps_the_newest_reports() {
    let db = tempfile::tempdir().unwrap();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let (mut child, ready) = crasher(db.path(), &["--crash", "abort"]);
        wait_timeout(&mut child, Duration::from_secs(10)).expect("crasher died");
        pids.push(ready.pid);
        // Distinct capture times.
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for(Duration::from_secs(10), || {
        (crashmon_test_support::files_with_ext(&db.path().join("pending"), "dmp").len() == 3).then_some(())
    })
    .expect("three reports");
    let out = Command::new(bin("crashmon"))
        .args(["prune", "--max-count", "1", "--json"])
        .env("CRASHMON_DATABASE", db.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["result"]["removed"].as_u64().unwrap() + doc["result"]["busy"].as_u64().unwrap(), 2, "{doc}");
    let dumps = crashmon_test_support::files_with_ext(&db.path().join("pending"), "dmp");
    let remaining: Vec<i64> = dumps
        .iter()
        .map(|d| {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.with_extension("json")).unwrap()).unwrap();
            m["pid"].as_i64().unwrap()
        })
        .collect();
    assert!(remaining.contains(&i64::from(pids[2])), "the newest report is kept: {remaining:?} of {pids:?}");
}
