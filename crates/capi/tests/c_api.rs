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

/// lld's directory of linker front ends in the Rust toolchain
/// (`gcc -fuse-ld=lld -B DIR`), if there is one.
fn toolchain_lld_dir() -> Option<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out =
        |args: &[&str]| Command::new(&rustc).args(args).output().ok().filter(|o| o.status.success()).map(|o| o.stdout);
    let sysroot = String::from_utf8(out(&["--print", "sysroot"])?).ok()?;
    let version = String::from_utf8(out(&["-vV"])?).ok()?;
    let host = version.lines().find_map(|l| l.strip_prefix("host: "))?.trim().to_owned();
    let dir = Path::new(sysroot.trim()).join("lib/rustlib").join(host).join("bin/gcc-ld");
    dir.join("ld.lld").is_file().then_some(dir)
}

/// A program linked by lld with an unmapped page between its read-only and
/// its executable segment: the dump lists it as one module (not two, the
/// second with the wrong base), and the crash is named in crash_here().
#[test]
fn a_program_with_a_gap_between_its_segments_is_one_module() {
    let Some(lld) = toolchain_lld_dir() else {
        eprintln!("SKIPPED: no ld.lld in the Rust toolchain");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("segment_gap");
    let lld_arg = format!("-B{}", lld.display());
    compile_with("crates/capi/tests/c/segment_gap.c", false, &exe, &["-fuse-ld=lld", &lld_arg]);
    let db = dir.path().join("db");
    lib_dir();
    let mut cmd = Command::new(bin("crashmon"));
    cmd.arg("run").arg("--").arg(&exe).env("CRASHMON_DATABASE", &db);
    let (signal, stdout) = run_program(cmd);
    assert_eq!(signal, Some(libc::SIGSEGV), "{stdout}");
    let dump = pending(&db, 1).remove(0);
    let md = minidump::Minidump::read_path(&dump).expect("the dump parses");
    let maps = md.get_raw_stream(minidump::format::MINIDUMP_STREAM_TYPE::LinuxMaps as u32).expect("a maps stream");
    let ours: Vec<(u64, u64)> = String::from_utf8_lossy(maps)
        .lines()
        .filter(|l| l.ends_with("/segment_gap"))
        .filter_map(|l| {
            let (lo, hi) = l.split_whitespace().next()?.split_once('-')?;
            Some((u64::from_str_radix(lo, 16).ok()?, u64::from_str_radix(hi, 16).ok()?))
        })
        .collect();
    if !ours.windows(2).any(|w| w[0].1 < w[1].0) {
        eprintln!("SKIPPED: this lld mapped the program without a gap: {ours:x?}");
        return;
    }
    let modules: minidump::MinidumpModuleList = md.get_stream().unwrap();
    let named: Vec<_> = modules.iter().filter(|m| m.name.ends_with("/segment_gap")).collect();
    assert_eq!(named.len(), 1, "one module for the program: {named:#?}");
    let (start, end) = (ours[0].0, ours.last().unwrap().1);
    assert_eq!(
        (named[0].raw.base_of_image, named[0].raw.base_of_image + u64::from(named[0].raw.size_of_image)),
        (start, end)
    );
    let report = crashmon_test_support::wait_for(Duration::from_secs(30), || {
        std::fs::read(dump.with_extension("report.json")).ok()
    })
    .expect("the report is symbolicated");
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    let crashing = report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == report["crash"]["tid"])
        .expect("the crashing thread in the report");
    assert_eq!(crashing["frames"][0]["function"], "crash_here", "{crashing:#}");
}

/// Run a program to its end (10 s at most); its death signal and stdout.
fn run_program(cmd: Command) -> (Option<i32>, String) {
    let (status, stdout) = run_to_end(cmd);
    (death_signal(&status), stdout)
}

/// Run a program to its end (10 s at most); its exit status and stdout.
fn run_to_end(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(&mut stdout).unwrap_or_default());
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("the program ended within 10 s");
    (status, reader.join().unwrap())
}

