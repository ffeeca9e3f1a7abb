//! RELIABILITY B6, B7, B9, B10 at the process level: real crashes, real
//! `crashmon monitor` and `crashmon upload` processes, a loopback receiver.
//! Reports are told apart on the server side by the dump's file name,
//! `<report id>.dmp`, which is the same on every retry.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crashmon_database::{Database, ReportId, ReportState};
use crashmon_test_support::receiver::{Behaviour, Receiver, Reply, Request};
use crashmon_test_support::{KillOnDrop, bin, death_signal, read_ready, wait_for, wait_timeout};

/// Crashes the crasher (segv) with its sidecar monitor; `upload` goes to
/// the monitor as `CRASHMON_UPLOAD`. Returns the monitor's pid.
fn crash(db: &Path, upload: Option<&str>) -> i32 {
    let mut cmd = Command::new(bin("crasher"));
    cmd.args(["--crash", "segv"])
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .env_remove("CRASHMON_FAULT_INJECT")
        .stdout(Stdio::piped());
    match upload {
        Some(url) => cmd.env("CRASHMON_UPLOAD", url),
        None => cmd.env_remove("CRASHMON_UPLOAD"),
    };
    let mut child = cmd.spawn().expect("spawn crasher");
    let ready = read_ready(&mut child, Duration::from_secs(10)).expect("crasher ready");
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("crasher died");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    ready.monitor
}

fn pending(db: &Database) -> Vec<ReportId> {
    let mut v: Vec<ReportId> =
        db.list().unwrap().into_iter().filter(|e| e.state == ReportState::Pending).map(|e| e.id).collect();
    v.sort();
    v
}

fn in_state(db: &Database, state: ReportState) -> usize {
    db.list().unwrap().into_iter().filter(|e| e.state == state).count()
}

/// One real crash, then `copies - 1` more pending reports with the same dump
/// (new ids). Consent is given.
fn database_with_reports(dir: &Path, copies: usize) -> Database {
    let path = dir.join("db");
    crash(&path, None);
    let db = Database::open_existing(&path).unwrap();
    wait_for(Duration::from_secs(10), || (pending(&db).len() == 1).then_some(())).expect("the crash is pending");
    // Let the monitor's symbolication finish first, so that the copies
    // carry its report and nothing else writes the metadata meanwhile.
    let original = wait_for(Duration::from_secs(30), || {
        let entry = db.find(&pending(&db)[0].to_string()).ok()?;
        entry.metadata.symbolication.is_some().then_some(entry)
    })
    .expect("symbolicated within 30 s");
    let bytes = std::fs::read(original.dump_path.as_ref().unwrap()).unwrap();
    for i in 1..copies {
        let mut new = db.begin_dump().unwrap();
        new.file.write_all(&bytes).unwrap();
        let mut metadata = original.metadata.clone();
        metadata.id = new.id;
        metadata.captured_at_ms += i as u64;
        metadata.upload = Default::default();
        db.commit_dump(new, &metadata).unwrap();
    }
    assert_eq!(pending(&db).len(), copies);
    let out = crashmon(&["consent", "enable"], &path, &[]);
    assert!(out.status.success(), "{out:?}");
    db
}

fn crashmon(args: &[&str], db: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("crashmon"));
    cmd.args(args).env("CRASHMON_DATABASE", db).env_remove("CRASHMON_UPLOAD");
    for var in ["http_proxy", "https_proxy", "all_proxy", "ALL_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let status = wait_timeout(&mut child, Duration::from_secs(25)).expect("crashmon finished within 25 s");
    let mut out = Output { status, stdout: Vec::new(), stderr: Vec::new() };
    std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut out.stdout).unwrap();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut out.stderr).unwrap();
    eprintln!("crashmon {args:?}: {:?} in {:?}", out.status.code(), started.elapsed());
    out
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// The report id a request carried (its dump's file name).
fn report_id_of(request: &Request) -> String {
    let parts = request.multipart().expect("multipart");
    let dump = parts.iter().find(|p| p.name == "upload_file_minidump").expect("dump part");
    dump.filename.clone().unwrap().trim_end_matches(".dmp").to_owned()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// B6: the monitor is killed while the server holds its upload; the
/// re-upload by `crashmon upload` carries the same report id, the server
/// sees one unique id, and the report ends in completed/.
#[test]
fn b6_monitor_killed_mid_upload_then_reupload_has_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let receiver = Receiver::builder()
        .replies([Reply::socorro_accepted_random().behaviour(Behaviour::Stall)])
        .default_reply(Reply::socorro_accepted_random())
        .start();
    let url = receiver.url("/submit");
    assert!(crashmon(&["consent", "enable"], &path, &[]).status.success());
    let monitor = crash(&path, Some(&url));
    // The monitor's upload reached the server, which does not answer.
    let first = receiver.wait_for_requests(1, Duration::from_secs(20));
    assert_eq!(first.len(), 1, "the monitor uploaded");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(5), || (!crashmon_test_support::process_alive(monitor)).then_some(()))
        .expect("monitor gone");
    let db = Database::open_existing(&path).unwrap();
    let ids = pending(&db);
    assert_eq!(ids.len(), 1, "the report is still pending");
    let out = crashmon(&["upload", "--upload", &url, &ids[0].to_string()], &path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let seen: Vec<String> = requests.iter().map(report_id_of).collect();
    assert_eq!(seen[0], ids[0].to_string());
    assert_eq!(seen[0], seen[1], "the retry carries the same report id");
    assert_eq!(in_state(&db, ReportState::Completed), 1);
}

