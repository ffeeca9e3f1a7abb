//! `crashmon doctor`: check that crashes can be captured here, and say what
//! to fix when they cannot.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{AccessFlags, Pid, access, geteuid};
use serde::Serialize;

use crate::Context;
use crate::exit;

/// `crashmon doctor` arguments.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The shared monitor socket to check [default: monitor.socket from the config, else $XDG_RUNTIME_DIR/crashmon/monitor.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The upload target to check
    #[command(flatten)]
    pub target: crate::cmd::upload::TargetArgs,
    /// Also try a TCP connection to the upload target's host
    #[arg(long)]
    pub network: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Works.
    Ok,
    /// Not configured and not needed (e.g. no upload target).
    Skip,
    /// Works, but probably not as intended (e.g. a target without consent).
    Warn,
    /// Broken: crashes will not be captured or uploaded.
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check { name, status, detail: detail.into(), fix }
}

/// `crashmon doctor`.
pub fn run(ctx: &Context, args: DoctorArgs) -> anyhow::Result<u8> {
    let mut checks = ptrace_checks();
    checks.push(socket_check(ctx, args.socket.as_deref()));
    let (db_check, db) = database_check(ctx);
    checks.push(db_check);
    checks.extend(upload_checks(ctx, &args, db.as_ref()));
    let ok = checks.iter().all(|c| matches!(c.status, Status::Ok | Status::Skip));
    if args.json {
        let doc = serde_json::json!({ "schema_version": 1, "ok": ok, "checks": checks });
        crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else {
        let mut out = String::new();
        for c in &checks {
            let tag = match c.status {
                Status::Ok => " ok ",
                Status::Skip => "skip",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            out.push_str(&format!("[{tag}] {}: {}\n", c.name, c.detail));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("       fix: {fix}\n"));
            }
        }
        out.push_str(if ok { "all checks passed\n" } else { "some checks need attention (see fix: lines)\n" });
        crate::print_out(&out)?;
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}

// ------------------------------------------------------------------ ptrace

/// `/proc/sys/kernel/yama/ptrace_scope`, if Yama is active.
pub fn yama_scope() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok()?.trim().parse().ok()
}

/// Bit of CAP_SYS_PTRACE in the capability sets (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;

/// Whether this process's effective capabilities include CAP_SYS_PTRACE.
fn has_cap_sys_ptrace() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << CAP_SYS_PTRACE) != 0)
}

fn ptrace_checks() -> Vec<Check> {
    let scope = yama_scope();
    let cap = has_cap_sys_ptrace();
    let cap_text = match cap {
        Some(true) => "CAP_SYS_PTRACE: yes",
        Some(false) => "CAP_SYS_PTRACE: no",
        None => "CAP_SYS_PTRACE: unknown",
    };
    let scope_text = match scope {
        None => "Yama not active".to_owned(),
        Some(s) => format!("yama ptrace_scope {s}"),
    };
    let policy = match (scope, cap) {
        (Some(3), _) => check(
            "ptrace policy",
            Status::Fail,
            format!("{scope_text} (ptrace disabled for everyone); {cap_text}"),
            Some(
                "scope 3 cannot be lowered without a reboot: boot with kernel.yama.ptrace_scope=1 \
                 (sysctl.d) so the monitor can attach to apps that name it with PR_SET_PTRACER"
                    .into(),
            ),
        ),
        (Some(2), Some(false)) => check(
            "ptrace policy",
            Status::Fail,
            format!("{scope_text} (admin-only attach); {cap_text}"),
            Some(
                "give the monitor CAP_SYS_PTRACE (systemd: AmbientCapabilities=CAP_SYS_PTRACE; \
                 containers: --cap-add SYS_PTRACE) or set kernel.yama.ptrace_scope=1"
                    .into(),
            ),
        ),
        (Some(1), _) => check(
            "ptrace policy",
            Status::Ok,
            format!(
                "{scope_text} (restricted: the crashmon handler names its monitor with PR_SET_PTRACER, which is enough); \
                 {cap_text}"
            ),
            None,
        ),
        _ => check("ptrace policy", Status::Ok, format!("{scope_text}; {cap_text}"), None),
    };
    vec![policy, attach_check(scope)]
}

/// Attach to a real child process (`crashmon __doctor-ptracee`) with
/// PTRACE_ATTACH: the same permission checks (Yama, capabilities,
/// dumpability) as the monitor's PTRACE_SEIZE of a crashed app's threads.
fn attach_check(scope: Option<u8>) -> Check {
    match try_attach() {
        Ok(pid) => {
            check("ptrace attach", Status::Ok, format!("attached to and detached from a test child (pid {pid})"), None)
        }
        Err(e) => {
            let fix = match scope {
                Some(3) => "ptrace is disabled (yama scope 3): see the ptrace policy fix".to_owned(),
                Some(2) => "grant CAP_SYS_PTRACE to the monitor or lower kernel.yama.ptrace_scope to 1".to_owned(),
                _ => "ptrace is blocked (seccomp profile or container?): run the container with --cap-add SYS_PTRACE \
                      and a seccomp profile that allows ptrace; under systemd do not set NoNewPrivileges with a \
                      SystemCallFilter that drops @debug"
                    .to_owned(),
            };
            check("ptrace attach", Status::Fail, format!("cannot attach to a test child: {e:#}"), Some(fix))
        }
    }
}

