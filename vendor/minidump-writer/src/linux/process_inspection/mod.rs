use self::process_reader::ProcessReader;
use super::maps_reader;
use crate::module_reader::{ModuleMemoryReadError, ReadError, ReadModuleMemory};
use core::ffi::c_int;
use failspot::failspot;
use process_backend::{MAX_PATH_LEN, local, regs::*};
use std::{
    borrow::Cow,
    ffi::{CString, OsString},
    io,
    os::unix::ffi::OsStringExt,
    path::PathBuf,
};

pub use process_backend::regs;

pub mod process_reader;

#[derive(Debug)]
pub struct ProcessInspector {
    pid: libc::pid_t,
    backend: Backend,
}

#[derive(Debug)]
pub enum Backend {
    Local {
        backend: local::Backend,
        process_reader_backend: local::ProcessReader,
    },
}

impl ProcessInspector {
    pub fn local(pid: libc::pid_t) -> Self {
        let backend = local::Backend::new(pid);
        let process_reader_backend = backend.process_reader();

        ProcessInspector {
            pid,
            backend: Backend::Local {
                backend,
                process_reader_backend,
            },
        }
    }
    pub fn process_reader(&self) -> ProcessReader<'_> {
        ProcessReader::new(self)
    }
    pub fn stop_process(&self) -> Result<(), Error> {
        failspot!(if StopProcess {
            return Err(Error::Local(local::Error::SigStopFailed(libc::EPERM)));
        });

        match &self.backend {
            Backend::Local { backend, .. } => backend.stop_process().map_err(Error::Local),
        }
    }

    pub fn continue_process(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::Local { backend, .. } => backend.continue_process().map_err(Error::Local),
        }
    }

    pub fn suspend_thread(&self, tid: libc::pid_t) -> Result<(), Error> {
        match &self.backend {
            Backend::Local { backend, .. } => backend.suspend_thread(tid).map_err(Error::Local),
        }
    }

    pub fn resume_thread(&self, tid: libc::pid_t) -> Result<(), Error> {
        match &self.backend {
            Backend::Local { backend, .. } => backend.resume_thread(tid).map_err(Error::Local),
        }
    }

    // crashmon patch: threads are seized (PTRACE_SEIZE), interrupted all at
    // once (PTRACE_INTERRUPT) and then waited for, instead of SIGSTOPping
    // the process and attaching (PTRACE_ATTACH + wait) one thread at a
    // time: the stops happen concurrently, and a tracer that dies leaves
    // the threads running (the kernel detaches them; no group stop remains).

    /// PTRACE_SEIZE `tid`; it keeps running until [`Self::interrupt_thread`].
    pub fn seize_thread(&self, tid: libc::pid_t) -> Result<(), Error> {
        // SAFETY: ptrace with integer arguments only.
        let rv = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) };
        if rv == -1 {
            return Err(Error::Local(local::Error::PtraceAttachFailed(last_errno())));
        }
        Ok(())
    }

    /// PTRACE_INTERRUPT a seized `tid` (does not wait for the stop).
    pub fn interrupt_thread(&self, tid: libc::pid_t) -> Result<(), Error> {
        // SAFETY: ptrace with integer arguments only.
        let rv = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) };
        if rv == -1 {
            return Err(Error::Local(local::Error::PtraceAttachFailed(last_errno())));
        }
        Ok(())
    }

    /// Waits until the seized and interrupted `tid` is in a ptrace stop.
    /// Returns the signal of a signal-delivery stop (the thread had a
    /// signal pending: it must be given back at detach), 0 for the
    /// interrupt's (or a group stop's) event stop.
    ///
    /// `waitid(WNOWAIT)`: the stop stays unconsumed, so the signal of a
    /// signal-delivery stop stays the thread's; if this process dies before
    /// it detaches, the kernel detaches the thread and delivers the signal
    /// (a consuming wait would clear it and the signal would be lost).
    ///
    /// crashmon patch: `Ok(None)` if the thread has not stopped by
    /// `deadline`. A thread in a killable or uninterruptible wait (a vfork
    /// parent, NFS, a FUSE request) does not stop for PTRACE_INTERRUPT
    /// until that wait ends, and a blocking wait hung the dump. The wait
    /// polls (`WNOHANG`): yielding for the first 2 ms (a stop normally
    /// comes within microseconds), then every 200 us.
    pub fn wait_thread_stop(
        &self,
        tid: libc::pid_t,
        deadline: std::time::Instant,
    ) -> Result<Option<c_int>, Error> {
        let started = std::time::Instant::now();
        loop {
            // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let flags = libc::WSTOPPED | libc::WEXITED | libc::WNOWAIT | libc::WNOHANG | libc::__WALL;
            // SAFETY: waitid with a pointer to a local siginfo_t.
            if unsafe { libc::waitid(libc::P_PID, tid as libc::id_t, &mut info, flags) } == -1 {
                let e = last_errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(Error::Local(local::Error::WaitPidFailed(e)));
            }
            // SAFETY: waitid filled in (or, with WNOHANG and nothing to
            // report, left zeroed) a SIGCHLD siginfo.
            if unsafe { info.si_pid() } == 0 {
                let now = std::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                if now - started < std::time::Duration::from_millis(2) {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                continue;
            }
            // SAFETY: waitid filled in a SIGCHLD siginfo for `tid`.
            let (code, status) = (info.si_code, unsafe { info.si_status() });
            if code != libc::CLD_TRAPPED && code != libc::CLD_STOPPED {
                // It exited meanwhile: reap it (WNOWAIT left it waitable).
                let mut st = 0;
                // SAFETY: waitpid with a pointer to a local.
                unsafe { libc::waitpid(tid, &mut st, libc::__WALL) };
                return Err(Error::Local(local::Error::UnexpectedStatus(status)));
            }
            if (status >> 8) == libc::PTRACE_EVENT_STOP {
                return Ok(Some(0));
            }
            return Ok(Some(status & 0xff));
        }
    }

    /// PTRACE_DETACH a stopped `tid`, delivering `signal` (0 for none).
    pub fn detach_thread(&self, tid: libc::pid_t, signal: c_int) -> Result<(), Error> {
        // SAFETY: ptrace with integer arguments only.
        let rv = unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, signal as usize) };
        if rv == -1 {
            return Err(Error::Local(local::Error::PtraceDetachFailed(last_errno())));
        }
        Ok(())
    }

    pub fn map_module_into_memory(
        &self,
        path: impl Into<PathBuf>,
        offset: u64,
    ) -> Result<MappedModuleMemoryReader, Error> {
        let c_path = CString::new(path.into().into_os_string().into_vec()).unwrap();
        match &self.backend {
            Backend::Local { backend, .. } => backend
                .map_module_into_memory(&c_path, offset)
                .map(MappedModuleMemoryReader::Local)
                .map_err(Error::Local),
        }
    }

    pub fn stat_file(&self, path: impl Into<PathBuf>) -> Result<libc::stat, Error> {
        let c_path = CString::new(path.into().into_os_string().into_vec()).unwrap();
        match &self.backend {
            Backend::Local { backend, .. } => backend.stat_file(&c_path).map_err(Error::Local),
        }
    }

    pub fn read_file(&self, path: impl Into<PathBuf>) -> Result<FileReader, Error> {
        let c_path = CString::new(path.into().into_os_string().into_vec()).unwrap();
        match &self.backend {
            Backend::Local { backend, .. } => backend
                .read_file(&c_path)
                .map(FileReader::Local)
                .map_err(Error::Local),
        }
    }

    pub fn read_dir(&self, path: impl Into<PathBuf>) -> Result<DirReader, Error> {
        let c_path = CString::new(path.into().into_os_string().into_vec()).unwrap();
        match &self.backend {
            Backend::Local { backend, .. } => backend
                .read_dir(&c_path)
                .map(DirReader::Local)
                .map_err(Error::Local),
        }
    }

    pub fn read_link(&self, path: impl Into<PathBuf>) -> Result<PathBuf, Error> {
        let c_path = CString::new(path.into().into_os_string().into_vec()).unwrap();

        let mut buf = vec![0u8; MAX_PATH_LEN];

        let len = match &self.backend {
            Backend::Local { backend, .. } => {
                backend.read_link(&c_path, &mut buf).map_err(Error::Local)?
            }
        };

        buf.truncate(len);
        Ok(PathBuf::from(OsString::from_vec(buf)))
    }

    pub fn get_gen_regs(&self, tid: libc::pid_t) -> Result<GenRegs, Error> {
        match &self.backend {
            Backend::Local { backend, .. } => backend.get_gen_regs(tid).map_err(Error::Local),
        }
    }

    pub fn get_fp_regs(&self, tid: libc::pid_t) -> Result<FpRegs, Error> {
        match &self.backend {
            Backend::Local { backend, .. } => backend.get_fp_regs(tid).map_err(Error::Local),
        }
    }

    #[cfg(target_arch = "x86")]
    pub fn get_fpx_regs(&self, tid: libc::pid_t) -> Result<FpxRegs, Error> {
        match &self.backend {
            Backend::Local { backend, .. } => backend.get_fpx_regs(tid).map_err(Error::Local),
        }
    }

    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    pub fn ptrace_peekuser(
        &self,
        pid: libc::pid_t,
        addr: usize,
    ) -> Result<[u8; core::mem::size_of::<libc::c_long>()], Error> {
        match &self.backend {
            Backend::Local { backend, .. } => {
                backend.ptrace_peekuser(pid, addr).map_err(Error::Local)
            }
        }
    }
}

