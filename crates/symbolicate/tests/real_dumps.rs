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
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crashmon_test_support::KillOnDrop;

use crashmon_symbolicate::{
    FrameReport, Options, Report, SymbolSource, SymbolStatus, SymbolicateError, render_text, symbolicate_path,
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
fn spawn_child(exe: &Path) -> (KillOnDrop, Ready) {
    let mut cmd = Command::new(exe);
    cmd.args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stderr(Stdio::null());
    let (guard, line) = crashmon_test_support::spawn_until_line(&mut cmd, "ready tid=", Duration::from_secs(20));
    let pid = guard.0.id() as i32;
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

/// Default options, except for a symbol cache private to this test run
/// (never the user's).
fn opts() -> Options {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let mut options = Options::default();
    options.cache_dir = Some(CACHE.get_or_init(|| tempfile::tempdir().unwrap()).path().to_owned());
    options
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
    let report = symbolicate_path(dump, &opts()).expect("symbolicates");
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
    let report = symbolicate_path(dump, &opts()).unwrap();
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
    let mut options = opts();
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
    let report = symbolicate_path(&dump, &opts()).unwrap();
    assert_eq!(module_of(&report).symbols, SymbolStatus::Loaded);
    assert_eq!(named_chain(&report), 4, "{:#?}", blocked_thread(&report, &ready));

    // Another binary at the path: a mismatch, and no names from it.
    let other = ["/bin/true", "/usr/bin/true"].into_iter().find(|p| Path::new(p).exists()).expect("a true(1) binary");
    std::fs::copy(other, &exe).unwrap();
    let report = symbolicate_path(&dump, &opts()).unwrap();
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
    let report = symbolicate_path(&dump, &opts()).unwrap();
    assert_eq!(module_of(&report).symbols, SymbolStatus::Missing);
    assert_eq!(named_chain(&report), 0);

    // A file that is not ELF.
    std::fs::write(&exe, b"#!/bin/sh\nexit 0\n").unwrap();
    let report = symbolicate_path(&dump, &opts()).unwrap();
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

// ---------------------------------------------------------------------------
// Symbol sources, the cache, dump-syms.

/// A copy of this test executable in a fresh directory, run as the child
/// and dumped: `(dir, copy, dump, ready)`. The copy can then be deleted or
/// replaced to play "a dump from another machine".
fn dumped_copy(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf, Ready) {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(name);
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let dump = dir.path().join(format!("{name}.dmp"));
    let (guard, ready) = spawn_child(&exe);
    dump_child(&ready, &dump);
    drop(guard);
    (dir, exe, dump, ready)
}

/// Options with only the given symbol sources; the cache is this run's
/// shared one (entries are per build and kind of source, so tests cannot
/// see each other's tables as anything but what they are) unless `cache`.
fn only(debug_dirs: &[&Path], symbol_dirs: &[&Path], cache: Option<&Path>) -> Options {
    let mut options = opts();
    options.debug_dirs = debug_dirs.iter().map(|p| p.to_path_buf()).collect();
    options.symbol_dirs = symbol_dirs.iter().map(|p| p.to_path_buf()).collect();
    if let Some(cache) = cache {
        options.cache_dir = Some(cache.to_owned());
    }
    options
}

fn module_named<'r>(report: &'r Report, name: &str) -> &'r crashmon_symbolicate::ModuleReport {
    report.modules.iter().find(|m| m.code_file.ends_with(&format!("/{name}"))).expect("module in the dump")
}

/// The chain's functions with the exact call lines, the inlined frame
/// between its neighbours, and CFI unwinding through the module.
fn assert_chain(report: &Report, ready: &Ready) {
    let frames = blocked_thread(report, ready);
    for function in ["chain_outer", "chain_middle", "chain_inlined", "chain_inner"] {
        let f = frame(frames, &format!("real_dumps::{function}"));
        assert_eq!(f.line, Some(ready.call_line(function)), "{function}: {f:#?}");
        assert!(f.file.as_deref().is_some_and(|p| p.ends_with(file!())), "{f:#?}");
    }
    let index = |function: &str| frame(frames, &format!("real_dumps::{function}")).index;
    assert_eq!(index("chain_inner") + 1, index("chain_inlined"), "{frames:#?}");
    assert_eq!(index("chain_inlined") + 1, index("chain_middle"), "{frames:#?}");
    assert!(frame(frames, "real_dumps::chain_inlined").inlined);
    let outer = frame(frames, "real_dumps::chain_outer");
    assert_eq!(outer.trust, "cfi", "{outer:#?}");
}

/// `(function, line, inlined)` of the frames in module `name`.
fn frames_in(report: &Report, ready: &Ready, name: &str) -> Vec<(Option<String>, Option<u32>, bool)> {
    blocked_thread(report, ready)
        .iter()
        .filter(|f| f.module.as_deref() == Some(name))
        .map(|f| (f.function.clone(), f.line, f.inlined))
        .collect()
}

/// A dump from "another machine": the binary is gone, and a Breakpad tree
/// written by `dump_syms::write_sym` is all there is. The stack is the same
/// as with the binary present: names, lines, inlined frames and STACK CFI.
#[test]
fn symbols_dir_alone_symbolicates_a_dump_whose_binary_is_gone() {
    let (dir, exe, dump, ready) = dumped_copy("remote-app");
    let control = symbolicate_path(&dump, &only(&[], &[], None)).unwrap();
    assert_eq!(module_named(&control, "remote-app").symbol_source, Some(SymbolSource::Binary));

    let tree = dir.path().join("symbols");
    let mut sym = Vec::new();
    let summary = crashmon_symbolicate::dumpsyms::write_sym(&exe, None, &[], &mut sym).unwrap();
    assert!(summary.functions > 1000 && summary.cfi > 1000 && summary.publics > 0, "{summary:?}");
    let text = String::from_utf8(sym.clone()).unwrap();
    assert!(text.starts_with(&format!("MODULE Linux x86_64 {} remote-app\n", summary.debug_id)), "{}", &text[..200]);
    for record in
        ["\nINFO CODE_ID ", "\nFILE ", "\nFUNC ", "\nINLINE_ORIGIN ", "\nINLINE ", "\nPUBLIC ", "\nSTACK CFI INIT "]
    {
        assert!(text.contains(record), "no {record:?} record");
    }
    assert!(text.contains(" 0 _start\n"), "_start keeps its underscore as a PUBLIC record");
    let path = tree.join(summary.tree_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &sym).unwrap();
    assert_eq!(Some(summary.debug_id.clone()), module_named(&control, "remote-app").debug_id);
    std::fs::remove_file(&exe).unwrap();

    let report = symbolicate_path(&dump, &only(&[], &[&tree], None)).unwrap();
    let module = module_named(&report, "remote-app");
    assert_eq!(module.symbols, SymbolStatus::Loaded);
    assert_eq!(module.symbol_source, Some(SymbolSource::SymbolsDir));
    assert_eq!(module.symbol_file.as_deref(), path.to_str());
    assert!(module.symbol_misses.iter().any(|m| m.contains("file not found")), "{module:#?}");
    assert_chain(&report, &ready);
    assert_eq!(frames_in(&report, &ready, "remote-app"), frames_in(&control, &ready, "remote-app"));

    // Without the tree: a miss, no names, the rest still symbolicated.
    let report = symbolicate_path(&dump, &only(&[], &[], None)).unwrap();
    assert_eq!(module_named(&report, "remote-app").symbols, SymbolStatus::Missing);
    assert!(frames_in(&report, &ready, "remote-app").iter().all(|f| f.0.is_none()));
    assert!(blocked_thread(&report, &ready)[0].function.is_some(), "libc's frame is still named");

    // A .sym of another build under the right path is refused.
    let wrong = text.replacen(&summary.debug_id, "00000000000000000000000000000000A", 1);
    std::fs::write(&path, wrong).unwrap();
    let report = symbolicate_path(&dump, &only(&[], &[&tree], None)).unwrap();
    let module = module_named(&report, "remote-app");
    assert_eq!(module.symbols, SymbolStatus::Missing);
    assert!(module.symbol_misses.iter().any(|m| m.contains("MODULE record names debug id")), "{module:#?}");
}

/// `<debug dir>/.build-id/xx/rest.debug`, found by the dump's build id
/// when the binary is gone; a file there of another build is refused. No
/// external tools: the debug file is a copy of the (unstripped) binary.
#[test]
fn debug_file_by_build_id() {
    let (dir, exe, dump, ready) = dumped_copy("debug-app");
    let id =
        module_named(&symbolicate_path(&dump, &only(&[], &[], None)).unwrap(), "debug-app").code_id.clone().unwrap();
    let debug_dir = dir.path().join("debug");
    let debug_file = debug_dir.join(".build-id").join(&id[..2]).join(format!("{}.debug", &id[2..]));
    std::fs::create_dir_all(debug_file.parent().unwrap()).unwrap();
    std::fs::rename(&exe, &debug_file).unwrap();

    let report = symbolicate_path(&dump, &only(&[&debug_dir], &[], None)).unwrap();
    let module = module_named(&report, "debug-app");
    assert_eq!(module.symbol_source, Some(SymbolSource::DebugFile), "{module:#?}");
    assert_eq!(module.symbol_file.as_deref(), debug_file.to_str());
    assert_chain(&report, &ready);

    let other = ["/bin/true", "/usr/bin/true"].into_iter().find(|p| Path::new(p).exists()).unwrap();
    std::fs::copy(other, &debug_file).unwrap();
    let report = symbolicate_path(&dump, &only(&[&debug_dir], &[], None)).unwrap();
    let module = module_named(&report, "debug-app");
    assert_eq!(module.symbols, SymbolStatus::Missing);
    assert!(module.symbol_misses.iter().any(|m| m.ends_with(".debug: build id differs")), "{module:#?}");
}

fn objcopy(args: &[&std::ffi::OsStr]) -> bool {
    Command::new("objcopy").args(args).status().is_ok_and(|s| s.success())
}

/// A stripped binary and its debug file made with objcopy: found through
/// `.gnu_debuglink` in `.debug/` (CRC checked) and through the build-id
/// tree. Skipped (with the reason printed) without objcopy.
#[test]
fn stripped_binary_with_objcopy_debug_file() {
    if Command::new("objcopy").arg("--version").output().is_err() {
        eprintln!("SKIPPED: objcopy (binutils) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stripped-app");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::create_dir(dir.path().join(".debug")).unwrap();
    let debug = dir.path().join(".debug/stripped-app.debug");
    assert!(objcopy(&["--only-keep-debug".as_ref(), exe.as_os_str(), debug.as_os_str()]));
    let link = format!("--add-gnu-debuglink={}", debug.display());
    assert!(objcopy(&["--strip-debug".as_ref(), link.as_ref(), exe.as_os_str()]));
    let (guard, ready) = spawn_child(&exe);
    let dump = dir.path().join("stripped.dmp");
    dump_child(&ready, &dump);
    drop(guard);

    let report = symbolicate_path(&dump, &only(&[], &[], None)).unwrap();
    let module = module_named(&report, "stripped-app");
    assert_eq!(module.symbol_source, Some(SymbolSource::DebugFile), "{module:#?}");
    assert_eq!(module.symbol_file.as_deref(), debug.to_str());
    assert_chain(&report, &ready);

    // The same file in a build-id tree.
    let id = module.code_id.clone().unwrap();
    let tree = dir.path().join("usr-lib-debug");
    let in_tree = tree.join(".build-id").join(&id[..2]).join(format!("{}.debug", &id[2..]));
    std::fs::create_dir_all(in_tree.parent().unwrap()).unwrap();
    std::fs::copy(&debug, &in_tree).unwrap();
    let report = symbolicate_path(&dump, &only(&[&tree], &[], None)).unwrap();
    assert_eq!(module_named(&report, "stripped-app").symbol_file.as_deref(), in_tree.to_str());
    assert_chain(&report, &ready);

    // A debuglink target with the wrong CRC is refused; the stripped
    // binary's own symbol table still names the functions (no lines).
    let mut bytes = std::fs::read(&debug).unwrap();
    bytes.push(0);
    std::fs::write(&debug, bytes).unwrap();
    let report = symbolicate_path(&dump, &only(&[], &[], None)).unwrap();
    let module = module_named(&report, "stripped-app");
    assert_eq!(module.symbol_source, Some(SymbolSource::Binary), "{module:#?}");
    assert!(module.symbol_misses.iter().any(|m| m.contains("CRC-32")), "{module:#?}");
    let names = frames_in(&report, &ready, "stripped-app");
    assert!(names.iter().any(|f| f.0.as_deref() == Some("real_dumps::chain_inner") && f.1.is_none()), "{names:?}");
}

/// A tiny loopback HTTP server for a Breakpad tree: answers GETs from
/// `root` (404 if absent) until `stop` is set; it also stops by itself
/// after 60 s.
fn serve_tree(root: PathBuf) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<u32>) {
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/syms", listener.local_addr().unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let file = path.strip_prefix("/syms/").filter(|p| !p.contains("..")).map(|p| root.join(p));
            let response = match file.and_then(|f| std::fs::read(f).ok()) {
                Some(body) => {
                    served += 1;
                    let mut r =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .into_bytes();
                    r.extend(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            };
            let _ = stream.write_all(&response);
        }
        served
    });
    (url, stop, handle)
}

