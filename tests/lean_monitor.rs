//! `crashmon-monitor`, the lean monitor executable: the handler's normal
//! search spawns it as the sidecar when it sits next to the app's
//! `crashmon`, it symbolicates through a `crashmon` child, it starts up
//! (configuration, exit codes) like `crashmon monitor`, and a report is
//! never lost when the `crashmon` CLI it needs for symbolication is missing.
//! Real crasher and monitor processes, real dumps parsed with `minidump`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crashmon_database::{Database, Entry, ReportState, SymbolicationStatus};
use crashmon_test_support::{Ready, bin, death_signal, read_ready, wait_for, wait_timeout};
use minidump::{Minidump, MinidumpException, MinidumpSystemInfo};

/// A crasher that waits for a line on stdin before it crashes, with the
/// environment cleared of anything that picks the monitor or the database
/// from outside the test. `env` is applied last.
fn crasher(db: &Path, env: &[(&str, &std::ffi::OsStr)]) -> (Child, Ready) {
    let mut cmd = Command::new(bin("crasher"));
    cmd.args(["--crash", "segv", "--wait-stdin"])
        .env_remove("CRASHMON_MONITOR")
        .env_remove("CRASHMON_UPLOAD")
        .env_remove("CRASHMON_CONFIG")
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn crasher");
    let ready = read_ready(&mut child, Duration::from_secs(20)).expect("crasher did not report ready within 20 s");
    (child, ready)
}

/// The executable a live process runs, from `/proc/PID/exe`.
fn exe_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("read /proc/PID/exe of the monitor")
}

/// Let the crasher crash; it must die by SIGSEGV within 30 s. Returns its
/// stderr (where its sidecar logs).
fn crash(mut child: Child) -> String {
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("crasher died within 30 s");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    let mut err = String::new();
    // The sidecar inherited the pipe: this returns once it has exited too.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    if let Ok(s) = rx.recv_timeout(Duration::from_secs(120)) {
        err = s;
    }
    err
}

/// The one report in the database once its symbolication has an outcome
/// (Ok or Failed), waiting up to 90 s.
fn settled_report(db: &Path) -> Entry {
    wait_for(Duration::from_secs(90), || {
        let entries = Database::open_existing(db).ok()?.list().ok()?;
        let [entry] = entries.as_slice() else { return None };
        entry.metadata.symbolication.is_some().then(|| entry.clone())
    })
    .expect("one report with a symbolication outcome within 90 s")
}

fn assert_segv_dump(entry: &Entry, ready: Ready) {
    let dump = entry.dump_path.as_ref().expect("the report has its dump");
    let md = Minidump::read_path(dump).expect("the dump parses");
    let sys: MinidumpSystemInfo = md.get_stream().expect("system info stream");
    let exc: MinidumpException<'_> = md.get_stream().expect("exception stream");
    assert_eq!(exc.get_crash_reason(sys.os, sys.cpu).to_string(), "SIGSEGV / SEGV_MAPERR");
    assert_eq!(exc.get_crashing_thread_id(), ready.tid as u32);
    assert_eq!(entry.metadata.pid, ready.pid);
}

/// A directory in the target directory (same file system as the built
/// binaries, so they can be hard-linked into it: `current_exe` of a
/// symlinked binary would name the original's directory).
fn dir_beside_binaries() -> tempfile::TempDir {
    let target = bin("crasher").parent().unwrap().parent().unwrap().to_path_buf();
    tempfile::Builder::new().prefix("lean-monitor-test-").tempdir_in(target).expect("temp dir in target/")
}

/// `from` as `dir/name`: a hard link, else a copy.
fn install(from: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    if std::fs::hard_link(from, &to).is_err() {
        std::fs::copy(from, &to).expect("copy the binary");
    }
    to
}

