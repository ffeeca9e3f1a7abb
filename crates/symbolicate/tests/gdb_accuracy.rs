//! Accuracy against gdb: small C and Rust programs, compiled at -O2 with
//! inlining, crash for real under `crashmon run`; the crashing thread of
//! the symbolicated dump must list the same functions, inlined frames,
//! files and lines as gdb's backtrace of the same crash (gdb runs the same
//! binary in batch mode and stops at the same SIGSEGV), libc included,
//! resolved through its separate debug file.
//!
//! Needs gdb (with Python), a C compiler, rustc and, for the libc frames,
//! libc6-dbg (`/usr/lib/debug/.build-id`); each test prints why it is
//! skipped when one is missing. `real_dumps.rs` covers the lookups without
//! any of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_symbolicate::{Options, Report, SymbolSource, symbolicate_path};
use crashmon_test_support::{bin, death_signal, files_with_ext, wait_for, wait_timeout};

/// One frame as both sides see it: `(function, inlined, file basename, line)`.
type Frame = (String, bool, String, u32);

const FRAMES_PY: &str = r#"
import gdb
f = gdb.newest_frame()
while f is not None:
    sal = f.find_sal()
    name = sal.symtab.filename if sal.symtab else ""
    kind = {gdb.INLINE_FRAME: "inline", gdb.TAILCALL_FRAME: "tailcall"}.get(f.type(), "normal")
    print("FRAME|%s|%s|%s|%d" % (kind, f.name() or "", name, sal.line))
    f = f.older()
"#;

fn tool_missing(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_err()
}

fn skip_reason(compiler: &str) -> Option<String> {
    if tool_missing("gdb", "--version") {
        return Some("gdb is not installed".to_owned());
    }
    if tool_missing(compiler, "--version") {
        return Some(format!("{compiler} is not installed"));
    }
    None
}

/// Whether libc's separate debug file (libc6-dbg) is installed.
fn libc_debug_file_installed(report: &Report) -> bool {
    report.symbol_source_of("libc.so.6") == Some(SymbolSource::DebugFile)
}

fn basename(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// gdb's backtrace at the program's crash.
fn gdb_frames(exe: &Path, dir: &Path) -> Vec<Frame> {
    let script = dir.join("frames.py");
    std::fs::write(&script, FRAMES_PY).unwrap();
    let mut child = Command::new("gdb")
        .args(["-nx", "-batch", "-ex", "set debuginfod enabled off", "-ex", "set pagination off", "-ex", "run", "-x"])
        .arg(&script)
        .arg("--args")
        .arg(exe)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = {
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        });
        assert!(wait_timeout(&mut child, Duration::from_secs(60)).is_some(), "gdb finished within 60 s");
        reader.join().unwrap()
    };
    let frames: Vec<Frame> = out
        .lines()
        .filter_map(|l| l.strip_prefix("FRAME|"))
        // Frames of tail calls are gdb's reconstruction from DWARF call
        // sites; they are not on the stack, no unwinder sees them.
        .filter(|l| {
            let tail = l.starts_with("tailcall|");
            if tail {
                eprintln!("note: gdb's tail-call frame {l} is not on the stack; not compared");
            }
            !tail
        })
        .map(|l| {
            let parts: Vec<&str> = l.splitn(4, '|').collect();
            (parts[1].to_owned(), parts[0] == "inline", basename(parts[2]), parts[3].parse().unwrap())
        })
        .collect();
    assert!(!frames.is_empty(), "gdb printed no frames:\n{out}");
    frames
}

