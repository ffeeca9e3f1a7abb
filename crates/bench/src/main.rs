//! crashmon's benchmark harness. See BENCHMARKS.md for what each number
//! means and the command that reproduces it.
//!
//! `crashmon-bench <bench>... [--runs N | --smoke]`, `all` for every bench:
//!
//! - `crash-to-exit`: process start to death by SIGSEGV, with the dump
//!   durable on disk, for (a) no handler, (b) crashmon (sidecar monitor:
//!   the lean `crashmon-monitor`, as the handler finds it when installed;
//!   (b'') the whole `crashmon` CLI as the sidecar, for comparison),
//!   (c) Embark's crash-handler + minidumper; interleaved round by round so
//!   machine noise hits all of them alike. Prints median, p90, p99, ratios.
//! - `exec-time`: exec to exit of `crashmon-monitor --version` against
//!   `crashmon --version`, a small Rust binary and `/bin/true`.
//! - `crash-profile`: where crashmon's crash-to-exit time goes, step by step.
//! - `scaling`: crash-to-dump time and dump size vs threads and heap.
//! - `handler-idle`: install time, memory per thread, annotate/breadcrumb ns.
//! - `monitor-idle`: a shared monitor's RSS and CPU with 1 and 100 apps.
//! - `upload`: `crashmon upload` throughput and peak RSS, 1 MB and 100 MB.
//! - `many-crashes`: 100 apps crash at once against one shared monitor.
//!
//! `--smoke` runs a short version of each (CI runs `all --smoke`).

mod exec;
mod idle;
mod many;
mod profile;
mod scaling;
mod symbolicate;
mod upload;
mod util;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::util::percentile;

/// Build the binaries the harness runs, in the same profile as itself.
fn build(dir: &Path) -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(()); // not run through cargo: use what is there
    };
    let release = dir.ends_with("release");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "crashmon", "-p", "crashmon-test-support", "-p", "crashmon-bench"]);
    if release {
        cmd.arg("--release");
    }
    ensure!(cmd.status()?.success(), "cargo build failed");
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Plain,
    Crashmon,
    /// crashmon with `wait_for_monitor: false` (install() does not wait for
    /// the sidecar's start).
    CrashmonNoWait,
    /// crashmon with the whole `crashmon` CLI as the sidecar (what the
    /// handler spawned before `crashmon-monitor` existed).
    CrashmonCli,
    Embark,
}

impl Variant {
    const ALL: [Variant; 5] =
        [Variant::Plain, Variant::Crashmon, Variant::CrashmonNoWait, Variant::CrashmonCli, Variant::Embark];
    fn label(self) -> &'static str {
        match self {
            Variant::Plain => "(a) no handler",
            Variant::Crashmon => "(b) crashmon (sidecar crashmon-monitor)",
            Variant::CrashmonNoWait => "(b') crashmon, wait_for_monitor: false",
            Variant::CrashmonCli => "(b'') crashmon, whole `crashmon` CLI as sidecar",
            Variant::Embark => "(c) crash-handler + minidumper",
        }
    }

    fn is_crashmon(self) -> bool {
        matches!(self, Variant::Crashmon | Variant::CrashmonNoWait | Variant::CrashmonCli)
    }

    /// The sidecar executable of a crashmon variant.
    fn monitor(self) -> &'static str {
        if self == Variant::CrashmonCli { "crashmon" } else { util::MONITOR }
    }
}

fn dumps_in(d: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(d)
        .map(|r| {
            r.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "dmp")).collect()
        })
        .unwrap_or_default()
}