fn try_attach() -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("cannot find the crashmon executable")?;
    let mut child = Command::new(exe)
        .arg("__doctor-ptracee")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start a test child")?;
    let pid = Pid::from_raw(child.id() as i32);
    let result = (|| {
        let mut ready = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut ready)?;
        anyhow::ensure!(ready.trim() == "ready", "the test child did not start");
        nix::sys::ptrace::attach(pid).context("PTRACE_ATTACH")?;
        let status = waitpid(pid, None).context("waitpid after PTRACE_ATTACH")?;
        anyhow::ensure!(matches!(status, WaitStatus::Stopped(..)), "test child not stopped after attach: {status:?}");
        nix::sys::ptrace::detach(pid, None).context("PTRACE_DETACH")?;
        Ok(pid.as_raw())
    })();
    // Closing stdin ends the child; kill it anyway if something went wrong.
    drop(child.stdin.take());
    if result.is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    result
}

/// The hidden `__doctor-ptracee` command: say "ready", then wait for stdin
/// to close (at most 30 s).
pub fn ptracee_main() -> anyhow::Result<u8> {
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(30));
    Ok(exit::OK)
}

// ------------------------------------------------------------------ socket

fn socket_check(ctx: &Context, flag: Option<&Path>) -> Check {
    let (path, explicit) = match (flag, &ctx.config.monitor.socket) {
        (Some(p), _) => (Some(p.to_owned()), true),
        (None, Some(s)) => (Some(s.value.clone()), true),
        (None, None) => (crate::cmd::monitor::default_socket(), false),
    };
    let Some(path) = path else {
        return check(
            "monitor socket",
            Status::Skip,
            "no shared socket configured (XDG_RUNTIME_DIR unset): apps spawn their own sidecar monitor",
            None,
        );
    };
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) if !explicit => {
            return check(
                "monitor socket",
                Status::Skip,
                format!("no shared monitor at {shown}: apps spawn their own sidecar monitor"),
                None,
            );
        }
        Err(e) => {
            return check(
                "monitor socket",
                Status::Fail,
                format!("{shown}: {e}"),
                Some(format!("start the shared monitor: crashmon monitor --socket {shown} (or the systemd unit)")),
            );
        }
    };
    if !meta.file_type().is_socket() {
        return check(
            "monitor socket",
            Status::Fail,
            format!("{shown} exists but is not a socket"),
            Some("remove it or configure another monitor.socket".into()),
        );
    }
    let me = geteuid().as_raw();
    if meta.uid() != me {
        return check(
            "monitor socket",
            Status::Fail,
            format!("{shown} is owned by uid {}, not by us (uid {me})", meta.uid()),
            Some("run the monitor as the same user as the apps (it refuses other users' apps anyway)".into()),
        );
    }
    match probe_socket(&path) {
        Ok(()) => check(
            "monitor socket",
            Status::Ok,
            format!("{shown}: a monitor is listening (mode {:03o})", meta.permissions().mode() & 0o777),
            None,
        ),
        Err(e) => check(
            "monitor socket",
            Status::Fail,
            format!("{shown}: no monitor answers ({e})"),
            Some(format!("stale socket: start crashmon monitor --socket {shown} (it replaces a stale socket)")),
        ),
    }
}

/// Connect a SOCK_SEQPACKET socket (what the handler uses) and hang up.
fn probe_socket(path: &Path) -> nix::Result<()> {
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    let addr = UnixAddr::new(path)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)
}

// ---------------------------------------------------------------- database

