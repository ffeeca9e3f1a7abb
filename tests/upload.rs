//! The whole pipeline with upload: a real crash, the monitor files, symbolicates
//! and uploads it to a loopback Socorro-style receiver, which gets a dump the
//! `minidump` crate parses, with the annotations as form fields and no secret
//! from the crashed process's environment. Then `crashmon upload` drains a
//! report that could not be sent at crash time, with its documented exit codes.

use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_test_support::receiver::{Receiver, Reply};
use crashmon_test_support::{bin, death_signal, wait_for, wait_timeout};

fn crash(db: &std::path::Path, upload_env: &[&str]) -> i32 {
    // The sidecar monitor inherits the crasher's environment: a target in
    // CRASHMON_UPLOAD (which, unlike --upload, needs consent).
    let mut cmd = Command::new(bin("crasher"));
    cmd.args(["--crash", "segv", "--annotate", "release=9.9.9"])
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .env("API_TOKEN", "hunter2secret-value")
        .stdout(Stdio::null());
    match upload_env {
        [url] => cmd.env("CRASHMON_UPLOAD", url),
        _ => cmd.env_remove("CRASHMON_UPLOAD"),
    };
    let mut child = cmd.spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("crasher died");
    death_signal(&status).unwrap_or(0)
}

fn state_files(db: &std::path::Path, state: &str) -> usize {
    crashmon_test_support::files_with_ext(&db.join(state), "dmp").len()
}

#[test]
fn crash_is_uploaded_by_the_monitor_when_consent_is_given() {
    let receiver = Receiver::builder().default_reply(Reply::socorro_accepted_random()).start();
    let db = tempfile::tempdir().unwrap();
    // A target from the environment needs consent.
    let out =
        Command::new(bin("crashmon")).args(["consent", "enable"]).env("CRASHMON_DATABASE", db.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "uploads enabled");

    let url = receiver.url("/submit");
    assert_eq!(crash(db.path(), &[&url]), libc::SIGSEGV);
    let requests = receiver.wait_for_requests(1, Duration::from_secs(60));
    assert_eq!(requests.len(), 1, "exactly one upload");
    let parts = requests[0].multipart().expect("multipart body");
    let dump = parts.iter().find(|p| p.name == "upload_file_minidump").expect("dump part");
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &dump.data).unwrap();
    let md = minidump::Minidump::read_path(tmp.path()).expect("uploaded dump parses");
    let _: minidump::MinidumpException<'_> = md.get_stream().expect("exception stream");
    let release = parts.iter().find(|p| p.name == "release").expect("annotation as a form field");
    assert_eq!(release.text(), "9.9.9");
    assert!(!requests[0].body_contains(b"hunter2secret-value"), "secret from the environment was sent");
    // The report moves to completed/ with the server's id.
    wait_for(Duration::from_secs(10), || (state_files(db.path(), "completed") == 1).then_some(()))
        .expect("report in completed/");
    assert_eq!(state_files(db.path(), "pending"), 0);
}

#[test]
fn without_consent_nothing_leaves_then_crashmon_upload_drains() {
    let receiver =
        Receiver::builder().replies([Reply::unavailable()]).default_reply(Reply::socorro_accepted_random()).start();
    let db = tempfile::tempdir().unwrap();
    let url = receiver.url("/submit");
    assert_eq!(crash(db.path(), &[&url]), libc::SIGSEGV);
    wait_for(Duration::from_secs(5), || (state_files(db.path(), "pending") == 1).then_some(())).expect("pending");
    // Give the monitor time to (not) upload.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.request_count(), 0, "consent off: nothing sent");

    let upload = |extra: &[&str]| {
        let mut args = vec!["upload", "--upload", url.as_str()];
        args.extend_from_slice(extra);
        Command::new(bin("crashmon")).args(&args).env("CRASHMON_DATABASE", db.path()).output().unwrap()
    };
    // An explicit target counts as consent. The server answers 503 first:
    // the report stays pending, exit code 5.
    let out = upload(&[]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("retry after"), "{out:?}");
    assert_eq!(state_files(db.path(), "pending"), 1);
    // Not due yet: nothing is sent; naming the report forces it.
    let id = std::fs::read_dir(db.path().join("pending"))
        .unwrap()
        .flatten()
        .find_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap();
    let out = upload(&[&id[..8], "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["results"][0]["outcome"], "accepted");
    assert_eq!(receiver.request_count(), 2);
    assert_eq!(state_files(db.path(), "completed"), 1);
}

#[test]
fn bad_targets_are_usage_errors() {
    let db = tempfile::tempdir().unwrap();
    for target in ["ftp://example.invalid/submit", "https://@/nope"] {
        let out = Command::new(bin("crashmon"))
            .args(["upload", "--upload", target])
            .env("CRASHMON_DATABASE", db.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{target}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("crashmon: error: bad upload target"), "{stderr}");
    }
}