/// The handler's own search (no `CRASHMON_MONITOR`) finds `crashmon-monitor`
/// next to the app before `crashmon`; the sidecar really is that executable;
/// the report is symbolicated, which only the `crashmon` CLI can do (the
/// lean monitor has no `__symbolicate-report`), so the child ran it.
#[test]
fn the_sidecar_found_beside_the_app_is_the_lean_monitor_and_its_reports_are_symbolicated() {
    let lean = bin("crashmon-monitor");
    let cli = bin("crashmon");
    assert_eq!(lean.parent(), bin("crasher").parent(), "the crasher and crashmon-monitor are siblings");
    assert_eq!(cli.parent(), lean.parent());
    let db = tempfile::tempdir().unwrap();
    // PATH without any crashmon: the child must be the sibling `crashmon`.
    let empty = tempfile::tempdir().unwrap();
    let (child, ready) = crasher(db.path(), &[("PATH", empty.path().as_os_str())]);
    let exe = exe_of(ready.monitor);
    assert_eq!(exe.file_name().unwrap(), "crashmon-monitor", "the sidecar runs {}", exe.display());
    assert_eq!(exe, lean.canonicalize().unwrap());
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", ready.monitor)).unwrap();
    assert_eq!(comm.trim(), "crashmon-monito", "comm is the file name cut to 15 bytes");
    let log = crash(child);
    let entry = settled_report(db.path());
    assert_eq!(entry.metadata.symbolication, Some(SymbolicationStatus::Ok), "monitor log:\n{log}");
    assert_eq!(entry.state, ReportState::Pending);
    assert_segv_dump(&entry, ready);
    let report: serde_json::Value =
        serde_json::from_slice(&entry.read_report().unwrap().expect("report.json written")).unwrap();
    assert_eq!(report["crash"]["reason"], "SIGSEGV / SEGV_MAPERR", "{report:#}");
    let idx = report["crashing_thread"].as_u64().unwrap() as usize;
    let frames = report["threads"][idx]["frames"].as_array().unwrap();
    assert!(
        frames.iter().any(|f| f["function"] == "crashmon_demo::trigger::segv"),
        "the crashing stack names the demo's trigger: {frames:#?}"
    );
    assert!(log.contains(" symbolicated report="), "the monitor logged the symbolication: {log}");
}

/// The lean monitor alone, with no `crashmon` next to it or on `PATH`:
/// the crash is captured and the report filed in pending/, unsymbolicated,
/// the reason recorded in its metadata.
#[test]
fn without_the_crashmon_cli_the_report_is_filed_unsymbolicated_with_the_reason() {
    let dir = dir_beside_binaries();
    let lean = install(&bin("crashmon-monitor"), dir.path(), "crashmon-monitor");
    let empty = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let (child, ready) =
        crasher(db.path(), &[("CRASHMON_MONITOR", lean.as_os_str()), ("PATH", empty.path().as_os_str())]);
    assert_eq!(exe_of(ready.monitor), lean, "the sidecar is the lone crashmon-monitor");
    let log = crash(child);
    let entry = settled_report(db.path());
    assert_eq!(entry.state, ReportState::Pending, "the report is filed: {log}");
    assert_segv_dump(&entry, ready);
    assert!(entry.read_report().unwrap().is_none(), "no symbolicated report without the CLI");
    let Some(SymbolicationStatus::Failed { reason }) = &entry.metadata.symbolication else {
        panic!("symbolication recorded as failed: {:?}", entry.metadata.symbolication);
    };
    assert!(reason.contains("cannot find the `crashmon` CLI"), "{reason}");
    assert!(reason.contains(&dir.path().join("crashmon").display().to_string()), "names where it looked: {reason}");
    assert!(log.contains("cannot find the `crashmon` CLI"), "the monitor logged it: {log}");
}

