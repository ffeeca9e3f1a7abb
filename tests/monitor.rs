//! The shared monitor under hard conditions: ptrace refused (B4), file size
//! limit and full disk (B5), a dump size cap with 1,000 threads (A12), a
//! crash loop (B11), attachments and filter rules (issue 4), graceful
//! shutdown on SIGTERM.

#[path = "sys_helpers.rs"]
mod sys;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crashmon_test_support::{KillOnDrop, bin, death_signal, files_with_ext, wait_for, wait_timeout};

/// A shared monitor on a socket in `dir`, logging at info into `dir/monitor.log`.
struct Monitor {
    child: KillOnDrop,
    sock: PathBuf,
    db: PathBuf,
    log: PathBuf,
}

impl Monitor {
    fn start(dir: &Path, args: &[&str], setup: impl FnOnce(&mut Command)) -> Monitor {
        let sock = dir.join("monitor.sock");
        let db = dir.join("db");
        let log = dir.join("monitor.log");
        let mut cmd = Command::new(bin("crashmon"));
        cmd.args(["monitor", "--socket"])
            .arg(&sock)
            .args(args)
            .env("CRASHMON_DATABASE", &db)
            .env("CRASHMON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        setup(&mut cmd);
        let child = KillOnDrop(cmd.spawn().expect("spawn monitor"));
        wait_for(Duration::from_secs(10), || sock.exists().then_some(())).expect("monitor socket");
        Monitor { child, sock, db, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// SIGTERM; the monitor must exit 0 within 30 s.
    fn terminate(&mut self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let status = wait_timeout(&mut self.child.0, Duration::from_secs(30)).expect("the monitor exited");
        assert_eq!(status.code(), Some(0), "exit 0: {status:?}\n{}", self.log());
    }

    /// Crash a crasher (`--crash segv` + `extra`) against this monitor;
    /// it must die by SIGSEGV within 15 s. Returns how long it took.
    fn crash(&self, extra: &[&str]) -> Duration {
        let mut child = self.spawn_crasher(extra);
        let started = Instant::now();
        let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("the app died within 20 s");
        assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "died by its own signal: {status:?}");
        started.elapsed()
    }

    fn spawn_crasher(&self, extra: &[&str]) -> Child {
        Command::new(bin("crasher"))
            .args(["--crash", "segv", "--socket"])
            .arg(&self.sock)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn crasher")
    }

    fn files(&self, state: &str, ext: &str) -> Vec<PathBuf> {
        files_with_ext(&self.db.join(state), ext)
    }

    /// Metadata records (`<id>.json`, not `.report.json`) in `state`.
    fn metadata(&self, state: &str) -> Vec<serde_json::Value> {
        self.files(state, "json")
            .into_iter()
            .filter(|p| !p.to_string_lossy().ends_with(".report.json"))
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    }
}

fn parse(dump: &Path) -> minidump::Minidump<'static, Vec<u8>> {
    minidump::Minidump::read(std::fs::read(dump).expect("read dump")).expect("dump parses")
}

/// B4: ptrace refused for real (the monitor runs under a seccomp filter
/// that fails ptrace with EPERM). The app still dies promptly by its own
/// signal; failed/ records why and what to do; nothing reaches pending/.
#[test]
fn b4_ptrace_refused_is_recorded_with_cause_and_advice() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(dir.path(), &[], sys::deny_ptrace);
    let took = monitor.crash(&[]);
    assert!(took < Duration::from_secs(5), "the app died promptly: {took:?}");
    let failed = wait_for(Duration::from_secs(10), || {
        let m = monitor.metadata("failed");
        (!m.is_empty()).then_some(m)
    })
    .expect("a failed/ record");
    assert_eq!(failed.len(), 1);
    let failure = failed[0]["failure"].as_str().unwrap_or_default().to_owned();
    for needle in ["ptrace refused", "EPERM", "seccomp", "What to do"] {
        assert!(failure.contains(needle), "failure names {needle:?}: {failure}");
    }
    assert!(failure.contains("yama"), "the yama scope (or its absence) is named: {failure}");
    assert!(monitor.files("pending", "dmp").is_empty(), "no dump in pending/");
    assert!(monitor.log().contains("ptrace refused"), "logged: {}", monitor.log());
    assert!(crashmon_test_support::process_alive(monitor.pid() as i32), "the monitor keeps serving");
}

