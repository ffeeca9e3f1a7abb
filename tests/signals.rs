//! RELIABILITY A6–A11: the signal path under hostile conditions. Each test
//! crashes a real process (the crasher) served by a real monitor and parses
//! the dump.
//!
//! - A7: no allocation after the crash starts (a counting global allocator
//!   in the crasher), a crash while another thread holds the allocator's
//!   lock, a crash inside the allocator with its lock held, glibc aborting
//!   inside `free`.
//! - A8: `raise(SIGSEGV)`, `kill -SEGV` from another process, a handler
//!   installed before ours (it still runs; the exit signal is right).
//! - A6: a second thread crashes while the first crash is handled.
//! - A9: fork without exec; A10: PID 1 of a new pid namespace; A11: the app
//!   made itself non-dumpable.
//! - `signal()` resets in a Rust app: the app replaces our dispositions
//!   after install, then `rearm()` (C programs: see crates/capi/tests).
//! - A3: a stack overflow on a thread made by `libc::pthread_create` (no
//!   alternate stack) is dumped once the thread calls
//!   `ensure_thread_alt_stack()`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crashmon_test_support::{
    KillOnDrop, bin, death_signal, files_with_ext, one_pending_dump, process_alive, wait_for, wait_timeout,
};
use minidump::{
    Minidump, MinidumpException, MinidumpMemoryList, MinidumpModuleList, MinidumpSystemInfo, MinidumpThreadList,
};

struct Run {
    signal: Option<i32>,
    code: Option<i32>,
    elapsed: Duration,
    stdout: Vec<String>,
    stderr: String,
    db: tempfile::TempDir,
}

impl Run {
    fn field(&self, prefix: &str, key: &str) -> Option<i32> {
        self.stdout.iter().filter(|l| l.starts_with(prefix)).find_map(|l| {
            l.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse::<i32>().ok())
        })
    }
    fn has_line(&self, line: &str) -> bool {
        self.stdout.iter().any(|l| l == line)
    }
}

fn crasher(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("crasher"));
    cmd.args(args)
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .env_remove("CRASHMON_FAULT_INJECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Collect a child's stdout lines and stderr text on threads.
fn collect(child: &mut Child) -> impl FnOnce() -> (Vec<String>, String) + use<> {
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    move || (out.join().unwrap(), err.join().unwrap())
}

/// Run `cmd` to its end (at most `limit`, else the test fails: a hang).
fn run_cmd(mut cmd: Command, db: tempfile::TempDir, limit: Duration) -> Run {
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let output = collect(&mut child);
    let status = wait_timeout(&mut child, limit).unwrap_or_else(|| panic!("hang: still running after {limit:?}"));
    let elapsed = started.elapsed();
    let (stdout, stderr) = output();
    Run { signal: death_signal(&status), code: status.code(), elapsed, stdout, stderr, db }
}

fn run(args: &[&str]) -> Run {
    let db = tempfile::tempdir().unwrap();
    let cmd = crasher(db.path(), args);
    run_cmd(cmd, db, Duration::from_secs(10))
}

fn dumps(db: &Path) -> Vec<PathBuf> {
    files_with_ext(&db.join("pending"), "dmp")
}

fn metadata(dump: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dump.with_extension("json")).unwrap()).unwrap()
}

/// The dump parses (exception, thread list, module list, system info) and
/// its exception names `signal_name`; returns (crash reason, crashing tid).
fn check_dump(dump: &Path, signal_name: &str) -> (String, u32) {
    let md = Minidump::read_path(dump).expect("the dump parses");
    let sys: MinidumpSystemInfo = md.get_stream().expect("system info stream");
    let exc: MinidumpException<'_> = md.get_stream().expect("exception stream");
    let threads: MinidumpThreadList<'_> = md.get_stream().expect("thread list stream");
    let _modules: MinidumpModuleList = md.get_stream().expect("module list stream");
    let reason = exc.get_crash_reason(sys.os, sys.cpu).to_string();
    assert!(reason.starts_with(signal_name), "reason {reason}, expected {signal_name}");
    let tid = exc.get_crashing_thread_id();
    assert!(threads.threads.iter().any(|t| t.raw.thread_id == tid), "crashing thread {tid} is in the thread list");
    (reason, tid)
}