/// Symbol servers: an unreachable one is a recorded miss, the next one
/// answers, the answer is cached on disk and used with no server at all.
#[test]
fn symbol_server_download_cache_and_unreachable_server() {
    let (dir, exe, dump, ready) = dumped_copy("served-app");
    let tree = dir.path().join("tree");
    let mut sym = Vec::new();
    let summary = crashmon_symbolicate::dumpsyms::write_sym(&exe, None, &[], &mut sym).unwrap();
    let path = tree.join(summary.tree_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &sym).unwrap();
    std::fs::remove_file(&exe).unwrap();

    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/syms", l.local_addr().unwrap())
    };
    let (url, stop, server) = serve_tree(tree.clone());
    let mut options = only(&[], &[], None);
    options.symbol_servers = vec![dead.clone(), url.clone()];
    options.server_timeout = Duration::from_secs(5);
    let report = symbolicate_path(&dump, &options).unwrap();
    let module = module_named(&report, "served-app");
    assert_eq!(module.symbol_source, Some(SymbolSource::SymbolServer), "{module:#?}");
    assert_eq!(module.symbol_file.as_deref(), Some(format!("{url}/{}", summary.tree_path()).as_str()));
    assert!(module.symbol_misses.iter().any(|m| m.starts_with(&dead) && m.contains("unreachable")), "{module:#?}");
    assert_chain(&report, &ready);
    // Modules no server has: 404s recorded as misses.
    let vdso_or_other = report.modules.iter().find(|m| m.symbols != SymbolStatus::Loaded);
    if let Some(m) = vdso_or_other {
        assert!(m.symbol_misses.iter().any(|x| x.contains("404") || x.contains("unreachable")), "{m:#?}");
    }

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(server.join().unwrap() >= 1);
    // Server gone: the cached download is used.
    let report = symbolicate_path(&dump, &options).unwrap();
    let module = module_named(&report, "served-app");
    assert_eq!(module.symbol_source, Some(SymbolSource::SymbolServer), "{module:#?}");
    assert_chain(&report, &ready);

    // Only an unreachable server: a miss, and the rest of the stack is
    // still symbolicated.
    let mut options = only(&[], &[], Some(tempfile::tempdir().unwrap().path()));
    options.symbol_servers = vec![dead.clone()];
    let report = symbolicate_path(&dump, &options).unwrap();
    let module = module_named(&report, "served-app");
    assert_eq!(module.symbols, SymbolStatus::Missing);
    assert!(module.symbol_misses.iter().any(|m| m.starts_with(&dead)), "{module:#?}");
    assert_eq!(blocked_thread(&report, &ready)[0].module.as_deref(), Some("libc.so.6"));
    assert!(blocked_thread(&report, &ready)[0].function.is_some());
    let text = render_text(&report, false);
    assert!(text.contains(&format!("tried {dead}/")), "{text}");
}

