//! RELIABILITY A2, A3, A4, A13: every signal on every kind of thread, stack
//! overflows, panics and handled errors, each a real crashing process with a
//! real monitor, each dump parsed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_test_support::{bin, death_signal, files_with_ext, one_pending_dump, wait_for, wait_timeout};
use minidump::{
    Minidump, MinidumpException, MinidumpMemoryList, MinidumpSystemInfo, MinidumpThreadList, MinidumpThreadNames,
};

struct Outcome {
    signal: Option<i32>,
    crashing_tid: i32,
    lines: Vec<String>,
    db: tempfile::TempDir,
}

/// Run the crasher; return how it died, the tid that crashed and its stdout.
fn run(kind: &str, on: &str, extra: &[&str]) -> Outcome {
    let db = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("crasher"))
        .args(["--crash", kind, "--on", on])
        .args(extra)
        .env("CRASHMON_DATABASE", db.path())
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .env_remove("CRASHMON_FAULT_INJECT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn crasher");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("crasher ended within 10 s");
    let lines = reader.join().unwrap();
    let field = |prefix: &str, key: &str| {
        lines.iter().filter(|l| l.starts_with(prefix)).find_map(|l| {
            l.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse::<i32>().ok())
        })
    };
    let crashing_tid = field("crashing", "tid").or_else(|| field("ready", "tid")).expect("tid in output");
    Outcome { signal: death_signal(&status), crashing_tid, lines, db }
}

fn dumps(db: &Path) -> Vec<PathBuf> {
    files_with_ext(&db.join("pending"), "dmp")
}

fn one_dump(db: &Path) -> PathBuf {
    one_pending_dump(db, Duration::from_secs(5))
}

fn metadata(dump: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dump.with_extension("json")).unwrap()).unwrap()
}

/// A signal crash: one dump whose exception names the signal, the thread,
/// and the process died by it.
fn check_signal(kind: &str, on: &str, signal: i32, reason_prefix: &str) {
    let out = run(kind, on, &[]);
    assert_eq!(out.signal, Some(signal), "{kind} on {on}: died by {:?}", out.signal);
    let dump = one_dump(out.db.path());
    let md = Minidump::read_path(&dump).expect("parses");
    let sys: MinidumpSystemInfo = md.get_stream().unwrap();
    let exc: MinidumpException<'_> = md.get_stream().unwrap();
    let reason = exc.get_crash_reason(sys.os, sys.cpu).to_string();
    assert!(reason.starts_with(reason_prefix), "{kind} on {on}: reason {reason}");
    assert_eq!(exc.get_crashing_thread_id(), out.crashing_tid as u32, "{kind} on {on}: crashing thread");
    let threads: MinidumpThreadList<'_> = md.get_stream().unwrap();
    assert!(threads.threads.iter().any(|t| t.raw.thread_id == out.crashing_tid as u32));
    let m = metadata(&dump);
    assert_eq!(m["crash"]["kind"], "signal");
    assert_eq!(m["crash"]["signal"], signal);
    assert_eq!(m["crash"]["tid"], out.crashing_tid);
}

const SIGNALS: [(&str, i32, &str); 7] = [
    ("segv", libc::SIGSEGV, "SIGSEGV"),
    ("abort", libc::SIGABRT, "SIGABRT"),
    ("bus", libc::SIGBUS, "SIGBUS"),
    ("fpe", libc::SIGFPE, "SIGFPE"),
    ("ill", libc::SIGILL, "SIGILL"),
    ("trap", libc::SIGTRAP, "SIGTRAP"),
    ("sys", libc::SIGSYS, "SIGSYS"),
];

#[test]
fn a2_every_signal_on_the_main_thread() {
    for (kind, sig, reason) in SIGNALS {
        check_signal(kind, "main", sig, reason);
    }
}

#[test]
fn a2_every_signal_on_a_std_thread() {
    for (kind, sig, reason) in SIGNALS {
        check_signal(kind, "thread", sig, reason);
    }
}

#[test]
fn a2_every_signal_on_a_raw_pthread() {
    for (kind, sig, reason) in SIGNALS {
        check_signal(kind, "pthread", sig, reason);
    }
}

