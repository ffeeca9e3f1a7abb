//! `upload`: `crashmon upload` of 1 MB and 100 MB dumps to the loopback
//! receiver: throughput and the uploading process's peak RSS.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use crashmon_database::{CrashInfo, Database, Metadata, ReportId};
use crashmon_test_support::receiver::Receiver;

use crate::util::{self, Opts, med_p99};

/// A real minidump: `bench-app` crashed under crashmon.
fn real_dump() -> anyhow::Result<Vec<u8>> {
    let db = tempfile::tempdir()?;
    let mut cmd = Command::new(util::bin("bench-app")?);
    cmd.args(["--threads", "4"]).env("CRASHMON_DATABASE", db.path()).env("CRASHMON_MONITOR", util::bin("crashmon")?);
    let mut app = crate::util::App::spawn(cmd)?;
    app.wait(Duration::from_secs(30))?;
    app.stderr(Duration::from_secs(60)).context("the sidecar did not exit")?;
    let dumps = util::files_with_ext(&db.path().join("pending"), "dmp");
    ensure!(dumps.len() == 1, "expected one dump from bench-app, found {}", dumps.len());
    Ok(std::fs::read(&dumps[0])?)
}

/// File one pending report whose dump is a real minidump followed by
/// incompressible bytes up to `mb` MiB (gzip gains nothing on the padding:
/// the worst case for the uploader's CPU and memory).
fn file_report(db: &Database, dump: &[u8], mb: usize, seed: u64) -> anyhow::Result<()> {
    let mut new = db.begin_dump()?;
    new.file.write_all(dump)?;
    let mut left = (mb << 20).saturating_sub(dump.len());
    let mut x = seed | 1;
    let mut chunk = vec![0u8; 1 << 20];
    while left > 0 {
        for w in chunk.chunks_mut(8) {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len());
        new.file.write_all(&chunk[..n])?;
        left -= n;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let md =
        Metadata::new(ReportId::new_random(), now, 4242, CrashInfo::from_signal(libc::SIGSEGV, 1, Some(0), Some(4242)));
    db.commit_dump(new, &md)?;
    Ok(())
}

/// Run the upload benchmark.
pub fn upload(opts: Opts) -> anyhow::Result<()> {
    let runs = opts.runs(5, 1);
    let sizes: &[usize] = if opts.smoke { &[1, 5] } else { &[1, 100] };
    println!("upload: `crashmon upload` of one report to the loopback receiver ({runs} runs per row)");
    println!();
    let dump = real_dump()?;
    let mut rows = Vec::new();
    for &mb in sizes {
        for compress in [true, false] {
            let (mut secs, mut rss) = (Vec::new(), Vec::new());
            for run in 0..runs {
                let dir = tempfile::tempdir()?;
                let db = Database::open_or_create(dir.path())?;
                file_report(&db, &dump, mb, 0x9E37_79B9_7F4A_7C15 ^ run as u64)?;
                let receiver = Receiver::builder().record_limit(64 << 10).lifetime(Duration::from_secs(300)).start();
                let mut cmd = Command::new(util::bin("crashmon")?);
                cmd.arg("--database")
                    .arg(dir.path())
                    .args(["upload", "--all", "--upload", &receiver.url("/submit")])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit());
                if !compress {
                    cmd.arg("--no-compress");
                }
                let started = Instant::now();
                let child = cmd.spawn().context("spawn crashmon upload")?;
                let (status, maxrss_kib) = util::wait_rusage(child)?;
                let took = started.elapsed();
                ensure!(status.success(), "crashmon upload failed: {status}");
                let reqs = receiver.wait_for_requests(1, Duration::from_secs(10));
                ensure!(reqs.len() == 1, "the receiver got {} requests, expected 1", reqs.len());
                // The padding is incompressible: even gzipped, most of it
                // must have crossed the wire.
                let floor = if compress { ((mb as u64) << 20) * 9 / 10 } else { (mb as u64) << 20 };
                ensure!(
                    reqs[0].wire_len >= floor,
                    "the receiver got {} bytes, less than the {mb} MiB dump",
                    reqs[0].wire_len
                );
                let done = util::files_with_ext(&dir.path().join("completed"), "dmp").len()
                    + util::files_with_ext(&dir.path().join("completed"), "json").len();
                ensure!(done > 0, "the report did not move to completed/ after the upload");
                secs.push(took.as_secs_f64());
                rss.push(maxrss_kib as f64 / 1024.0);
            }
            let (sm, sp) = med_p99(&secs);
            let (rm, rp) = med_p99(&rss);
            rows.push(vec![
                format!("{mb} MiB"),
                if compress { "gzip (default)".into() } else { "--no-compress".into() },
                format!("{:.1} / {:.1}", sm * 1e3, sp * 1e3),
                format!("{:.0}", mb as f64 / sm),
                format!("{rm:.1} / {rp:.1}"),
                if rp < 20.0 { "met".into() } else { "MISSED".into() },
            ]);
        }
    }
    util::table(
        &[
            "dump",
            "body",
            "process start→exit median / p99 ms",
            "MiB/s (median)",
            "peak RSS (ru_maxrss) median / p99 MiB",
            "< 20 MiB",
        ],
        &rows,
    );
    Ok(())
}
