//! `symbolicate`: symbolicating a real crash dump of a big Rust binary with
//! full debug info (the dev-profile `crashmon` executable, ~250 MB), side by
//! side in one run, interleaved:
//!
//! - rust-minidump's `minidump-stackwalk` given Breakpad `.sym` files made by
//!   `dump_syms --inlines` for every module of the dump (both from
//!   `cargo install minidump-stackwalk dump_syms`; the bench says so and
//!   skips them if they are missing);
//! - crashmon cold: `symbolicate_path` with an empty symbol cache: the
//!   first report of a new binary, whose frames are looked up lazily in the
//!   DWARF (no table is built before the report);
//! - crashmon warm: the same with the cache filled by an earlier report of
//!   the same binary (its tables built after that report);
//! - crashmon cold and warm as a process: `crashmon symbolicate --json`
//!   (release build), to compare like with like against
//!   minidump-stackwalk's process;
//! - once, for reference: building the whole tables (what the first report
//!   used to wait for, and what runs after it now).
//!
//! All from the page cache (each variant runs once before timing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};

use crate::util::{self, Opts};

fn which(name: &str) -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin").join(name));
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).chain(cargo_bin).find(|p| p.is_file())
}

/// The big binary: the dev-profile `crashmon` (full DWARF), built if
/// missing, copied so a rebuild during the bench cannot change it.
fn big_binary(work: &Path) -> anyhow::Result<PathBuf> {
    let release_dir = util::bin_dir()?;
    let debug = release_dir.parent().context("target dir")?.join("debug/crashmon");
    if let Ok(path) = std::env::var("CRASHMON_BENCH_BIG_BINARY") {
        let copy = work.join("crashmon");
        std::fs::copy(&path, &copy).with_context(|| format!("copying {path}"))?;
        return Ok(copy);
    }
    if !debug.is_file() {
        ensure!(crashmon_test_support::cargo_build(&["-p", "crashmon"], false), "cargo build -p crashmon failed");
    }
    let copy = work.join("crashmon");
    std::fs::copy(&debug, &copy).with_context(|| format!("copying {}", debug.display()))?;
    Ok(copy)
}

/// A crash dump of `exe` (its `demo` command crashes its own demo app).
fn make_dump(exe: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let db = work.join("db");
    let status = Command::new(exe)
        .args(["--database"])
        .arg(&db)
        .args(["demo", "--json"])
        .env("CRASHMON_SYMBOL_CACHE", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    ensure!(status.success(), "{} demo failed: {status}", exe.display());
    let dumps = util::files_with_ext(&db.join("pending"), "dmp");
    ensure!(dumps.len() == 1, "expected one dump in {}, found {dumps:?}", db.display());
    Ok(dumps[0].clone())
}

/// `dump_syms --inlines --store TREE FILE` for every module file of the
/// dump that exists here.
fn make_sym_tree(dump_syms: &Path, dump: &Path, tree: &Path) -> anyhow::Result<usize> {
    let report = crashmon_symbolicate::symbolicate_path(dump, &no_cache_options())?;
    let mut made = 0;
    for module in &report.modules {
        let file = Path::new(&module.code_file);
        if !file.is_file() {
            continue;
        }
        let status = Command::new(dump_syms)
            .args(["--inlines", "--store"])
            .arg(tree)
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            made += 1;
        } else {
            eprintln!("dump_syms failed for {}", file.display());
        }
    }
    Ok(made)
}

fn no_cache_options() -> crashmon_symbolicate::Options {
    let mut o = crashmon_symbolicate::Options::default();
    o.cache_dir = None;
    o
}