/// A3: stack overflow; the crashing thread's stack memory is in the dump.
fn check_stack_overflow(on: &str) {
    check_signal("stack-overflow", on, libc::SIGSEGV, "SIGSEGV");
    let out = run("stack-overflow", on, &[]);
    let dump = one_dump(out.db.path());
    let md = Minidump::read_path(&dump).unwrap();
    let threads: MinidumpThreadList<'_> = md.get_stream().unwrap();
    let memory: MinidumpMemoryList<'_> = md.get_stream().unwrap();
    let thread = threads.threads.iter().find(|t| t.raw.thread_id == out.crashing_tid as u32).unwrap();
    let memory = minidump::UnifiedMemoryList::Memory(memory);
    let stack = thread.stack_memory(&memory).expect("crashing thread's stack memory present");
    assert!(stack.size() > 0);
}

#[test]
fn a3_stack_overflow_on_main_thread() {
    check_stack_overflow("main");
}

#[test]
fn a3_stack_overflow_on_std_thread() {
    check_stack_overflow("thread");
}

/// A4: a Rust panic is reported with its message and location, and the
/// process dies by SIGABRT.
#[test]
fn a4_panic_is_reported_with_message_and_location() {
    for on in ["main", "thread"] {
        let out = run("panic", on, &[]);
        assert_eq!(out.signal, Some(libc::SIGABRT), "panic on {on}");
        let dump = one_dump(out.db.path());
        let md = Minidump::read_path(&dump).expect("parses");
        // The exception stream names SIGABRT on the panicking thread.
        let sys: MinidumpSystemInfo = md.get_stream().unwrap();
        let exc: MinidumpException<'_> = md.get_stream().unwrap();
        let reason = exc.get_crash_reason(sys.os, sys.cpu).to_string();
        assert!(reason.starts_with("SIGABRT"), "panic on {on}: exception {reason}");
        assert_eq!(exc.get_crashing_thread_id(), out.crashing_tid as u32);
        let m = metadata(&dump);
        assert_eq!(m["crash"]["kind"], "panic");
        assert_eq!(m["crash"]["signal_name"], "SIGABRT");
        let msg = m["crash"]["message"].as_str().unwrap();
        assert!(msg.contains("index out of bounds"), "{msg}");
        assert!(msg.contains("crates/demo/src/lib.rs:"), "location in {msg}");
        assert_eq!(m["crash"]["tid"], out.crashing_tid);
    }
}

/// A13: a handled error files a report of the live process, which keeps
/// running (here: it goes on to crash, producing a second report).
#[test]
fn a13_requested_dump_keeps_the_app_running() {
    let out = run("segv", "main", &["--request-dump"]);
    let requested = out.lines.iter().find_map(|l| l.strip_prefix("requested id=")).expect("request_dump succeeded");
    // The app keeps running, so the monitor publishes before it answers:
    // the id request_dump returns is already a listed report.
    assert!(
        out.lines.iter().any(|l| l == "requested listed=yes"),
        "listed when request_dump returned: {:?}",
        out.lines
    );
    assert_eq!(out.signal, Some(libc::SIGSEGV), "the app kept running after the requested dump, then crashed");
    let all = wait_for(Duration::from_secs(5), || {
        let d = dumps(out.db.path());
        (d.len() == 2).then_some(d)
    })
    .expect("two dumps: the requested one and the crash");
    let req =
        all.iter().find(|p| p.file_stem().unwrap().to_str() == Some(requested)).expect("requested id is a report");
    let m = metadata(req);
    assert_eq!(m["crash"]["kind"], "requested");
    assert_eq!(m["crash"]["message"], "crasher: handled error before the crash");
    assert!(m["crash"]["signal"].is_null());
    let md = Minidump::read_path(req).expect("parses");
    let exc: MinidumpException<'_> = md.get_stream().unwrap();
    assert_eq!(exc.get_crashing_thread_id(), out.crashing_tid as u32);
}

