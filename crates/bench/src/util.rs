//! Helpers shared by the benchmarks: statistics, child processes, /proc.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// Options every benchmark gets.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// The short CI version: seconds, not minutes.
    pub smoke: bool,
    /// `--runs N` if given.
    pub runs: Option<usize>,
}

impl Opts {
    /// `--runs`, else `smoke` for a smoke run, else `full`.
    pub fn runs(&self, full: usize, smoke: usize) -> usize {
        self.runs.unwrap_or(if self.smoke { smoke } else { full })
    }
}

/// The directory of the harness's own executable, where cargo puts the
/// binaries it runs (same profile).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("exe dir")?.to_path_buf())
}

/// The sidecar monitor the handler finds when crashmon is installed: the
/// lean `crashmon-monitor` (the `crashmon` CLI is its fallback).
pub const MONITOR: &str = "crashmon-monitor";

/// Path of a sibling binary, which must exist.
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir()?.join(name);
    if !p.is_file() {
        bail!(
            "{} is missing; build with: cargo build --release -p crashmon -p crashmon-test-support -p crashmon-bench",
            p.display()
        );
    }
    Ok(p)
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Median and p99 of unsorted samples.
pub fn med_p99(samples: &[f64]) -> (f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (percentile(&s, 0.5), percentile(&s, 0.99))
}

/// CLOCK_MONOTONIC in ns (the clock `bench-app` stamps its crash with).
pub fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Files in `dir` with extension `ext`.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect()
        })
        .unwrap_or_default()
}

/// A child whose stdout lines arrive on a channel and whose stderr is
/// collected in the background.
pub struct App {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<mpsc::Receiver<String>>,
}

impl App {
    /// Spawn `cmd` with piped stdin/stdout/stderr.
    pub fn spawn(mut cmd: Command) -> anyhow::Result<App> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().context("stderr")?;
        let (etx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to EOF: that is when every holder of the pipe (the app
            // and a sidecar monitor it spawned) has exited.
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            let _ = etx.send(s);
        });
        Ok(App { child, lines, stderr: Some(stderr) })
    }

    /// The next stdout line that starts with `prefix`.
    pub fn line(&self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Ok(l),
                Ok(_) => continue,
                Err(_) => bail!("pid {}: no `{prefix}` line within {timeout:?}", self.child.id()),
            }
        }
    }

    /// Everything the app and its sidecar wrote on stderr, once both have
    /// exited (or what there is after `timeout`: `None`).
    pub fn stderr(&mut self, timeout: Duration) -> Option<String> {
        self.stderr.take()?.recv_timeout(timeout).ok()
    }

    /// Wait for exit, with a timeout (then kill it and fail).
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("pid {} hung: not dead after {timeout:?}", self.child.id());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `key=value` field of a line.
pub fn field<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

pub use crashmon_test_support::{status_kib, status_kib_path};

/// The filesystem type `path` lives on (longest mount point prefix in
/// /proc/self/mountinfo).
pub fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let mount = Path::new(f.get(4)?);
            let sep = f.iter().position(|w| *w == "-")?;
            let fstype = f.get(sep + 1)?.to_string();
            path.starts_with(mount).then_some((mount.as_os_str().len(), fstype))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t)
}

/// CPU time of a process: utime + stime from /proc/PID/stat (all threads,
/// clock ticks turned into ns) and the sum of every thread's on-CPU ns from
/// /proc/PID/task/*/schedstat (finer grained).
pub fn cpu_ns(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the comm: state is 3, utime 14, stime 15 (1-based).
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as u64;
    let mut sched = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            sched += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok((ticks * 1_000_000_000 / hz, sched))
}

/// Wait for a child and return its status and peak RSS (ru_maxrss, KiB).
pub fn wait_rusage(child: Child) -> anyhow::Result<(std::process::ExitStatus, u64)> {
    let pid = child.id() as i32;
    let (status, maxrss) = sys::wait4(pid)?;
    // The child is reaped: do not let `Child` wait again.
    std::mem::forget(child);
    use std::os::unix::process::ExitStatusExt;
    Ok((std::process::ExitStatus::from_raw(status), maxrss))
}

#[allow(unsafe_code)]
mod sys {
    /// wait4(2): (raw wait status, ru_maxrss in KiB).
    pub fn wait4(pid: i32) -> std::io::Result<(i32, u64)> {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value; wait4 writes into the two
        // out-pointers, which point to locals that outlive the call.
        let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
        loop {
            // SAFETY: see above.
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if r == pid {
                return Ok((status, usage.ru_maxrss as u64));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Print a markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
    println!();
}

/// Least-squares slope and intercept of y over x.
pub fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) =
        points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    let slope = if den == 0.0 { 0.0 } else { num / den };
    (slope, my - slope * mx)
}
