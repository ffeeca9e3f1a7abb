//! RELIABILITY C1 (socket part) and C2 (pid lies): hostile clients cannot
//! take down or wedge a shared monitor, and a real crash afterwards is still
//! dumped.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_test_support::{KillOnDrop, bin, death_signal, wait_for, wait_timeout};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

fn connect(path: &Path) -> OwnedFd {
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    fd
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    crashmon_test_support::status_kib(pid, "VmRSS").unwrap_or(0)
}

/// A valid header for `kind` claiming `len` payload bytes.
fn header(kind: u16, len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"CMON");
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

#[test]
fn hostile_clients_do_not_hurt_the_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("monitor.sock");
    let db = dir.path().join("db");
    let monitor = KillOnDrop(
        Command::new(bin("crashmon"))
            .args(["monitor", "--socket"])
            .arg(&sock)
            .env("CRASHMON_DATABASE", &db)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = monitor.0.id();
    wait_for(Duration::from_secs(10), || sock.exists().then_some(())).expect("socket");
    // Let it settle, then take the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let fds_before = fd_count(pid);
    let rss_before = rss_kib(pid);

    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..2_000u32 {
        let fd = connect(&sock);
        let payload: Vec<u8> = match round % 8 {
            // Random bytes of random length.
            0 => (0..(next() % 4096) as usize).map(|_| next() as u8).collect(),
            // A header claiming a 4 GiB payload.
            1 => header(3, u32::MAX),
            // A datagram longer than any message.
            2 => vec![0x41; 64 * 1024],
            // Truncated dump request.
            3 => {
                let mut h = header(3, 2400);
                h.extend_from_slice(&[0; 100]);
                h
            }
            // Hello that lies about its pid.
            4 => {
                let mut h = header(1, 8);
                h.extend_from_slice(&1u32.to_le_bytes());
                h.extend_from_slice(&0u32.to_le_bytes());
                h
            }
            // Dump request without hello.
            5 => {
                let mut h = header(3, 2360);
                h.resize(16 + 2360, 0);
                h
            }
            // Empty datagram, then nothing (half-open client).
            6 => Vec::new(),
            // Unknown kind.
            _ => header(99, 0),
        };
        let _ = socket::send(fd.as_raw_fd(), &payload, MsgFlags::MSG_NOSIGNAL);
        // Keep every 100th connection open for a while (vanishing later).
        if round % 100 == 0 {
            std::mem::forget(fd);
        }
    }
    // A real crash is still served, promptly.
    let mut crasher = Command::new(bin("crasher"))
        .args(["--crash", "segv", "--socket"])
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut crasher, Duration::from_secs(10)).expect("crasher died");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV));
    let dumped = wait_for(Duration::from_secs(5), || {
        std::fs::read_dir(db.join("pending"))
            .ok()
            .and_then(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "dmp")).then_some(()))
    });
    assert!(dumped.is_some(), "the crash after the flood was dumped");
    assert!(crashmon_test_support::process_alive(pid as i32), "the monitor kept its pid");
    // Bounded memory; descriptors return to the baseline plus the ~20
    // connections this test still holds open.
    let rss_after = rss_kib(pid);
    assert!(rss_after < rss_before + 16 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");
    let settled = wait_for(Duration::from_secs(10), || (fd_count(pid) <= fds_before + 25).then_some(()));
    assert!(settled.is_some(), "fds: {} before, {} after", fds_before, fd_count(pid));
}
