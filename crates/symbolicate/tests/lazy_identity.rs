//! The first report of a binary (no symbol table cached: frames looked up
//! lazily, address by address, in the symbol files) must name every frame
//! exactly as the whole SymCache does (the old path, and what later
//! reports read from the cache): crash signatures group reports across
//! both.
//!
//! Real processes — Rust and C programs compiled at -O2 with inlining,
//! several threads blocked in inlined chains through libc — are dumped with
//! `minidump-writer`, and every frame of every thread is compared.
//! The programs are compiled with rustc (always there with cargo) and the
//! C compiler (skipped, with the reason printed, when missing).
//! `src/lazy.rs` compares the lookups address by address on the same kind
//! of binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_symbolicate::{Options, Report};

/// Runs `exe` (which prints `ready tid=T` and blocks until stdin closes),
/// dumps it, and kills it.
fn dump_program(exe: &Path, dump: &Path) {
    let mut cmd = Command::new(exe);
    cmd.stdin(Stdio::piped()).stderr(Stdio::null());
    let (child, line) = crashmon_test_support::spawn_until_line(&mut cmd, "ready tid=", Duration::from_secs(20));
    let pid = child.0.id() as i32;
    let tid: i32 = line["ready tid=".len()..].trim().parse().unwrap();
    // Let the other threads reach their blocking calls.
    std::thread::sleep(Duration::from_millis(200));
    let mut file = std::fs::File::create(dump).unwrap();
    minidump_writer::minidump_writer::MinidumpWriterConfig::new(pid, tid)
        .write(&mut file)
        .expect("minidump-writer dumps the program");
    drop(child);
}

fn compile(dir: &Path, tool: &str, args: &[&str], name: &str, source: &str) -> Option<PathBuf> {
    let src = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let exe = dir.join("prog");
    match Command::new(tool).args(args).arg("-o").arg(&exe).arg(&src).status() {
        Ok(status) if status.success() => Some(exe),
        Ok(status) => panic!("{tool} {name} failed: {status}"),
        Err(e) => {
            eprintln!("SKIPPED: cannot run {tool}: {e}");
            None
        }
    }
}

/// The dump symbolicated lazily (empty cache) and with whole tables; both
/// must be equal, frame for frame, and really contain what the programs
/// are about (the named functions, inlined frames, libc).
///
fn assert_lazy_equals_tables(dir: &Path, dump: &Path, expect: &[&str]) -> Report {
    let mut lazy = Options::default();
    lazy.cache_dir = Some(dir.join("cache"));
    let (lazy_report, first, pending) = crashmon_symbolicate::symbolicate_path_deferred(dump, &lazy).unwrap();
    // No table before the report, also for files with compressed sections
    // (a program built with -gz, libc6-dbg's libc when installed).
    assert_eq!(first.built, 0, "tables built for the first report: {first:?}");
    assert!(first.lazy >= 2, "the program and libc are both looked up lazily: {first:?}");
    assert_eq!(pending.len() as u32, first.lazy);

    let mut tables = Options::default();
    tables.cache_dir = None;
    tables.build_tables_first = true;
    let (table_report, stats) = crashmon_symbolicate::symbolicate_path_with_stats(dump, &tables).unwrap();
    assert!(stats.built >= 2 && stats.lazy == 0, "{stats:?}");

    assert_eq!(lazy_report.threads.len(), table_report.threads.len());
    for (a, b) in lazy_report.threads.iter().zip(&table_report.threads) {
        for (i, (fa, fb)) in a.frames.iter().zip(&b.frames).enumerate() {
            assert_eq!(fa, fb, "thread {} frame {i}", a.tid);
        }
        assert_eq!(a, b);
    }
    assert_eq!(lazy_report, table_report);

    // Then the cache: the tables built after the report give it again.
    assert_eq!(pending.build_and_store() as u32, first.lazy);
    assert_eq!(first.lazy, stats.built);
    let (cached, stats) = crashmon_symbolicate::symbolicate_path_with_stats(dump, &lazy).unwrap();
    assert!(stats.hits >= 2 && stats.built == 0 && stats.lazy == 0, "{stats:?}");
    assert_eq!(cached, lazy_report);

    let frames: Vec<_> = lazy_report.threads.iter().flat_map(|t| &t.frames).collect();
    for name in expect {
        assert!(
            frames.iter().any(|f| f.function.as_deref().is_some_and(|f| f.ends_with(name))),
            "{name} in {frames:#?}"
        );
    }
    assert!(frames.iter().any(|f| f.inlined && f.line.is_some()), "inlined frames with lines: {frames:#?}");
    assert!(frames.iter().any(|f| f.module.as_deref() == Some("libc.so.6") && f.function.is_some()));
    assert!(lazy_report.threads.len() >= 2);
    lazy_report
}