/// Annotations set ahead of time are in the report's metadata; an oversized
/// value is truncated (not a crash), a removed key is gone.
#[test]
fn annotations_reach_the_report() {
    let out = run(
        "segv",
        "main",
        &[
            "--annotate",
            "version=1.2.3",
            "--annotate",
            "build=ci 42",
            "--annotate",
            "temporary=x",
            "--annotate",
            "temporary=<remove>",
            "--annotate",
            "huge=<big>",
        ],
    );
    assert_eq!(out.signal, Some(libc::SIGSEGV));
    let m = metadata(&one_dump(out.db.path()));
    let a = &m["annotations"];
    assert_eq!(a["version"], "1.2.3");
    assert_eq!(a["build"], "ci 42");
    assert!(a.get("temporary").is_none(), "removed: {a}");
    assert_eq!(a["huge"].as_str().unwrap().len(), 20 * 1024, "truncated to 20 KiB");
}

/// Breadcrumbs: the newest 100 reach the report's metadata, oldest first.
#[test]
fn breadcrumbs_keep_the_newest_hundred() {
    let out = run("segv", "main", &["--breadcrumbs", "150"]);
    assert_eq!(out.signal, Some(libc::SIGSEGV));
    let m = metadata(&one_dump(out.db.path()));
    let crumbs = m["breadcrumbs"].as_array().expect("breadcrumbs in metadata");
    assert_eq!(crumbs.len(), 100);
    assert_eq!(crumbs[0]["message"], "step 50");
    assert_eq!(crumbs[99]["message"], "step 149");
    assert_eq!(crumbs[99]["level"], "warning");
    assert_eq!(crumbs[98]["level"], "info");
    assert_eq!(crumbs[0]["category"], "crasher");
    assert!(crumbs[0]["timestamp_ms"].as_u64().unwrap() <= crumbs[99]["timestamp_ms"].as_u64().unwrap());
}

/// The `tracing` layer turns events at or above its level into breadcrumbs.
#[test]
fn tracing_events_become_breadcrumbs() {
    let out = run("segv", "main", &["--tracing-breadcrumbs", "3"]);
    assert_eq!(out.signal, Some(libc::SIGSEGV));
    let m = metadata(&one_dump(out.db.path()));
    let crumbs = m["breadcrumbs"].as_array().expect("breadcrumbs");
    let texts: Vec<&str> = crumbs.iter().map(|c| c["message"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "processing order order=0",
            "processing order order=1",
            "processing order order=2",
            "payment backend unreachable"
        ]
    );
    assert_eq!(crumbs[3]["level"], "error");
    assert_eq!(crumbs[0]["category"], "crasher");
}

/// Every thread's name is in the dump, with few threads (read before the
/// thread list is written) and with many (read on a second thread while it
/// is written), and every thread of the app is in the thread list.
#[test]
fn thread_names_reach_the_dump() {
    for idle in [2usize, 40] {
        let threads = idle.to_string();
        let out = run("segv", "main", &["--threads", &threads]);
        assert_eq!(out.signal, Some(libc::SIGSEGV), "{idle} idle threads");
        let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
        let list: MinidumpThreadList<'_> = md.get_stream().unwrap();
        let names: MinidumpThreadNames = md.get_stream().expect("a thread names stream");
        assert_eq!(list.threads.len(), idle + 1, "the main thread and {idle} idle ones");
        // Each idle thread's name under its own id (printed by the crasher).
        let idle_tids: Vec<(String, u32)> = out
            .lines
            .iter()
            .filter(|l| l.starts_with("idle-"))
            .filter_map(|l| {
                let (name, tid) = l.split_once(" tid=")?;
                Some((name.to_owned(), tid.parse().ok()?))
            })
            .collect();
        assert_eq!(idle_tids.len(), idle, "{:?}", out.lines);
        for (name, tid) in &idle_tids {
            assert!(list.threads.iter().any(|t| t.raw.thread_id == *tid), "{name} (tid {tid}) in the thread list");
            assert_eq!(names.get_name(*tid).as_deref(), Some(name.as_str()), "the name of tid {tid}");
        }
        assert_eq!(names.get_name(out.crashing_tid as u32).as_deref(), Some("crasher"));
        // /proc/PID/maps as the LinuxMaps stream (the text the capture read
        // for its mappings): the executable, the main stack, and a mapping
        // for each idle thread's stack at least.
        let maps = md.get_raw_stream(minidump::format::MINIDUMP_STREAM_TYPE::LinuxMaps as u32).expect("a maps stream");
        let maps = String::from_utf8_lossy(maps);
        assert!(maps.lines().any(|l| l.contains("/crasher")), "{maps}");
        assert!(maps.lines().any(|l| l.ends_with("[stack]")), "{maps}");
        assert!(maps.lines().count() >= 2 * idle, "a stack and a guard page per idle thread: {maps}");
    }
}