#[derive(Debug)]
pub enum FileReader {
    Local(local::FileReader),
}

impl io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Local(l) => l.read(buf).map_err(Error::Local),
        }
        .map_err(io::Error::other)
    }
}

#[derive(Debug)]
pub enum DirReader {
    Local(local::DirReader),
}

impl Iterator for DirReader {
    type Item = Result<OsString, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Local(l) => match l.read_name().map_err(Error::Local) {
                Ok(Some(name_bytes)) => Some(Ok(OsString::from_vec(name_bytes.to_vec()))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
        }
    }
}

#[doc(hidden)]
impl ProcessInspector {
    pub fn fail_one_syscall_with(&self, errno: c_int) {
        match &self.backend {
            Backend::Local { backend, .. } => backend.fail_one_syscall_with(errno),
        }
    }
}

#[derive(Debug)]
pub enum MappedModuleMemoryReader {
    Local(local::MappedModuleMemoryReader),
}

impl MappedModuleMemoryReader {
    pub fn read(&self, offset: u64, length: u64) -> Result<&[u8], Error> {
        match self {
            Self::Local(l) => l.read(offset, length).map_err(Error::Local),
        }
    }
    pub fn len(&self) -> Result<usize, Error> {
        match self {
            Self::Local(l) => l.len().map_err(Error::Local),
        }
    }
    pub fn is_empty(&self) -> Result<bool, Error> {
        match self {
            Self::Local(l) => l.is_empty().map_err(Error::Local),
        }
    }
}

impl ReadModuleMemory for MappedModuleMemoryReader {
    fn read(&self, offset: u64, length: u64) -> Result<Cow<'_, [u8]>, ModuleMemoryReadError> {
        self.read(offset, length)
            .map(Cow::Borrowed)
            .map_err(|e| ModuleMemoryReadError {
                offset,
                length,
                start_address: None,
                error: ReadError::PlatformSpecific(e),
            })
    }
    fn absolute_to_relative(&self, addr: u64) -> Option<u64> {
        Some(addr)
    }
    /// Calculates the absolute address of the specified relative address
    fn relative_to_absolute(&self, addr: u64) -> Option<u64> {
        Some(addr)
    }
    fn is_process_memory(&self) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Error {
    #[error("an error occurred running a syscall directly")]
    Local(#[source] local::Error),
}

fn last_errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
