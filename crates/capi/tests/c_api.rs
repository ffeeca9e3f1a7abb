//! The C API and `crashmon run`, with real C programs compiled by the system
//! C compiler against `include/crashmon.h` and the built `libcrashmon.so`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_test_support::{bin, death_signal, files_with_ext, wait_for, wait_timeout, workspace_root};

/// The directory holding `libcrashmon.so`. Cargo builds only the rlib of
/// this package for its tests, so build the shared library here, with the
/// cargo that runs the tests (same profile, same target directory).
fn lib_dir() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let dir = bin("crashmon").parent().unwrap().to_path_buf();
    BUILT.call_once(|| {
        let built = crashmon_test_support::cargo_build(&["-p", "crashmon-capi", "--lib"], dir.ends_with("release"));
        assert!(built, "cargo build -p crashmon-capi failed");
    });
    assert!(dir.join("libcrashmon.so").is_file(), "libcrashmon.so not built in {}", dir.display());
    dir
}

fn compile(source: &str, link_crashmon: bool, out: &Path) {
    compile_with(source, link_crashmon, out, &[]);
}

fn compile_with(source: &str, link_crashmon: bool, out: &Path, extra: &[&str]) {
    let root = workspace_root();
    let lib_dir = lib_dir();
    let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cc.arg("-O2").arg("-g").arg(root.join(source)).arg("-o").arg(out).args(extra);
    if link_crashmon {
        cc.arg("-I").arg(root.join("crates/capi/include")).arg("-L").arg(&lib_dir).arg("-lcrashmon");
        cc.arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    }
    let status = cc.status().expect("a C compiler (cc) is needed for the C API tests");
    assert!(status.success(), "compiling {source} failed");
}

fn metadata_of(dump: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dump.with_extension("json")).unwrap()).unwrap()
}

fn pending(db: &Path, n: usize) -> Vec<PathBuf> {
    wait_for(Duration::from_secs(10), || {
        let d = files_with_ext(&db.join("pending"), "dmp");
        (d.len() == n).then_some(d)
    })
    .unwrap_or_else(|| panic!("{n} dumps in pending/"))
}

#[test]
fn c_program_linked_with_libcrashmon() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("crash");
    compile("examples/c/crash.c", true, &exe);
    let db = dir.path().join("db");
    let mut child = Command::new(&exe)
        .env("CRASHMON_DATABASE", &db)
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("the C program ended");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let requested = stdout.trim().strip_prefix("requested id=").expect("request_dump returned an id").to_owned();
    let dumps = pending(&db, 2);
    let crash = dumps.iter().find(|d| !d.to_string_lossy().contains(&requested)).unwrap();
    let m = metadata_of(crash);
    assert_eq!(m["crash"]["signal_name"], "SIGSEGV");
    assert_eq!(m["crash"]["address"], 0);
    assert_eq!(m["annotations"]["component"], "example-c");
    let crumbs = m["breadcrumbs"].as_array().expect("breadcrumbs in the metadata");
    assert_eq!(crumbs.len(), 1, "{crumbs:?}");
    assert_eq!(crumbs[0]["category"], "config");
    assert_eq!(crumbs[0]["message"], "loading /etc/example.conf");
    assert_eq!(crumbs[0]["level"], "info");
    let req = dumps.iter().find(|d| d.to_string_lossy().contains(&requested)).unwrap();
    assert_eq!(metadata_of(req)["crash"]["message"], "example: handled error");
    minidump::Minidump::read_path(crash).expect("the dump parses");
}

#[test]
fn crashmon_run_reports_an_unmodified_program() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("plain_crash");
    compile("examples/c/plain_crash.c", false, &exe);
    let db = dir.path().join("db");
    lib_dir();
    let mut child =
        Command::new(bin("crashmon")).arg("run").arg("--").arg(&exe).env("CRASHMON_DATABASE", &db).spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("crashmon run ended");
    // `crashmon run` execs the program: its status is the program's.
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    let dumps = pending(&db, 1);
    let m = metadata_of(&dumps[0]);
    assert_eq!(m["crash"]["signal_name"], "SIGSEGV");
    assert!(m["exe"].as_str().unwrap().ends_with("/plain_crash"), "{m}");
    // Exactly one report: the monitor did not report itself.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(files_with_ext(&db.join("pending"), "dmp").len(), 1);
}

/// Run a program to its end (10 s at most); its death signal and stdout.
fn run_program(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(&mut stdout).unwrap_or_default());
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("the program ended within 10 s");
    (death_signal(&status), reader.join().unwrap())
}

/// RELIABILITY A3 for threads C code creates: the dump of a stack overflow
/// on a 64 KiB `pthread_create` thread, with that thread's stack memory.
fn check_thread_overflow(db: &Path, signal: Option<i32>, stdout: &str) {
    assert_eq!(signal, Some(libc::SIGSEGV), "stdout: {stdout}");
    let tid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("crashing tid="))
        .and_then(|t| t.trim().parse().ok())
        .expect("crashing tid line");
    let dumps = pending(db, 1);
    let md = minidump::Minidump::read_path(&dumps[0]).expect("the dump parses");
    let exc: minidump::MinidumpException<'_> = md.get_stream().unwrap();
    assert_eq!(exc.get_crashing_thread_id(), tid, "the overflowing thread is blamed");
    let threads: minidump::MinidumpThreadList<'_> = md.get_stream().unwrap();
    let memory: minidump::MinidumpMemoryList<'_> = md.get_stream().unwrap();
    let memory = minidump::UnifiedMemoryList::Memory(memory);
    let thread = threads.threads.iter().find(|t| t.raw.thread_id == tid).unwrap();
    assert!(thread.stack_memory(&memory).is_some_and(|s| s.size() > 0), "its stack memory is in the dump");
    assert_eq!(metadata_of(&dumps[0])["crash"]["signal_name"], "SIGSEGV");
}

#[test]
fn c_pthread_with_small_stack_overflowing_is_reported_linked() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("thread_overflow");
    compile_with("examples/c/thread_overflow.c", true, &exe, &["-DWITH_CRASHMON", "-pthread"]);
    let db = dir.path().join("db");
    let mut cmd = Command::new(&exe);
    cmd.env("CRASHMON_DATABASE", &db).env("CRASHMON_MONITOR", bin("crashmon"));
    let (signal, stdout) = run_program(cmd);
    check_thread_overflow(&db, signal, &stdout);
}

#[test]
fn c_pthread_with_small_stack_overflowing_is_reported_under_crashmon_run() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("thread_overflow");
    compile_with("examples/c/thread_overflow.c", false, &exe, &["-pthread"]);
    let db = dir.path().join("db");
    let mut cmd = Command::new(bin("crashmon"));
    cmd.arg("run").arg("--").arg(&exe).env("CRASHMON_DATABASE", &db);
    let (signal, stdout) = run_program(cmd);
    check_thread_overflow(&db, signal, &stdout);
}

/// The control: the same program without crashmon dies by SIGSEGV and
/// nothing is written (so the two tests above are not vacuous).
#[test]
fn c_pthread_overflow_without_crashmon_is_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("thread_overflow");
    compile_with("examples/c/thread_overflow.c", false, &exe, &["-pthread"]);
    let db = dir.path().join("db");
    let mut cmd = Command::new(&exe);
    cmd.env("CRASHMON_DATABASE", &db);
    let (signal, _) = run_program(cmd);
    assert_eq!(signal, Some(libc::SIGSEGV));
    assert!(files_with_ext(&db.join("pending"), "dmp").is_empty());
}
