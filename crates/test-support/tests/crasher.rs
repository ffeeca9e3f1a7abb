//! The crasher itself: without a monitor it refuses to run (exit 1, one
//! clear line), so a test can never mistake "no handler" for "crashed".

use std::process::Command;

#[test]
fn crasher_without_monitor_reports_install_error() {
    let out = Command::new(crashmon_test_support::bin("crasher"))
        .args(["--crash", "segv", "--socket", "/nonexistent/crashmon.sock"])
        .output()
        .expect("run crasher");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to the monitor socket /nonexistent/crashmon.sock"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn crasher_rejects_missing_kind() {
    let out = Command::new(crashmon_test_support::bin("crasher")).output().expect("run crasher");
    assert_eq!(out.status.code(), Some(2));
}