const RUST: &str = r#"use std::hint::black_box;
use std::io::{Read, Write};
#[inline(always)]
fn wait_input(v: u32) -> u32 {
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
    v + buf.len() as u32
}
#[inline(always)]
fn level2(v: u32) -> u32 { black_box(wait_input(v + 1)) * 3 }
#[inline(never)]
fn level1(v: u32) -> u32 { black_box(level2(v * 2)) + 1 }
#[inline(never)]
fn parked(v: u32) -> u32 {
    loop { std::thread::park(); black_box(v); }
}
#[inline(always)]
fn park_twice(v: u32) -> u32 { parked(v + 7) }
fn main() {
    let n = std::env::args().count() as u32;
    std::thread::Builder::new().name("parker".into()).spawn(move || park_twice(black_box(n))).unwrap();
    std::thread::Builder::new().name("sleeper".into()).spawn(|| loop { std::thread::sleep(std::time::Duration::from_secs(10)) }).unwrap();
    let tid = std::fs::read_link("/proc/thread-self").unwrap();
    println!("ready tid={}", tid.file_name().unwrap().to_str().unwrap());
    std::io::stdout().flush().unwrap();
    std::process::exit(level1(black_box(n)) as i32);
}
"#;

const C: &str = r#"#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static volatile int sink;
static inline __attribute__((always_inline)) int wait_input(int v) {
    char c;
    return v + (int)read(0, &c, 1);
}
static inline __attribute__((always_inline)) int level2(int v) { int r = wait_input(v + 1); sink += r; return r * 3; }
__attribute__((noinline)) int level1(int v) { int r = level2(v * 2); sink++; return r + 1; }
static inline __attribute__((always_inline)) void nap(void) { for (;;) { sleep(10); sink++; } }
__attribute__((noinline)) static void *napper(void *arg) { (void)arg; nap(); return 0; }
int main(int argc, char **argv) {
    (void)argv;
    pthread_t t;
    pthread_create(&t, 0, napper, 0);
    printf("ready tid=%d\n", (int)gettid());
    fflush(stdout);
    return level1(argc);
}
"#;

#[test]
fn rust_o2_program_lazy_equals_whole_tables() {
    let dir = tempfile::tempdir().unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Some(exe) = compile(dir.path(), &rustc, &["--edition", "2021", "-C", "opt-level=2", "-g"], "prog.rs", RUST)
    else {
        return;
    };
    let dump = dir.path().join("prog.dmp");
    dump_program(&exe, &dump);
    assert_lazy_equals_tables(dir.path(), &dump, &["level1", "wait_input", "level2", "parked", "park_twice"]);
}

#[test]
fn c_o2_program_lazy_equals_whole_tables() {
    let dir = tempfile::tempdir().unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Some(exe) = compile(dir.path(), &cc, &["-O2", "-g", "-pthread"], "prog.c", C) else { return };
    let dump = dir.path().join("prog.dmp");
    dump_program(&exe, &dump);
    assert_lazy_equals_tables(dir.path(), &dump, &["level1", "wait_input", "level2", "napper", "nap"]);
}

/// Compressed debug sections (SHF_COMPRESSED, as distro debug files have
/// them): decompressed and looked up lazily too, with the same names.
#[test]
fn compressed_debug_sections_are_looked_up_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Some(exe) = compile(dir.path(), &cc, &["-O2", "-g", "-gz=zlib", "-pthread"], "prog.c", C) else { return };
    let elf = std::fs::read(&exe).unwrap();
    let compressed = {
        use object::{Object, ObjectSection};
        let file = object::File::parse(&*elf).unwrap();
        file.section_by_name(".debug_info")
            .is_some_and(|s| s.compressed_file_range().is_ok_and(|r| r.format != object::CompressionFormat::None))
    };
    if !compressed {
        eprintln!("SKIPPED: {cc} -gz=zlib did not compress the debug sections");
        return;
    }
    let dump = dir.path().join("prog.dmp");
    dump_program(&exe, &dump);
    assert_lazy_equals_tables(dir.path(), &dump, &["level1", "wait_input", "level2", "napper", "nap"]);
}