/// The one dump of a run that died by `signal`: in pending/ when the process
/// ended (the handler waits until it is durable), parsed and checked.
fn one_crash(run: &Run, signal: i32, signal_name: &str) -> PathBuf {
    assert_eq!(run.signal, Some(signal), "died by {:?}; stderr: {}", run.signal, run.stderr);
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}", run.elapsed);
    let dump = one_pending_dump(run.db.path(), Duration::from_secs(1));
    check_dump(&dump, signal_name);
    dump
}

fn allocations_after_crash(run: &Run) -> usize {
    assert!(run.has_line("armed"), "the crasher armed its allocation counter: {:?}", run.stdout);
    run.stdout.iter().filter(|l| l.starts_with("alloc-after-crash")).count()
}

// ---------------------------------------------------------------- A7

#[test]
fn a7_no_allocation_on_the_signal_path_of_a_segv() {
    let run = run(&["--crash", "segv", "--count-allocs"]);
    one_crash(&run, libc::SIGSEGV, "SIGSEGV");
    assert_eq!(allocations_after_crash(&run), 0, "{:?}", run.stdout);
}

#[test]
fn a7_no_allocation_on_the_signal_path_of_an_abort() {
    let run = run(&["--crash", "abort", "--count-allocs"]);
    one_crash(&run, libc::SIGABRT, "SIGABRT");
    assert_eq!(allocations_after_crash(&run), 0, "{:?}", run.stdout);
}

/// The counter is live: a panic (whose hook formats its message) is seen
/// allocating after the same arming point.
#[test]
fn a7_the_allocation_counter_sees_the_panic_hook_allocate() {
    let run = run(&["--crash", "panic", "--count-allocs"]);
    assert_eq!(run.signal, Some(libc::SIGABRT));
    assert!(allocations_after_crash(&run) > 0, "the probe must see the panic path's allocations");
}

/// Another thread holds the allocator's lock for ever: any allocation on
/// the signal path would spin for ever (a hang, caught by the timeout).
#[test]
fn a7_crash_while_another_thread_holds_the_allocator_lock() {
    let run = run(&["--crash", "segv", "--alloc-lock-held"]);
    one_crash(&run, libc::SIGSEGV, "SIGSEGV");
}

/// The crash happens inside the allocator, with its lock held by the
/// crashing thread itself.
#[test]
fn a7_crash_inside_the_allocator_with_its_lock_held() {
    let run = run(&["--crash", "alloc-crash"]);
    let dump = one_crash(&run, libc::SIGSEGV, "SIGSEGV");
    let ready_tid = run.field("ready", "tid").expect("ready line") as u32;
    let md = Minidump::read_path(&dump).unwrap();
    let exc: MinidumpException<'_> = md.get_stream().unwrap();
    assert_eq!(exc.get_crashing_thread_id(), ready_tid);
    assert_eq!(metadata(&dump)["crash"]["address"], 0xbad);
}

/// glibc detects a double free and calls abort() from inside free().
#[test]
fn a7_glibc_abort_inside_malloc() {
    let run = run(&["--crash", "double-free"]);
    one_crash(&run, libc::SIGABRT, "SIGABRT");
    assert!(run.stderr.contains("double free"), "glibc's message: {}", run.stderr);
}

// ---------------------------------------------------------------- A8

#[test]
fn a8_raise_sigsegv() {
    let run = run(&["--crash", "raise-segv"]);
    let dump = one_crash(&run, libc::SIGSEGV, "SIGSEGV");
    let m = metadata(&dump);
    assert_eq!(m["crash"]["signal"], libc::SIGSEGV);
    assert_eq!(m["crash"]["tid"], run.field("ready", "tid").unwrap());
}

/// `kill -SEGV PID` from another process (this test).
#[test]
fn a8_kill_from_another_process() {
    let db = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(crasher(db.path(), &["--crash", "wait"]).spawn().unwrap());
    let ready = crashmon_test_support::read_ready(&mut child.0, Duration::from_secs(10)).expect("ready line");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(ready.pid), nix::sys::signal::Signal::SIGSEGV).unwrap();
    let status = wait_timeout(&mut child.0, Duration::from_secs(10)).expect("died after kill");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV));
    let dump = one_pending_dump(db.path(), Duration::from_secs(1));
    check_dump(&dump, "SIGSEGV");
    let m = metadata(&dump);
    assert_eq!(m["pid"], ready.pid);
    assert_eq!(m["crash"]["signal"], libc::SIGSEGV);
}

/// A SIGSEGV handler the app installed before ours still runs after the
/// dump; the process dies by SIGSEGV.
#[test]
fn a8_previous_handler_runs_after_the_dump_segv() {
    let run = run(&["--crash", "segv", "--prev-handler"]);
    one_crash(&run, libc::SIGSEGV, "SIGSEGV");
    assert!(run.has_line("previous handler ran sig=11"), "{:?}", run.stdout);
}