/// The module list and the DSO debug stream of a plain crash: the
/// executable under its own path (it has no SONAME), libc and the loader
/// under their SONAMEs,
/// and the DSO debug stream with the executable's whole dynamic section
/// (read from memory at once): the same tags, in the same order, as the
/// file's PT_DYNAMIC up to DT_NULL, DT_DEBUG pointing at the loader's
/// r_debug, and one link map entry per loaded object.
#[test]
fn modules_and_the_dynamic_section_reach_the_dump() {
    let out = run("segv", "main", &[]);
    assert_eq!(out.signal, Some(libc::SIGSEGV));
    let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
    let modules: minidump::MinidumpModuleList = md.get_stream().expect("a module list");
    let names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
    let exe = bin("crasher").canonicalize().unwrap();
    assert!(names.iter().any(|n| Path::new(n) == exe), "{} among {names:?}", exe.display());
    assert!(names.iter().any(|n| n.ends_with("/libc.so.6")), "{names:?}");
    let loader = if cfg!(target_arch = "aarch64") { "/ld-linux-aarch64.so.1" } else { "/ld-linux-x86-64.so.2" };
    assert!(names.iter().any(|n| n.ends_with(loader)), "{names:?}");

    let raw =
        md.get_raw_stream(minidump::format::MINIDUMP_STREAM_TYPE::LinuxDsoDebug as u32).expect("a DSO debug stream");
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    // DSO_DEBUG_64, packed: version, map, dso_count (u32), brk, ldbase,
    // dynamic (u64), 36 bytes; then the dynamic section's entries.
    let dso_count = u32_at(raw, 8) as usize;
    assert_eq!((raw.len() - 36) % 16, 0, "whole entries: {} bytes", raw.len());
    assert!(dso_count >= 4, "the executable, the vDSO, libc, the loader at least: {dso_count}");
    let in_dump: Vec<(u64, u64)> = raw[36..].chunks_exact(16).map(|e| (u64_at(e, 0), u64_at(e, 8))).collect();
    assert_eq!(in_dump.last().map(|e| e.0), Some(0), "ends with DT_NULL");
    const DT_DEBUG: u64 = 21;
    assert!(in_dump.iter().any(|&(tag, val)| tag == DT_DEBUG && val != 0), "DT_DEBUG set by the loader");

    // The file's PT_DYNAMIC, parsed by hand (ELF64, little endian).
    let file = std::fs::read(&exe).unwrap();
    let (phoff, phentsize, phnum) = (
        u64_at(&file, 0x20) as usize,
        u16::from_le_bytes([file[0x36], file[0x37]]) as usize,
        u16::from_le_bytes([file[0x38], file[0x39]]) as usize,
    );
    const PT_DYNAMIC: u32 = 2;
    let dynamic = (0..phnum)
        .map(|i| &file[phoff + i * phentsize..phoff + (i + 1) * phentsize])
        .find(|ph| u32_at(ph, 0) == PT_DYNAMIC)
        .map(|ph| u64_at(ph, 8) as usize)
        .expect("the crasher is dynamically linked");
    let mut file_tags = Vec::new();
    for entry in file[dynamic..].chunks_exact(16) {
        file_tags.push(u64_at(entry, 0));
        if file_tags.last() == Some(&0) {
            break;
        }
    }
    let dump_tags: Vec<u64> = in_dump.iter().map(|e| e.0).collect();
    assert_eq!(dump_tags, file_tags, "the dynamic section's tags, in order");
}

/// The hex value of `key=0x…` in the crasher's output.
fn printed(out: &Outcome, key: &str) -> u64 {
    out.lines
        .iter()
        .find_map(|l| {
            let v = l.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix("=0x"))?;
            u64::from_str_radix(v, 16).ok()
        })
        .unwrap_or_else(|| panic!("{key} in {:?}", out.lines))
}