/// B5 (file size limit): RLIMIT_FSIZE on the monitor, SIGXFSZ ignored, so
/// the dump's write fails with EFBIG. Nothing unparseable reaches pending/,
/// the log names the error, and once the limit is lifted the next crash is
/// dumped.
#[test]
fn b5_file_size_limit_then_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(dir.path(), &[], |c| sys::limit_file_size(c, 16 * 1024));
    monitor.crash(&[]);
    let failed = wait_for(Duration::from_secs(10), || {
        let m = monitor.metadata("failed");
        (!m.is_empty()).then_some(m)
    })
    .expect("a failed/ record");
    let failure = failed[0]["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("File too large"), "{failure}");
    assert!(monitor.files("pending", "dmp").is_empty(), "no dump in pending/");
    assert!(monitor.files("new", "dmp").is_empty(), "the partial dump was removed");
    let log = monitor.log();
    assert!(log.contains("EFBIG") && log.contains("no dump"), "clear log line: {log}");

    sys::unlimit_file_size(monitor.pid());
    monitor.crash(&[]);
    let dumps = wait_for(Duration::from_secs(10), || {
        let d = monitor.files("pending", "dmp");
        (!d.is_empty()).then_some(d)
    })
    .expect("the next crash is dumped");
    let _: minidump::MinidumpThreadList<'_> = parse(&dumps[0]).get_stream().expect("thread list");
}

/// B5 (disk full): the database on a 2 MiB tmpfs, filled up. Skipped with
/// a reason where tmpfs cannot be mounted (no CAP_SYS_ADMIN).
#[test]
fn b5_disk_full_then_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "crashmon-test"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN and the mount tool)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let monitor = Monitor::start(&mnt, &[], |_| {});
    // Leave ~8 KiB free: settings and a failed/ record fit, a dump does not.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(len.saturating_sub(8192)).unwrap();
    monitor.crash(&[]);
    wait_for(Duration::from_secs(10), || monitor.log().contains("no dump").then_some(())).expect("logged");
    let log = monitor.log();
    assert!(log.contains("ENOSPC") || log.contains("No space left"), "clear log line: {log}");
    for p in monitor.files("pending", "dmp") {
        parse(&p); // nothing unparseable
    }
    assert!(monitor.files("pending", "dmp").is_empty(), "no dump published on a full disk");
    std::fs::remove_file(&filler).unwrap();
    monitor.crash(&[]);
    let dumps = wait_for(Duration::from_secs(10), || {
        let d = monitor.files("pending", "dmp");
        (!d.is_empty()).then_some(d)
    })
    .expect("the next crash after space frees is dumped");
    let _: minidump::MinidumpThreadList<'_> = parse(&dumps[0]).get_stream().expect("thread list");
}

/// A12: 1,000 threads with 16 KiB of used stack each and 2 GiB of reserved
/// heap. Without a cap the dump is far over 6 MiB; with `--max-dump-size`
/// 6 MiB it stays within, lists every thread, and the crashing thread's
/// stack is whole.
#[test]
fn a12_dump_size_cap_with_a_thousand_threads() {
    const CAP: u64 = 6 << 20;
    let app = ["--threads", "1000", "--thread-stack-kib", "16", "--heap-mib", "2048"];
    let dump_of = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let monitor = Monitor::start(dir.path(), args, |_| {});
        monitor.crash(&app);
        let dump = wait_for(Duration::from_secs(20), || monitor.files("pending", "dmp").pop()).expect("dumped");
        let size = std::fs::metadata(&dump).unwrap().len();
        (dir, dump, size)
    };
    let (_d1, _, uncapped) = dump_of(&[]);
    let (_d2, dump, capped) = dump_of(&["--max-dump-size", &CAP.to_string()]);
    eprintln!("1,000 threads: uncapped {uncapped} bytes, capped {capped} bytes (cap {CAP})");
    assert!(uncapped > CAP, "the app is big enough for the cap to matter: {uncapped}");
    assert!(capped <= CAP, "the dump stays within the cap: {capped}");
    let md = parse(&dump);
    let threads: minidump::MinidumpThreadList<'_> = md.get_stream().unwrap();
    assert!(threads.threads.len() >= 1000, "every thread listed: {}", threads.threads.len());
    let exception: minidump::MinidumpException<'_> = md.get_stream().unwrap();
    let crashing = threads.get_thread(exception.get_crashing_thread_id()).expect("crashing thread listed");
    let stack = crashing.raw.stack.memory.data_size;
    assert!(stack > 2048, "the crashing thread's whole stack is kept ({stack} bytes)");
}