/// `exe mode`, linked with libcrashmon (the monitor named by
/// `CRASHMON_MONITOR`) or under `crashmon run`.
fn launch(exe: &Path, mode: &str, linked: bool) -> Command {
    if linked {
        let mut c = Command::new(exe);
        c.arg(mode).env("CRASHMON_MONITOR", bin("crashmon"));
        c
    } else {
        lib_dir();
        let mut c = Command::new(bin("crashmon"));
        c.arg("run").arg("--").arg(exe).arg(mode);
        c
    }
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

// ------------------------------------------------ survive signal() resets

/// `crates/capi/tests/c/signal_reset.c` in `mode`, linked with
/// libcrashmon (`linked`) or under `crashmon run`: its death signal, its
/// stdout lines and the database directory (inside `dir`).
fn run_signal_reset(dir: &Path, mode: &str, linked: bool) -> (Option<i32>, Vec<String>, PathBuf) {
    run_signal_reset_with(dir, mode, linked, &[], &[])
}

/// As [`run_signal_reset`], with extra compiler flags and environment.
fn run_signal_reset_with(
    dir: &Path,
    mode: &str,
    linked: bool,
    cflags: &[&str],
    envs: &[(&str, &str)],
) -> (Option<i32>, Vec<String>, PathBuf) {
    let exe = dir.join(format!("signal_reset_{}", if linked { "linked" } else { "plain" }));
    let source = "crates/capi/tests/c/signal_reset.c";
    let mut flags = vec!["-ldl"];
    if linked {
        flags.push("-DWITH_CRASHMON");
    }
    flags.extend_from_slice(cflags);
    compile_with(source, linked, &exe, &flags);
    let db = dir.join("db");
    let mut cmd = launch(&exe, mode, linked);
    cmd.env("CRASHMON_DATABASE", &db).envs(envs.iter().copied());
    let (signal, stdout) = run_program(cmd);
    (signal, stdout.lines().map(str::to_owned).collect(), db)
}

/// Exactly one dump in pending/, of a SIGSEGV at address 0 on the crashing
/// thread, parsed with the minidump crate.
fn exactly_one_segv_dump(db: &Path) {
    exactly_one_segv_dump_at(db, 0);
}

/// Exactly one dump in pending/, of a SIGSEGV at `address` on the crashing
/// thread, parsed with the minidump crate.
fn exactly_one_segv_dump_at(db: &Path, address: u64) {
    exactly_one_dump(db, "SIGSEGV", Some(address));
}

/// Exactly one dump in pending/, of signal `name` (at `address`, if given)
/// on a thread the dump lists, parsed with the minidump crate.
fn exactly_one_dump(db: &Path, name: &str, address: Option<u64>) {
    let dumps = pending(db, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(files_with_ext(&db.join("pending"), "dmp").len(), 1, "exactly one dump");
    let md = minidump::Minidump::read_path(&dumps[0]).expect("the dump parses");
    let sys: minidump::MinidumpSystemInfo = md.get_stream().expect("system info");
    let exc: minidump::MinidumpException<'_> = md.get_stream().expect("exception stream");
    let threads: minidump::MinidumpThreadList<'_> = md.get_stream().expect("thread list");
    let reason = exc.get_crash_reason(sys.os, sys.cpu).to_string();
    assert!(reason.starts_with(name), "{reason}");
    if let Some(address) = address {
        assert_eq!(exc.get_crash_address(sys.os, sys.cpu), address, "the faulting write");
    }
    let tid = exc.get_crashing_thread_id();
    assert!(threads.threads.iter().any(|t| t.raw.thread_id == tid));
    assert_eq!(metadata_of(&dumps[0])["crash"]["signal_name"], name);
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

/// The app installs its own SIGSEGV handler with `signal()` after
/// `crashmon_init`: the app's handler sees the fault first (it sees the
/// disposition it set), resets to SIG_DFL and returns; the re-fault is
/// dumped and the process dies by SIGSEGV.
#[test]
fn app_signal_handler_set_after_init_runs_first_and_the_fault_is_dumped() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) = run_signal_reset(dir.path(), "signal", true);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    assert!(has(&out, "previous=default"), "the app sees the disposition from before crashmon: {out:?}");
    assert!(has(&out, "current=app"), "a query returns the app's own handler: {out:?}");
    assert!(has(&out, "app handler ran sig=11"), "{out:?}");
    exactly_one_segv_dump(&db);
}

/// The same with `sigaction(SA_SIGINFO)`.
#[test]
fn app_sigaction_handler_set_after_init_runs_first_and_the_fault_is_dumped() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) = run_signal_reset(dir.path(), "sigaction", true);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    assert!(has(&out, "current=app"), "{out:?}");
    assert!(has(&out, "app handler ran sig=11"), "{out:?}");
    exactly_one_segv_dump(&db);
}