/// One run: spawn, wait for death, check the signal and the new dump.
/// Returns the wall time from spawn to reaping. `work` persists across runs
/// (a real crash finds its database already there); after each crashmon run
/// we wait for its symbolication to finish so the next run starts on a quiet
/// machine.
fn run_once(dir: &Path, variant: Variant, work: &Path) -> anyhow::Result<Duration> {
    let dump_dir = if variant.is_crashmon() { work.join("pending") } else { work.to_path_buf() };
    let before = dumps_in(&dump_dir).len();
    let mut cmd = match variant {
        Variant::Plain => {
            let mut c = Command::new(dir.join("crasher"));
            c.args(["--crash", "segv", "--no-handler"]);
            c
        }
        Variant::Crashmon | Variant::CrashmonNoWait | Variant::CrashmonCli => {
            let mut c = Command::new(dir.join("crasher"));
            c.args(["--crash", "segv"])
                .env("CRASHMON_DATABASE", work)
                .env("CRASHMON_MONITOR", dir.join(variant.monitor()));
            if variant == Variant::CrashmonNoWait {
                c.arg("--no-wait-for-monitor");
            }
            c
        }
        Variant::Embark => {
            let mut c = Command::new(dir.join("embark-crasher"));
            c.arg(work);
            c
        }
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).stdin(Stdio::null());
    let started = Instant::now();
    let status = cmd.spawn()?.wait()?;
    let took = started.elapsed();
    ensure!(status.signal() == Some(libc::SIGSEGV), "{variant:?}: expected death by SIGSEGV, got {status}");
    if variant != Variant::Plain {
        let after = if variant.is_crashmon() {
            // Durable when the app died: in pending/, or still in new/ with
            // its metadata (both fsynced before the reply; the monitor moves
            // them to pending/ while the app dies, the metadata first).
            // new/ is read first and ids are counted once, so a dump moving
            // meanwhile is seen in one place or both, never in neither.
            let mut ids = std::collections::BTreeSet::new();
            for d in dumps_in(&work.join("new")) {
                let stem = d.file_stem().map(|s| s.to_owned()).unwrap_or_default();
                let json = Path::new(&stem).with_extension("json");
                if work.join("new").join(&json).is_file() || dump_dir.join(&json).is_file() {
                    ids.insert(stem);
                }
            }
            ids.extend(dumps_in(&dump_dir).iter().filter_map(|d| d.file_stem().map(|s| s.to_owned())));
            ids.into_iter().map(PathBuf::from).collect::<Vec<_>>()
        } else {
            dumps_in(&dump_dir)
        };
        if after.len() != before + 1 {
            for f in std::fs::read_dir(work.join("failed")).into_iter().flatten().flatten() {
                eprintln!("failed/: {}", std::fs::read_to_string(f.path()).unwrap_or_default());
            }
        }
        ensure!(
            after.len() == before + 1,
            "{variant:?}: the dump was not on disk when the app died ({} dumps in {} before, {} after)",
            before,
            dump_dir.display(),
            after.len()
        );
    }
    if variant.is_crashmon() {
        // Let the monitor finish symbolicating (off the app's path) before
        // the next run, so runs do not compete for the CPUs.
        let deadline = Instant::now() + Duration::from_secs(30);
        while (!dumps_in(&work.join("new")).is_empty()
            || dumps_in(&dump_dir).iter().any(|d| !d.with_extension("report.json").exists()))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    } else if variant == Variant::Embark {
        // minidumper's server exits after the dump; give it the same chance.
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(took)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn crash_to_exit(opts: util::Opts) -> anyhow::Result<()> {
    let runs = opts.runs(100, 3);
    let dir = util::bin_dir()?;
    for name in ["crasher", "crashmon", util::MONITOR, "embark-crasher"] {
        if !dir.join(name).is_file() {
            bail!(
                "{} is missing; build with: cargo build --release -p crashmon -p crashmon-test-support -p crashmon-bench",
                dir.join(name).display()
            );
        }
    }
    let works: Vec<tempfile::TempDir> = Variant::ALL.iter().map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
    // Warm-up: page cache, dynamic loader, and the crash database created.
    for (v, w) in Variant::ALL.iter().zip(&works) {
        run_once(&dir, *v, w.path())?;
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); Variant::ALL.len()];
    for _ in 0..runs {
        for (i, v) in Variant::ALL.iter().enumerate() {
            samples[i].push(run_once(&dir, *v, works[i].path())?);
        }
    }
    for s in &mut samples {
        s.sort();
    }
    let plain_median = percentile(&samples[0], 0.5);
    println!("crash to exit, dump durable on disk ({runs} runs each, interleaved; binaries in {})", dir.display());
    println!();
    println!("| variant | median ms | p90 ms | p99 ms | median - (a) ms | median / (a) |");
    println!("|---|---|---|---|---|---|");
    for (i, v) in Variant::ALL.iter().enumerate() {
        let s = &samples[i];
        let med = percentile(s, 0.5);
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:+.2} | {:.2}x |",
            v.label(),
            ms(med),
            ms(percentile(s, 0.9)),
            ms(percentile(s, 0.99)),
            ms(med) - ms(plain_median),
            ms(med) / ms(plain_median)
        );
    }
    Ok(())
}