/// The crashing thread's context registers (stack pointer, instruction
/// pointer) and its stack memory's (start, size), from a dump.
fn crashing_thread(out: &Outcome) -> (u64, u64, Option<(u64, u64)>) {
    let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
    let sys: MinidumpSystemInfo = md.get_stream().unwrap();
    let exc: MinidumpException<'_> = md.get_stream().unwrap();
    assert_eq!(exc.get_crashing_thread_id(), out.crashing_tid as u32);
    let ctx = exc.context(&sys, None).expect("the crash context");
    let threads: MinidumpThreadList<'_> = md.get_stream().unwrap();
    let memory: MinidumpMemoryList<'_> = md.get_stream().unwrap();
    let thread = threads.threads.iter().find(|t| t.raw.thread_id == out.crashing_tid as u32).expect("listed");
    let memory = minidump::UnifiedMemoryList::Memory(memory);
    let stack = thread.stack_memory(&memory).map(|m| (m.base_address(), m.size()));
    (ctx.get_stack_pointer(), ctx.get_instruction_pointer(), stack)
}

/// A stack pointer at the top of the address space (stack corruption):
/// the capture ends (before, its search for the stack's mapping wrapped
/// around and walked the whole address space, the app stopped), the app
/// dies by its SIGILL, and the dump has the bad stack pointer and no
/// stack.
#[test]
fn a_stack_pointer_at_the_top_of_memory_neither_hangs_nor_breaks_the_dump() {
    let out = run("bad-sp", "main", &[]);
    assert_eq!(out.signal, Some(libc::SIGILL), "{:?}", out.lines);
    let (sp, _, stack) = crashing_thread(&out);
    assert_eq!(sp, printed(&out, "sp"));
    assert_eq!(stack, None, "no stack to copy");
}

/// A stack pointer near the start of a 64 MiB read-write mapping: the dump
/// holds 8 MiB from the stack pointer up, not the other 56 MiB (before,
/// the whole rest of the mapping was copied, into memory and the dump).
#[test]
fn a_stack_pointer_in_the_heap_copies_a_bounded_stack() {
    let out = run("sp-in-heap", "main", &[]);
    assert_eq!(out.signal, Some(libc::SIGILL), "{:?}", out.lines);
    let (sp, _, stack) = crashing_thread(&out);
    assert_eq!(sp, printed(&out, "sp"));
    assert_eq!(stack, Some((sp, 8 << 20)), "8 MiB from the stack pointer");
}

/// A jump into a PROT_NONE page: the code around the instruction pointer
/// cannot be read, and the dump is written without it (before, the failed
/// read failed the whole dump).
#[test]
fn a_jump_into_unreadable_memory_still_gives_a_dump() {
    let out = run("jump-prot-none", "main", &[]);
    assert_eq!(out.signal, Some(libc::SIGSEGV), "{:?}", out.lines);
    let (_, ip, stack) = crashing_thread(&out);
    assert_eq!(ip, printed(&out, "addr"));
    assert!(stack.is_some_and(|(_, size)| size > 0), "the stack is there: {stack:?}");
}

/// A loaded library whose file name has a non-ASCII character in its
/// version (`libcrashmon-test.so.1.2.3ß`, a copy of the test's own
/// libgcc_s): the dump is written and lists it (before, parsing the
/// version panicked on a character boundary and the dump failed).
#[test]
fn a_library_with_a_non_ascii_version_is_listed() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libgcc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libgcc_s.so"))
        .expect("the test links libgcc_s")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libcrashmon-test.so.1.2.3\u{df}");
    std::fs::copy(&libgcc, &lib).unwrap();
    let out = run("segv", "main", &["--dlopen", lib.to_str().unwrap()]);
    assert_eq!(out.signal, Some(libc::SIGSEGV), "{:?}", out.lines);
    let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
    let modules: minidump::MinidumpModuleList = md.get_stream().expect("a module list");
    // Named after its SONAME, in its own directory.
    assert!(
        modules.iter().any(|m| Path::new(&m.name).starts_with(dir.path())),
        "{} among {:?}",
        lib.display(),
        modules.iter().map(|m| m.name.clone()).collect::<Vec<_>>()
    );
}

