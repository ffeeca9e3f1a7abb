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

fn find_monitor_exe(explicit: Option<&Path>) -> Result<PathBuf, InstallError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(MONITOR_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Ok(me) = std::env::current_exe() {
        if me.file_name().is_some_and(|n| n == "crashmon") {
            return Ok(me);
        }
        if let Some(sibling) = me.parent().map(|d| d.join("crashmon")).filter(|p| p.is_file()) {
            return Ok(sibling);
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("crashmon"))
        .find(|p| p.is_file())
        .ok_or(InstallError::MonitorNotFound)
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
