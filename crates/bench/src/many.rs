//! `many-crashes`: N apps connected to one shared monitor crash at once.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::ensure;
use crashmon_database::{Database, ReportState};

use crate::util::{self, App, Opts, med_p99};

/// Run the many-crashes benchmark.
pub fn many_crashes(opts: Opts) -> anyhow::Result<()> {
    let n = if opts.smoke { 10 } else { 100 };
    let rounds = opts.runs(5, 1);
    println!("many crashes: {n} apps on one shared `crashmon monitor --socket` crash at once ({rounds} rounds)");
    println!();
    let mut rows = Vec::new();
    let mut totals = Vec::new();
    let (mut caused_all, mut captured_all, mut hangs_all, mut lost_all, mut dups_all) = (0, 0, 0, 0, 0);
    for round in 0..rounds {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("monitor.sock");
        let dbdir = dir.path().join("db");
        let mut mon = Command::new(util::bin("crashmon")?);
        mon.args(["monitor", "--socket"]).arg(&socket).env("CRASHMON_DATABASE", &dbdir);
        let monitor = App::spawn(mon)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            ensure!(Instant::now() < deadline, "the monitor did not create {} within 10 s", socket.display());
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut apps = Vec::new();
        for _ in 0..n {
            let mut cmd = Command::new(util::bin("bench-app")?);
            cmd.args(["--mode", "crash", "--wait-stdin", "--socket"]).arg(&socket);
            apps.push(App::spawn(cmd)?);
        }
        let mut pids = Vec::new();
        for a in &apps {
            a.line("ready", Duration::from_secs(60))?;
            pids.push(a.child.id() as i32);
        }
        // Release them all as close together as we can.
        let started = Instant::now();
        for a in &mut apps {
            if let Some(stdin) = a.child.stdin.as_mut() {
                let _ = stdin.write_all(b"\n");
                let _ = stdin.flush();
            }
        }
        let mut caused = 0;
        let mut hangs = 0;
        for a in &mut apps {
            match a.wait(Duration::from_secs(60)) {
                Ok(s) if s.signal() == Some(libc::SIGSEGV) => caused += 1,
                Ok(s) => eprintln!("many-crashes: an app ended with {s}, not SIGSEGV"),
                Err(e) => {
                    eprintln!("many-crashes: {e}");
                    hangs += 1;
                }
            }
        }
        let all_dead = started.elapsed();
        // Every dump was durable (fsynced in new/ with its metadata) before
        // its app died; the monitor moves the last ones to pending/ right
        // after. Let it finish before counting.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !util::files_with_ext(&dbdir.join("new"), "dmp").is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let db = Database::open_existing(&dbdir)?;
        let mut per_pid: BTreeMap<i32, usize> = BTreeMap::new();
        for e in db.list()? {
            if e.state == ReportState::Pending && e.has_dump() {
                *per_pid.entry(e.metadata.pid).or_default() += 1;
            }
        }
        let captured = pids.iter().filter(|p| per_pid.contains_key(p)).count();
        let dups: usize = per_pid.values().map(|c| c.saturating_sub(1)).sum();
        let lost = n - captured;
        let failed = util::files_with_ext(&dbdir.join("failed"), "json").len();
        drop(monitor);
        totals.push(all_dead.as_secs_f64() * 1e3);
        caused_all += caused;
        captured_all += captured;
        hangs_all += hangs;
        lost_all += lost;
        dups_all += dups;
        rows.push(vec![
            (round + 1).to_string(),
            format!("{:.0}", all_dead.as_secs_f64() * 1e3),
            format!("{captured} / {caused}"),
            hangs.to_string(),
            lost.to_string(),
            dups.to_string(),
            failed.to_string(),
        ]);
    }
    util::table(
        &[
            "round",
            "release → all dead, dumps durable (ms)",
            "crashes captured / caused",
            "hangs",
            "reports lost",
            "duplicates",
            "failed/ entries",
        ],
        &rows,
    );
    let (m, p) = med_p99(&totals);
    println!(
        "total: {captured_all} captured / {caused_all} caused, {hangs_all} hangs, {lost_all} lost, {dups_all} duplicates; \
         time to all dead median {m:.0} ms, max {p:.0} ms ({:.2} ms per crash at the median)",
        m / n as f64
    );
    println!();
    ensure!(
        captured_all == caused_all && hangs_all == 0 && lost_all == 0 && dups_all == 0,
        "many-crashes: not every crash was captured exactly once"
    );
    Ok(())
}