const BENCHES: &[&str] = &[
    "crash-to-exit",
    "exec-time",
    "crash-profile",
    "scaling",
    "handler-idle",
    "monitor-idle",
    "upload",
    "many-crashes",
    "symbolicate",
];

fn run(name: &str, opts: util::Opts) -> anyhow::Result<()> {
    match name {
        "crash-to-exit" => crash_to_exit(opts),
        "exec-time" => exec::exec_time(opts),
        "crash-profile" => profile::crash_profile(opts),
        "scaling" => scaling::scaling(opts),
        "handler-idle" => idle::handler_idle(opts),
        "monitor-idle" => idle::monitor_idle(opts),
        "upload" => upload::upload(opts),
        "many-crashes" => many::many_crashes(opts),
        "symbolicate" => symbolicate::symbolicate(opts),
        _ => bail!("unknown benchmark {name}; one of: all, {}", BENCHES.join(", ")),
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut opts = util::Opts { smoke: false, runs: None };
    let mut benches: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                let n: usize = args.next().context("--runs N")?.parse().context("--runs N")?;
                ensure!(n > 0, "--runs must be at least 1");
                opts.runs = Some(n);
            }
            "--smoke" => opts.smoke = true,
            "all" => benches.extend(BENCHES.iter().map(|b| b.to_string())),
            "-h" | "--help" => {
                println!("usage: crashmon-bench <all | {}>... [--runs N | --smoke]", BENCHES.join(" | "));
                return Ok(());
            }
            other if !other.starts_with('-') => benches.push(other.to_owned()),
            other => bail!(
                "unknown argument {other}; usage: crashmon-bench <all | {}>... [--runs N | --smoke]",
                BENCHES.join(" | ")
            ),
        }
    }
    if benches.is_empty() {
        benches.push("crash-to-exit".into());
    }
    build(&util::bin_dir()?)?;
    print_machine();
    for b in &benches {
        let started = std::time::Instant::now();
        println!("## {b}{}", if opts.smoke { " (smoke)" } else { "" });
        println!();
        run(b, opts).with_context(|| format!("benchmark {b}"))?;
        println!("({b} took {:.1} s)", started.elapsed().as_secs_f64());
        println!();
    }
    Ok(())
}

/// The machine the numbers come from.
fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = util::status_kib_path("/proc/meminfo", "MemTotal").unwrap_or(0);
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let tmp = std::env::temp_dir();
    let fs = util::fs_type(&tmp).unwrap_or_else(|| "unknown".into());
    println!(
        "machine: {nproc} CPUs ({cpu}), {:.1} GiB RAM, Linux {}, temp dir {} on {fs}, {} build",
        mem as f64 / 1048576.0,
        kernel.trim(),
        tmp.display(),
        if cfg!(debug_assertions) { "DEBUG (numbers not meaningful)" } else { "release" }
    );
    println!();
}