/// A mapping whose file was replaced by a FIFO (the name in the maps,
/// less " (deleted)", now names the FIFO): the capture does not open it
/// (an open blocks until a writer comes; before, the capture hung there
/// with the app stopped), and the dump is written.
#[test]
fn a_mapped_file_replaced_by_a_fifo_does_not_hang_the_capture() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("replaced.bin");
    let out = run("segv", "main", &["--map-then-fifo", fifo.to_str().unwrap()]);
    assert_eq!(out.signal, Some(libc::SIGSEGV), "{:?}", out.lines);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was there");
    let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
    let _: MinidumpThreadList<'_> = md.get_stream().expect("a thread list");
}

/// A thread in a killable wait (a vfork parent whose child never execs,
/// as in a stuck `posix_spawn`; NFS and FUSE waits are alike) does not
/// stop for the dump: after the stop deadline (2 s) the dump is written
/// without it (before, the capture waited for it forever, the app
/// stopped), and the app dies by its signal.
#[test]
fn a_thread_that_cannot_stop_is_left_out_after_the_deadline() {
    let out = run("segv", "main", &["--vfork-stuck"]);
    let child = out
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("vfork-child pid=")?.trim().parse::<i32>().ok())
        .expect("the vfork child started");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::Signal::SIGKILL);
    assert_eq!(out.signal, Some(libc::SIGSEGV), "{:?}", out.lines);
    let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
    let threads: MinidumpThreadList<'_> = md.get_stream().expect("a thread list");
    let tids: Vec<u32> = threads.threads.iter().map(|t| t.raw.thread_id).collect();
    assert!(tids.contains(&(out.crashing_tid as u32)), "the crashing thread: {tids:?}");
    let task = std::fs::read_dir(format!("/proc/{}/task", out.crashing_tid));
    assert!(task.is_err(), "the app is gone");
    assert_eq!(tids.len(), 1, "the stuck thread is left out: {tids:?}");
}

/// The same stuck thread in a requested dump (the app goes on): the dump
/// is filed without it, and the thread is not left traced by the monitor
/// (the capture ran on a thread of its own, which ended; a thread left
/// traced would stop for good when its wait ends).
#[test]
fn a_requested_dump_leaves_no_thread_traced() {
    let out = run("segv", "main", &["--vfork-stuck", "--request-dump"]);
    if let Some(child) = out.lines.iter().find_map(|l| l.strip_prefix("vfork-child pid=")?.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(out.lines.iter().any(|l| l.starts_with("requested id=")), "{:?}", out.lines);
    assert!(out.lines.iter().any(|l| l == "stuck-thread tracer=0"), "not traced after the dump: {:?}", out.lines);
    assert_eq!(out.signal, Some(libc::SIGSEGV));
}

/// A mapped file at the filesystem root whose name starts with `/SYSV`
/// but is not a System V segment's (`/SYSVaabbccdd`): procfs-core's maps
/// parser sliced bytes 5..13 of it (a panic for a short name, an error
/// failing the maps for a longer one). Both are mapped; the dump is
/// written and lists the mappings. Needs write access to `/` (root, as in
/// CI); elsewhere it says so and checks nothing.
#[test]
fn files_named_like_sysv_segments_do_not_break_the_maps() {
    let short = format!("/SYSVcm{}", std::process::id() % 1000);
    let long = format!("/SYSVcrashmon-test-{}", std::process::id());
    let made: Vec<&String> =
        [&short, &long].into_iter().filter(|p| std::fs::write(p, vec![0u8; 8192]).is_ok()).collect();
    if made.len() < 2 {
        for p in made {
            let _ = std::fs::remove_file(p);
        }
        assert!(!nix::unistd::geteuid().is_root(), "root can write to /");
        eprintln!("skipped: cannot write to / (not root)");
        return;
    }
    let out = run("segv", "main", &["--map-file", &short, "--map-file", &long]);
    let _ = std::fs::remove_file(&short);
    let _ = std::fs::remove_file(&long);
    assert_eq!(out.signal, Some(libc::SIGSEGV), "{:?}", out.lines);
    let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
    let maps = md.get_raw_stream(minidump::format::MINIDUMP_STREAM_TYPE::LinuxMaps as u32).expect("the maps");
    let maps = String::from_utf8_lossy(maps);
    assert!(maps.contains(&format!(" {short}\n")) && maps.contains(&format!(" {long}\n")), "{maps}");
    let info: minidump::MinidumpMemoryInfoList<'_> = md.get_stream().expect("the memory info list");
    assert!(info.iter().count() > 10, "every mapping's info");
    let modules: minidump::MinidumpModuleList = md.get_stream().expect("a module list");
    assert!(modules.iter().any(|m| m.name.ends_with("/crasher")), "the module list is whole");
}

/// A crashed app's memory is not to be trusted: with the loader's link
/// map made a cycle (its last entry points back at the first) and
/// `r_debug.r_state` outside its enum, the capture still ends (before, it
/// followed the chain forever with the app stopped), the app dies by its
/// signal, and the DSO debug stream lists each loaded object once.
#[test]
fn a_corrupt_link_map_neither_hangs_nor_breaks_the_dump() {
    let out = run("segv", "main", &["--corrupt-link-map"]);
    assert_eq!(out.signal, Some(libc::SIGSEGV), "{:?}", out.lines);
    let entries = out
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("link-map entries=")?.parse::<u32>().ok())
        .expect("the crasher corrupted its link map");
    assert!(entries >= 4, "{entries}");
    let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
    let _: minidump::MinidumpThreadList<'_> = md.get_stream().expect("a thread list");
    let raw =
        md.get_raw_stream(minidump::format::MINIDUMP_STREAM_TYPE::LinuxDsoDebug as u32).expect("a DSO debug stream");
    let dso_count = u32::from_le_bytes(raw[8..12].try_into().unwrap());
    assert_eq!(dso_count, entries, "each object of the cycle once");
}

