//! Symbolicating real minidumps of real processes.
//!
//! The child process is this test executable itself, running the ignored
//! helper test [`child_blocks_in_known_functions`]: it calls a chain of
//! named functions (one of them inlined), prints where each call is (thread
//! id and `line!()` of each call), and blocks. The test dumps it with
//! `minidump-writer`, kills it, and checks what `symbolicate_path` says
//! against those printed facts.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crashmon_symbolicate::{
    FrameReport, Options, Report, SymbolStatus, SymbolicateError, render_text, symbolicate_path,
};

/// Set in the child's environment; the helper test does nothing without it.
const CHILD_ENV: &str = "CRASHMON_SYMBOLICATE_TEST_CHILD";
/// Name of the helper test (for `--exact`).
const CHILD_TEST: &str = "child_blocks_in_known_functions";

// ---------------------------------------------------------------------------
// The child.

/// `(function, line of the call it makes)`, outermost first.
type Trace = Vec<(&'static str, u32)>;

fn with(mut trace: Trace, function: &'static str, line: u32) -> Trace {
    trace.push((function, line));
    trace
}

/// Not a real test: the body of the child process of the other tests. Runs
/// only when spawned by them (with [`CHILD_ENV`] set).
#[test]
#[ignore = "helper: runs only as the child process of the other tests"]
fn child_blocks_in_known_functions() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    chain_outer(Vec::new());
}

#[inline(never)]
fn chain_outer(trace: Trace) {
    chain_middle(with(trace, "chain_outer", line!()));
}

#[inline(never)]
fn chain_middle(trace: Trace) {
    chain_inlined(with(trace, "chain_middle", line!()));
}

/// Inlined into `chain_middle`: must show up as an inlined frame of its own.
#[inline(always)]
fn chain_inlined(trace: Trace) {
    chain_inner(with(trace, "chain_inlined", line!()));
}

#[inline(never)]
fn chain_inner(trace: Trace) {
    report_and_block(with(trace, "chain_inner", line!()));
}

/// Prints `ready tid=T chain_outer=L ...` and blocks until stdin closes (so
/// the child also ends if the test dies without killing it).
#[inline(never)]
fn report_and_block(trace: Trace) {
    let tid = std::fs::read_link("/proc/thread-self").unwrap();
    let tid = tid.file_name().unwrap().to_str().unwrap().to_owned();
    let mut line = format!("ready tid={tid}");
    for (function, call_line) in &trace {
        line.push_str(&format!(" {function}={call_line}"));
    }
    println!("{line}");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

// ---------------------------------------------------------------------------
// The parent side.

/// A running child; killed and reaped on drop, so no test leaves one behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the child printed.
#[derive(Debug, Clone)]
struct Ready {
    pid: i32,
    tid: i32,
    /// `(function, line of its call)`, outermost first.
    calls: Vec<(String, u32)>,
}

impl Ready {
    fn call_line(&self, function: &str) -> u32 {
        self.calls.iter().find(|(f, _)| f == function).unwrap_or_else(|| panic!("{function} in {self:?}")).1
    }
}

/// Starts `exe` as the blocking child and waits for its `ready` line.
fn spawn_child(exe: &Path) -> (ChildGuard, Ready) {
    let child = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut guard = ChildGuard(child);
    let pid = guard.0.id() as i32;
    let stdout = guard.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may have printed `test NAME ... ` on the same line.
            if let Some(at) = line.find("ready tid=") {
                let _ = tx.send(line[at..].to_owned());
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("the child reports ready within 20 s");
    let mut tid = None;
    let mut calls = Vec::new();
    for word in line.split_whitespace().skip(1) {
        let (key, value) = word.split_once('=').unwrap();
        if key == "tid" {
            tid = Some(value.parse().unwrap());
        } else {
            calls.push((key.to_owned(), value.parse().unwrap()));
        }
    }
    (guard, Ready { pid, tid: tid.expect("tid in the ready line"), calls })
}

/// Writes a minidump of the child, blaming its blocked thread.
fn dump_child(ready: &Ready, path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    minidump_writer::minidump_writer::MinidumpWriterConfig::new(ready.pid, ready.tid)
        .write(&mut file)
        .expect("minidump-writer dumps the child");
}

/// A dump of a child running this very executable, made once per test run.
fn shared_dump() -> &'static (tempfile::TempDir, PathBuf, Ready) {
    static DUMP: OnceLock<(tempfile::TempDir, PathBuf, Ready)> = OnceLock::new();
    DUMP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("child.dmp");
        let (guard, ready) = spawn_child(&std::env::current_exe().unwrap());
        dump_child(&ready, &path);
        drop(guard);
        (dir, path, ready)
    })
}