/// Run `exe args...` isolated from the caller's crashmon environment, with
/// a 20 s cap.
fn run(exe: &Path, home: &Path, args: &[&std::ffi::OsStr]) -> Output {
    let mut child = crashmon_test_support::isolated_command(exe, home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(wait_timeout(&mut child, Duration::from_secs(20)).is_some(), "{} did not exit within 20 s", exe.display());
    child.wait_with_output().unwrap()
}

/// A bad configuration file, a bad flag and a bad `--client-fd` end
/// `crashmon-monitor` (with or without the leading `monitor` word) with
/// the same exit code and message as `crashmon monitor`, creating nothing.
#[test]
fn the_lean_monitor_fails_like_crashmon_monitor() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = h.join("config.toml");
    let db = h.join("db");
    std::fs::write(&config, format!("database = {:?}\n[monitor]\nmax_client = 4\n", db.display().to_string())).unwrap();
    let socket = h.join("mon.sock");
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let cases: Vec<(&str, Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            "bad config file",
            vec![os("--config"), config.as_os_str(), os("--socket"), socket.as_os_str()],
            "unknown field",
        ),
        ("unknown flag", vec![os("--socket"), socket.as_os_str(), os("--no-such-flag")], "--no-such-flag"),
        ("closed client fd", vec![os("--database"), db.as_os_str(), os("--client-fd"), os("97")], "--client-fd 97"),
    ];
    for (name, args, words) in cases {
        let with_word: Vec<&std::ffi::OsStr> = std::iter::once(os("monitor")).chain(args.iter().copied()).collect();
        let reference = run(&bin("crashmon"), h, &with_word);
        let ref_err = String::from_utf8_lossy(&reference.stderr).into_owned();
        assert_eq!(reference.status.code(), Some(2), "crashmon monitor, {name}: {ref_err}");
        assert!(ref_err.contains(words), "crashmon monitor, {name}: {ref_err}");
        for argv in [&args, &with_word] {
            let out = run(&bin("crashmon-monitor"), h, argv);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(2), "crashmon-monitor {argv:?}, {name}: {err}");
            assert!(err.contains(words), "crashmon-monitor {argv:?}, {name}: {err}");
            if name == "unknown flag" {
                // clap names the program in its usage line.
                assert_eq!(err.replace("crashmon-monitor", "crashmon monitor"), ref_err, "{name}");
            } else {
                assert_eq!(err, ref_err, "crashmon-monitor {argv:?}, {name}: same message as crashmon monitor");
            }
        }
        assert!(!socket.exists() && !db.exists(), "{name}: nothing created");
    }
    // Global options before the `monitor` word, as `crashmon --config F -v
    // monitor ...` takes them; a flag's value "monitor" is not the word.
    let global_first =
        [os("--config"), config.as_os_str(), os("-v"), os("monitor"), os("--socket"), socket.as_os_str()];
    for exe in ["crashmon", "crashmon-monitor"] {
        let out = run(&bin(exe), h, &global_first);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{exe}: {err}");
        assert!(err.contains("unknown field"), "{exe} read the config file: {err}");
    }
    let value = run(&bin("crashmon-monitor"), h, &[os("--database"), os("monitor"), os("--client-fd"), os("97")]);
    let err = String::from_utf8_lossy(&value.stderr).into_owned();
    assert!(err.contains("--client-fd 97"), "`--database monitor` is a value, not the word: {err}");
}

/// `--version` and `--help` of the lean monitor: exit 0, its own name, the
/// monitor's flags and the global ones.
#[test]
fn the_lean_monitor_has_the_monitor_flags_and_the_global_ones() {
    let home = tempfile::tempdir().unwrap();
    let out = run(&bin("crashmon-monitor"), home.path(), &["--version".as_ref()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("crashmon-monitor "), "{out:?}");
    let out = run(&bin("crashmon-monitor"), home.path(), &["monitor".as_ref(), "--help".as_ref()]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--client-fd", "--socket", "--upload", "--max-dump-size", "--config", "--database", "--verbose"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// The names in `dir` (empty if it cannot be read).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The sidecar makes the next dump's files as it starts (a spare,
/// `new/<id>.dmp.spare` and `new/<id>.json.spare`, no report), the crash
/// takes them (its report has the spare's id), and once the sidecar is
/// gone nothing is left in `new/`: no new spare is made after its app's
/// crash.
#[test]
fn the_sidecar_makes_the_dump_files_ahead_and_leaves_nothing() {
    let db = tempfile::tempdir().unwrap();
    let (child, _ready) = crasher(db.path(), &[]);
    let new = db.path().join("new");
    let spare = wait_for(Duration::from_secs(20), || {
        let names = names_in(&new);
        let id = names.iter().find_map(|n| n.strip_suffix(".dmp.spare").map(str::to_owned))?;
        names.contains(&format!("{id}.json.spare")).then_some(id)
    })
    .expect("a spare in new/ while the app runs");
    assert_eq!(names_in(&new), vec![format!("{spare}.dmp.spare"), format!("{spare}.json.spare")]);
    let listed = Database::open_or_create(db.path()).unwrap().list().unwrap();
    assert!(listed.is_empty(), "a spare is no report: {listed:?}");
    let log = crash(child);
    let pending = names_in(&db.path().join("pending"));
    assert!(pending.contains(&format!("{spare}.dmp")), "the crash used the spare: {pending:?}\n{log}");
    assert_eq!(names_in(&new), Vec::<String>::new(), "nothing left in new/\n{log}");
}
