//! crashmon patch: the machine's part of a dump — `uname`, the CPU fields
//! of the system info stream, `/proc/cpuinfo` and `/etc/lsb-release` or
//! `/etc/os-release` — is read once per process and reused by later
//! dumps, instead of being read (~0.13 ms) while each crashed process is
//! stopped. It is read again when a release file's modification time
//! changes (an upgrade while the monitor runs), and whenever a read
//! failed (nothing is kept then). What can differ between two reads
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
        sync::{Arc, Mutex},
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
    fn complete(&self) -> bool {
        self.cpu_error.is_none() && self.cpuinfo.is_ok() && self.os_release.is_ok()
    }
}

/// The modification times of the release files (None: absent).
type Stamp = [Option<SystemTime>; 2];

static CACHE: Mutex<Option<(Stamp, Arc<Machine>)>> = Mutex::new(None);

fn stamp() -> Stamp {
    RELEASE_FILES.map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
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