/// Issue 4, attachments: the app names its log file (and a big one); the
/// monitor copies them at crash time, 0700/0600, the big one cut to its
/// last 1 MiB; retention deletes them with the report.
#[test]
fn attachments_are_copied_into_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let app_log = dir.path().join("app.log");
    let marker = format!("last words {}\n", std::process::id());
    std::fs::write(&app_log, format!("starting\n{marker}")).unwrap();
    let big = dir.path().join("big.log");
    let mut content = vec![b'a'; 1536 * 1024];
    content.extend_from_slice(b"THE END\n");
    std::fs::write(&big, &content).unwrap();
    let monitor = Monitor::start(dir.path(), &[], |_| {});
    monitor.crash(&["--attach", app_log.to_str().unwrap(), "--attach", big.to_str().unwrap()]);
    let meta = wait_for(Duration::from_secs(10), || monitor.metadata("pending").pop()).expect("report");
    let id = meta["id"].as_str().unwrap().to_owned();
    let attachments = meta["attachments"].as_array().expect("attachments listed").clone();
    assert_eq!(attachments.len(), 2, "{meta}");
    let adir = monitor.db.join("attachments").join(&id);
    let copied = std::fs::read_to_string(adir.join("app.log")).unwrap();
    assert!(copied.ends_with(&marker), "the log's content is in the report: {copied:?}");
    let big_meta = attachments.iter().find(|a| a["name"] == "big.log").expect("big.log");
    assert_eq!(big_meta["truncated"], true);
    assert_eq!(big_meta["size"], 1 << 20);
    let tail = std::fs::read(adir.join("big.log")).unwrap();
    assert_eq!(tail.len(), 1 << 20);
    assert!(tail.ends_with(b"THE END\n"), "the tail is kept");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&adir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(adir.join("app.log")).unwrap().permissions().mode() & 0o777, 0o600);
    // Removal takes the attachments along, once the monitor is done with
    // the report (until its publish and post-processing end it holds the
    // dump, and prune rightly skips it as busy).
    wait_for(Duration::from_secs(30), || {
        monitor.metadata("pending").pop().filter(|m| !m["symbolication"].is_null()).map(|_| ())
    })
    .expect("post-processed");
    let out = Command::new(bin("crashmon"))
        .args(["prune", "--max-count", "0"])
        .env("CRASHMON_DATABASE", &monitor.db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!adir.exists(), "prune removed the attachments");
}

/// Issue 4, filter rules: by annotation at capture time, by signature after
/// symbolication. Filtered reports are in failed/ with the rule, logged.
#[test]
fn filter_rules_move_reports_to_failed_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(dir.path(), &["--ignore-annotation", "env=test*"], |_| {});
    monitor.crash(&["--annotate", "env=testing"]);
    let failed = wait_for(Duration::from_secs(10), || monitor.metadata("failed").pop()).expect("recorded");
    assert_eq!(failed["filtered"], "annotation env=test*");
    assert_eq!(failed["failure"], "filtered: annotation env=test*");
    assert!(monitor.files("pending", "dmp").is_empty());
    // Another app, not matching: reported normally.
    monitor.crash(&["--annotate", "env=prod"]);
    wait_for(Duration::from_secs(10), || monitor.files("pending", "dmp").pop()).expect("reported");
    assert!(monitor.log().contains("crash filtered"), "logged: {}", monitor.log());

    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(dir.path(), &["--ignore-signature", "*"], |_| {});
    monitor.crash(&[]);
    let failed = wait_for(Duration::from_secs(60), || {
        let m = monitor.metadata("failed").pop().filter(|m| !m["filtered"].is_null())?;
        (monitor.files("failed", "dmp").len() == 1).then_some(m)
    })
    .expect("filtered after symbolication");
    assert_eq!(failed["filtered"], "signature *");
    assert_eq!(monitor.files("failed", "dmp").len(), 1, "the dump is kept in failed/");
    assert!(monitor.files("pending", "dmp").is_empty());
}