#[test]
fn a8_previous_handler_runs_after_the_dump_abort() {
    let run = run(&["--crash", "abort", "--prev-handler"]);
    one_crash(&run, libc::SIGABRT, "SIGABRT");
    assert!(run.has_line("previous handler ran sig=06"), "{:?}", run.stdout);
}

/// When ours declines (the monitor is gone, so no dump), the previous
/// handler gets the signal and the process still dies by it.
#[test]
fn a8_previous_handler_runs_when_ours_declines() {
    let db = tempfile::tempdir().unwrap();
    let mut cmd = crasher(db.path(), &["--crash", "segv", "--prev-handler", "--wait-stdin"]);
    cmd.stdin(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().expect("ready line").unwrap();
    let monitor: i32 = ready.split_whitespace().find_map(|w| w.strip_prefix("monitor=")?.parse().ok()).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    // The monitor is the crasher's child: it stays a zombie, not alive.
    assert!(wait_for(Duration::from_secs(5), || (!process_alive(monitor)).then_some(())).is_some());
    child.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = wait_timeout(&mut child.0, Duration::from_secs(5)).expect("died promptly without a monitor");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "previous handler ran sig=11"), "{rest:?}");
    assert!(dumps(db.path()).is_empty());
}

// ---------------------------------------------------------------- A6

/// A second thread crashes (SIGABRT) while the first crash (SIGSEGV) is
/// handled, at several delays: the process ends within 10 s, with at most
/// one dump, and dies by the signal of the crash that was dumped.
#[test]
fn a6_second_thread_crashes_during_the_dump() {
    for delay in ["0", "1", "5", "20", "100", "400"] {
        let run = run(&["--crash", "segv", "--second-crash", "abort", "--second-delay-ms", delay]);
        assert!(run.elapsed < Duration::from_secs(10), "delay {delay}: {:?}", run.elapsed);
        let all = dumps(run.db.path());
        assert!(all.len() <= 1, "delay {delay}: {} dumps", all.len());
        let dump = all.first().unwrap_or_else(|| panic!("delay {delay}: no dump; stderr {}", run.stderr));
        let dumped_signal = metadata(dump)["crash"]["signal"].as_i64().unwrap() as i32;
        assert!([libc::SIGSEGV, libc::SIGABRT].contains(&dumped_signal));
        assert_eq!(run.signal, Some(dumped_signal), "delay {delay}: died by the dumped crash's signal");
        check_dump(dump, if dumped_signal == libc::SIGSEGV { "SIGSEGV" } else { "SIGABRT" });
    }
}

// ---------------------------------------------------------------- A9

/// A child forked without exec crashes first (it shares its parent's
/// connection: declined, with one stderr line, and it dies by its signal),
/// then the parent crashes: the monitor still serves it, and the dump is
/// the parent's.
#[test]
fn a9_fork_without_exec_child_then_parent() {
    let run = run(&["--crash", "segv", "--fork-child-first"]);
    let dump = one_crash(&run, libc::SIGSEGV, "SIGSEGV");
    let parent = run.field("ready", "pid").unwrap();
    let child = run.field("child", "pid").expect("child line");
    assert_eq!(run.field("child", "signal"), Some(libc::SIGSEGV), "the child died by its own signal");
    assert!(
        run.stderr.contains(&format!("crashmon: crash in forked child pid {child} (signal 11) not reported")),
        "the refusal is logged: {}",
        run.stderr
    );
    assert_eq!(metadata(&dump)["pid"], parent);
    let md = Minidump::read_path(&dump).unwrap();
    let threads: MinidumpThreadList<'_> = md.get_stream().unwrap();
    assert!(threads.threads.iter().any(|t| t.raw.thread_id == parent as u32), "the parent's threads are dumped");
}

// ---------------------------------------------------------------- A10

/// `unshare --pid --fork --mount-proc` (root only), or None with a reason.
fn unshare_available() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root for a new pid namespace");
        return None;
    }
    let path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("unshare"))
        .find(|p| p.is_file());
    if path.is_none() {
        eprintln!("skipped: unshare(1) not found");
        return None;
    }
    let ok = Command::new(path.as_ref().unwrap())
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: unshare --pid --fork --mount-proc is not permitted here");
        return None;
    }
    path
}

