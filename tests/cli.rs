//! The CLI's contract on bad input: one clear error line, a documented exit
//! code, never a panic.

use std::process::{Command, Output};

use crashmon_test_support::bin;

fn crashmon(args: &[&str], db: Option<&std::path::Path>) -> Output {
    let mut cmd = Command::new(bin("crashmon"));
    cmd.args(args).env_remove("CRASHMON_DATABASE");
    if let Some(db) = db {
        cmd.env("CRASHMON_DATABASE", db);
    }
    cmd.output().expect("run crashmon")
}

fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(stderr.starts_with("crashmon: error: "), "{stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn symbolicate_a_file_that_is_not_a_minidump() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.dmp");
    std::fs::write(&file, b"this is not a minidump at all, just text").unwrap();
    let out = crashmon(&["symbolicate", file.to_str().unwrap()], None);
    assert_one_line_error(&out, 3, "notes.dmp");
    let out = crashmon(&["symbolicate", dir.path().join("missing.dmp").to_str().unwrap()], None);
    assert_one_line_error(&out, 3, "missing.dmp: no such file");
}

#[test]
fn list_with_a_missing_database_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = crashmon(&["list"], Some(&missing));
    assert_one_line_error(&out, 2, "nope");
    assert!(!missing.exists(), "list must not create a database");
}

#[test]
fn unusable_database_directory_for_the_monitor_and_demo() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let db = file.join("db");
    let out = crashmon(&["monitor", "--socket", dir.path().join("m.sock").to_str().unwrap()], Some(&db));
    assert_one_line_error(&out, 2, "a-file/db");
    let out = crashmon(&["demo"], Some(&db));
    assert_one_line_error(&out, 2, "a-file/db");
}

#[test]
fn show_an_unknown_report() {
    let dir = tempfile::tempdir().unwrap();
    // A real, empty database.
    let out = crashmon(&["list", "--json"], Some(dir.path()));
    assert_eq!(out.status.code(), Some(2), "an empty dir is not a database yet");
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    for sub in ["new", "pending", "completed", "failed"] {
        std::fs::create_dir(db.join(sub)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for d in [db.clone(), db.join("new"), db.join("pending"), db.join("completed"), db.join("failed")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let out = crashmon(&["show", "0123abcd"], Some(&db));
    assert_one_line_error(&out, 4, "0123abcd");
}

#[test]
fn a_monitor_fd_that_is_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let out = crashmon(&["monitor", "--client-fd", "977"], Some(dir.path()));
    assert_one_line_error(&out, 2, "--client-fd 977");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = crashmon(&["list", "--frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn symbolicate_fixtures_that_are_corrupt() {
    let fixtures = crashmon_test_support::workspace_root().join("fixtures");
    for name in ["not-a-minidump.dmp", "truncated-header.dmp"] {
        let out = crashmon(&["symbolicate", fixtures.join(name).to_str().unwrap()], None);
        assert_one_line_error(&out, 3, name);
    }
}

/// `crashmon demo --crash KIND` for every kind: the demo succeeds (its own
/// check: the crashing thread names the demo's crashing function with a
/// source line), the report's reason is the kind's signal, and the top
/// frames are right. One symbol cache for all kinds: only the first pays
/// for symbolicating the (debug) demo binary.
#[test]
fn demo_every_crash_kind_reports_the_right_reason_and_frames() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("symcache");
    let started = std::time::Instant::now();
    for (name, kind) in crashmon_demo::Kind::ALL {
        let db = dir.path().join(format!("db-{name}"));
        let mut cmd = Command::new(bin("crashmon"));
        cmd.args(["demo", "--json", "--crash", name])
            .env("CRASHMON_DATABASE", &db)
            .env("CRASHMON_SYMBOL_CACHE", &cache)
            .env("CRASHMON_CONFIG", dir.path().join("none.toml"))
            .env_remove("CRASHMON_UPLOAD")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // CRASHMON_CONFIG must name an existing file.
        std::fs::write(dir.path().join("none.toml"), "").unwrap();
        // Read the output while the demo runs (a stack overflow's report
        // is larger than a pipe's buffer), within 120 s.
        let child = cmd.spawn().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let out = match rx.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                panic!("demo --crash {name} did not finish in 120 s");
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "demo --crash {name}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let signal = match kind.signal() {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGILL => "SIGILL",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGSYS => "SIGSYS",
            other => panic!("unexpected signal {other}"),
        };
        assert_eq!(report["crash"]["signal"], signal, "{name}: {:#}", report["crash"]);
        assert!(report["crash"]["reason"].as_str().unwrap().starts_with(signal), "{name}: {:#}", report["crash"]);
        let thread = &report["threads"][report["crashing_thread"].as_u64().unwrap() as usize];
        let functions: Vec<&str> =
            thread["frames"].as_array().unwrap().iter().map(|f| f["function"].as_str().unwrap_or("?")).collect();
        let want = kind.crashing_function();
        // The first frame of the demo's code is the crashing function; above
        // it only library frames (libc, std, core helpers not inlined in a
        // debug build, the panic machinery).
        let first_demo = functions.iter().position(|f| f.starts_with("crashmon_demo::"));
        let first_demo = first_demo.unwrap_or_else(|| panic!("{name}: no demo frame in {functions:?}"));
        assert_eq!(functions[first_demo], want, "{name}: {functions:?}");
        // Faults raised by the trigger's own instruction: at the very top.
        let direct = ["segv", "bus", "fpe", "ill", "trap", "thread-segv", "stack-overflow", "thread-stack-overflow"];
        let bound = if direct.contains(&name) { 2 } else { 25 };
        assert!(first_demo <= bound, "{name}: {want} is frame {first_demo}: {functions:?}");
    }
    eprintln!("{} demo kinds in {:?}", crashmon_demo::Kind::ALL.len(), started.elapsed());
}