/// SIGTERM during a dump: the monitor stops accepting, finishes the dump,
/// removes its socket and exits 0.
#[test]
fn sigterm_finishes_the_dump_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // A big app, and a dump held back for 2 s (fault injection), so that
    // the test reliably sees it in flight.
    let mut monitor = Monitor::start(dir.path(), &[], |cmd| {
        cmd.env("CRASHMON_FAULT_INJECT", "slow-dump");
    });
    let mut app = monitor.spawn_crasher(&["--threads", "1000"]);
    wait_for(Duration::from_secs(20), || (!monitor.files("new", "dmp").is_empty()).then_some(()))
        .expect("a dump in progress");
    monitor.terminate();
    let app_status = wait_timeout(&mut app, Duration::from_secs(15)).expect("app died");
    assert_eq!(death_signal(&app_status), Some(libc::SIGSEGV));
    let dumps = monitor.files("pending", "dmp");
    assert_eq!(dumps.len(), 1, "the dump in flight was finished");
    let _: minidump::MinidumpThreadList<'_> = parse(&dumps[0]).get_stream().expect("thread list");
    assert!(!monitor.sock.exists(), "socket removed");
    assert!(monitor.log().contains("monitor stopped"), "{}", monitor.log());
    assert!(monitor.log().contains("the dump waits 2 s"), "the dump was held in flight: {}", monitor.log());
}

fn rss_kib(pid: u32) -> u64 {
    crashmon_test_support::status_kib(pid, "VmRSS").unwrap_or(0)
}

/// Bytes the database's reports use (dumps, metadata and reports in every
/// state), as retention counts them.
fn db_bytes(db: &Path) -> u64 {
    ["pending", "completed", "failed"]
        .iter()
        .flat_map(|state| std::fs::read_dir(db.join(state)).into_iter().flatten().flatten())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".dmp") || name.ends_with(".json")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// B11 as written: 1,000 crashes in 60 s (one every 60 ms) against one
