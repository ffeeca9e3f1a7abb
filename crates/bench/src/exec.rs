//! `exec-time`: what starting the sidecar costs before it does anything.
//! Spawns each program with output to /dev/null and waits for it, the
//! variants interleaved run by run: `/bin/true`, a small Rust binary (the
//! `crasher`, stopping at a usage error), `crashmon-monitor --version` and
//! `crashmon --version` (fork, exec, dynamic loading and relocation, clap,
//! exit).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::util::{self, Opts, percentile};

/// `exec-time`.
pub fn exec_time(opts: Opts) -> anyhow::Result<()> {
    let runs = opts.runs(300, 20);
    let variants: Vec<(String, Command, bool)> = vec![
        ("/bin/true".into(), Command::new("/bin/true"), true),
        (
            "crasher (small Rust binary, usage error)".into(),
            {
                let mut c = Command::new(util::bin("crasher")?);
                c.arg("--no-such-flag");
                c
            },
            false,
        ),
        (
            format!("{} --version", util::MONITOR),
            {
                let mut c = Command::new(util::bin(util::MONITOR)?);
                c.arg("--version");
                c
            },
            true,
        ),
        (
            "crashmon --version".into(),
            {
                let mut c = Command::new(util::bin("crashmon")?);
                c.arg("--version");
                c
            },
            true,
        ),
    ];
    let mut variants = variants;
    for (_, cmd, _) in &mut variants {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    // One warm-up round (page cache), then the measured ones.
    for round in 0..=runs {
        for (i, (name, cmd, succeeds)) in variants.iter_mut().enumerate() {
            let started = Instant::now();
            let status = cmd.status().with_context(|| format!("run {name}"))?;
            let took = started.elapsed();
            ensure!(status.success() == *succeeds, "{name}: unexpected {status}");
            if round > 0 {
                samples[i].push(took);
            }
        }
    }
    println!("exec to exit ({runs} runs each, interleaved; binaries in {})", util::bin_dir()?.display());
    println!();
    println!("| program | median µs | p90 µs | p99 µs |");
    println!("|---|---|---|---|");
    for ((name, _, _), s) in variants.iter().zip(&mut samples) {
        s.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            us(percentile(s, 0.5)),
            us(percentile(s, 0.9)),
            us(percentile(s, 0.99))
        );
    }
    Ok(())
}