/// The first report of a binary builds no symbol table (its frames are
/// looked up lazily in the symbol files) and leaves the tables to be built
/// afterwards; the second report reads them from the cache (nothing built,
/// nothing lazy) and is identical. A damaged entry is ignored: that report
/// is lazy again, and the rebuilt entries are used by the next one.
#[test]
fn cache_hits_on_the_second_report_and_rebuilds_damaged_entries() {
    let (_dir, dump, _ready) = shared_dump();
    let cache = tempfile::tempdir().unwrap();
    let options = only(&[Path::new("/usr/lib/debug")], &[], Some(cache.path()));
    let entries = || -> Vec<PathBuf> {
        match std::fs::read_dir(cache.path().join("symcache")) {
            Ok(dir) => dir.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "symc")).collect(),
            Err(_) => Vec::new(),
        }
    };
    let (first, cold, pending) = crashmon_symbolicate::symbolicate_path_deferred(dump, &options).unwrap();
    // Every module lazily, compressed debug files (libc6-dbg's libc, when
    // installed) too.
    assert!(cold.built == 0 && cold.hits == 0 && cold.lazy >= 2, "{cold:?}");
    assert!(entries().is_empty(), "no table is built before the report: {:?}", entries());
    assert_eq!(pending.len() as u32, cold.lazy, "{pending:?}");
    assert_eq!(pending.build_and_store(), cold.lazy as usize);
    assert_eq!(entries().len() as u32, cold.lazy, "{:?}", entries());

    let (second, warm, pending) = crashmon_symbolicate::symbolicate_path_deferred(dump, &options).unwrap();
    assert_eq!((warm.built, warm.lazy, warm.hits), (0, 0, cold.lazy), "{warm:?}");
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(first, second, "the cached tables name every frame as the lazy lookups did");

    for entry in &entries() {
        let mut bytes = std::fs::read(entry).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(entry, bytes).unwrap();
    }
    let (third, stats, pending) = crashmon_symbolicate::symbolicate_path_deferred(dump, &options).unwrap();
    assert_eq!((stats.hits, stats.built, stats.lazy), (0, 0, cold.lazy), "{stats:?}");
    assert_eq!(third, first);
    assert!(entries().is_empty(), "damaged entries are removed: {:?}", entries());
    pending.build_and_store();
    let (_, stats) = crashmon_symbolicate::symbolicate_path_with_stats(dump, &options).unwrap();
    assert_eq!(stats.hits, cold.lazy, "rebuilt entries are used again: {stats:?}");
}