/// shared monitor with count and size limits. The database stays within
/// both (pruned at most once a second, so it may overshoot by about a
/// second of crashes while the loop runs), the monitor's RSS stays bounded,
/// it never restarts, every crash is dumped, and overload skips
/// symbolication (recorded) instead of queueing without bound.
#[test]
fn b11_crash_loop_keeps_database_and_memory_bounded() {
    const CRASHES: usize = 1000;
    const MAX_REPORTS: usize = 40;
    const MAX_BYTES: u64 = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(
        dir.path(),
        &["--max-reports", "40", "--max-db-size", &MAX_BYTES.to_string(), "--postprocess-queue", "4"],
        |_| {},
    );
    monitor.crash(&[]);
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib(monitor.pid());
    let count = || monitor.files("pending", "dmp").len() + monitor.metadata("failed").len();
    let mut max_seen = 0;
    let mut max_bytes_seen = 0;
    let mut deaths = 0;
    let started = Instant::now();
    let mut apps: Vec<Child> = Vec::new();
    let mut reap = |apps: &mut Vec<Child>| {
        apps.retain_mut(|a| match a.try_wait() {
            Ok(Some(status)) => {
                assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "died by its own signal");
                deaths += 1;
                false
            }
            _ => true,
        })
    };
    for i in 0..CRASHES {
        let due = started + Duration::from_millis(60 * i as u64);
        while Instant::now() < due {
            std::thread::sleep(Duration::from_millis(5));
        }
        apps.push(monitor.spawn_crasher(&[]));
        reap(&mut apps);
        if i % 10 == 0 {
            max_seen = max_seen.max(count());
            max_bytes_seen = max_bytes_seen.max(db_bytes(&monitor.db));
        }
    }
    let took = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !apps.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        reap(&mut apps);
    }
    assert!(apps.is_empty(), "{} apps still alive 30 s after the loop", apps.len());
    assert_eq!(deaths, CRASHES, "every app died by SIGSEGV");
    // One more crash after the loop triggers a final prune a second later.
    std::thread::sleep(Duration::from_millis(1100));
    monitor.crash(&[]);
    let settled = wait_for(Duration::from_secs(10), || {
        (count() <= MAX_REPORTS && db_bytes(&monitor.db) <= MAX_BYTES).then_some(())
    });
    let rss_after = rss_kib(monitor.pid());
    let log = monitor.log();
    let dumped = log.matches("dump written").count();
    let skipped = log.matches("symbolication skipped").count();
    eprintln!(
        "{CRASHES} crashes in {took:?}: {dumped} dumps, {skipped} symbolications skipped, \
         max {max_seen} reports / {max_bytes_seen} bytes seen, RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(took < Duration::from_secs(75), "the loop kept its rate: {took:?}");
    assert!(
        settled.is_some(),
        "database within {MAX_REPORTS} reports and {MAX_BYTES} bytes: {} reports, {} bytes",
        count(),
        db_bytes(&monitor.db)
    );
    assert!(max_seen <= MAX_REPORTS + 40, "never far over the count limit: {max_seen}");
    assert!(max_bytes_seen <= 2 * MAX_BYTES, "never far over the size limit: {max_bytes_seen}");
    assert!(dumped >= CRASHES, "every crash dumped: {dumped}");
    assert!(rss_after < rss_before + 24 * 1024, "RSS {rss_before} -> {rss_after} KiB");
    assert!(crashmon_test_support::process_alive(monitor.pid() as i32), "never restarted");
    assert!(log.contains("retention applied"), "pruned");
}

/// A publish that fails (an injected I/O error after the dump was made
/// durable in `new/`) is retried by the running shared monitor: the report
/// reaches `pending/` and is post-processed without waiting for a restart,
/// exactly once, and later crashes publish as usual.
#[test]
fn a_failed_publish_is_retried_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(dir.path(), &[], |cmd| {
        cmd.env("CRASHMON_FAULT_INJECT", "fail-publish");
    });
    monitor.crash(&[]);
    // The retry logs after it has moved the report: wait for both.
    let dumps = wait_for(Duration::from_secs(20), || {
        let d = monitor.files("pending", "dmp");
        (!d.is_empty() && monitor.log().contains("published a report after a failed publish")).then_some(d)
    })
    .expect("the report was published by a retry");
    let log = monitor.log();
    assert!(log.contains("cannot publish the dump yet (retrying)"), "the failure was logged: {log}");
    assert!(log.contains("published a report after a failed publish"), "{log}");
    assert_eq!(dumps.len(), 1);
    let _: minidump::MinidumpThreadList<'_> = parse(&dumps[0]).get_stream().expect("thread list");
    assert!(monitor.files("new", "dmp").is_empty() && monitor.files("new", "json").is_empty(), "nothing left in new/");
    let id = dumps[0].file_stem().unwrap().to_string_lossy().into_owned();
    wait_for(Duration::from_secs(60), || monitor.log().contains(&format!("symbolicated report={id}")).then_some(()))
        .expect("the republished report was post-processed");
    // The next crash publishes at once, and the first is not published twice.
    monitor.crash(&[]);
    let dumps = wait_for(Duration::from_secs(20), || {
        let d = monitor.files("pending", "dmp");
        (d.len() == 2).then_some(d)
    })
    .expect("the second crash is published");
    assert_eq!(monitor.metadata("pending").len(), 2, "one metadata record per report");
    assert_eq!(monitor.log().matches("published a report after a failed publish").count(), 1, "{}", monitor.log());
    for d in &dumps {
        parse(d);
    }
}