fn database_check(ctx: &Context) -> (Check, Option<crashmon_database::Database>) {
    let path = match ctx.database_path() {
        Ok(p) => p,
        Err(e) => {
            let fix = Some("pass --database, set CRASHMON_DATABASE or `database` in the config file".into());
            return (check("database", Status::Fail, format!("{e:#}"), fix), None);
        }
    };
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent_ok = path
                .ancestors()
                .skip(1)
                .find(|a| a.exists())
                .is_some_and(|a| access(a, AccessFlags::W_OK | AccessFlags::X_OK).is_ok());
            return if parent_ok {
                (
                    check(
                        "database",
                        Status::Ok,
                        format!("{shown} does not exist yet; it is created (0700) on first use"),
                        None,
                    ),
                    None,
                )
            } else {
                (
                    check(
                        "database",
                        Status::Fail,
                        format!("{shown} does not exist and cannot be created (parent not writable)"),
                        Some("create it (mkdir -m 700) or choose another database directory".into()),
                    ),
                    None,
                )
            };
        }
        Err(e) => return (check("database", Status::Fail, format!("{shown}: {e}"), None), None),
    };
    if meta.file_type().is_symlink() {
        return (
            check(
                "database",
                Status::Fail,
                format!("{shown} is a symbolic link"),
                Some("name the real directory".into()),
            ),
            None,
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return (
            check(
                "database",
                Status::Fail,
                format!("{shown} has mode {mode:03o}; reports hold process memory and must be private"),
                Some(format!("chmod 700 {shown}")),
            ),
            None,
        );
    }
    if meta.uid() != geteuid().as_raw() {
        return (
            check(
                "database",
                Status::Fail,
                format!("{shown} is owned by uid {}, not by us (uid {})", meta.uid(), geteuid()),
                Some("run as the database's owner or use a database of your own".into()),
            ),
            None,
        );
    }
    if let Err(e) = access(&path, AccessFlags::W_OK | AccessFlags::X_OK) {
        return (
            check(
                "database",
                Status::Fail,
                format!("{shown} is not writable: {e}"),
                Some(format!("chmod u+rwx {shown}")),
            ),
            None,
        );
    }
    let db = match crashmon_database::Database::open_existing(&path) {
        Ok(db) => db,
        Err(e) => {
            return (
                check("database", Status::Fail, format!("{shown}: {e}"), Some("fix or move the directory".into())),
                None,
            );
        }
    };
    match db.list() {
        Ok(entries) => {
            let mut counts = std::collections::BTreeMap::new();
            for e in &entries {
                *counts.entry(e.state.dir_name()).or_insert(0usize) += 1;
            }
            let text: Vec<String> = ["new", "pending", "completed", "failed"]
                .iter()
                .map(|s| format!("{} {s}", counts.get(s).copied().unwrap_or(0)))
                .collect();
            (check("database", Status::Ok, format!("{shown} (mode {mode:03o}): {}", text.join(", ")), None), Some(db))
        }
        Err(e) => (check("database", Status::Fail, format!("{shown}: cannot list reports: {e}"), None), Some(db)),
    }
}

// ------------------------------------------------------------------ upload

fn upload_checks(ctx: &Context, args: &DoctorArgs, db: Option<&crashmon_database::Database>) -> Vec<Check> {
    // Flags, then CRASHMON_UPLOAD, then the configuration file.
    let resolved = match args.target.resolve() {
        Ok(Some((t, explicit))) => {
            let from = if explicit {
                "command line".to_owned()
            } else if std::env::var(crate::cmd::upload::UPLOAD_ENV).is_ok_and(|v| !v.is_empty()) {
                format!("env {}", crate::cmd::upload::UPLOAD_ENV)
            } else {
                ctx.config.upload.target.as_ref().map_or_else(|| "config".to_owned(), |s| s.origin.to_string())
            };
            Some((t, from, explicit))
        }
        Ok(None) => None,
        Err(e) => {
            return vec![check("upload target", Status::Fail, format!("{e:#}"), Some("fix the URL or DSN".into()))];
        }
    };
    let Some((target, from, explicit)) = resolved else {
        return vec![check("upload target", Status::Skip, "none configured: reports stay on this machine", None)];
    };
    let mut checks = vec![check("upload target", Status::Ok, format!("{target} (from {from})"), None)];
    if explicit {
        checks.push(check("upload consent", Status::Ok, "a target on the command line counts as consent", None));
    } else {
        match db.map(crashmon_uploader::consent) {
            Some(Ok(true)) => checks.push(check("upload consent", Status::Ok, "uploads enabled", None)),
            Some(Ok(false)) | None => checks.push(check(
                "upload consent",
                Status::Warn,
                "uploads are disabled: reports are not sent to the configured target",
                Some("crashmon consent enable".into()),
            )),
            Some(Err(e)) => checks.push(check("upload consent", Status::Fail, format!("{e}"), None)),
        }
    }
    if args.network {
        checks.push(network_check(&target));
    }
    checks
}

fn network_check(target: &crashmon_uploader::Target) -> Check {
    use std::net::{TcpStream, ToSocketAddrs};
    let hostport = target.host_key();
    let addrs: Vec<_> = match hostport.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return check(
                "upload network",
                Status::Fail,
                format!("cannot resolve {hostport}: {e}"),
                Some("check DNS and the host name".into()),
            );
        }
    };
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, Duration::from_secs(5)) {
            Ok(_) => {
                return check(
                    "upload network",
                    Status::Ok,
                    format!("TCP connection to {hostport} ({addr}) works"),
                    None,
                );
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    check(
        "upload network",
        Status::Fail,
        format!("cannot connect to {hostport}: {}", last.unwrap_or_else(|| "no address".into())),
        Some("check the firewall, the proxy setting (upload.proxy) and that the collector is up".into()),
    )
}
