//! Helpers for crashmon's tests: finding the built binaries, waiting with
//! timeouts, reading the crasher's handshake line, a loopback collector
//! ([`receiver`]). Not shipped.

pub mod receiver;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary built in this workspace's target directory (`crashmon`,
/// `crashmon-monitor`, `crasher`). `cargo test --workspace` builds them
/// before running tests; a test run on its own (`cargo test -p
/// crashmon-e2e`) builds a missing one with the cargo that runs it.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    if !path.is_file() {
        build_bin(name, dir.ends_with("release"));
    }
    assert!(path.is_file(), "{} is not built; run the tests with `cargo test --workspace`", path.display());
    path
}

fn build_bin(name: &str, release: bool) {
    let package = match name {
        "crashmon" | "crashmon-monitor" => "crashmon",
        "crasher" => "crashmon-test-support",
        _ => return,
    };
    cargo_build(&["-p", package, "--bin", name], release);
}

/// Run `cargo build -q ARGS` in the workspace with the cargo that runs the
/// tests (same toolchain and target directory), one build at a time.
/// Returns whether it succeeded; false if not run under cargo.
pub fn cargo_build(args: &[&str], release: bool) -> bool {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cargo) = std::env::var_os("CARGO") else { return false };
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-q"]).args(args).current_dir(workspace_root());
    if release {
        cmd.arg("--release");
    }
    cmd.status().is_ok_and(|s| s.success())
}

/// A command for `exe` isolated from the caller's crashmon environment:
/// no database, upload target, configuration or log filter from outside
/// the test; `HOME` and the XDG directories under `home`; stdin null.
pub fn isolated_command(exe: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("CRASHMON_DATABASE")
        .env_remove("CRASHMON_UPLOAD")
        .env_remove("CRASHMON_CONFIG")
        .env_remove("CRASHMON_LOG")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .stdin(Stdio::null());
    cmd
}

/// Wait for `child` at most `timeout`; `None` if it is still running (it is
/// then killed and reaped, so no test leaves processes behind).
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Poll `f` until it returns `Some`, at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The crasher's `ready` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The crasher's pid.
    pub pid: i32,
    /// The thread that will crash.
    pub tid: i32,
    /// The monitor serving it.
    pub monitor: i32,
}

/// Read the crasher's `ready pid=P tid=T monitor=M` line from its stdout
/// (which must be piped), waiting at most `timeout`.
pub fn read_ready(child: &mut Child, timeout: Duration) -> Option<Ready> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(timeout).ok()?;
    let field = |key: &str| -> Option<i32> {
        line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    Some(Ready { pid: field("pid")?, tid: field("tid")?, monitor: field("monitor")? })
}

/// The signal a status says the process died by.
pub fn death_signal(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

/// The line number (1-based) of the first line of `file` containing
/// `needle`, for asserting reported source lines against the real source.
pub fn line_of(file: &Path, needle: &str) -> u32 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("{needle:?} not found in {}", file.display()))
}

/// Root of the workspace (for reading sources in assertions).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, `Threads`...).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    status_kib_path(&format!("/proc/{pid}/status"), field)
}

/// A `Field: N kB` line of a /proc file (`/proc/PID/status`, `/proc/meminfo`).
pub fn status_kib_path(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Whether a process exists and any of its threads is not yet dead (a
/// zombie). The main thread can be a zombie while other threads are still
/// exiting and holding the process's files (and their locks): such a
/// process is still alive here.
pub fn process_alive(pid: i32) -> bool {
    let live = |stat: &str| {
        // State is the field after the parenthesised command name.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X") | None)
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|t| std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| live(&s)))
}

/// A child process killed and reaped when dropped, so a failing assertion
/// never leaves it running.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with its stdout piped and waits up to `timeout` for a line
/// of its output containing `needle`; returns the running child (killed
/// and reaped on drop) and that line from `needle` on. Panics if the line
/// does not come in time.
pub fn spawn_until_line(cmd: &mut Command, needle: &'static str, timeout: Duration) -> (KillOnDrop, String) {
    let mut child = KillOnDrop(cmd.stdout(Stdio::piped()).spawn().expect("spawn the program"));
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Other output (e.g. libtest's `test NAME ... `) may precede it.
            if let Some(at) = line.find(needle) {
                let _ = tx.send(line[at..].to_owned());
                break;
            }
        }
    });
    let line = rx.recv_timeout(timeout).unwrap_or_else(|_| panic!("no line with {needle:?} within {timeout:?}"));
    (child, line)
}

/// The files directly in `dir` whose extension is `ext` (e.g. `"dmp"`),
/// sorted; empty if `dir` does not exist.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The single `.dmp` in `<db>/pending`, waiting up to `timeout`; panics with
/// what is there otherwise.
pub fn one_pending_dump(db: &Path, timeout: Duration) -> PathBuf {
    let pending = db.join("pending");
    wait_for(timeout, || {
        let d = files_with_ext(&pending, "dmp");
        (d.len() == 1).then(|| d[0].clone())
    })
    .unwrap_or_else(|| panic!("exactly one dump in pending/, found {:?}", files_with_ext(&pending, "dmp")))
}