/// A monitor told to stop while it is making the next dump's spare files
/// (fault `slow-spare`: 1.5 s between making them and keeping them) waits
/// for them and removes them: nothing is left in `new/` (before, the
/// monitor exited with the spare pair behind it).
#[test]
fn a_monitor_stopping_during_a_refill_leaves_no_spare() {
    let dir = tempfile::tempdir().unwrap();
    let mut monitor = Monitor::start(dir.path(), &[], |cmd| {
        cmd.env("CRASHMON_FAULT_INJECT", "slow-spare");
    });
    let new = monitor.db.join("new");
    // The first spare (made at start, not slowed) is there: the crash uses
    // it, and the refill after the dump is the slow one.
    wait_for(Duration::from_secs(10), || (files_with_ext(&new, "spare").len() == 2).then_some(()))
        .expect("the first spare");
    monitor.crash(&[]);
    wait_for(Duration::from_secs(10), || monitor.log().contains("fault injection: the new spare waits").then_some(()))
        .expect("the refill after the dump began");
    assert!(!files_with_ext(&new, "spare").is_empty(), "the refill's files exist while it waits");
    monitor.terminate();
    let left: Vec<_> = std::fs::read_dir(&new).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "nothing left in new/: {left:?}\n{}", monitor.log());
    assert!(
        monitor.log().contains("waiting for the spare dump files being made"),
        "the stop waited: {}",
        monitor.log()
    );
    assert_eq!(monitor.files("pending", "dmp").len(), 1, "the crash's report");
}

/// A panic inside the minidump writer, with the app's threads suspended
/// (fault `panic-mid-dump`, first dump only), fails that one dump: the app
/// is let go and dies by its own signal, the monitor says why, and it goes
/// on serving (the next crash is dumped on a new connection).
#[test]
fn a_panic_in_the_writer_fails_one_dump_and_the_monitor_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(dir.path(), &[], |cmd| {
        cmd.env("CRASHMON_FAULT_INJECT", "panic-mid-dump");
    });
    let took = monitor.crash(&[]);
    assert!(took < Duration::from_secs(10), "the app was let go: {took:?}");
    wait_for(Duration::from_secs(10), || monitor.log().contains("the minidump writer panicked").then_some(()))
        .unwrap_or_else(|| panic!("the failure is logged: {}", monitor.log()));
    assert!(monitor.files("pending", "dmp").is_empty(), "no dump from the failed capture");
    monitor.crash(&[]);
    let dumps = wait_for(Duration::from_secs(20), || {
        let d = monitor.files("pending", "dmp");
        (!d.is_empty()).then_some(d)
    })
    .expect("the next crash is dumped");
    parse(&dumps[0]);
    assert!(crashmon_test_support::process_alive(monitor.pid() as i32), "the monitor is still serving");
}

/// The socket's path appears only once the monitor listens on it: an app
/// connecting the moment the path exists is never refused, even with 300
/// ms between the bind and the listen (fault `slow-listen`; before, the
/// socket was bound under its own name and then listened on). No
/// temporary name is left, and a second monitor on a served path is
/// still refused.
#[test]
fn the_socket_path_appears_only_once_the_monitor_listens() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        // Returns as soon as the path exists (polled every 5 ms).
        let monitor = Monitor::start(dir.path(), &[], |cmd| {
            cmd.env("CRASHMON_FAULT_INJECT", "slow-listen");
        });
        let sock = &monitor.sock;
        // SOCK_SEQPACKET, as the handler connects.
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
        let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
        let connected = connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(sock).unwrap());
        assert_eq!(connected, Ok(()), "round {round}: connecting as soon as the path exists");
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: temporary names left: {leftovers:?}");
        if round == 0 {
            let second = Command::new(bin("crashmon"))
                .args(["monitor", "--socket"])
                .arg(sock)
                .env("CRASHMON_DATABASE", dir.path().join("db2"))
                .output()
                .unwrap();
            assert!(!second.status.success(), "a second monitor on a served socket is refused");
        }
    }
}