/// The lazy lookups of a first report name every frame of every thread as
/// the whole tables do (this test executable: a debug build with all its
/// dependencies, and libc).
#[test]
fn lazy_lookups_equal_whole_tables_on_every_thread() {
    let (_dir, dump, _ready) = shared_dump();
    let mut lazy = only(&[Path::new("/usr/lib/debug")], &[], None);
    lazy.cache_dir = None;
    let (first, stats) = crashmon_symbolicate::symbolicate_path_with_stats(dump, &lazy).unwrap();
    assert!(stats.built == 0 && stats.lazy >= 2, "{stats:?}");
    let mut tables = lazy.clone();
    tables.build_tables_first = true;
    let (whole, stats) = crashmon_symbolicate::symbolicate_path_with_stats(dump, &tables).unwrap();
    assert!(stats.built >= 2 && stats.lazy == 0, "{stats:?}");
    for (a, b) in first.threads.iter().zip(&whole.threads) {
        for (fa, fb) in a.frames.iter().zip(&b.frames) {
            assert_eq!(fa, fb, "thread {}", a.tid);
        }
    }
    assert_eq!(first, whole);
    assert!(first.threads.len() >= 2);
}

/// `_start` keeps its leading underscore (it is a plain C symbol), and the
/// main thread is unwound down to it.
#[test]
fn start_keeps_its_underscore() {
    let (_dir, dump, _ready) = shared_dump();
    let report = symbolicate_path(dump, &opts()).unwrap();
    let names: Vec<&str> =
        report.threads.iter().flat_map(|t| &t.frames).filter_map(|f| f.function.as_deref()).collect();
    assert!(names.contains(&"_start"), "{names:?}");
    assert!(!names.contains(&"start"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("__libc_start")), "{names:?}");
}

