//! `crashmon dump-syms` and the symbol cache after a real crash, through
//! the CLI only (no gdb, no dump_syms, no C compiler: the crashing program
//! is compiled with the toolchain's rustc).
//!
//! A small Rust program (opt-level 2, debug info, an inlined function)
//! crashes under `crashmon run`. The monitor's post-processing child writes
//! the report without building any symbol table (the program is new), then
//! builds its table into the symbol cache. `crashmon dump-syms` writes the
//! program's Breakpad `.sym`, which is parsed back, and `crashmon
//! symbolicate --symbols DIR` of the dump, with the binary gone, names the
//! crashing function from that `.sym` alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crashmon_test_support::{bin, death_signal, files_with_ext, wait_for, wait_timeout};

const PROG: &str = r#"use std::hint::black_box;
#[inline(always)]
fn poke(p: *mut u32, v: u32) {
    unsafe { std::ptr::write_volatile(p, v) }
}
#[inline(never)]
fn crash_here(p: *mut u32, v: u32) {
    poke(p, v + 1);
    black_box(v);
}
#[inline(never)]
fn caller(n: u32) {
    let p = if n > 50 { Box::leak(Box::new(0u32)) as *mut u32 } else { std::ptr::null_mut() };
    crash_here(black_box(p), n);
    black_box(n);
}
fn main() {
    caller(black_box(std::env::args().count() as u32));
}
"#;