/// The crashing thread of the program's crash, as crashmon reports it.
fn crashmon_report(exe: &Path, dir: &Path) -> Report {
    let crashmon = bin("crashmon");
    let lib_dir = crashmon.parent().unwrap().to_path_buf();
    if !lib_dir.join("libcrashmon.so").is_file() {
        let built = crashmon_test_support::cargo_build(&["-p", "crashmon-capi", "--lib"], lib_dir.ends_with("release"));
        assert!(built, "cargo build -p crashmon-capi failed");
    }
    let db = dir.join("db");
    let mut child = Command::new(&crashmon)
        .arg("run")
        .arg("--")
        .arg(exe)
        .env("CRASHMON_DATABASE", &db)
        .env("CRASHMON_SYMBOL_CACHE", "off")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("the program ended");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    let dump = wait_for(Duration::from_secs(20), || files_with_ext(&db.join("pending"), "dmp").pop())
        .expect("a dump in pending/");
    let mut options = Options::default();
    options.cache_dir = Some(dir.join("cache"));
    symbolicate_path(&dump, &options).expect("symbolicates")
}

fn crashing_frames(report: &Report) -> Vec<Frame> {
    let thread = &report.threads[report.crashing_thread.expect("a crashing thread")];
    thread
        .frames
        .iter()
        .map(|f| {
            (
                f.function.clone().unwrap_or_default(),
                f.inlined,
                f.file.as_deref().map(basename).unwrap_or_default(),
                f.line.unwrap_or(0),
            )
        })
        .collect()
}

/// gdb shows Rust generic arguments and closures its own way; compare
/// the paths without them.
fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in name.chars() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    // glibc's internal hidden aliases (`libc_hidden_def`): `__GI___qsort_r`
    // is `__qsort_r`.
    let out = out.strip_prefix("__GI_").map(str::to_owned).unwrap_or(out);
    out.replace("{closure#0}", "{{closure}}")
}

/// Compares the frames from the top down to (and including) `last`, or
/// all of them. Frames in libc are compared only with libc6-dbg installed.
fn compare(gdb: &[Frame], ours: &[Frame], last: Option<&str>, libc_too: bool) {
    let cut = |frames: &[Frame]| -> Vec<Frame> {
        let end = match last {
            Some(last) => frames.iter().position(|f| f.0 == last).map_or(frames.len(), |i| i + 1),
            None => frames.len(),
        };
        frames[..end].iter().map(|f| (normalize(&f.0), f.1, f.2.clone(), f.3)).collect()
    };
    let (gdb, mut ours) = (cut(gdb), cut(ours));
    // gdb stopped at the first instruction of an inlined function shows
    // the call site instead (its `skip_inline_frames`); crashmon shows the
    // inlined function. Drop such leading inlined frames of ours.
    if let Some(top) = gdb.first()
        && let Some(at) = ours.iter().position(|f| f.0 == top.0)
        && at <= 3
        && ours[..at].iter().all(|f| f.1)
    {
        for f in ours.drain(..at) {
            eprintln!("note: crashmon's top inlined frame {f:?} is hidden by gdb at the start of its range");
        }
    }
    let table = |frames: &[Frame]| frames.iter().map(|f| format!("  {f:?}\n")).collect::<String>();
    eprintln!("gdb:\n{}crashmon:\n{}", table(&gdb), table(&ours));
    if libc_too {
        assert_eq!(ours, gdb, "crashmon's crashing thread differs from gdb's backtrace");
    } else {
        // Only the program's own frames (those with a source file of ours).
        let own = |frames: &[Frame]| -> Vec<Frame> {
            frames
                .iter()
                .filter(|f| f.2.ends_with(".c") && f.2.starts_with("prog") || f.2 == "prog.rs")
                .cloned()
                .collect()
        };
        assert_eq!(own(&ours), own(&gdb), "crashmon's frames of the program differ from gdb's");
    }
}

/// Compile and run a C case at -O2 and compare it with gdb; skipped (with
/// the reason printed) when gdb or the C compiler is missing.
fn c_case(source: &str, last: Option<&str>, needs_libc: bool) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if let Some(why) = skip_reason(&cc) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c(&cc, dir.path(), source);
    run_case(&exe, dir.path(), last, needs_libc);
}