/// Threads that appear and exit while the app is being dumped (4 threads
/// starting and joining threads in a loop): every time the app dies by its
/// signal with one dump that parses and holds the crashing thread, its
/// idle threads and the churning ones. (The capture lists the threads
/// again when a listed thread is gone or the count disagrees; by hand,
/// that happened in about a third of such crashes: the dumps' soft errors
/// name the threads that exited. The test does not require it.)
#[test]
fn threads_coming_and_going_during_the_dump() {
    for round in 0..10 {
        let started = std::time::Instant::now();
        let out = run("segv", "main", &["--threads", "3", "--churn", "4"]);
        assert_eq!(out.signal, Some(libc::SIGSEGV), "round {round}");
        assert!(started.elapsed() < Duration::from_secs(10), "round {round}: {:?}", started.elapsed());
        let md = Minidump::read_path(one_dump(out.db.path())).expect("parses");
        let list: MinidumpThreadList<'_> = md.get_stream().unwrap();
        assert!(list.threads.iter().any(|t| t.raw.thread_id == out.crashing_tid as u32), "round {round}");
        let names: MinidumpThreadNames = md.get_stream().expect("a thread names stream");
        let named = |name: &str| {
            list.threads.iter().filter(|t| names.get_name(t.raw.thread_id).as_deref() == Some(name)).count()
        };
        // A thread just started carries its parent's name until it sets
        // its own: "churn" is the four churning threads and maybe some of
        // their newest children.
        assert!(named("churn") >= 4, "round {round}: the four churning threads ({})", named("churn"));
        assert_eq!((0..3).filter(|i| named(&format!("idle-{i}")) == 1).count(), 3, "round {round}: the idle threads");
    }
}

/// RELIABILITY A5: 20 threads crash at once next to 100 idle ones, 50
/// times: every time exactly one dump, and death by SIGSEGV within 10 s.
#[test]
fn a5_simultaneous_crashes_give_exactly_one_dump() {
    for round in 0..50 {
        let started = std::time::Instant::now();
        let out = run("segv", "many", &[]);
        assert_eq!(out.signal, Some(libc::SIGSEGV), "round {round}");
        assert!(started.elapsed() < Duration::from_secs(10), "round {round}: {:?}", started.elapsed());
        let dump = one_dump(out.db.path());
        // Give a (wrong) second dump the chance to appear.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(dumps(out.db.path()).len(), 1, "round {round}: exactly one dump");
        let md = Minidump::read_path(&dump).expect("parses");
        let threads: MinidumpThreadList<'_> = md.get_stream().unwrap();
        assert!(threads.threads.len() >= 121, "round {round}: {} threads", threads.threads.len());
    }
}