/// The JSON shape of a report (keys and value types), pinned by a snapshot
/// in `tests/snapshots/report-shape.json`. A change here is a schema
/// change: update docs/json-schema.md (and bump schema_version if it is
/// not an addition), then the snapshot.
#[test]
fn report_json_shape_snapshot() {
    let (_dir, dump, _ready) = shared_dump();
    let report = symbolicate_path(dump, &opts()).unwrap();
    let value = serde_json::to_value(&report).unwrap();
    let shape = serde_json::to_string_pretty(&shape_of(&value)).unwrap() + "\n";
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/report-shape.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &shape).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap();
    assert_eq!(shape, expected, "the report's JSON shape changed (UPDATE_SNAPSHOTS=1 rewrites the snapshot)");
}

/// Keys and types: objects keep their keys (sorted), arrays the merged
/// shape of all their elements, leaves become their type name; a key that
/// is `null` in one element and typed in another gets the type (which
/// fields may be `null` is documented in docs/json-schema.md).
fn shape_of(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Null => Value::from("null"),
        Value::Bool(_) => Value::from("bool"),
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
        Value::Array(items) => {
            let merged = items.iter().map(shape_of).reduce(merge);
            Value::Array(merged.into_iter().collect())
        }
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape_of(v))).collect()),
    }
}

fn merge(a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (a, b) {
        (Value::String(n), other) | (other, Value::String(n)) if n == "null" => other,
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Value::Object(a)
        }
        (Value::Array(a), Value::Array(b)) => Value::Array(a.into_iter().chain(b).reduce(merge).into_iter().collect()),
        (a, _) => a,
    }
}