fn blocked_thread<'r>(report: &'r Report, ready: &Ready) -> &'r [FrameReport] {
    &report
        .threads
        .iter()
        .find(|t| t.tid == ready.tid as u32)
        .unwrap_or_else(|| panic!("thread {} in the report", ready.tid))
        .frames
}

fn frame<'f>(frames: &'f [FrameReport], function: &str) -> &'f FrameReport {
    frames
        .iter()
        .find(|f| f.function.as_deref() == Some(function))
        .unwrap_or_else(|| panic!("no frame {function} in {frames:#?}"))
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn names_functions_lines_and_inlined_frames_of_a_real_dump() {
    let (_dir, dump, ready) = shared_dump();
    let started = Instant::now();
    let report = symbolicate_path(dump, &Options::default()).expect("symbolicates");
    eprintln!("symbolicated in {:?}", started.elapsed());

    let frames = blocked_thread(&report, ready);
    // The blocked thread is the one the dump blames.
    let crashing = report.crashing_thread.expect("a crashing (blamed) thread");
    assert_eq!(report.threads[crashing].tid, ready.tid as u32);
    assert!(report.threads[crashing].crashed);
    assert_eq!(report.crash.as_ref().and_then(|c| c.tid), Some(ready.tid as u32));

    // Every function of the chain, with this file and the exact call lines.
    let this_file = file!();
    for function in ["chain_outer", "chain_middle", "chain_inlined", "chain_inner"] {
        let f = frame(frames, &format!("real_dumps::{function}"));
        let file = f.file.as_deref().unwrap_or_else(|| panic!("no file in {f:#?}"));
        assert!(file.ends_with(this_file), "{file} is not {this_file}: {f:#?}");
        assert_eq!(f.line, Some(ready.call_line(function)), "{f:#?}");
        assert_eq!(f.module.as_deref(), std::env::current_exe().unwrap().file_name().unwrap().to_str());
    }
    let index = |function: &str| frame(frames, &format!("real_dumps::{function}")).index;
    // Innermost first, the inlined function between its callee and the
    // function it was inlined into.
    assert!(index("report_and_block") < index("chain_inner"));
    assert_eq!(index("chain_inner") + 1, index("chain_inlined"), "{frames:#?}");
    assert_eq!(index("chain_inlined") + 1, index("chain_middle"), "{frames:#?}");
    assert_eq!(index("chain_middle") + 1, index("chain_outer"), "{frames:#?}");
    let inlined = frame(frames, "real_dumps::chain_inlined");
    let middle = frame(frames, "real_dumps::chain_middle");
    assert!(inlined.inlined && inlined.trust == "inline", "{inlined:#?}");
    assert!(!middle.inlined);
    assert_eq!(inlined.instruction, middle.instruction, "an inlined frame shares its physical frame's address");
    assert!(!frame(frames, "real_dumps::chain_inner").inlined);
    // Flattened indexes are positions.
    assert!(frames.iter().enumerate().all(|(i, f)| f.index == i));
    // Physical frames have module offsets and function offsets.
    let inner = frame(frames, "real_dumps::chain_inner");
    assert!(inner.module_offset.is_some() && inner.function_offset.is_some(), "{inner:#?}");
    assert!(matches!(inner.trust.as_str(), "cfi" | "frame-pointer"), "{inner:#?}");
    // No Rust hashes left.
    for function in frames.iter().filter_map(|f| f.function.as_deref()) {
        let hash =
            function.rsplit_once("::h").is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!hash, "{function}");
    }

    // The executable was verified and used.
    let exe = std::env::current_exe().unwrap();
    let exe_module = report
        .modules
        .iter()
        .find(|m| Path::new(&m.code_file) == exe)
        .unwrap_or_else(|| panic!("{} in {:#?}", exe.display(), report.modules));
    assert_eq!(exe_module.symbols, SymbolStatus::Loaded);
    assert!(exe_module.code_id.is_some());

    // A dump requested of a live process, not a crash.
    let crash = report.crash.as_ref().expect("minidump-writer always writes an exception stream");
    assert_eq!(crash.reason, "DUMP_REQUESTED");
    assert_eq!(crash.signal, None);
    assert_eq!(report.system.os, "linux");
    assert_eq!(report.schema_version, crashmon_symbolicate::SCHEMA_VERSION);
    // The signature starts at the top meaningful frame of the blamed thread.
    let top = frames
        .iter()
        .find(|f| f.function.as_deref().is_some_and(|n| !crashmon_symbolicate::signature::is_skipped_function(n)))
        .unwrap();
    assert!(report.signature.starts_with(top.function.as_deref().unwrap()), "{} vs {top:#?}", report.signature);

    // JSON round trip, with kebab-case statuses.
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    assert!(json.contains(r#""symbols":"loaded""#), "{json}");

    // The text.
    let text = render_text(&report, false);
    assert!(text.contains(&format!("Crashing thread: {}", ready.tid)), "{text}");
    assert!(text.starts_with("Crash reason: DUMP_REQUESTED\n"), "{text}");
    let inner_line =
        format!("real_dumps::chain_inner ({}:{})", inner.file.as_deref().unwrap(), ready.call_line("chain_inner"));
    assert!(text.contains(&inner_line), "{inner_line} in {text}");
    assert!(
        text.lines().any(|l| l.contains("real_dumps::chain_inlined") && l.trim_end().ends_with("(inlined)")),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour unless asked");
    let colored = render_text(&report, true);
    assert!(colored.contains("\x1b[1mreal_dumps::chain_inner\x1b[0m"), "{colored}");
    eprintln!("{text}");
}

/// The libc frames are named by libc's own symbols: the names in the report
/// are real symbol names covering the frames' offsets (checked against the
/// symbol tables of the libc file and of its separate debug file, if
/// installed), leading underscores included.
#[test]
fn libc_frames_carry_their_real_symbol_names() {
    use object::{Object, ObjectSymbol};

    let (_dir, dump, ready) = shared_dump();
    let report = symbolicate_path(dump, &Options::default()).unwrap();
    let libc = report.modules.iter().find(|m| m.code_file.ends_with("/libc.so.6")).expect("libc in the module list");
    assert_eq!(libc.symbols, SymbolStatus::Loaded);
    let mut files = vec![PathBuf::from(&libc.code_file)];
    if let Some(id) = &libc.code_id {
        files.push(PathBuf::from(format!("/usr/lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..])));
    }
    let datas: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    let objects: Vec<object::File<'_>> = datas.iter().map(|d| object::File::parse(&d[..]).unwrap()).collect();
    let names_at = |offset: u64| -> Vec<String> {
        let mut names = Vec::new();
        for obj in &objects {
            for sym in obj.symbols().chain(obj.dynamic_symbols()) {
                let covers = sym.kind() == object::SymbolKind::Text
                    && sym.address() <= offset
                    && offset < sym.address() + sym.size().max(1);
                if covers && let Ok(name) = sym.name() {
                    names.push(name.split('@').next().unwrap().to_owned());
                }
            }
        }
        names
    };
    let mut checked = 0;
    for thread in &report.threads {
        for f in thread.frames.iter().filter(|f| f.module.as_deref() == Some("libc.so.6") && !f.inlined) {
            let names = names_at(f.module_offset.unwrap());
            if names.is_empty() {
                continue;
            }
            let function = f.function.as_deref().unwrap_or_else(|| panic!("no name for {f:#?}, symbols {names:?}"));
            assert!(names.iter().any(|n| n == function), "{function} is none of {names:?}");
            checked += 1;
        }
    }
    assert!(checked > 0, "no libc frame checked");
    eprintln!("{checked} libc frames checked");
    // The blocked thread's top frame is in libc (reading stdin).
    assert_eq!(blocked_thread(&report, ready)[0].module.as_deref(), Some("libc.so.6"));
}

#[test]
fn crashing_thread_only_option() {
    let (_dir, dump, ready) = shared_dump();
    let mut options = Options::default();
    options.crashing_thread_only = true;
    let report = symbolicate_path(dump, &options).unwrap();
    assert_eq!(report.threads.len(), 1);
    assert_eq!(report.crashing_thread, Some(0));
    assert_eq!(report.threads[0].tid, ready.tid as u32);
}

/// The same dump, symbolicated while the binary at the module's path is
/// the one that ran, after it was replaced by another ELF file, and after
/// it was deleted.
#[test]
fn local_binary_must_be_the_build_that_ran() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("app-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let dump = dir.path().join("copy.dmp");
    let (guard, ready) = spawn_child(&exe);
    dump_child(&ready, &dump);
    drop(guard);

    let module_of = |report: &Report| {
        report.modules.iter().find(|m| Path::new(&m.code_file) == exe).cloned().expect("the copy in the module list")
    };
    let named_chain = |report: &Report| {
        blocked_thread(report, &ready)
            .iter()
            .filter(|f| f.function.as_deref().is_some_and(|n| n.starts_with("real_dumps::chain_")))
            .count()
    };
    let app_frames = |report: &Report| {
        blocked_thread(report, &ready)
            .iter()
            .filter(|f| f.module.as_deref() == Some("app-copy"))
            .cloned()
            .collect::<Vec<_>>()
    };

    // Control: the same file, symbols used.
    let report = symbolicate_path(&dump, &Options::default()).unwrap();
    assert_eq!(module_of(&report).symbols, SymbolStatus::Loaded);
    assert_eq!(named_chain(&report), 4, "{:#?}", blocked_thread(&report, &ready));

    // Another binary at the path: a mismatch, and no names from it.
    let other = ["/bin/true", "/usr/bin/true"].into_iter().find(|p| Path::new(p).exists()).expect("a true(1) binary");
    std::fs::copy(other, &exe).unwrap();
    let report = symbolicate_path(&dump, &Options::default()).unwrap();
    assert_eq!(module_of(&report).symbols, SymbolStatus::Mismatch);
    assert_eq!(named_chain(&report), 0);
    let frames = app_frames(&report);
    assert!(!frames.is_empty(), "the stack still reaches the app's frames");
    assert!(frames.iter().all(|f| f.function.is_none() && f.file.is_none()), "{frames:#?}");
    assert!(
        report.signature.contains("app-copy+0x") || !report.signature.contains("real_dumps"),
        "{}",
        report.signature
    );
    assert!(serde_json::to_string(&report).unwrap().contains(r#""symbols":"mismatch""#));
    let text = render_text(&report, false);
    assert!(text.lines().any(|l| l.contains(exe.to_str().unwrap()) && l.contains("mismatch")), "{text}");

    // No file at all.
    std::fs::remove_file(&exe).unwrap();
    let report = symbolicate_path(&dump, &Options::default()).unwrap();
    assert_eq!(module_of(&report).symbols, SymbolStatus::Missing);
    assert_eq!(named_chain(&report), 0);

    // A file that is not ELF.
    std::fs::write(&exe, b"#!/bin/sh\nexit 0\n").unwrap();
    let report = symbolicate_path(&dump, &Options::default()).unwrap();
    assert_eq!(module_of(&report).symbols, SymbolStatus::Unreadable);
}

#[test]
fn not_a_minidump_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a minidump, it is a text file\n").unwrap();
    let err = symbolicate_path(&text, &Options::default()).unwrap_err();
    assert!(matches!(err, SymbolicateError::NotMinidump { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{} is not a minidump: it does not start with the minidump signature \"MDMP\"", text.display())
    );

    let empty = dir.path().join("empty.dmp");
    std::fs::write(&empty, b"").unwrap();
    let err = symbolicate_path(&empty, &Options::default()).unwrap_err();
    assert!(matches!(err, SymbolicateError::NotMinidump { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("{} is not a minidump: ", empty.display())), "{err}");

    let missing = dir.path().join("missing.dmp");
    let err = symbolicate_path(&missing, &Options::default()).unwrap_err();
    assert!(matches!(err, SymbolicateError::Read { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("cannot read {}: ", missing.display())), "{err}");
}

#[test]
fn truncated_minidump_is_a_clear_error() {
    let (_dir, dump, _ready) = shared_dump();
    let bytes = std::fs::read(dump).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.dmp");
    // Cut everywhere from inside the header to one byte short.
    for len in [16, 32, 100, 1000, bytes.len() / 4, bytes.len() / 2, bytes.len() * 9 / 10, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = symbolicate_path(&cut, &Options::default())
            .map(|r| r.signature)
            .expect_err(&format!("a dump cut to {len} of {} bytes is an error", bytes.len()));
        let message = err.to_string();
        assert!(message.starts_with(&cut.display().to_string()), "{message}");
        assert!(
            matches!(err, SymbolicateError::Damaged { .. } | SymbolicateError::NotMinidump { .. }),
            "{len}: {err:?}"
        );
        eprintln!("{len}: {message}");
    }
}
