//! Issue 8: a shared monitor's memory per idle connected client. 100 clients
//! that completed the hello and then stay silent must cost the monitor
//! little resident memory (it used to be ~50 KiB each in a release build: a
//! receive buffer per connection and a 20 KiB send buffer on every
//! connection thread's stack), and cost it no CPU.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_protocol as proto;
use crashmon_test_support::{KillOnDrop, bin, status_kib, wait_for};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

/// Connect and say hello (as this test process, whose pid the monitor
/// checks against SO_PEERCRED); wait for the HelloAck.
fn hello(path: &Path) -> OwnedFd {
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    let mut msg = [0u8; proto::MAX_MESSAGE_LEN];
    let hello = proto::Message::Hello(proto::Hello { pid: std::process::id(), flags: 0 });
    let n = proto::encode(&hello, &mut msg).unwrap();
    socket::send(fd.as_raw_fd(), &msg[..n], MsgFlags::MSG_NOSIGNAL).unwrap();
    let mut pfd = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&fd), nix::poll::PollFlags::POLLIN)];
    assert_eq!(nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10_000u16)).unwrap(), 1, "HelloAck in time");
    let mut buf = [0u8; proto::MAX_MESSAGE_LEN];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    let reply = proto::decode(&buf[..n]);
    assert!(matches!(reply, Ok(proto::Message::HelloAck(_))), "a HelloAck: {reply:?}");
    fd
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are 12 and 13 after the state.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_hundred_idle_clients_cost_little_memory_and_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("monitor.sock");
    let monitor = KillOnDrop(
        Command::new(bin("crashmon"))
            .args(["monitor", "--socket"])
            .arg(&sock)
            .env("CRASHMON_DATABASE", dir.path().join("db"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = monitor.0.id();
    wait_for(Duration::from_secs(10), || sock.exists().then_some(())).expect("socket");
    // A first client warms up what every connection shares (allocator
    // arenas, the first thread's stack), then the baseline.
    let mut clients = vec![hello(&sock)];
    std::thread::sleep(Duration::from_millis(200));
    let before = status_kib(pid, "VmRSS").unwrap();
    clients.extend((0..100).map(|_| hello(&sock)));
    let threads = wait_for(Duration::from_secs(10), || {
        let t = status_kib(pid, "Threads").unwrap_or(0);
        (t >= 101).then_some(t)
    })
    .expect("one thread per client");
    std::thread::sleep(Duration::from_millis(300));
    let after = status_kib(pid, "VmRSS").unwrap();
    let per_client = after.saturating_sub(before) as f64 / 100.0;
    eprintln!(
        "monitor RSS {before} KiB -> {after} KiB with 100 more idle clients ({per_client:.1} KiB each, {threads} threads)"
    );
    // Release: ~13 KiB each (an 8 KiB resident thread stack and the
    // thread's bookkeeping); unoptimized code has much larger stack frames
    // (~28 KiB of resident stack per connection thread in a debug build).
    let limit = if cfg!(debug_assertions) { 48.0 } else { 24.0 };
    assert!(per_client < limit, "{per_client:.1} KiB of RSS per idle client (limit {limit} KiB)");
    // Idle means idle: no timers, no polling.
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    assert!(cpu_ticks(pid) - t0 <= 1, "the monitor used CPU while every client was idle");
    drop(clients);
}
