//! Reaching the monitor: spawn a sidecar over a socket pair (hello sent, its
//! answer not awaited), or connect to a shared monitor's socket and complete
//! the hello handshake.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crashmon_protocol as proto;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

use crate::{HandlerConfig, InstallError, MONITOR_ENV, MonitorConnection};

pub(crate) struct Connected {
    pub(crate) socket: OwnedFd,
    pub(crate) monitor_pid: u32,
    pub(crate) child: Option<Child>,
}

pub(crate) fn connect(config: &HandlerConfig) -> Result<Connected, InstallError> {
    let connected = match &config.monitor {
        MonitorConnection::Spawn { exe, args } if !config.wait_for_monitor => {
            let connected = spawn(exe.as_deref(), args, config)?;
            // A sidecar we spawned ourselves: we know its pid (for
            // PR_SET_PTRACER) and the socket pair can only lead to it, so
            // install() need not wait for it to start (~2 ms of exec and
            // start-up of the monitor, off the app's start). The Hello is
            // queued now; the monitor reads it before anything the app sends
            // later (a SEQPACKET socket keeps the order), so a crash in the
            // first milliseconds is dumped once the monitor is up (the
            // handler waits for the reply as usual). The HelloAck stays
            // unread in our receive queue: every reader of this socket (the
            // signal path, handled-error requests) skips messages that are
            // not the answer to its request. Exec failures are still
            // reported: `Command::spawn` returns them.
            send_hello(&connected.socket)?;
            return Ok(connected);
        }
        MonitorConnection::Spawn { exe, args } => spawn(exe.as_deref(), args, config)?,
        MonitorConnection::Socket(path) => connect_socket(path)?,
    };
    match handshake(&connected.socket, config.connect_timeout) {
        Ok(pid) => {
            // For a spawned monitor we know its pid ourselves; for a shared
            // one SO_PEERCRED told us. The monitor's own claim must agree.
            if pid != connected.monitor_pid {
                return Err(InstallError::Handshake(format!(
                    "monitor says its pid is {pid}, but the socket peer is {}",
                    connected.monitor_pid
                )));
            }
            Ok(connected)
        }
        Err(e) => {
            if let Some(mut child) = connected.child {
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(e)
        }
    }
}

/// File names of the monitor executables, preferred first at each place
/// searched: the lean monitor (`crashmon monitor` alone; its exec costs
/// ~0.8 ms less, and the sidecar's start-up is on the path of a crash early
/// in an app's life), then the whole CLI. Both take `monitor --client-fd N`.
const MONITOR_EXES: [&str; 2] = ["crashmon-monitor", "crashmon"];

/// The monitor to spawn: the explicit path, else `$CRASHMON_MONITOR`, else
/// [`search_monitor_exe`] from the current executable and `PATH`.
fn find_monitor_exe(explicit: Option<&Path>) -> Result<PathBuf, InstallError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(MONITOR_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().ok();
    search_monitor_exe(me.as_deref(), std::env::var_os("PATH").as_deref()).ok_or(InstallError::MonitorNotFound)
}

/// Next to `me` (the current executable): [`find_monitor_in`] its
/// directory (which gives `me` itself when the app is the `crashmon` CLI,
/// as for `crashmon demo`), else `me` if it is `crashmon`; then each
/// absolute `PATH` directory in order, so a pair installed together is
/// used together.
fn search_monitor_exe(me: Option<&Path>, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if let Some(me) = me {
        if let Some(found) = me.parent().and_then(find_monitor_in) {
            return Some(found);
        }
        if me.file_name().is_some_and(|n| n == "crashmon") {
            return Some(me.to_path_buf());
        }
    }
    // Relative entries would depend on the app's working directory.
    path.into_iter().flat_map(std::env::split_paths).filter(|d| d.is_absolute()).find_map(|d| find_monitor_in(&d))
}

/// The monitor executable in `dir`: `crashmon-monitor` (it starts
/// faster), else `crashmon`. Only executable regular files count.
pub fn find_monitor_in(dir: &Path) -> Option<PathBuf> {
    MONITOR_EXES.iter().map(|name| dir.join(name)).find(|p| executable(p).is_some())
}

/// The modification time of `path` if it is an executable regular file.
fn executable(path: &Path) -> Option<std::time::SystemTime> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| meta.modified().ok()).flatten()
}