fn crashmon(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(bin("crashmon"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    assert!(wait_timeout(&mut child, Duration::from_secs(120)).is_some(), "crashmon {args:?} finished in 120 s");
    child.wait_with_output().unwrap()
}

/// Compiles [`PROG`] as `dir/prog`.
fn compile(dir: &Path) -> PathBuf {
    let src = dir.join("prog.rs");
    std::fs::write(&src, PROG).unwrap();
    let exe = dir.join("prog");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "-C", "opt-level=2", "-g", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("rustc runs");
    assert!(status.success());
    exe
}

/// Runs `exe` under `crashmon run`; returns the dump.
fn crash(exe: &Path, db: &Path, cache: &Path) -> PathBuf {
    let crashmon = bin("crashmon");
    let lib_dir = crashmon.parent().unwrap().to_path_buf();
    if !lib_dir.join("libcrashmon.so").is_file() {
        let built = crashmon_test_support::cargo_build(&["-p", "crashmon-capi", "--lib"], lib_dir.ends_with("release"));
        assert!(built, "cargo build -p crashmon-capi failed");
    }
    let mut child = Command::new(&crashmon)
        .arg("run")
        .arg("--")
        .arg(exe)
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_SYMBOL_CACHE", cache)
        .env_remove("CRASHMON_UPLOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(60)).expect("the program ended");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    wait_for(Duration::from_secs(30), || files_with_ext(&db.join("pending"), "dmp").pop()).expect("a dump in pending/")
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The crashing thread's frames as `(function, inlined)`.
fn crashing_frames(report: &serde_json::Value) -> Vec<(String, bool)> {
    let i = report["crashing_thread"].as_u64().expect("a crashing thread") as usize;
    report["threads"][i]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["function"].as_str().unwrap_or("").to_owned(), f["inlined"].as_bool().unwrap_or(false)))
        .collect()
}

#[test]
fn dump_syms_of_a_real_binary_symbolicates_its_dump_alone() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile(dir.path());
    let (db, cache) = (dir.path().join("db"), dir.path().join("cache"));
    let dump = crash(&exe, &db, &cache);

    // The monitor's child: the report first, then the program's table.
    let report_json = wait_for(Duration::from_secs(60), || {
        files_with_ext(&db.join("pending"), "json").into_iter().find(|p| p.to_string_lossy().ends_with(".report.json"))
    })
    .expect("the monitor symbolicated the report");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_json).unwrap()).unwrap();
    let prog_module = stored["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["code_file"].as_str().is_some_and(|f| f.ends_with("/prog")))
        .expect("the program's module")
        .clone();
    let build_id = prog_module["code_id"].as_str().unwrap().to_ascii_lowercase();
    let entry = cache.join("symcache").join(format!("{build_id}-binary.symc"));
    assert!(
        wait_for(Duration::from_secs(60), || entry.is_file().then_some(())).is_some(),
        "the program's table is cached after its first report: {:?}",
        std::fs::read_dir(cache.join("symcache")).map(|d| d.map(|e| e.unwrap().file_name()).collect::<Vec<_>>())
    );
    // Stored after the report: the report did not wait for it.
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    assert!(mtime(&report_json) <= mtime(&entry), "the table is stored after the report");
    let first = crashing_frames(&stored);
    assert!(first.iter().any(|(f, inlined)| f == "prog::crash_here" && !inlined), "{first:?}");

    // The second symbolication reads the cache and says the same.
    let warm = json(&crashmon(
        &["symbolicate", "--json", "--symbol-cache", cache.to_str().unwrap(), dump.to_str().unwrap()],
        &[],
    ));
    assert_eq!(crashing_frames(&warm), first);
    assert_eq!(warm["signature"], stored["signature"]);

    // `crashmon show ID` with symbol options symbolicates again, lazily,
    // and fills its cache after printing, as `symbolicate` does.
    let id = report_json.file_name().unwrap().to_str().unwrap().split('.').next().unwrap().to_owned();
    let show_cache = dir.path().join("show-cache");
    let shown = json(&crashmon(
        &["show", "--json", &id, "--symbol-cache", show_cache.to_str().unwrap()],
        &[("CRASHMON_DATABASE", &db)],
    ));
    assert_eq!(crashing_frames(&shown["report"]), first);
    let show_entry = show_cache.join("symcache").join(format!("{build_id}-binary.symc"));
    assert!(show_entry.is_file(), "`show` cached the program's table");

    // dump-syms: the .sym of the program, in a Breakpad tree.
    let tree = dir.path().join("symbols");
    let out = crashmon(&["dump-syms", exe.to_str().unwrap(), "--store", tree.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let debug_id = prog_module["debug_id"].as_str().unwrap();
    let sym_path = tree.join("prog").join(debug_id).join("prog.sym");
    let sym = std::fs::read_to_string(&sym_path).unwrap_or_else(|e| panic!("{}: {e}", sym_path.display()));
    let module: Vec<&str> = sym.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(module, ["MODULE", "Linux", "x86_64", debug_id, "prog"]);
    let funcs: Vec<&str> = sym.lines().filter(|l| l.starts_with("FUNC ")).collect();
    assert!(funcs.iter().any(|l| l.ends_with(" prog::crash_here")), "FUNC prog::crash_here in {}", sym_path.display());
    assert!(funcs.iter().any(|l| l.ends_with(" prog::caller")));
    let origins: Vec<&str> = sym.lines().filter(|l| l.starts_with("INLINE_ORIGIN ")).collect();
    let poke = origins.iter().find(|l| l.ends_with(" prog::poke")).expect("INLINE_ORIGIN prog::poke");
    let poke_id = poke.split_whitespace().nth(1).unwrap();
    assert!(
        sym.lines().any(|l| l.starts_with("INLINE ") && l.split_whitespace().nth(3) == Some(poke_id)),
        "an INLINE record of prog::poke"
    );
    assert!(sym.lines().any(|l| l.starts_with("STACK CFI INIT ")));

    // The binary is gone: only the .sym names the frames.
    std::fs::rename(&exe, dir.path().join("elsewhere")).unwrap();
    let empty = dir.path().join("no-debug-files");
    std::fs::create_dir(&empty).unwrap();
    let from_sym = json(&crashmon(
        &[
            "symbolicate",
            "--json",
            "--no-symbol-cache",
            "--debug-dir",
            empty.to_str().unwrap(),
            "--symbols",
            tree.to_str().unwrap(),
            dump.to_str().unwrap(),
        ],
        &[],
    ));
    let module = from_sym["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["code_file"].as_str().is_some_and(|f| f.ends_with("/prog")))
        .unwrap();
    assert_eq!(module["symbol_source"], "symbols-dir", "{module:#}");
    let frames = crashing_frames(&from_sym);
    let own: Vec<&(String, bool)> = frames.iter().filter(|(f, _)| f.starts_with("prog::")).collect();
    assert_eq!(
        own.iter().map(|(f, inlined)| (f.as_str(), *inlined)).collect::<Vec<_>>()[..3],
        [("prog::poke", true), ("prog::crash_here", false), ("prog::caller", false)],
        "{frames:?}"
    );
}
