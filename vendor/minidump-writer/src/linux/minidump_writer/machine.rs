//! crashmon patch: the machine's part of a dump — `uname`, the CPU fields
//! of the system info stream, `/proc/cpuinfo` and `/etc/lsb-release` or
//! `/etc/os-release` — is read once per process and reused by later
//! dumps, instead of being read (~0.13 ms) while each crashed process is
//! stopped. It is read again when a release file changes (inode,
//! modification or change time: an upgrade while the monitor runs), and
//! whenever a read failed (nothing is kept then; no release file at all
//! is kept as such). What can differ between two reads
//! without a reboot is the "cpu MHz" lines of `/proc/cpuinfo` (the value
//! at the first read is kept) and the number of processors after CPU
//! hotplug. [`warm`] reads it ahead, e.g. while a monitor starts.

use {
    super::super::{
        dumper_cpu_info::{self as dci, CpuInfoError},
        process_inspection::ProcessInspector,
    },
    crate::minidump_format::MDRawSystemInfo,
    std::{
        io::Read,
        sync::{
            Arc, Mutex,
            atomic::{AtomicUsize, Ordering},
        },
        time::SystemTime,
    },
};

const RELEASE_FILES: [&str; 2] = ["/etc/lsb-release", "/etc/os-release"];

/// The machine as read at one time.
pub struct Machine {
    pub platform_id: u32,
    pub os_version: String,
    /// The system info with its CPU fields filled in (the rest is set by
    /// the writer).
    pub system_info: MDRawSystemInfo,
    pub cpu_error: Option<CpuInfoError>,
    pub cpuinfo: std::io::Result<Vec<u8>>,
    pub os_release: std::io::Result<Vec<u8>>,
}

impl Machine {
    /// Read without an error, or without one that another read would not
    /// give again (no release file: some minimal systems).
    fn complete(&self) -> bool {
        let release_ok = self.os_release.is_ok()
            || RELEASE_FILES.iter().all(|f| !std::path::Path::new(f).exists());
        self.cpu_error.is_none() && self.cpuinfo.is_ok() && release_ok
    }
}

/// Which release files there are: inode, modification and change times
/// (None: absent).
type Stamp = [Option<(u64, SystemTime, i64, i64)>; 2];

static CACHE: Mutex<Option<(Stamp, Arc<Machine>)>> = Mutex::new(None);
static READS: AtomicUsize = AtomicUsize::new(0);

fn stamp() -> Stamp {
    use std::os::unix::fs::MetadataExt;
    RELEASE_FILES.map(|f| {
        let m = std::fs::metadata(f).ok()?;
        Some((m.ino(), m.modified().ok()?, m.ctime(), m.ctime_nsec()))
    })
}

/// How many times this process has read the machine (for tests and logs:
/// 1 after any number of dumps while nothing changed).
pub fn reads() -> usize {
    READS.load(Ordering::Relaxed)
}

/// The machine: the one read before if its release files are unchanged,
/// else read now (and kept if every read succeeded).
pub fn current() -> Arc<Machine> {
    let now = stamp();
    if let Ok(cache) = CACHE.lock() {
        if let Some((when, machine)) = cache.as_ref() {
            if *when == now {
                return Arc::clone(machine);
            }
        }
    }
    let machine = Arc::new(read());
    if machine.complete() {
        if let Ok(mut cache) = CACHE.lock() {
            *cache = Some((now, Arc::clone(&machine)));
        }
    }
    machine
}

/// Reads the machine now, so that the first dump finds it.
pub fn warm() {
    let _ = current();
}

fn read_file(inspector: &ProcessInspector, path: &str) -> std::io::Result<Vec<u8>> {
    let mut file = inspector.read_file(path).map_err(std::io::Error::other)?;
    let mut v = Vec::new();
    file.read_to_end(&mut v)?;
    Ok(v)
}

fn read() -> Machine {
    READS.fetch_add(1, Ordering::Relaxed);
    // Only absolute paths are read through it: any pid will do.
    let inspector = ProcessInspector::local(std::process::id() as libc::pid_t);
    let (platform_id, os_version) = dci::os_information();
    // SAFETY: POD
    let mut system_info = unsafe { std::mem::zeroed::<MDRawSystemInfo>() };
    let cpu_error = dci::write_cpu_information(&inspector, &mut system_info).err();
    Machine {
        platform_id: platform_id as u32,
        os_version,
        system_info,
        cpu_error,
        cpuinfo: read_file(&inspector, "/proc/cpuinfo"),
        os_release: read_file(&inspector, RELEASE_FILES[0])
            .or_else(|_| read_file(&inspector, RELEASE_FILES[1])),
    }
}

/// A copy of `e` (the machine may be shared by several dumps).
pub fn copy_io_error(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}