/// B7: 503, 503, 503, 200 across four processes (the monitor, then three
/// `crashmon upload` runs): four requests for one report id, the attempt
/// count persists between processes and each backoff is within its bounds.
#[test]
fn b7_three_503_then_200_across_process_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let receiver = Receiver::builder()
        .replies([Reply::unavailable(), Reply::unavailable(), Reply::unavailable()])
        .default_reply(Reply::socorro_accepted_random())
        .start();
    let url = receiver.url("/submit");
    assert!(crashmon(&["consent", "enable"], &path, &[]).status.success());
    let before = now_ms();
    crash(&path, Some(&url));
    let db = Database::open_existing(&path).unwrap();
    let id = wait_for(Duration::from_secs(30), || {
        let id = *pending(&db).first()?;
        (db.find(&id.to_string()).ok()?.metadata.upload.attempts == 1).then_some(id)
    })
    .expect("the monitor's attempt is recorded");
    let check_backoff = |attempts: u32, before: u64| {
        let meta = db.find(&id.to_string()).unwrap().metadata;
        assert_eq!(meta.upload.attempts, attempts);
        let next = meta.upload.next_attempt_ms.expect("a next attempt time");
        let (lo, hi) = crashmon_uploader::retry::backoff_bounds(attempts);
        let after = now_ms();
        assert!(
            next >= before + lo.as_millis() as u64 && next <= after + hi.as_millis() as u64,
            "attempt {attempts}: next attempt {next} not in [{} + {lo:?}, {after} + {hi:?}]",
            before
        );
        assert!(meta.upload.last_error.unwrap().contains("503"));
    };
    check_backoff(1, before);
    // Not due yet: a plain `upload --all` sends nothing and says so.
    let out = crashmon(&["upload", "--all", "--upload", &url], &path, &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stdout_lines(&out)[0].contains("not due before"), "{out:?}");
    assert_eq!(receiver.request_count(), 1);
    // Naming the report retries now (the injectable clock of the library
    // tests stands in for the wait here).
    for attempt in 2..=3 {
        let before = now_ms();
        let out = crashmon(&["upload", "--upload", &url, &id.to_string()], &path, &[]);
        assert_eq!(out.status.code(), Some(5), "{out:?}");
        assert!(stdout_lines(&out)[0].contains(&format!("failed (attempt {attempt})")), "{out:?}");
        check_backoff(attempt, before);
    }
    let out = crashmon(&["upload", "--upload", &url, &id.to_string()], &path, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| report_id_of(r) == id.to_string()));
    let entry = db.find(&id.to_string()).unwrap();
    assert_eq!(entry.state, ReportState::Completed);
    assert_eq!(entry.metadata.upload.attempts, 4);
}