fn time(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Names of the crashing thread's first frames, to check that every
/// variant found the same stack.
fn top_names(report: &crashmon_symbolicate::Report) -> Vec<String> {
    let t = &report.threads[report.crashing_thread.unwrap_or(0)];
    t.frames.iter().filter(|f| !f.inlined).take(6).map(|f| f.function.clone().unwrap_or_default()).collect()
}

pub fn symbolicate(opts: Opts) -> anyhow::Result<()> {
    let runs = opts.runs(30, 3);
    let work = tempfile::tempdir()?;
    let exe = big_binary(work.path())?;
    let size_mb = std::fs::metadata(&exe)?.len() as f64 / 1e6;
    let dump = make_dump(&exe, work.path())?;
    println!("big binary: dev-profile crashmon, {size_mb:.0} MB (full DWARF); dump {}", dump.display());

    let stackwalk = which("minidump-stackwalk");
    let dump_syms = which("dump_syms");
    let tree = work.path().join("breakpad");
    let have_stackwalk = match (&stackwalk, &dump_syms) {
        (Some(_), Some(ds)) => {
            let made = make_sym_tree(ds, &dump, &tree)?;
            println!("dump_syms --inlines wrote {made} .sym files");
            true
        }
        _ => {
            println!(
                "minidump-stackwalk and/or dump_syms missing (cargo install minidump-stackwalk dump_syms): \
                 comparing crashmon alone"
            );
            false
        }
    };
    let crashmon_release = util::bin("crashmon")?;

    let cache_warm = work.path().join("cache-warm");
    let mut warm_options = crashmon_symbolicate::Options::default();
    warm_options.cache_dir = Some(cache_warm.clone());
    let (reference, _, pending) = crashmon_symbolicate::symbolicate_path_deferred(&dump, &warm_options)?;
    let expected = top_names(&reference);
    println!("crashing thread (physical frames): {}", expected.join(" <- "));
    let tables = pending.len();
    let build_ms = time(|| {
        pending.build_and_store();
        Ok(())
    })?;
    println!("building the {tables} symbol tables after the first report (not timed below): {build_ms:.0} ms");

    let mut samples: Vec<(&str, Vec<f64>)> = Vec::new();
    let labels = [
        "minidump-stackwalk (dump_syms --inlines .sym)",
        "crashmon cold (empty cache)",
        "crashmon warm (cache)",
        "crashmon warm, CLI process",
        "crashmon cold, CLI process (--no-symbol-cache)",
    ];
    for l in labels {
        samples.push((l, Vec::new()));
    }
    for round in 0..=runs {
        if have_stackwalk {
            let t = time(|| {
                let out = Command::new(stackwalk.as_ref().expect("checked"))
                    .arg("--json")
                    .arg("--symbols-path")
                    .arg(&tree)
                    .arg(&dump)
                    .stderr(Stdio::null())
                    .output()?;
                ensure!(out.status.success(), "minidump-stackwalk failed");
                Ok(())
            })?;
            if round > 0 {
                samples[0].1.push(t);
            }
        }
        let cold_dir = tempfile::tempdir()?;
        let mut cold = crashmon_symbolicate::Options::default();
        cold.cache_dir = Some(cold_dir.path().to_owned());
        let mut report = None;
        let t = time(|| {
            let (r, stats) = crashmon_symbolicate::symbolicate_path_with_stats(&dump, &cold)?;
            // Every module is looked up lazily in the cold run, separate
            // debug files with compressed sections (libc6-dbg's libc) too.
            ensure!(stats.built == 0 && stats.hits == 0, "the cold run built or read tables: {stats:?}");
            report = Some(r);
            Ok(())
        })?;
        ensure!(report.as_ref().map(top_names) == Some(expected.clone()), "cold run found another stack");
        if round > 0 {
            samples[1].1.push(t);
        }
        let t = time(|| {
            let (r, stats) = crashmon_symbolicate::symbolicate_path_with_stats(&dump, &warm_options)?;
            ensure!(stats.built == 0 && stats.lazy == 0, "the warm run did not use the cache only: {stats:?}");
            report = Some(r);
            Ok(())
        })?;
        ensure!(report.as_ref().map(top_names) == Some(expected.clone()), "warm run found another stack");
        if round > 0 {
            samples[2].1.push(t);
        }
        // The CLI as a user runs it: warm cache, then no cache at all.
        let cache_args = [vec!["--symbol-cache".as_ref(), cache_warm.as_os_str()], vec!["--no-symbol-cache".as_ref()]];
        for (slot, args) in [3, 4].into_iter().zip(cache_args) {
            let t = time(|| {
                let out = Command::new(&crashmon_release)
                    .args(["symbolicate", "--json"])
                    .args(&args)
                    .arg(&dump)
                    .stderr(Stdio::null())
                    .output()?;
                ensure!(out.status.success(), "crashmon symbolicate failed");
                Ok(())
            })?;
            if round > 0 {
                samples[slot].1.push(t);
            }
        }
    }
    let base = have_stackwalk.then(|| util::med_p99(&samples[0].1).0);
    let rows: Vec<Vec<String>> = samples
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(label, s)| {
            let (med, p99) = util::med_p99(s);
            vec![
                label.to_string(),
                format!("{med:.1}"),
                format!("{p99:.1}"),
                base.map_or("-".into(), |b| format!("{:.2}x", med / b)),
            ]
        })
        .collect();
    println!("{runs} runs each, interleaved");
    println!();
    util::table(&["variant", "median ms", "p99 ms", "median / stackwalk"], &rows);
    if rows.is_empty() {
        bail!("no samples");
    }
    Ok(())
}
