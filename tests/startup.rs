//! How `install()` starts a sidecar. By default it waits for the monitor's
//! answer to the hello, so a monitor that starts and then fails makes
//! `install()` fail. With `wait_for_monitor: false` (issue 8, short-lived
//! programs) the hello is queued on the socket pair and its answer never
//! awaited: a crash before the monitor is even running is still dumped,
//! and a monitor that cannot be executed is still reported.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crashmon_test_support::{bin, death_signal, one_pending_dump, read_ready, wait_timeout};

/// A monitor that takes `delay_s` to start: a shell script that sleeps,
/// then execs the real `crashmon` (same pid, so PR_SET_PTRACER still names
/// the process that will ptrace the app).
fn slow_monitor(dir: &Path, delay_s: &str) -> std::path::PathBuf {
    let path = dir.join("slow-crashmon");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "#!/bin/sh\nsleep {delay_s}\nexec '{}' \"$@\"", bin("crashmon").display()).unwrap();
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The app installs and crashes at once, while its monitor is still asleep
/// (1 s): `install()` returned long before the monitor could have answered
/// a hello, and the crash is dumped all the same once the monitor is up.
#[test]
fn a_crash_right_after_install_is_dumped_before_the_monitor_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let started = Instant::now();
    let mut app = Command::new(bin("crasher"))
        .args(["--crash", "segv", "--no-wait-for-monitor"])
        .env("CRASHMON_DATABASE", &db)
        .env("CRASHMON_MONITOR", slow_monitor(dir.path(), "1"))
        .env_remove("CRASHMON_FAULT_INJECT")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn crasher");
    let ready = read_ready(&mut app, Duration::from_secs(10)).expect("crasher installed");
    let installed = started.elapsed();
    // The monitor sleeps 1 s before it even execs: an install() that waited
    // for its HelloAck could not be back before that.
    assert!(installed < Duration::from_millis(900), "install() waited for the monitor: {installed:?}");
    let status = wait_timeout(&mut app, Duration::from_secs(20)).expect("app died within 20 s");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    assert!(started.elapsed() >= Duration::from_secs(1), "the dump waited for the monitor to start");

    let dump = one_pending_dump(&db, Duration::from_secs(10));
    let md = minidump::Minidump::read_path(&dump).expect("dump parses");
    let exception: minidump::MinidumpException<'_> = md.get_stream().expect("exception stream");
    assert_eq!(exception.raw.thread_id as i32, ready.tid, "crashing thread");
    let threads: minidump::MinidumpThreadList<'_> = md.get_stream().expect("thread list");
    assert!(!threads.threads.is_empty());
    let entries = crashmon_database::Database::open_existing(&db).unwrap().list().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].metadata.pid, ready.pid);
    assert_eq!(entries[0].metadata.crash.signal, Some(libc::SIGSEGV));
}

/// A monitor that cannot be executed is reported by `install()`, even when
/// it does not wait for the monitor (it learns the exec's result).
#[test]
fn a_monitor_that_cannot_be_executed_fails_install() {
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("crashmon");
    std::fs::write(&not_executable, b"not a program").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    for monitor in [dir.path().join("missing/crashmon"), not_executable] {
        let out = Command::new(bin("crasher"))
            .args(["--crash", "segv", "--no-wait-for-monitor"])
            .env("CRASHMON_DATABASE", dir.path().join("db"))
            .env("CRASHMON_MONITOR", &monitor)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crasher");
        let mut app = out;
        let status = wait_timeout(&mut app, Duration::from_secs(10)).expect("crasher exits");
        let mut err = String::new();
        use std::io::Read;
        app.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(1), "install failed, the crasher did not crash: {status:?} {err}");
        assert!(err.contains(&monitor.display().to_string()), "the error names the monitor: {err}");
    }
}

/// By default `install()` waits for the sidecar's answer: a monitor that is
/// exec'd but then fails (here a script that exits 1 after 0.5 s) makes `install()`
/// fail with a handshake error instead of leaving crashes unreported.
/// The same monitor under `--no-wait-for-monitor` is not noticed.
#[test]
fn a_monitor_that_exits_at_start_fails_install_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing-crashmon");
    std::fs::write(&failing, "#!/bin/sh\nsleep 0.5\necho 'crashmon: cannot start' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |extra: &[&str]| {
        let mut app = Command::new(bin("crasher"))
            .args(["--crash", "segv"])
            .args(extra)
            .env("CRASHMON_DATABASE", dir.path().join("db"))
            .env("CRASHMON_MONITOR", &failing)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crasher");
        let status = wait_timeout(&mut app, Duration::from_secs(20)).expect("crasher ends");
        let mut err = String::new();
        use std::io::Read;
        app.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status, err)
    };
    let (status, err) = run(&[]);
    assert_eq!(status.code(), Some(1), "install() failed: {status:?} {err}");
    assert!(err.contains("handshake"), "a handshake error: {err}");
    let (status, err) = run(&["--no-wait-for-monitor"]);
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "installed, crashed undumped: {status:?} {err}");
}