/// A crash crashmon declines (a child forked without exec) with an app
/// handler that resets to SIG_DFL and returns: the handler runs once, the
/// re-fault ends the child by SIGSEGV (before the fix, the reset went into
/// the interposition's table and the fault looped through the handler).
#[test]
fn declined_crash_with_an_app_handler_resetting_to_default_dies_once() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, _db) = run_signal_reset(dir.path(), "fork", true);
    let ran = out.iter().filter(|l| l.starts_with("app handler ran")).count();
    let ended = out.iter().find(|l| l.starts_with("child ")).cloned();
    assert_eq!(signal, None, "the parent exits normally: {ended:?}");
    assert_eq!(
        ended.as_deref(),
        Some("child signal=11"),
        "died by its fault, not its 5 s alarm (handler ran {ran} times)"
    );
    assert_eq!(ran, 1, "the app's handler ran once");
}

/// `signal(SIGSEGV, SIG_DFL)` after init: still a dump, still SIGSEGV.
#[test]
fn app_resetting_sigsegv_to_default_after_init_still_gets_a_dump() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) = run_signal_reset(dir.path(), "default", true);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    assert!(has(&out, "current=default"), "{out:?}");
    assert!(!out.iter().any(|l| l.starts_with("app handler ran")), "{out:?}");
    exactly_one_segv_dump(&db);
}

/// Built with `-std=c99` (no `_DEFAULT_SOURCE`), glibc's headers turn
/// `signal()` into `__sysv_signal` (System V semantics: `SA_RESETHAND`):
/// interposed too (and its one-shot reset emulated).
#[test]
fn app_sysv_signal_handler_set_after_init_runs_first_and_the_fault_is_dumped() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) = run_signal_reset_with(dir.path(), "signal", true, &["-std=c99", "-DSTRICT_SIGNAL"], &[]);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    assert!(has(&out, "previous=default"), "{out:?}");
    assert!(has(&out, "current=app"), "{out:?}");
    assert!(has(&out, "app handler ran sig=11"), "{out:?}");
    exactly_one_segv_dump(&db);
}

/// An unmodified program under `crashmon run` replaces the SIGSEGV handler
/// at the start of main (after the preload installed crashmon).
#[test]
fn app_signal_handler_under_crashmon_run_runs_first_and_the_fault_is_dumped() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) = run_signal_reset(dir.path(), "signal", false);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    assert!(has(&out, "app handler ran sig=11"), "{out:?}");
    exactly_one_segv_dump(&db);
}

/// `signal(SIGSEGV, SIG_DFL)` under `crashmon run`.
#[test]
fn app_resetting_sigsegv_to_default_under_crashmon_run_still_gets_a_dump() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) = run_signal_reset(dir.path(), "default", false);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    exactly_one_segv_dump(&db);
}

/// The control: the same replacement made with libc's own `signal` (found
/// with dlsym, so the interposition does not see it) takes SIGSEGV from
/// crashmon: the app's handler runs, and there is no dump. So the tests
/// above pass because of the interposition.
#[test]
fn app_handler_set_behind_the_interposition_loses_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) = run_signal_reset(dir.path(), "direct", true);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    assert!(has(&out, "app handler ran sig=11"), "{out:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(files_with_ext(&db.join("pending"), "dmp").is_empty());
}

/// `CRASHMON_INTERPOSE_SIGNALS=0` (for programs that handle crash signals
/// in normal operation): the program's `signal()` takes SIGSEGV from
/// crashmon, as without the library.
#[test]
fn interposition_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) =
        run_signal_reset_with(dir.path(), "signal", true, &[], &[(crashmon::INTERPOSE_SIGNALS_ENV, "0")]);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    assert!(has(&out, "app handler ran sig=11"), "{out:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(files_with_ext(&db.join("pending"), "dmp").is_empty());
}