/// The machine's part of a dump (system info, `/proc/cpuinfo`, the OS
/// release) is read once per monitor and reused: the monitor's log shows
/// no read between two crashes' captures, and both dumps carry
/// it as the machine has it (the CPU count, the kernel release, the
/// release file's bytes, cpuinfo's processor lines), the same in both.
#[test]
fn the_machine_read_once_serves_every_dump() {
    use minidump::format::MINIDUMP_STREAM_TYPE as S;
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(dir.path(), &[], |cmd| {
        cmd.env("CRASHMON_LOG", "debug");
    });
    // The spare comes after the warm-up's read: the captures find it done.
    wait_for(Duration::from_secs(10), || (!files_with_ext(&monitor.db.join("new"), "spare").is_empty()).then_some(()))
        .expect("the monitor prepared");
    monitor.crash(&[]);
    monitor.crash(&[]);
    let dumps = wait_for(Duration::from_secs(10), || {
        let d = monitor.files("pending", "dmp");
        (d.len() == 2).then_some(d)
    })
    .expect("two dumps");
    let release = std::fs::read("/etc/lsb-release").or_else(|_| std::fs::read("/etc/os-release")).unwrap();
    let uname = nix::sys::utsname::uname().unwrap();
    let kernel = uname.release().to_string_lossy().into_owned();
    let cpus = std::fs::read_to_string("/proc/cpuinfo").unwrap().lines().filter(|l| l.starts_with("processor")).count();
    let mut seen = Vec::new();
    for dump in &dumps {
        let md = parse(dump);
        let sys: minidump::MinidumpSystemInfo = md.get_stream().expect("system info");
        assert_eq!(sys.raw.number_of_processors as usize, cpus, "{}", dump.display());
        let os_version = sys.csd_version().expect("an OS version string");
        assert!(os_version.contains(&kernel), "{os_version:?} names the kernel {kernel}");
        let cpuinfo = md.get_raw_stream(S::LinuxCpuInfo as u32).expect("cpuinfo").to_vec();
        let processors = String::from_utf8_lossy(&cpuinfo).lines().filter(|l| l.starts_with("processor")).count();
        assert_eq!(processors, cpus);
        let lsb = md.get_raw_stream(S::LinuxLsbRelease as u32).expect("release").to_vec();
        assert_eq!(lsb, release, "the release file's bytes");
        seen.push((sys.raw.number_of_processors, sys.raw.processor_level, os_version.to_string(), cpuinfo, lsb));
    }
    assert!(seen[0] == seen[1], "both dumps carry the same machine");
    let log = monitor.log();
    let reads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" captured "))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("machine_reads=")))
        .collect();
    // (The monitor reads it as it starts; the first capture may read it
    // too if it came first. The second one must not.)
    assert_eq!(reads.len(), 2, "{log}");
    assert_eq!(reads[0], reads[1], "the second capture did not read the machine again:\n{log}");
}

/// A shared monitor makes the next dump's files ahead (a spare), a crash
/// takes them (the report has the spare's id), a new spare follows, and a
/// graceful stop removes it: nothing is left in `new/`.
#[test]
fn a_shared_monitor_keeps_a_spare_and_removes_it_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut monitor = Monitor::start(dir.path(), &[], |_| {});
    let new = monitor.db.join("new");
    let spare_id = || {
        wait_for(Duration::from_secs(10), || {
            let spares = files_with_ext(&new, "spare");
            let id =
                spares.iter().find_map(|p| p.file_name()?.to_str()?.strip_suffix(".dmp.spare").map(str::to_owned))?;
            spares.iter().any(|p| p.ends_with(format!("{id}.json.spare"))).then_some(id)
        })
    };
    let first = spare_id().expect("a spare once the monitor listens");
    monitor.crash(&[]);
    let meta = wait_for(Duration::from_secs(10), || monitor.metadata("pending").pop()).expect("a report");
    assert_eq!(meta["id"].as_str(), Some(first.as_str()), "the crash used the spare");
    let second = spare_id().expect("a spare again after the dump");
    assert_ne!(second, first);
    monitor.terminate();
    let left: Vec<_> = std::fs::read_dir(&new).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "nothing left in new/: {left:?}");
}