/// The one dump of a run whose monitor may have died with the app: in
/// pending/, or still in new/ with its metadata (the monitor replies once
/// the dump and its metadata are fsynced there and publishes it to pending/
/// afterwards; if it dies first, the next sweep publishes it).
fn one_durable_dump(db: &Path) -> PathBuf {
    let found = wait_for(Duration::from_secs(1), || {
        let mut all = files_with_ext(&db.join("pending"), "dmp");
        all.extend(files_with_ext(&db.join("new"), "dmp").into_iter().filter(|d| d.with_extension("json").is_file()));
        (!all.is_empty()).then_some(all)
    })
    .unwrap_or_default();
    assert_eq!(found.len(), 1, "exactly one durable dump: {found:?}");
    found.into_iter().next().unwrap()
}

/// The app is PID 1 of a new pid namespace (with its own /proc, as in a
/// container): no hang, and the dump is durable before the process exits.
/// (When PID 1 dies the kernel kills the whole namespace, the monitor too:
/// only a dump made durable before the app's death survives.)
#[test]
fn a10_app_is_pid_1_of_a_new_pid_namespace() {
    let Some(unshare) = unshare_available() else { return };
    // A PID 1 cannot re-raise a signal to itself (the kernel drops signals
    // with the default action sent to a namespace's init), so after the
    // SIGABRT dump glibc's abort() ends it with a faulting instruction:
    // SIGSEGV. Kernel-generated faults do kill it.
    let cases = [
        ("segv", libc::SIGSEGV, "SIGSEGV", [libc::SIGSEGV, libc::SIGSEGV]),
        ("abort", libc::SIGABRT, "SIGABRT", [libc::SIGABRT, libc::SIGSEGV]),
    ];
    for (kind, signal, name, may_end_by) in cases {
        let db = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(&unshare);
        cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(bin("crasher"))
            .args(["--crash", kind])
            .env("CRASHMON_DATABASE", db.path())
            .env("CRASHMON_MONITOR", bin("crashmon"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let run = run_cmd(cmd, db, Duration::from_secs(10));
        assert_eq!(run.field("ready", "pid"), Some(1), "{kind}: the crasher is PID 1: {:?}", run.stdout);
        assert!(run.elapsed < Duration::from_secs(10), "{kind}: {:?}", run.elapsed);
        let dump = one_durable_dump(run.db.path());
        check_dump(&dump, name);
        let m = metadata(&dump);
        assert_eq!(m["pid"], 1, "{kind}");
        assert_eq!(m["crash"]["signal"], signal, "{kind}");
        // unshare(1) reports how its child ended: by the same signal, or
        // as exit status 128 + signal.
        let ended = run.signal.or(run.code.map(|c| c - 128));
        assert!(
            ended.is_some_and(|s| may_end_by.contains(&s)),
            "{kind}: ended by {ended:?} (signal {:?}, code {:?}); stderr {}",
            run.signal,
            run.code,
            run.stderr
        );
    }
}

// ---------------------------------------------------------------- A11

/// The app made itself non-dumpable: the dump is still produced (the
/// handler makes the process dumpable again at crash time), with the
/// crashing thread's stack memory.
#[test]
fn a11_undumpable_app_is_still_dumped() {
    let run = run(&["--crash", "segv", "--undumpable"]);
    let dump = one_crash(&run, libc::SIGSEGV, "SIGSEGV");
    let md = Minidump::read_path(&dump).unwrap();
    let threads: MinidumpThreadList<'_> = md.get_stream().unwrap();
    let memory: MinidumpMemoryList<'_> = md.get_stream().unwrap();
    let tid = run.field("ready", "tid").unwrap() as u32;
    let thread = threads.threads.iter().find(|t| t.raw.thread_id == tid).unwrap();
    let memory = minidump::UnifiedMemoryList::Memory(memory);
    assert!(thread.stack_memory(&memory).is_some_and(|s| s.size() > 0), "stack memory present");
}

// ---------------------------------------------------------------- signal() resets

/// A Rust app replaces our SIGSEGV/SIGABRT handlers after install (with
/// libc's sigaction: nothing interposes it in a Rust app), then calls
/// `rearm()`: both signals are re-armed, the crash is dumped, then the
/// app's handler runs, and the process dies by SIGSEGV.
#[test]
fn reset_handler_then_rearm_dumps_and_chains_to_the_app_handler() {
    let run = run(&["--crash", "segv", "--late-handler", "handler", "--rearm"]);
    assert!(run.has_line("rearmed n=2"), "{:?}", run.stdout);
    one_crash(&run, libc::SIGSEGV, "SIGSEGV");
    assert!(run.has_line("late handler ran sig=11"), "{:?}", run.stdout);
}

#[test]
fn reset_handler_then_rearm_dumps_an_abort() {
    let run = run(&["--crash", "abort", "--late-handler", "handler", "--rearm"]);
    one_crash(&run, libc::SIGABRT, "SIGABRT");
    assert!(run.has_line("late handler ran sig=06"), "{:?}", run.stdout);
}

/// Reset to SIG_DFL, then `rearm()`: dumped, and still dies by SIGSEGV.
#[test]
fn reset_to_default_then_rearm_dumps() {
    let run = run(&["--crash", "segv", "--late-handler", "default", "--rearm"]);
    assert!(run.has_line("rearmed n=2"), "{:?}", run.stdout);
    one_crash(&run, libc::SIGSEGV, "SIGSEGV");
}

/// A Rust runtime's first-chance handler
/// (`crashmon_handler::set_first_chance_handler`) takes the faults on its
/// guard page (three writes go through, no report), and declines the real
/// crash, which is dumped as usual.
#[test]
fn first_chance_handler_takes_its_faults_and_declines_the_crash() {
    let run = run(&["--crash", "segv", "--first-chance-guard"]);
    assert!(run.has_line("recovered=3"), "{:?} {}", run.stdout, run.stderr);
    one_crash(&run, libc::SIGSEGV, "SIGSEGV");
}

/// `rearm()` with nothing changed re-arms nothing and harms nothing.
#[test]
fn rearm_without_a_reset_changes_nothing() {
    let run = run(&["--crash", "segv", "--rearm"]);
    assert!(run.has_line("rearmed n=0"), "{:?}", run.stdout);
    one_crash(&run, libc::SIGSEGV, "SIGSEGV");
}

/// The control: without `rearm()` the replaced handler has the signal to
/// itself (no dump), so the tests above pass because of `rearm()`.
#[test]
fn reset_handler_without_rearm_is_the_apps_alone() {
    let run = run(&["--crash", "segv", "--late-handler", "handler"]);
    assert_eq!(run.signal, Some(libc::SIGSEGV), "stderr: {}", run.stderr);
    assert!(run.has_line("late handler ran sig=11"), "{:?}", run.stdout);
    std::thread::sleep(Duration::from_millis(300));
    assert!(dumps(run.db.path()).is_empty());
}

// ---------------------------------------------------------------- A3, C-created threads

/// A stack overflow on a 64 KiB thread made by `libc::pthread_create` (C
/// code's way: no alternate signal stack) that called
/// `ensure_thread_alt_stack()`: dumped, blamed on that thread, with its
/// stack memory.
#[test]
fn a3_overflow_on_a_c_created_thread_with_ensure_thread_alt_stack_is_dumped() {
    let run = run(&["--crash", "stack-overflow", "--on", "small-pthread", "--thread-alt-stack"]);
    let dump = one_crash(&run, libc::SIGSEGV, "SIGSEGV");
    let tid = run.field("crashing", "tid").expect("crashing tid line") as u32;
    let md = Minidump::read_path(&dump).unwrap();
    let exc: MinidumpException<'_> = md.get_stream().unwrap();
    assert_eq!(exc.get_crashing_thread_id(), tid, "the overflowing thread is blamed");
    let threads: MinidumpThreadList<'_> = md.get_stream().unwrap();
    let memory: MinidumpMemoryList<'_> = md.get_stream().unwrap();
    let memory = minidump::UnifiedMemoryList::Memory(memory);
    let thread = threads.threads.iter().find(|t| t.raw.thread_id == tid).unwrap();
    assert!(thread.stack_memory(&memory).is_some_and(|s| s.size() > 0), "its stack memory is in the dump");
}

/// The control: the same thread without `ensure_thread_alt_stack()` has no
/// stack to run a handler on; the kernel kills the process, no dump.
#[test]
fn a3_overflow_on_a_c_created_thread_without_an_alt_stack_is_lost() {
    let run = run(&["--crash", "stack-overflow", "--on", "small-pthread"]);
    assert_eq!(run.signal, Some(libc::SIGSEGV), "stderr: {}", run.stderr);
    assert!(run.field("crashing", "tid").is_some(), "{:?}", run.stdout);
    std::thread::sleep(Duration::from_millis(300));
    assert!(dumps(run.db.path()).is_empty());
}