/// The same switch from the program itself, through the C API
/// (`crashmon_set_signal_interposition(0)` before `crashmon_init`).
#[test]
fn interposition_can_be_turned_off_through_the_c_api() {
    let dir = tempfile::tempdir().unwrap();
    let (signal, out, db) = run_signal_reset_with(dir.path(), "signal", true, &["-DNO_INTERPOSE"], &[]);
    assert_eq!(signal, Some(libc::SIGSEGV), "{out:?}");
    assert!(has(&out, "app handler ran sig=11"), "{out:?}");
    assert!(has(&out, "current=app"), "{out:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(files_with_ext(&db.join("pending"), "dmp").is_empty(), "the app's handler replaced ours: no dump");
}

// ------------------------------------------------ handlers that recover

/// `crates/capi/tests/c/recover.c` in `mode`, linked with libcrashmon or
/// under `crashmon run`: its exit status, its stdout lines, the database.
fn run_recover(dir: &Path, mode: &str, linked: bool) -> (std::process::ExitStatus, Vec<String>, PathBuf) {
    let exe = dir.join(format!("recover_{}", if linked { "linked" } else { "plain" }));
    compile_with(
        "crates/capi/tests/c/recover.c",
        linked,
        &exe,
        if linked { &["-pthread", "-DWITH_CRASHMON"] } else { &["-pthread"] },
    );
    let db = dir.join("db");
    let mut cmd = launch(&exe, mode, linked);
    cmd.env("CRASHMON_DATABASE", &db);
    let (status, out) = run_to_end(cmd);
    (status, out.lines().map(str::to_owned).collect(), db)
}

/// No report at all: nothing in pending/, new/ or failed/ once the monitor
/// had time to file one.
fn no_reports(db: &Path) {
    std::thread::sleep(Duration::from_millis(500));
    for dir in ["pending", "new", "failed"] {
        assert!(files_with_ext(&db.join(dir), "dmp").is_empty(), "a dump in {dir}/");
    }
}

/// A runtime's guard page (a GC write barrier, a JVM's polling page): the
/// program's SIGSEGV handler, set after `crashmon_init`, unprotects the page
/// and returns, three times. The program must keep working and nothing is
/// reported (before, crashmon dumped and killed it on the first fault).
#[test]
fn app_handler_that_recovers_from_guard_page_faults_keeps_the_program_running() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "guard", true);
    assert_eq!(status.code(), Some(0), "{status:?} {out:?}");
    assert!(has(&out, "recovered=3"), "{out:?}");
    no_reports(&db);
}

/// The same for an unmodified program under `crashmon run` (a JVM, a wasm
/// runtime run with the handler preloaded).
#[test]
fn app_handler_that_recovers_works_under_crashmon_run() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "guard", false);
    assert_eq!(status.code(), Some(0), "{status:?} {out:?}");
    assert!(has(&out, "recovered=3"), "{out:?}");
    no_reports(&db);
}

/// `sigsetjmp` probes of unmapped memory: the handler `siglongjmp`s out
/// three times (no report); then a real fault at 0x1234, where the handler
/// gives up with `abort()`: one report, and it describes the SIGSEGV at
/// 0x1234 (the fault), not the abort; the process dies by SIGABRT as the
/// program chose.
#[test]
fn probes_that_jump_out_are_not_reported_and_a_handler_that_aborts_reports_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "probe", true);
    assert_eq!(death_signal(&status), Some(libc::SIGABRT), "{status:?} {out:?}");
    assert_eq!(out.iter().filter(|l| *l == "probe=unmapped").count(), 3, "{out:?}");
    assert!(has(&out, "app handler gives up"), "{out:?}");
    exactly_one_segv_dump_at(&db, 0x1234);
}

/// A handler that gives up on a fault with `_exit(3)`: the interposed
/// `_exit` reports the fault first; the program's exit code is its own.
#[test]
fn app_handler_that_exits_on_a_fault_still_gets_it_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "exit", true);
    assert_eq!(status.code(), Some(3), "{status:?} {out:?}");
    assert!(has(&out, "app handler exits"), "{out:?}");
    exactly_one_segv_dump_at(&db, 0x1234);
}