fn spawn(exe: Option<&Path>, args: &[std::ffi::OsString], config: &HandlerConfig) -> Result<Connected, InstallError> {
    let exe = find_monitor_exe(exe)?;
    let os = |call| move |e: nix::errno::Errno| InstallError::Os { call, source: e.into() };
    let (ours, theirs) = socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(os("socketpair"))?;
    // The monitor's end must survive exec; ours must not leak into it.
    nix::fcntl::fcntl(theirs.as_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
        .map_err(os("fcntl"))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("monitor").arg("--client-fd").arg(theirs.as_raw_fd().to_string());
    if let Some(db) = &config.database {
        cmd.arg("--database").arg(db);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        // The app's stdout is the app's; the monitor logs to stderr only.
        .stdout(Stdio::null())
        // Its own process group: a Ctrl-C aimed at the app must not kill the
        // monitor in the middle of writing the app's dump.
        .process_group(0);
    let child = cmd.spawn().map_err(|source| InstallError::Spawn { exe: exe.clone(), source })?;
    drop(theirs);
    Ok(Connected { socket: ours, monitor_pid: child.id(), child: Some(child) })
}

fn connect_socket(path: &Path) -> Result<Connected, InstallError> {
    let err = |source: std::io::Error| InstallError::Connect { path: path.to_path_buf(), source };
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| err(e.into()))?;
    let addr = UnixAddr::new(path).map_err(|e| err(e.into()))?;
    socket::connect(fd.as_raw_fd(), &addr).map_err(|e| err(e.into()))?;
    let cred = socket::getsockopt(&fd, socket::sockopt::PeerCredentials).map_err(|e| err(e.into()))?;
    if cred.uid() != nix::unistd::geteuid().as_raw() && cred.uid() != 0 {
        return Err(err(std::io::Error::other(format!("the socket belongs to uid {}, not to us or root", cred.uid()))));
    }
    Ok(Connected { socket: fd, monitor_pid: cred.pid() as u32, child: None })
}

/// Send `Hello`.
fn send_hello(fd: &OwnedFd) -> Result<(), InstallError> {
    let mut buf = [0u8; proto::MAX_MESSAGE_LEN];
    let hello = proto::Message::Hello(proto::Hello { pid: std::process::id(), flags: 0 });
    let n = proto::encode(&hello, &mut buf).map_err(|e| InstallError::Handshake(format!("{e:?}")))?;
    socket::send(fd.as_raw_fd(), &buf[..n], MsgFlags::MSG_NOSIGNAL)
        .map_err(|e| InstallError::Handshake(format!("send: {e}")))?;
    Ok(())
}

/// Send `Hello`, wait for `HelloAck`; returns the monitor's pid.
fn handshake(fd: &OwnedFd, timeout: Duration) -> Result<u32, InstallError> {
    send_hello(fd)?;
    let mut buf = [0u8; proto::MAX_MESSAGE_LEN];
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(InstallError::Handshake(format!("no answer within {timeout:?}")));
        }
        let mut pfd = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(InstallError::Handshake(format!("poll: {e}"))),
        }
        let n = match socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => {
                return Err(InstallError::Handshake("the monitor closed the connection (see its error above)".into()));
            }
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(InstallError::Handshake(format!("recv: {e}"))),
        };
        return match proto::decode(&buf[..n]) {
            Ok(proto::Message::HelloAck(ack)) => Ok(ack.monitor_pid),
            Ok(proto::Message::DumpFailed(f)) => {
                Err(InstallError::Handshake(format!("the monitor refused us: {}", String::from_utf8_lossy(f.reason))))
            }
            Ok(other) => Err(InstallError::Handshake(format!("unexpected message {other:?}"))),
            Err(e) => Err(InstallError::Handshake(format!("bad message: {e}"))),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = std::env::temp_dir().join(format!("crashmon-find-{}-{tag}-{n}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
        /// An executable file `name`.
        fn file(&self, name: &str) -> PathBuf {
            use std::os::unix::fs::PermissionsExt;
            let p = self.0.join(name);
            std::fs::write(&p, b"").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn path_of(dirs: &[&Dir]) -> std::ffi::OsString {
        std::env::join_paths(dirs.iter().map(|d| &d.0)).unwrap()
    }

    #[test]
    fn the_lean_monitor_beside_the_app_wins_over_the_cli_beside_it() {
        let app = Dir::new("app");
        let me = app.file("app");
        let cli = app.file("crashmon");
        assert_eq!(search_monitor_exe(Some(&me), None), Some(cli));
        let lean = app.file("crashmon-monitor");
        assert_eq!(search_monitor_exe(Some(&me), None), Some(lean));
    }

    #[test]
    fn the_crashmon_cli_prefers_its_lean_sibling_then_itself() {
        let bin = Dir::new("bin");
        let me = bin.0.join("crashmon"); // not created: the running exe may be deleted on disk
        let other = Dir::new("other");
        other.file("crashmon-monitor");
        let path = path_of(&[&other]);
        assert_eq!(search_monitor_exe(Some(&me), Some(&path)), Some(me.clone()), "itself before PATH");
        let lean = bin.file("crashmon-monitor");
        assert_eq!(search_monitor_exe(Some(&me), Some(&path)), Some(lean));
    }

    #[test]
    fn path_is_searched_dir_by_dir_lean_first_in_each() {
        let app = Dir::new("app2");
        let me = app.file("app");
        let first = Dir::new("first");
        let second = Dir::new("second");
        let second_lean = second.file("crashmon-monitor");
        let path = path_of(&[&first, &second]);
        assert_eq!(search_monitor_exe(Some(&me), Some(&path)), Some(second_lean));
        let first_cli = first.file("crashmon");
        assert_eq!(search_monitor_exe(Some(&me), Some(&path)), Some(first_cli), "an earlier PATH entry wins");
        let first_lean = first.file("crashmon-monitor");
        assert_eq!(search_monitor_exe(Some(&me), Some(&path)), Some(first_lean));
        let empty = Dir::new("empty");
        assert_eq!(search_monitor_exe(Some(&me), Some(&path_of(&[&empty]))), None);
    }

    #[test]
    fn a_non_executable_lean_monitor_and_relative_path_entries_are_passed_over() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Dir::new("noexec");
        let lean = dir.file("crashmon-monitor");
        std::fs::set_permissions(&lean, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_monitor_in(&dir.0), None);
        let cli = dir.file("crashmon");
        assert_eq!(find_monitor_in(&dir.0), Some(cli));
        let app = Dir::new("rel");
        let me = app.file("app");
        assert_eq!(search_monitor_exe(Some(&me), Some(std::ffi::OsStr::new("relative/bin"))), None);
    }
}