fn compile_c(cc: &str, dir: &Path, source: &str) -> PathBuf {
    let src = dir.join("prog.c");
    std::fs::write(&src, source).unwrap();
    let exe = dir.join("prog");
    let status = Command::new(cc).args(["-O2", "-g", "-o"]).arg(&exe).arg(&src).status().unwrap();
    assert!(status.success());
    exe
}

fn run_case(exe: &Path, dir: &Path, last: Option<&str>, needs_libc: bool) {
    let report = crashmon_report(exe, dir);
    let libc_too = libc_debug_file_installed(&report);
    if needs_libc && !libc_too {
        eprintln!("PARTLY SKIPPED: libc6-dbg is not installed; comparing the program's own frames only");
    }
    let ours = crashing_frames(&report);
    let gdb = gdb_frames(exe, dir);
    compare(&gdb, &ours, last, libc_too);
}

/// C: a crash in functions inlined into a comparator that libc's qsort
/// calls: the stack goes through libc (msort, qsort) and back.
#[test]
fn c_crash_through_libc_matches_gdb() {
    c_case(
        r#"#include <stdlib.h>
static volatile int sink;
static inline __attribute__((always_inline)) void poke(volatile int *p, int v) {
    *p = v;
}
static inline __attribute__((always_inline)) void check(const int *a, const int *b) {
    poke(*a == 3 || *b == 3 ? (volatile int *)0 : &sink, *a - *b);
}
__attribute__((noinline)) static int compare(const void *x, const void *y) {
    check(x, y);
    return *(const int *)x - *(const int *)y;
}
__attribute__((noinline)) static void sort_all(int *v, size_t n) {
    qsort(v, n, sizeof *v, compare);
    sink++;
}
int main(void) {
    int v[] = {5, 1, 4, 3, 2};
    sort_all(v, 5);
    return sink;
}
"#,
        Some("main"),
        true,
    );
}

/// C: a chain of inlined and out-of-line functions, down to `_start`.
#[test]
fn c_inlined_chain_matches_gdb() {
    c_case(
        r#"volatile int sink;
static inline __attribute__((always_inline)) void poke(volatile int *p, int v) {
    *p = v;
}
static inline __attribute__((always_inline)) void level2(volatile int *p, int v) {
    poke(p, v + 1);
    sink += v;
}
__attribute__((noinline)) void level1(volatile int *p, int v) {
    level2(p, v * 2);
    sink += 2;
}
__attribute__((noinline)) void outer(int n) {
    level1(n > 5 ? &sink : (volatile int *)0, n);
    sink++;
}
int main(int argc, char **argv) {
    (void)argv;
    outer(argc);
    return sink;
}
"#,
        Some("main"),
        true,
    );
}

/// Rust at opt-level 2: `#[inline(always)]` functions inside
/// `#[inline(never)]` ones, compared down to `prog::main`.
#[test]
fn rust_inlined_chain_matches_gdb() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Some(why) = skip_reason(&rustc) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("prog.rs");
    std::fs::write(
        &src,
        r#"use std::hint::black_box;
#[inline(always)]
fn poke(p: *mut u32, v: u32) {
    unsafe { std::ptr::write_volatile(p, v) }
}
#[inline(always)]
fn level2(p: *mut u32, v: u32) {
    poke(p, v + 1);
    black_box(v);
}
#[inline(never)]
fn level1(p: *mut u32, v: u32) {
    level2(p, v * 2);
    black_box(v);
}
#[inline(never)]
fn outer(n: u32) {
    let p = if n > 5 { Box::leak(Box::new(0u32)) as *mut u32 } else { std::ptr::null_mut() };
    level1(black_box(p), n);
    black_box(n);
}
fn main() {
    outer(black_box(std::env::args().count() as u32));
}
"#,
    )
    .unwrap();
    let exe = dir.path().join("prog");
    let status = Command::new(rustc)
        .args(["--edition", "2021", "-C", "opt-level=2", "-g", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    run_case(&exe, dir.path(), Some("prog::main"), false);
}