/// `crashmon_set_first_chance_handler`: the registered function recovers
/// three guard-page faults, then declines a fault at 0x1234, which is
/// dumped; the process dies by SIGSEGV.
#[test]
fn first_chance_handler_recovers_its_faults_and_declines_the_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "first", true);
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?} {out:?}");
    assert!(has(&out, "recovered=3"), "{out:?}");
    exactly_one_segv_dump_at(&db, 0x1234);
}

/// `abort()` while the program ignores SIGABRT: glibc resets SIGABRT to
/// SIG_DFL behind the interposition and raises it again, so the process
/// dies; crashmon reports it (before, the ignored first SIGABRT was let
/// through and the process died without a report).
#[test]
fn abort_with_sigabrt_ignored_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "abort-ignored", true);
    assert_eq!(death_signal(&status), Some(libc::SIGABRT), "{status:?} {out:?}");
    exactly_one_dump(&db, "SIGABRT", None);
}

/// A registered first-chance function that gives up with `abort()`: the
/// report describes the fault it gave up on, not the abort.
#[test]
fn first_chance_handler_that_aborts_reports_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "first-abort", true);
    assert_eq!(death_signal(&status), Some(libc::SIGABRT), "{status:?} {out:?}");
    assert!(has(&out, "recovered=3") && has(&out, "first chance gives up"), "{out:?}");
    exactly_one_segv_dump_at(&db, 0x1234);
}

/// The classic give-up: reset to SIG_DFL and `raise()` (the raised signal
/// stays pending until the handler returns): the fault at 0x1234 is
/// reported, and the process dies by SIGSEGV.
#[test]
fn app_handler_that_resets_and_raises_reports_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "raise", true);
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?} {out:?}");
    assert!(has(&out, "app handler raises"), "{out:?}");
    exactly_one_segv_dump_at(&db, 0x1234);
}

/// `exit()` from the handler (the `atexit` hook reports first), and
/// `_exit()` on a thread without an alternate signal stack.
#[test]
fn app_handler_that_exits_with_exit_or_without_alt_stack_still_gets_it_reported() {
    for (mode, code) in [("exit-atexit", 4), ("exit-no-altstack", 3)] {
        let dir = tempfile::tempdir().unwrap();
        let (status, out, db) = run_recover(dir.path(), mode, true);
        assert_eq!(status.code(), Some(code), "{mode}: {status:?} {out:?}");
        assert!(has(&out, "app handler exits"), "{mode}: {out:?}");
        exactly_one_segv_dump_at(&db, 0x1234);
    }
}

/// A new fault inside the app's handler (it divides by zero) is reported as
/// itself: SIGFPE, not the SIGSEGV it was handling.
#[test]
fn a_crash_inside_the_app_handler_is_reported_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "in-handler", true);
    assert_eq!(death_signal(&status), Some(libc::SIGFPE), "{status:?} {out:?}");
    let dumps = pending(&db, 1);
    assert_eq!(metadata_of(&dumps[0])["crash"]["signal_name"], "SIGFPE");
}

/// A handler that `siglongjmp`s out leaves its entry behind; a later
/// `exit(0)` from another handler deep on the same alternate stack must
/// not take that stale entry for a fault: exit 0, no report.
#[test]
fn a_stale_entry_after_siglongjmp_is_never_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "stale", true);
    assert_eq!(status.code(), Some(0), "{status:?} {out:?}");
    assert!(has(&out, "usr1: probe jumped out") && has(&out, "term: exit(0)"), "{out:?}");
    no_reports(&db);
}

/// The stale entry again, where neither the signal mask (an `SA_NODEFER`
/// handler; a SIGTERM handler that blocks everything) nor the stack
/// position tells it apart: the interposed `siglongjmp` forgets the entry
/// when the handler jumps out. Exit 0, no report.
#[test]
fn a_stale_entry_of_an_sa_nodefer_handler_is_never_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "stale-nodefer", true);
    assert_eq!(status.code(), Some(0), "{status:?} {out:?}");
    assert!(has(&out, "usr1: probe jumped out") && has(&out, "term: exit(0)"), "{out:?}");
    no_reports(&db);
}

