//! `scaling`: crash-to-dump time and dump size against the number of
//! threads and the amount of touched heap (BENCHMARKS.md "Scaling").

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use minidump::{Minidump, MinidumpThreadList};

use crate::util::{self, App, Opts, field, fit, med_p99};

/// One measured crash.
struct Sample {
    /// From the app's last timestamp before the fault to its reaping (ms).
    crash_to_death_ms: f64,
    /// The monitor's own timing of the minidump write (ms, crashmon only).
    write_ms: Option<f64>,
    /// The monitor's timing from request to published report (ms).
    dump_written_ms: Option<f64>,
    dump_bytes: Option<u64>,
    dump_threads: Option<usize>,
}

/// Log filter that keeps the monitor's debug timings but not the dump
/// writer's chatter.
pub const DEBUG_LOG: &str = "debug,minidump_writer=error,goblin=error";

fn run(threads: usize, heap_mb: usize, crashmon: bool, db: &Path) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(util::bin("bench-app")?);
    cmd.args(["--threads", &threads.to_string(), "--heap-mb", &heap_mb.to_string()]);
    if crashmon {
        cmd.env("CRASHMON_DATABASE", db)
            .env("CRASHMON_MONITOR", util::bin(util::MONITOR)?)
            .env("CRASHMON_LOG", DEBUG_LOG);
    } else {
        cmd.arg("--no-handler");
    }
    let pending = db.join("pending");
    let before = util::files_with_ext(&pending, "dmp");
    let mut app = App::spawn(cmd)?;
    let crash = app.line("crash", Duration::from_secs(120))?;
    let t_crash: u64 = field(&crash, "mono_ns").context("crash line without mono_ns")?;
    let status = app.wait(Duration::from_secs(60))?;
    let t_dead = util::mono_ns();
    ensure!(status.signal() == Some(libc::SIGSEGV), "bench-app: expected death by SIGSEGV, got {status}");
    let mut s = Sample {
        crash_to_death_ms: (t_dead.saturating_sub(t_crash)) as f64 / 1e6,
        write_ms: None,
        dump_written_ms: None,
        dump_bytes: None,
        dump_threads: None,
    };
    if crashmon {
        // EOF on stderr: the sidecar has finished post-processing and exited,
        // so the next run starts on a quiet machine.
        let log = app.stderr(Duration::from_secs(60)).context("the sidecar monitor did not exit within 60 s")?;
        s.write_ms = log
            .lines()
            .find(|l| l.contains(" captured"))
            .and_then(|l| field::<f64>(l, "write_us"))
            .map(|us| us / 1000.0);
        s.dump_written_ms = log.lines().find(|l| l.contains("dump written")).and_then(|l| field::<f64>(l, "ms"));
        let after = util::files_with_ext(&pending, "dmp");
        let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
        ensure!(new.len() == 1, "expected one new dump in {}, found {}", pending.display(), new.len());
        s.dump_bytes = Some(std::fs::metadata(new[0])?.len());
        let dump = Minidump::read_path(new[0]).with_context(|| format!("parse {}", new[0].display()))?;
        let list = dump.get_stream::<MinidumpThreadList<'_>>().context("dump has no thread list")?;
        s.dump_threads = Some(list.threads.len());
        ensure!(list.threads.len() >= threads, "the dump has {} threads, the app had {threads}", list.threads.len());
    }
    Ok(s)
}

/// Run the scaling benchmark.
pub fn scaling(opts: Opts) -> anyhow::Result<()> {
    let runs = opts.runs(10, 2);
    let thread_counts: &[usize] = if opts.smoke { &[1, 100] } else { &[1, 10, 100, 1000] };
    let heaps: &[usize] = if opts.smoke { &[10] } else { &[10, 100, 1024] };
    let configs: Vec<(usize, usize)> =
        thread_counts.iter().map(|&t| (t, 0)).chain(heaps.iter().map(|&h| (1, h))).collect();
    println!("scaling: crash to death and dump size vs threads and touched heap ({runs} runs per row, interleaved)");
    println!();
    let mut rows = Vec::new();
    let mut thread_points = Vec::new();
    let mut thread_write_points = Vec::new();
    let mut heap_points = Vec::new();
    let mut heap_write_points = Vec::new();
    for &(threads, heap) in &configs {
        let db = tempfile::tempdir()?;
        // Warm-up run: page cache, database created.
        run(threads, heap, true, db.path())?;
        let (mut plain, mut cm) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            plain.push(run(threads, heap, false, db.path())?);
            cm.push(run(threads, heap, true, db.path())?);
        }
        let (pm, pp) = med_p99(&plain.iter().map(|s| s.crash_to_death_ms).collect::<Vec<_>>());
        let (cmm, cmp) = med_p99(&cm.iter().map(|s| s.crash_to_death_ms).collect::<Vec<_>>());
        let (wm, wp) = med_p99(&cm.iter().filter_map(|s| s.write_ms).collect::<Vec<_>>());
        let (dm, _) = med_p99(&cm.iter().filter_map(|s| s.dump_written_ms).collect::<Vec<_>>());
        let (size, _) = med_p99(&cm.iter().filter_map(|s| s.dump_bytes).map(|b| b as f64).collect::<Vec<_>>());
        let dump_threads = cm.iter().filter_map(|s| s.dump_threads).max().unwrap_or(0);
        if heap == 0 {
            thread_points.push((threads as f64, cmm - pm));
            thread_write_points.push((threads as f64, wm));
        }
        if threads == 1 {
            heap_points.push((heap as f64, cmm - pm));
            heap_write_points.push((heap as f64, wm));
        }
        rows.push(vec![
            threads.to_string(),
            heap.to_string(),
            format!("{pm:.2} / {pp:.2}"),
            format!("{cmm:.2} / {cmp:.2}"),
            format!("{:+.2}", cmm - pm),
            format!("{wm:.2} / {wp:.2}"),
            format!("{dm:.0}"),
            format!("{:.2}", size / 1e6),
            dump_threads.to_string(),
        ]);
    }
    util::table(
        &[
            "threads",
            "heap MB",
            "no handler: crash→death median / p99 ms",
            "crashmon: crash→death median / p99 ms",
            "crashmon - no handler (median) ms",
            "monitor minidump write median / p99 ms",
            "monitor request→published ms (log, 1 ms steps)",
            "dump MB",
            "threads in dump",
        ],
        &rows,
    );
    let (tslope, _) = fit(&thread_points);
    let (twslope, _) = fit(&thread_write_points);
    let (hslope, _) = fit(&heap_points);
    let (hwslope, _) = fit(&heap_write_points);
    println!(
        "per thread: {:.1} µs end to end (crash→death over baseline), {:.1} µs in the minidump write; target ≤ 20 µs: {}",
        tslope * 1000.0,
        twslope * 1000.0,
        if tslope * 1000.0 <= 20.0 { "met" } else { "MISSED" }
    );
    println!(
        "per MiB of touched heap: {:.2} µs end to end, {:.2} µs in the minidump write",
        hslope * 1000.0,
        hwslope * 1000.0
    );
    println!();
    Ok(())
}