/// B9: refused connection, a reply cut off, a server that closes without
/// replying, and a stalled server: `crashmon upload` exits 5 with one line
/// per report; the reports stay pending and the attempted one has one more
/// attempt; the stall ends at --timeout.
#[test]
fn b9_unreachable_reset_and_stalled_servers() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_with_reports(dir.path(), 2);
    let path = db.root().to_owned();
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/submit", l.local_addr().unwrap())
    };
    let receiver =
        |behaviour| Receiver::builder().default_reply(Reply::socorro_accepted_random().behaviour(behaviour)).start();
    let cut = receiver(Behaviour::CloseMidBody);
    let closed = receiver(Behaviour::CloseWithoutReply);
    let stalled = receiver(Behaviour::Stall);
    let cases = [
        ("refused", refused, "connect"),
        ("reply cut", cut.url("/submit"), ""),
        ("closed without reply", closed.url("/submit"), ""),
        ("stalled", stalled.url("/submit"), "timed out"),
    ];
    // Uploaders go oldest first: the original crash.
    let first = db
        .list()
        .unwrap()
        .into_iter()
        .filter(|e| e.state == ReportState::Pending)
        .min_by_key(|e| (e.metadata.captured_at_ms, e.id))
        .unwrap()
        .id;
    for (n, (what, url, needle)) in cases.iter().enumerate() {
        let started = Instant::now();
        let out =
            crashmon(&["upload", "--all", "--timeout", "2", "--upload", url, "--connect-timeout", "2"], &path, &[]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(5), "{what}: {out:?}");
        let lines = stdout_lines(&out);
        assert_eq!(lines.len(), 2, "{what}: one line per report: {lines:?}");
        assert!(lines[0].contains(&format!("failed (attempt {})", n + 1)), "{what}: {lines:?}");
        assert!(lines[0].to_lowercase().contains(needle), "{what}: {lines:?}");
        assert!(lines[1].contains("not attempted"), "{what}: {lines:?}");
        assert_eq!(pending(&db).len(), 2, "{what}: still pending");
        assert_eq!(db.find(&first.to_string()).unwrap().metadata.upload.attempts, n as u32 + 1, "{what}");
        assert!(took < Duration::from_secs(10), "{what} took {took:?}");
        // Make the first report due again for the next case.
        let mut meta = db.find(&first.to_string()).unwrap().metadata;
        meta.upload.next_attempt_ms = None;
        db.update_metadata(first, &meta).unwrap();
    }
    assert_eq!(stalled.request_count(), 1, "the stalled server got the whole request");
}

/// B10: 100 pending reports; two `crashmon upload --all` processes and a
/// monitor uploading its own new crash, all at once: every report is
/// received exactly once, none is lost, none is left pending.
#[test]
fn b10_two_uploaders_and_a_monitor_send_each_report_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_with_reports(dir.path(), 100);
    let path = db.root().to_owned();
    let receiver = Receiver::builder().lifetime(Duration::from_secs(120)).start();
    let url = receiver.url("/submit");
    let started = Instant::now();
    let spawn = || {
        KillOnDrop(
            Command::new(bin("crashmon"))
                .args(["upload", "--all", "--no-compress", "--upload", &url])
                .env("CRASHMON_DATABASE", &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut a = spawn();
    let mut b = spawn();
    crash(&path, Some(&url));
    for child in [&mut a, &mut b] {
        let status = wait_timeout(&mut child.0, Duration::from_secs(25)).expect("upload finished");
        assert!(matches!(status.code(), Some(0) | Some(5)), "{status:?}");
    }
    // The monitor's upload of its crash (sent by whichever got it first).
    let requests = receiver.wait_for_requests(101, Duration::from_secs(20));
    let took = started.elapsed();
    wait_for(Duration::from_secs(10), || pending(&db).is_empty().then_some(())).expect("nothing left pending");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests {
        *seen.entry(report_id_of(r)).or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "received more than once: {duplicates:?}");
    let completed: Vec<String> = db
        .list()
        .unwrap()
        .into_iter()
        .filter(|e| e.state == ReportState::Completed)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(completed.len(), 101, "none lost");
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), {
        let mut c = completed;
        c.sort();
        c
    });
    eprintln!("B10: 101 reports, 3 uploaders, {} requests in {took:?}", requests.len());
}

/// Proxy from the environment: `http_proxy` reaches a host only the proxy
/// knows; `no_proxy` naming it goes direct (and fails: DNS).
#[test]
fn proxy_from_the_environment_and_no_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_with_reports(dir.path(), 1);
    let path = db.root().to_owned();
    let proxy = Receiver::start();
    let target = "http://collector.invalid:9/submit";
    let proxy_url = proxy.url("");
    let out = crashmon(
        &["upload", "--all", "--upload", target],
        &path,
        &[("http_proxy", &proxy_url), ("no_proxy", "collector.invalid")],
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(proxy.request_count(), 0);
    let mut meta = db.find(&pending(&db)[0].to_string()).unwrap().metadata;
    meta.upload.next_attempt_ms = None;
    db.update_metadata(meta.id, &meta).unwrap();
    let out = crashmon(&["upload", "--all", "--upload", target], &path, &[("http_proxy", &proxy_url)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(proxy.proxy_connects(), ["collector.invalid:9"]);
    assert_eq!(in_state(&db, ReportState::Completed), 1);
    // A bad --proxy or --ca-file is a usage error, nothing sent.
    let out = crashmon(&["upload", "--all", "--upload", target, "--proxy", "socks5://p:1"], &path, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let missing = dir.path().join("missing.pem");
    let out = crashmon(&["upload", "--all", "--upload", target, "--ca-file", missing.to_str().unwrap()], &path, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pem"), "{out:?}");
}