/// Four threads fault at once and each handler calls `exit(4)`: the first
/// exit reports the fault, the others wait for that dump instead of ending
/// the process under it. Exactly one report; the program's exit code.
#[test]
fn threads_exiting_from_handlers_at_once_file_exactly_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "threads-exit", true);
    assert_eq!(status.code(), Some(4), "{status:?} {out:?}");
    exactly_one_segv_dump_at(&db, 0x1234);
}

/// `kill(getpid(), SIGABRT)` while ignoring SIGABRT is ignored, as without
/// crashmon (only `abort()` is reported).
#[test]
fn sigabrt_sent_by_kill_while_ignored_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, db) = run_recover(dir.path(), "kill-ignored", true);
    assert_eq!(status.code(), Some(0), "{status:?} {out:?}");
    assert!(has(&out, "survived"), "{out:?}");
    no_reports(&db);
}

/// `crashmon.h` compiles as strict ISO C (no feature macros).
#[test]
fn header_compiles_as_strict_c99() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("strict.c");
    std::fs::write(&src, "#include \"crashmon.h\"\nint main(void) { return crashmon_init(0) == 12345; }\n").unwrap();
    let root = workspace_root();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-pedantic", "-Werror", "-Wall", "-c", "-o"])
        .arg(dir.path().join("strict.o"))
        .arg("-I")
        .arg(root.join("crates/capi/include"))
        .arg(&src)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "crashmon.h does not compile with -std=c99 -pedantic");
}

/// A C++ handler that throws (`-fnon-call-exceptions`): the exception
/// unwinds through crashmon's signal handler (declared `C-unwind`) to the
/// program's `catch`, three times; nothing is reported. Skipped, with a
/// note, without a C++ compiler.
#[test]
fn cpp_exception_thrown_from_a_handler_reaches_the_programs_catch() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&cxx).arg("--version").output().is_err() {
        eprintln!("skipped: no C++ compiler ({cxx})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = workspace_root();
    let exe = dir.path().join("throw");
    let status = Command::new(&cxx)
        .args(["-O2", "-g", "-fnon-call-exceptions"])
        .arg(root.join("crates/capi/tests/c/throw.cc"))
        .arg("-o")
        .arg(&exe)
        .arg("-I")
        .arg(root.join("crates/capi/include"))
        .arg("-L")
        .arg(lib_dir())
        .arg("-lcrashmon")
        .arg(format!("-Wl,-rpath,{}", lib_dir().display()))
        .status()
        .unwrap();
    assert!(status.success(), "compiling throw.cc failed");
    let db = dir.path().join("db");
    let mut cmd = Command::new(&exe);
    cmd.env("CRASHMON_MONITOR", bin("crashmon")).env("CRASHMON_DATABASE", &db);
    let (status, out) = run_to_end(cmd);
    assert_eq!(status.code(), Some(0), "{status:?} {out}");
    assert!(out.lines().any(|l| l == "caught=3"), "{out}");
    no_reports(&db);
}

/// Signals that arrive while the monitor has the app stopped for a dump are
/// delivered afterwards, none lost: a thread sends itself SIGUSR1 without
/// pause and waits for its handler to count each one, while the main
/// thread files 20 handled-error reports (the monitor seizes and
/// interrupts every thread for each, and gives a thread caught in a
/// signal-delivery stop its signal back at detach).
#[test]
fn signals_during_dumps_are_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("signal_pump");
    compile_with("crates/capi/tests/c/signal_pump.c", true, &exe, &["-pthread"]);
    let db = dir.path().join("db");
    let mut cmd = launch(&exe, "pump", true);
    cmd.env("CRASHMON_DATABASE", &db);
    let (status, out) = run_to_end(cmd);
    assert_eq!(status.code(), Some(0), "{status:?} {out}");
    assert!(out.lines().any(|l| l == "dumps 20"), "every dump was filed: {out}");
    let signals: u64 =
        out.lines().find_map(|l| l.strip_prefix("signals ")).and_then(|n| n.parse().ok()).expect("signals line");
    assert!(signals > 20, "the pump ran during the dumps: {out}");
    let dumps = pending(&db, 20);
    let md = minidump::Minidump::read_path(&dumps[0]).expect("the dump parses");
    let threads: minidump::MinidumpThreadList<'_> = md.get_stream().expect("thread list");
    assert_eq!(threads.threads.len(), 2, "main and pump threads");
}
