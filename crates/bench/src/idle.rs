//! Costs while nothing crashes: `handler-idle` (the handler inside the app)
//! and `monitor-idle` (a shared monitor with connected apps).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::util::{self, App, Opts, med_p99};

/// Run `bench-app --mode micro` and collect its `key=value` lines.
fn micro(handler: bool, iters: usize, db: &std::path::Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut cmd = Command::new(util::bin("bench-app")?);
    cmd.args(["--mode", "micro", "--iters", &iters.to_string()])
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_MONITOR", util::bin(util::MONITOR)?);
    if !handler {
        cmd.arg("--no-handler");
    }
    let out = cmd.output().context("run bench-app --mode micro")?;
    ensure!(out.status.success(), "bench-app --mode micro failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect())
}

/// `handler-idle`: install time, per-thread memory, annotate/breadcrumb cost.
pub fn handler_idle(opts: Opts) -> anyhow::Result<()> {
    let runs = opts.runs(20, 3);
    let iters = if opts.smoke { 20_000 } else { 200_000 };
    let db = tempfile::tempdir()?;
    micro(true, 1000, db.path())?; // warm-up
    let mut with: Vec<BTreeMap<String, f64>> = Vec::new();
    let mut without: Vec<BTreeMap<String, f64>> = Vec::new();
    for _ in 0..runs {
        with.push(micro(true, iters, db.path())?);
        without.push(micro(false, iters, db.path())?);
    }
    let col = |v: &[BTreeMap<String, f64>], k: &str| -> (f64, f64) {
        med_p99(&v.iter().filter_map(|m| m.get(k).copied()).collect::<Vec<_>>())
    };
    println!(
        "handler cost while nothing crashes ({runs} processes each, {iters} calls per process for the per-call costs)"
    );
    println!();
    let (im, ip) = col(&with, "install_us");
    let (am, ap) = col(&with, "annotate_ns");
    let (bm, bp) = col(&with, "breadcrumb_ns");
    let (ivm, _) = col(&with, "install_vm_kib");
    let (alt, _) = col(&with, "main_altstack_bytes");
    let (trw, _) = col(&with, "thread_rss_bytes");
    let (tro, _) = col(&without, "thread_rss_bytes");
    let (tvw, _) = col(&with, "thread_vm_bytes");
    let (tvo, _) = col(&without, "thread_vm_bytes");
    let (taw, _) = col(&with, "thread_altstack_bytes");
    let (tao, _) = col(&without, "thread_altstack_bytes");
    util::table(
        &["what", "median", "p99"],
        &[
            vec![
                "install() incl. sidecar spawn and handshake (default: waits for the HelloAck)".into(),
                format!("{:.2} ms", im / 1e3),
                format!("{:.2} ms", ip / 1e3),
            ],
            vec!["annotate(key, 39-byte value)".into(), format!("{am:.0} ns/op"), format!("{ap:.0} ns/op")],
            vec![
                "breadcrumb(Info, category, 23-byte message)".into(),
                format!("{bm:.0} ns/op"),
                format!("{bp:.0} ns/op"),
            ],
        ],
    );
    util::table(
        &["memory", "with crashmon", "without", "difference"],
        &[
            vec![
                "alternate signal stack of the installing thread".into(),
                format!("{:.0} KiB", alt / 1024.0),
                "-".into(),
                format!("{:.0} KiB mapped (+4 KiB guard)", alt / 1024.0),
            ],
            vec!["address space added by install()".into(), format!("{ivm:.0} KiB"), "-".into(), "-".into()],
            vec![
                "alternate stack of a thread started later (Rust std's)".into(),
                format!("{:.0} KiB", taw / 1024.0),
                format!("{:.0} KiB", tao / 1024.0),
                format!("{:+.0} KiB", (taw - tao) / 1024.0),
            ],
            vec![
                "RSS per extra thread (100 threads)".into(),
                format!("{:.1} KiB", trw / 1024.0),
                format!("{:.1} KiB", tro / 1024.0),
                format!("{:+.1} KiB", (trw - tro) / 1024.0),
            ],
            vec![
                "address space per extra thread".into(),
                format!("{:.0} KiB", tvw / 1024.0),
                format!("{:.0} KiB", tvo / 1024.0),
                format!("{:+.0} KiB", (tvw - tvo) / 1024.0),
            ],
        ],
    );
    Ok(())
}

/// `monitor-idle`: RSS and CPU of `crashmon monitor --socket` with 1 and 100
/// connected apps that never crash.
pub fn monitor_idle(opts: Opts) -> anyhow::Result<()> {
    let window = if opts.smoke { Duration::from_secs(2) } else { Duration::from_secs(60) };
    let counts: &[usize] = if opts.smoke { &[1, 10] } else { &[1, 100] };
    println!(
        "monitor idle cost: a shared `crashmon monitor --socket`, apps connected, nothing crashes ({window:?} window)"
    );
    println!();
    let mut rows = Vec::new();
    for &n in counts {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("monitor.sock");
        let mut mon = Command::new(util::bin("crashmon")?);
        mon.args(["monitor", "--socket"]).arg(&socket).env("CRASHMON_DATABASE", dir.path().join("db"));
        let monitor = App::spawn(mon)?;
        let mpid = monitor.child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            ensure!(Instant::now() < deadline, "the monitor did not create {} within 10 s", socket.display());
            std::thread::sleep(Duration::from_millis(5));
        }
        let rss_empty = util::status_kib(mpid, "VmRSS").unwrap_or(0);
        let mut apps = Vec::new();
        for _ in 0..n {
            let mut cmd = Command::new(util::bin("bench-app")?);
            cmd.args(["--mode", "idle", "--socket"]).arg(&socket);
            apps.push(App::spawn(cmd)?);
        }
        for a in &apps {
            a.line("ready", Duration::from_secs(30))?;
        }
        // Let the connection threads settle before measuring.
        std::thread::sleep(Duration::from_millis(300));
        let (ticks0, sched0) = util::cpu_ns(mpid)?;
        let started = Instant::now();
        std::thread::sleep(window);
        let (ticks1, sched1) = util::cpu_ns(mpid)?;
        let elapsed = started.elapsed();
        let rss = util::status_kib(mpid, "VmRSS").unwrap_or(0);
        let hwm = util::status_kib(mpid, "VmHWM").unwrap_or(0);
        let threads = util::status_kib(mpid, "Threads").unwrap_or(0);
        for a in &mut apps {
            if let Some(stdin) = a.child.stdin.as_mut() {
                let _ = stdin.flush();
            }
            drop(a.child.stdin.take());
        }
        let mut clean = 0;
        for a in &mut apps {
            if a.wait(Duration::from_secs(10))?.success() {
                clean += 1;
            }
        }
        drop(monitor); // kills our monitor child
        let cpu_ms = (sched1 - sched0) as f64 / 1e6;
        rows.push(vec![
            n.to_string(),
            format!("{:.1}", rss_empty as f64 / 1024.0),
            format!("{:.1}", rss as f64 / 1024.0),
            format!("{:.1}", hwm as f64 / 1024.0),
            threads.to_string(),
            format!("{:.0}", (ticks1 - ticks0) as f64 / 1e6),
            format!("{cpu_ms:.2}"),
            format!("{:.4}%", cpu_ms / elapsed.as_secs_f64() / 10.0),
            format!("{clean}/{n}"),
        ]);
    }
    util::table(
        &[
            "apps",
            "RSS before apps MiB",
            "RSS with apps MiB",
            "VmHWM MiB",
            "monitor threads",
            "CPU utime+stime ms",
            "CPU schedstat ms",
            "CPU share",
            "apps exited cleanly",
        ],
        &rows,
    );
    Ok(())
}
