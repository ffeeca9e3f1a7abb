//! `crash-profile`: where crashmon's crash-to-exit time goes. Runs the
//! crasher with `CRASHER_TIMELINE=1` (the app stamps `main` and `installed`)
//! and `CRASHMON_LOG=debug` (the sidecar logs each step with a µs
//! timestamp), puts every event on one wall clock relative to the app's
//! `main`, and prints the median of each step over many runs.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};

use crate::scaling::DEBUG_LOG;
use crate::util::{self, App, Opts, percentile};

fn secs_in_minute(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() % 60.0
}

/// Seconds within the minute of a tracing timestamp `...THH:MM:SS.ffffffZ`.
fn log_secs(stamp: &str) -> Option<f64> {
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    time.rsplit(':').next()?.parse().ok()
}

/// One run: event name → ms after the app's `main`.
fn run_once(db: &std::path::Path) -> anyhow::Result<Vec<(String, f64)>> {
    let mut cmd = Command::new(util::bin("crasher")?);
    cmd.args(["--crash", "segv"])
        .env("CRASHMON_DATABASE", db)
        .env("CRASHMON_MONITOR", util::bin(util::MONITOR)?)
        .env("CRASHMON_LOG", DEBUG_LOG)
        .env("CRASHER_TIMELINE", "1");
    let spawned = secs_in_minute(SystemTime::now());
    let mut app = App::spawn(cmd)?;
    let status = app.wait(Duration::from_secs(30))?;
    let reaped = secs_in_minute(SystemTime::now());
    ensure!(status.signal() == Some(libc::SIGSEGV), "crasher: expected death by SIGSEGV, got {status}");
    let log = app.stderr(Duration::from_secs(60)).context("the sidecar did not exit within 60 s")?;
    let mut events: Vec<(String, f64)> = vec![("harness: spawn".into(), spawned)];
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"timeline") && words.len() >= 3 {
            if let Ok(t) = words[1].parse::<f64>() {
                events.push((format!("app: {}", words[2..].join(" ")), t));
            }
        } else if words.len() >= 3
            && let Some(t) = log_secs(words[0])
        {
            let msg: Vec<&str> = words[2..].iter().take_while(|w| !w.contains('=')).copied().collect();
            let name = format!("monitor: {}", msg.join(" "));
            // Keep the first occurrence of each step.
            if !events.iter().any(|(n, _)| *n == name) {
                events.push((name, t));
            }
        }
    }
    events.push(("harness: reaped (app dead)".into(), reaped));
    let main = events.iter().find(|(n, _)| n == "app: main").map(|e| e.1).context("no `timeline main` line")?;
    Ok(events
        .into_iter()
        .map(|(n, t)| {
            let mut d = t - main;
            if d < -30.0 {
                d += 60.0;
            } else if d > 30.0 {
                d -= 60.0;
            }
            (n, d * 1e3)
        })
        .collect())
}

/// Run the profile.
pub fn crash_profile(opts: Opts) -> anyhow::Result<()> {
    let runs = opts.runs(100, 3);
    let db = tempfile::tempdir()?;
    run_once(db.path())?; // warm-up
    let mut by_event: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        for (n, ms) in run_once(db.path())? {
            by_event.entry(n).or_default().push(ms);
        }
    }
    let mut steps: Vec<(String, f64, f64, usize)> = by_event
        .into_iter()
        .map(|(n, mut v)| {
            v.sort_by(f64::total_cmp);
            (n, percentile(&v, 0.5), percentile(&v, 0.9), v.len())
        })
        .collect();
    steps.sort_by(|a, b| a.1.total_cmp(&b.1));
    println!(
        "crash profile: crashmon crash path, one wall clock, ms after the app's `main` ({runs} runs; \
         log timestamps have µs resolution)"
    );
    println!();
    let mut rows = Vec::new();
    let mut prev = None;
    for (n, med, p90, count) in &steps {
        rows.push(vec![
            n.clone(),
            format!("{med:.2}"),
            format!("{p90:.2}"),
            prev.map(|p: f64| format!("{:+.2}", med - p)).unwrap_or_default(),
            format!("{count}/{runs}"),
        ]);
        prev = Some(*med);
    }
    util::table(&["event", "median ms", "p90 ms", "step (median delta)", "seen in runs"], &rows);
    Ok(())
}
