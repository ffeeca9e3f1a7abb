use {
    super::{
        Pid,
        app_memory::AppMemoryList,
        auxv::AuxvDumpInfo,
        crash_context_ext::CrashContextExt,
        dso_debug,
        dumper_cpu_info::CpuInfoError,
        maps_reader::{MappingInfo, MappingList, MapsReaderError},
        process_inspection::{self, ProcessInspector, process_reader::CopyFromProcessError},
        serializers::*,
        thread_info::{ThreadInfo, ThreadInfoError},
    },
    crate::{
        dir_section::{DirSection, DumpBuf},
        mem_writer::{
            Buffer, MemoryArrayWriter, MemoryWriter, MemoryWriterError, write_string_to_location,
        },
        minidump_format::*,
        module_reader,
        serializers::*,
    },
    error_graph::{ErrorList, WriteErrorList},
    errors::{InitError, WriterError},
    procfs_core::{
        process::MMPermissions,
    },
    std::{
        io::{Read, Seek, Write},
        time::Duration,
    },
    thiserror::Error,
};

#[cfg(target_os = "android")]
use super::android::late_process_mappings;

pub use super::auxv::{AuxvType, DirectAuxvDumpInfo};

pub mod app_memory;
pub mod errors;
pub mod exception_stream;
pub mod handle_data_stream;
pub mod machine;
pub mod mappings;
pub mod memory_info_list_stream;
pub mod memory_list_stream;
pub mod systeminfo_stream;
pub mod thread_list_stream;
pub mod thread_names_stream;

/// The default timeout after a `SIGSTOP` after which minidump writing proceeds
/// regardless of the process state
pub const STOP_TIMEOUT: Duration = Duration::from_millis(100);

#[cfg(target_pointer_width = "32")]
pub const AT_SYSINFO_EHDR: u32 = 33;
#[cfg(target_pointer_width = "64")]
pub const AT_SYSINFO_EHDR: u64 = 33;

#[derive(Debug)]
pub struct MinidumpWriterConfig {
    process_id: Pid,
    blamed_thread: Pid,
    minidump_size_limit: Option<u64>,
    skip_stacks_if_mapping_unreferenced: bool,
    principal_mapping_address: Option<usize>,
    user_mapping_list: MappingList,
    app_memory: AppMemoryList,
    memory_blocks: Vec<MDMemoryDescriptor>,
    principal_mapping: Option<MappingInfo>,
    sanitize_stack: bool,
    crash_context: Option<CrashContextExt>,
    crashing_thread_context: CrashingThreadContext,
    stop_timeout: Duration,
    direct_auxv_dump_info: Option<DirectAuxvDumpInfo>,
    process_inspector: ProcessInspector,
}

/// crashmon patch: how long the threads of one suspension round may take
/// to stop, all together (they are interrupted at once; a stop normally
/// comes within microseconds, and a thread that does not stop is one in a
/// killable or uninterruptible wait).
pub const THREAD_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug)]
pub struct MinidumpWriter {
    pub process_id: Pid,
    threads_suspended: bool,
    /// Signals the suspended threads had pending (given back at detach).
    pending_signals: Vec<(Pid, libc::c_int)>,
    /// crashmon patch: threads seized and interrupted that had not stopped
    /// by the deadline ([`THREAD_STOP_WAIT`]); left out of the dump, and
    /// detached at the end if they have stopped by then.
    unstopped: Vec<Pid>,
    /// crashmon patch: the general registers read at each thread's stop
    /// (for the sandbox check), reused for its context instead of a second
    /// `PTRACE_GETREGSET`.
    regs_at_stop: std::collections::HashMap<Pid, crate::linux::process_inspection::regs::GenRegs>,
    /// crashmon patch: `/proc/PID/maps` as read for the mappings, written
    /// as the `LinuxMaps` stream instead of reading it a second time (it
    /// has ~2 lines per thread).
    maps_text: Option<Vec<u8>>,
    pub threads: Vec<Thread>,
    pub auxv: AuxvDumpInfo,
    pub mappings: Vec<MappingInfo>,
    pub page_size: usize,
    pub sanitize_stack: bool,
    pub minidump_size_limit: Option<u64>,
    pub user_mapping_list: MappingList,
    pub crashing_thread_context: CrashingThreadContext,
    pub skip_stacks_if_mapping_unreferenced: bool,
    principal_mapping_address: Option<usize>,
    pub principal_mapping: Option<MappingInfo>,
    pub blamed_thread: Pid,
    pub crash_context: Option<CrashContextExt>,
    pub app_memory: AppMemoryList,
    pub memory_blocks: Vec<MDMemoryDescriptor>,
    pub process_inspector: ProcessInspector,
}

#[derive(Debug, Clone)]
pub struct Thread {
    pub tid: Pid,
    pub name: Option<String>,
}

#[derive(Debug, Default)]
pub enum CrashingThreadContext {
    #[default]
    None,
    CrashContext(MDLocationDescriptor),
    CrashContextPlusAddress((MDLocationDescriptor, usize)),
}

impl MinidumpWriterConfig {
    pub fn new(process_id: Pid, blamed_thread: Pid) -> Self {
        Self {
            process_id,
            blamed_thread,
            minidump_size_limit: Default::default(),
            skip_stacks_if_mapping_unreferenced: Default::default(),
            principal_mapping_address: Default::default(),
            user_mapping_list: Default::default(),
            app_memory: Default::default(),
            memory_blocks: Default::default(),
            principal_mapping: Default::default(),
            sanitize_stack: Default::default(),
            crash_context: Default::default(),
            crashing_thread_context: Default::default(),
            stop_timeout: STOP_TIMEOUT,
            direct_auxv_dump_info: Default::default(),
            process_inspector: ProcessInspector::local(process_id),
        }
    }

    pub fn set_minidump_size_limit(&mut self, limit: u64) -> &mut Self {
        self.minidump_size_limit = Some(limit);
        self
    }

    pub fn set_user_mapping_list(&mut self, user_mapping_list: MappingList) -> &mut Self {
        self.user_mapping_list = user_mapping_list;
        self
    }

    pub fn set_principal_mapping_address(&mut self, principal_mapping_address: usize) -> &mut Self {
        self.principal_mapping_address = Some(principal_mapping_address);
        self
    }

    pub fn set_app_memory(&mut self, app_memory: AppMemoryList) -> &mut Self {
        self.app_memory = app_memory;
        self
    }

    pub fn set_crash_context(&mut self, crash_context: CrashContextExt) -> &mut Self {
        self.crash_context = Some(crash_context);
        self
    }

    pub fn skip_stacks_if_mapping_unreferenced(&mut self) -> &mut Self {
        self.skip_stacks_if_mapping_unreferenced = true; // Off by default
        self
    }

    pub fn sanitize_stack(&mut self) -> &mut Self {
        self.sanitize_stack = true; // Off by default
        self
    }

    /// Sets the timeout after `SIGSTOP` is sent to the process, if the process
    /// has not stopped by the time the timeout has reached, we proceed with
    /// minidump generation
    ///
    /// crashmon patch: no effect (the process is not SIGSTOPped; its
    /// threads are seized and interrupted).
    pub fn stop_timeout(&mut self, duration: Duration) -> &mut Self {
        self.stop_timeout = duration;
        self
    }

    /// Directly set important Auxv info determined by the crashing process
    ///
    /// Since `/proc/{pid}/auxv` can sometimes be inaccessible, the calling process should prefer to transfer this
    /// information directly using the Linux `getauxval()` call (if possible).
    ///
    /// Any field that is set to `0` will be considered unset. In that case, minidump-writer might try other techniques
    /// to obtain it (like reading `/proc/{pid}/auxv`).
    pub fn set_direct_auxv_dump_info(
        &mut self,
        direct_auxv_dump_info: DirectAuxvDumpInfo,
    ) -> &mut Self {
        self.direct_auxv_dump_info = Some(direct_auxv_dump_info);
        self
    }
    /// Generates a minidump and writes to the destination provided. Returns the in-memory
    /// version of the minidump as well.
    pub fn write(self, destination: &mut (impl Write + Seek)) -> Result<Vec<u8>, WriterError> {
        let mut soft_errors = ErrorList::default();

        let mut writer = self.build();
        writer.init(soft_errors.subwriter(WriterError::InitErrors))?;

        let mut buffer = Buffer::with_capacity(0);
        writer.write_dump(&mut buffer, destination, soft_errors)?;
        Ok(buffer.into())
    }
    /// Allows testing code to inspect the pre-output state of the MinidumpWriter
    pub fn build_for_testing(
        self,
        soft_errors: impl WriteErrorList<InitError>,
    ) -> Result<MinidumpWriter, InitError> {
        let mut writer = self.build();
        writer.init(soft_errors)?;
        Ok(writer)
    }
    fn build(self) -> MinidumpWriter {
        let auxv = self
            .direct_auxv_dump_info
            .map(AuxvDumpInfo::from)
            .unwrap_or_default();

        MinidumpWriter {
            process_id: self.process_id,
            threads_suspended: Default::default(),
            pending_signals: Default::default(),
            unstopped: Default::default(),
            regs_at_stop: Default::default(),
            maps_text: None,
            threads: Default::default(),
            auxv,
            mappings: Default::default(),
            page_size: Default::default(),
            sanitize_stack: self.sanitize_stack,
            minidump_size_limit: self.minidump_size_limit,
            user_mapping_list: self.user_mapping_list,
            crashing_thread_context: self.crashing_thread_context,
            skip_stacks_if_mapping_unreferenced: self.skip_stacks_if_mapping_unreferenced,
            principal_mapping_address: self.principal_mapping_address,
            principal_mapping: self.principal_mapping,
            blamed_thread: self.blamed_thread,
            crash_context: self.crash_context,
            app_memory: self.app_memory,
            memory_blocks: self.memory_blocks,
            process_inspector: self.process_inspector,
        }
    }
}

impl MinidumpWriter {
    // TODO: late_init for chromeos and android
    fn init(&mut self, mut soft_errors: impl WriteErrorList<InitError>) -> Result<(), InitError> {
        if self.process_id == std::process::id() as i32 {
            return Err(InitError::CannotPtraceSameProcess);
        }

        // crashmon patch: the process is not SIGSTOPped; its threads are
        // seized and interrupted all at once in `suspend_threads`.

        // Even if we completely fail to fill in any additional Auxv info, we can still press
        // forward.
        if let Err(e) = self.auxv.try_filling_missing_info(
            &self.process_inspector,
            self.process_id,
            soft_errors.subwriter(InitError::FillMissingAuxvInfoErrors),
        ) {
            soft_errors.push(InitError::FillMissingAuxvInfoFailed(e));
        }

        // If we completely fail to enumerate any threads... Some information is still better than
        // no information!
        if let Err(e) =
            self.enumerate_threads(soft_errors.subwriter(InitError::EnumerateThreadsErrors))
        {
            soft_errors.push(InitError::EnumerateThreadsFailed(Box::new(e)));
        }

        self.page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE).try_into().unwrap() };
        assert!(
            self.page_size > 0,
            "somehow we weren't able to get the page size - should never happen"
        );

        let threads_count = self.threads.len();

        self.suspend_threads(soft_errors.subwriter(InitError::SuspendThreadsErrors));

        if self.threads.is_empty() {
            soft_errors.push(InitError::SuspendNoThreadsLeft(threads_count));
        }

        // Same with mappings -- Some information is still better than no information!
        // (crashmon patch: read once every thread is stopped, since the
        // process itself is not SIGSTOPped.)
        if let Err(e) = self.enumerate_mappings() {
            soft_errors.push(InitError::EnumerateMappingsFailed(Box::new(e)));
        }

        #[cfg(target_os = "android")]
        {
            late_process_mappings(&self.process_inspector, &mut self.mappings)?;
        }

        if self.skip_stacks_if_mapping_unreferenced {
            if let Some(address) = self.principal_mapping_address {
                self.principal_mapping = self.find_mapping_no_bias(address).cloned();
            }

            if !self.crash_thread_references_principal_mapping() {
                soft_errors.push(InitError::PrincipalMappingNotReferenced);
            }
        }

        Ok(())
    }
    /// Generates a minidump and writes to the destination provided. Returns the in-memory
    /// version of the minidump as well.
    fn write_dump(
        &mut self,
        buffer: &mut DumpBuf,
        destination: &mut (impl Write + Seek),
        mut soft_errors: ErrorList<WriterError>,
    ) -> Result<(), WriterError> {
        // A minidump file contains a number of tagged streams. This is the number
        // of streams which we write.
        let num_writers = 18u32;

        let mut header_section = MemoryWriter::<MDRawHeader>::alloc(buffer)?;

        let mut dir_section = DirSection::new(buffer, num_writers, destination)?;

        let header = MDRawHeader {
            signature: MD_HEADER_SIGNATURE,
            version: MD_HEADER_VERSION,
            stream_count: num_writers,
            //   header.get()->stream_directory_rva = dir.position();
            stream_directory_rva: dir_section.position(),
            checksum: 0, /* Can be 0.  In fact, that's all that's
                          * been found in minidump files. */
            time_date_stamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as u32, // TODO: This is not Y2038 safe, but thats how its currently defined as
            flags: 0,
        };
        header_section.set_value(buffer, header)?;

        // Ensure the header gets flushed. If we crash somewhere below,
        // we should have a mostly-intact dump
        dir_section.write_to_file(buffer, None)?;

        // (On an early return below the names thread is left to finish on
        // its own: it owns what it reads.)
        let names = self.start_thread_names();
        let dirent = self.write_thread_list_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let dirent = self.write_mappings(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        self.write_app_memory(buffer)
            .map_err(WriterError::SectionAppMemoryError)?;
        dir_section.write_to_file(buffer, None)?;

        let dirent = self.write_memory_list_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let dirent = self.write_exception_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        // crashmon patch: the machine as read once per process (`machine`).
        // Only a machine read just now, and not kept, can carry errors.
        let (machine, cpu_error) = match std::sync::Arc::try_unwrap(machine::current()) {
            Ok(mut fresh) => {
                let cpu_error = fresh.cpu_error.take();
                (std::sync::Arc::new(fresh), cpu_error)
            }
            Err(shared) => (shared, None),
        };
        let dirent = systeminfo_stream::write_from(
            buffer,
            &machine,
            cpu_error,
            soft_errors.subwriter(WriterError::WriteSystemInfoErrors),
        )?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let dirent = self.write_memory_info_list_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let mut proc_root = {
            let mut pr = String::with_capacity(24);
            use std::fmt::Write;
            write!(&mut pr, "/proc/{}/", self.blamed_thread).unwrap(); // infallbile barring OOM
            pr
        };

        macro_rules! file_entry {
            (res $write:expr, $kind:ident, $err:ident) => {
                let dirent = match $write {
                    Ok(location) => MDRawDirectory {
                        stream_type: MDStreamType::$kind as u32,
                        location,
                    },
                    Err(e) => {
                        soft_errors.push(WriterError::$err(e));
                        Default::default()
                    }
                };
                dir_section.write_to_file(buffer, Some(dirent))?;
            };
            ($fname:literal, $kind:ident, $err:ident) => {
                let trunc = proc_root.len();
                proc_root.push_str($fname);

                file_entry!(res write_file(&self.process_inspector, buffer, &proc_root), $kind, $err);

                proc_root.truncate(trunc);
            };
        }

        file_entry!(
            res write_read(buffer, &machine.cpuinfo),
            LinuxCpuInfo,
            WriteCpuInfoFailed
        );
        file_entry!("status", LinuxProcStatus, WriteThreadProcStatusFailed);

        // Unfortunately neither of these files exist on Android, and there doesn't seem
        // to be a way to read equivalent information from elsewhere on the file system
        #[cfg(not(target_os = "android"))]
        {
            file_entry!(
                res write_read(buffer, &machine.os_release),
                LinuxLsbRelease,
                WriteOsReleaseInfoFailed
            );
        }

        file_entry!("cmdline", LinuxCmdLine, WriteCommandLineFailed);
        file_entry!("environ", LinuxEnviron, WriteEnvironmentFailed);
        file_entry!("auxv", LinuxAuxv, WriteEnvironmentFailed);
        match self.maps_text.take() {
            Some(text) => {
                let section = MemoryArrayWriter::write_bytes(buffer, &text);
                file_entry!(res Ok::<_, MemoryWriterError>(section.location()), LinuxMaps, WriteMapsFailed);
            }
            None => {
                file_entry!("maps", LinuxMaps, WriteMapsFailed);
            }
        }

        let dirent =
            match dso_debug::write_dso_debug_stream(&self.process_inspector, buffer, &self.auxv) {
                Ok(dirent) => dirent,
                Err(e) => {
                    soft_errors.push(WriterError::WriteDSODebugStreamFailed(e));
                    Default::default()
                }
            };
        dir_section.write_to_file(buffer, Some(dirent))?;

        file_entry!("limits", MozLinuxLimits, WriteLimitsFailed);

        self.finish_thread_names(names);
        let dirent = self.write_thread_names_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let dirent = match self.write_handle_data_stream(buffer) {
            Ok(dirent) => dirent,
            Err(e) => {
                soft_errors.push(WriterError::WriteHandleDataStreamFailed(e));
                Default::default()
            }
        };
        dir_section.write_to_file(buffer, Some(dirent))?;

        // If this fails, there's really nothing we can do about that (other than ignore it).
        let dirent = write_soft_errors(buffer, soft_errors)
            .map(|location| MDRawDirectory {
                stream_type: MDStreamType::MozSoftErrors as u32,
                location,
            })
            .unwrap_or_default();
        dir_section.write_to_file(buffer, Some(dirent))?;

        // If you add more directory entries, don't forget to update num_writers, above.
        Ok(())
    }

    fn crash_thread_references_principal_mapping(&self) -> bool {
        if self.crash_context.is_none() || self.principal_mapping.is_none() {
            return false;
        }

        let low_addr = self
            .principal_mapping
            .as_ref()
            .unwrap()
            .system_mapping_info
            .start_address;
        let high_addr = self
            .principal_mapping
            .as_ref()
            .unwrap()
            .system_mapping_info
            .end_address;

        let pc = self
            .crash_context
            .as_ref()
            .unwrap()
            .get_instruction_pointer();
        let stack_pointer = self.crash_context.as_ref().unwrap().get_stack_pointer();

        if pc >= low_addr && pc < high_addr {
            return true;
        }

        let (valid_stack_pointer, stack_len) = match self.get_stack_info(stack_pointer) {
            Ok(x) => x,
            Err(_) => {
                return false;
            }
        };

        let stack_copy = match MinidumpWriter::copy_from_process(
            &self.process_inspector,
            valid_stack_pointer,
            stack_len,
        ) {
            Ok(x) => x,
            Err(_) => {
                return false;
            }
        };

        let sp_offset = stack_pointer.saturating_sub(valid_stack_pointer);
        self.principal_mapping
            .as_ref()
            .unwrap()
            .stack_has_pointer_to_mapping(&stack_copy, sp_offset)
    }

    /// Whether a stopped thread runs trusted seccomp-sandbox code, which
    /// is left out of the dump: on x86 its stack pointer is NULL or -1.
    /// Such a thread is detached at once.
    fn skip_sandbox_thread(&mut self, tid: Pid) -> bool {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            // On x86, the stack pointer is NULL or -1, when executing trusted code in
            // the seccomp sandbox. Not only does this cause difficulties down the line
            // when trying to dump the thread's stack, it also results in the minidumps
            // containing information about the trusted threads. This information is
            // generally completely meaningless and just pollutes the minidumps.
            // We thus test the stack pointer and exclude any threads that are part of
            // the seccomp sandbox's trusted code.
            match self.process_inspector.get_gen_regs(tid) {
                Ok(regs) => {
                    #[cfg(target_arch = "x86_64")]
                    let sp = regs.rsp;
                    #[cfg(target_arch = "x86")]
                    let sp = regs.esp;
                    self.regs_at_stop.insert(tid, regs);
                    sp == 0
                }
                Err(_) => true,
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        {
            let _ = tid;
            false
        }
    }

    /// crashmon patch: seize every thread (PTRACE_SEIZE, no stop), then
    /// interrupt them all (PTRACE_INTERRUPT), then wait for each stop, so
    /// the threads stop concurrently instead of one attach-and-wait at a
    /// time. Threads that appeared meanwhile are found by listing
    /// `/proc/PID/task` again and suspended the same way, until a listing
    /// shows no new thread. A thread that had a signal pending reports a
    /// signal-delivery stop; that signal is given back at detach.
    fn suspend_threads(&mut self, mut soft_errors: impl WriteErrorList<WriterError>) {
        let mut candidates: Vec<Thread> = std::mem::take(&mut self.threads);
        let mut seen: std::collections::HashSet<Pid> = candidates.iter().map(|t| t.tid).collect();
        // crashmon patch: one deadline for the whole suspension (a round
        // that started after it still gives its threads 10 ms).
        let overall = std::time::Instant::now() + THREAD_STOP_WAIT;
        // Bounded: a process spawning threads as fast as we stop them.
        for _round in 0..16 {
            // Whether every thread of this round was seized and stopped.
            let mut all_stopped = true;
            let mut seized = Vec::with_capacity(candidates.len());
            for thread in candidates.drain(..) {
                match self.process_inspector.seize_thread(thread.tid) {
                    Ok(()) => seized.push(thread),
                    Err(e) => {
                        all_stopped = false;
                        soft_errors.push(WriterError::SuspendThreadFailed(e));
                    }
                }
            }
            let mut interrupted = Vec::with_capacity(seized.len());
            for thread in seized {
                match self.process_inspector.interrupt_thread(thread.tid) {
                    Ok(()) => interrupted.push(thread),
                    Err(e) => {
                        // Gone (ESRCH); a seized thread that exits needs no detach.
                        all_stopped = false;
                        soft_errors.push(WriterError::SuspendThreadFailed(e));
                    }
                }
            }
            let deadline = overall.max(std::time::Instant::now() + std::time::Duration::from_millis(10));
            for thread in interrupted {
                match self.process_inspector.wait_thread_stop(thread.tid, deadline) {
                    Ok(None) => {
                        all_stopped = false;
                        self.unstopped.push(thread.tid);
                        log::warn!(
                            "thread {} did not stop within {THREAD_STOP_WAIT:?} (a killable or uninterruptible wait); left out of the dump",
                            thread.tid
                        );
                        soft_errors.push(WriterError::ThreadDidNotStop(thread.tid));
                    }
                    Ok(Some(signal)) => {
                        if signal != 0 {
                            self.pending_signals.push((thread.tid, signal));
                        }
                        if self.skip_sandbox_thread(thread.tid) {
                            all_stopped = false;
                            let _ = self.process_inspector.detach_thread(thread.tid, signal);
                            soft_errors.push(WriterError::DetachSkippedThread(thread.tid));
                        } else {
                            self.threads.push(thread);
                        }
                    }
                    // It exited meanwhile.
                    Err(e) => {
                        all_stopped = false;
                        soft_errors.push(WriterError::SuspendThreadFailed(e));
                    }
                }
            }
            self.threads_suspended = true;
            // A thread stopped by us stays counted in the process's
            // num_threads until we detach it or reap it (one killed while
            // stopped stays a zombie, counted, until its tracer reaps it),
            // and `self.threads` holds only such threads. So when every
            // candidate was stopped and the count equals ours, there is no
            // thread we do not hold: one small read instead of listing
            // /proc/PID/task again (~3.4 us per thread). Any failure
            // (a thread that exited, one we could not seize, a sandbox
            // thread let go) lists again, as before.
            if all_stopped && self.process_thread_count() == Some(self.threads.len()) {
                break;
            }
            // Threads created after the last listing run untraced: list again.
            let task_path = format!("/proc/{}/task", self.process_id);
            let Ok(dir) = self.process_inspector.read_dir(&task_path) else {
                break;
            };
            for name in dir.flatten() {
                let Some(tid) = name.to_str().and_then(|n| n.parse::<Pid>().ok()) else {
                    continue;
                };
                if seen.insert(tid) {
                    candidates.push(Thread { tid, name: None });
                }
            }
            if candidates.is_empty() {
                break;
            }
        }

        failspot::failspot!(<crate::FailSpotName>::SuspendThreads soft_errors.push(WriterError::PtraceAttachError(1234, libc::EPERM)))
    }

    fn resume_threads(&mut self, mut soft_errors: impl WriteErrorList<WriterError>) {
        // crashmon patch: a thread that stopped since its deadline is let
        // go; one still in its wait stays traced (and would stop when the
        // wait ends) until the thread that seized it ends: the kernel then
        // lets it go. The monitor captures on a thread that ends with the
        // capture.
        for tid in std::mem::take(&mut self.unstopped) {
            match self.process_inspector.wait_thread_stop(tid, std::time::Instant::now()) {
                Ok(Some(signal)) => {
                    if let Err(e) = self.process_inspector.detach_thread(tid, signal) {
                        soft_errors.push(WriterError::ResumeThreadFailed(e));
                    }
                }
                // (A soft error here would come after the soft errors were
                // written: logged instead.)
                Ok(None) => log::warn!(
                    "thread {tid} has still not stopped; it stays traced until the dumping thread ends"
                ),
                // It exited.
                Err(_) => {}
            }
        }
        if self.threads_suspended {
            for thread in &self.threads {
                let signal = self
                    .pending_signals
                    .iter()
                    .find(|(tid, _)| *tid == thread.tid)
                    .map_or(0, |&(_, signal)| signal);
                if let Err(e) = self.process_inspector.detach_thread(thread.tid, signal) {
                    soft_errors.push(WriterError::ResumeThreadFailed(e));
                }
            }
        }
        self.threads_suspended = false;
    }

    /// crashmon patch: the number of threads of the process (field 20 of
    /// `/proc/PID/stat`), `None` if it cannot be read.
    /// (Read directly, not through `process_inspector`, like the threads'
    /// names.)
    fn process_thread_count(&self) -> Option<usize> {
        let mut file = std::fs::File::open(format!("/proc/{}/stat", self.process_id)).ok()?;
        let mut buf = [0u8; 1024];
        let n = file.read(&mut buf).ok()?;
        // The command name (field 2) may hold spaces, parentheses and
        // bytes that are not UTF-8; the fields after it start after the
        // last ')'. num_threads is the 18th of them.
        let after_comm = buf[..n].iter().rposition(|&b| b == b')')? + 1;
        let rest = std::str::from_utf8(&buf[after_comm..n]).ok()?;
        rest.split_ascii_whitespace().nth(17)?.parse().ok()
    }

    /// crashmon patch: starts reading the threads' names. With many
    /// threads they are read on a second thread, while this one writes the
    /// thread list (an open, read and close of /proc per thread, ~13 us;
    /// the app is stopped meanwhile, so a CPU is free); collect them with
    /// [`Self::finish_thread_names`].
    fn start_thread_names(&mut self) -> Option<std::thread::JoinHandle<Vec<(Pid, Option<String>)>>> {
        const IN_PARALLEL_FROM: usize = 8;
        let pid = self.process_id;
        let tids: Vec<Pid> = self
            .threads
            .iter()
            .filter(|t| t.name.is_none())
            .map(|t| t.tid)
            .collect();
        if tids.len() >= IN_PARALLEL_FROM {
            let handle = std::thread::Builder::new()
                .name("thread-names".into())
                .spawn(move || {
                    tids.into_iter()
                        .map(|tid| (tid, read_thread_name(pid, tid).ok()))
                        .collect()
                });
            if let Ok(handle) = handle {
                return Some(handle);
            }
        }
        for thread in self.threads.iter_mut().filter(|t| t.name.is_none()) {
            thread.name = read_thread_name(pid, thread.tid).ok();
        }
        None
    }

    fn finish_thread_names(
        &mut self,
        reader: Option<std::thread::JoinHandle<Vec<(Pid, Option<String>)>>>,
    ) {
        let Some(names) = reader.and_then(|handle| handle.join().ok()) else {
            return;
        };
        let names: std::collections::HashMap<Pid, Option<String>> = names.into_iter().collect();
        for thread in &mut self.threads {
            if let Some(name) = names.get(&thread.tid) {
                thread.name.clone_from(name);
            }
        }
    }

    /// Parse /proc/$pid/task to list all the threads of the process identified by
    /// pid.
    fn enumerate_threads(
        &mut self,
        mut soft_errors: impl WriteErrorList<InitError>,
    ) -> Result<(), InitError> {
        let pid = self.process_id;
        let task_path = format!("/proc/{pid}/task");

        for file_name in self
            .process_inspector
            .read_dir(&task_path)
            .map_err(InitError::ReadProcTaskFailed)?
        {
            let file_name = match file_name {
                Ok(file_name) => file_name,
                Err(e) => {
                    soft_errors.push(InitError::ReadProcessThreadEntryFailed(e));
                    continue;
                }
            };
            let tid = match file_name.to_str().and_then(|name| name.parse::<Pid>().ok()) {
                Some(tid) => tid,
                None => {
                    soft_errors.push(InitError::ProcessTaskEntryNotTid(file_name));
                    continue;
                }
            };

            // crashmon patch: names are read while the dump is written
            // (`start_thread_names`), not before the threads are stopped.
            let name = None;

            self.threads.push(Thread { tid, name });
        }

        Ok(())
    }

    fn enumerate_mappings(&mut self) -> Result<(), InitError> {
        // linux_gate_loc is the beginning of the kernel's mapping of
        // linux-gate.so in the process.  It doesn't actually show up in the
        // maps list as a filename, but it can be found using the AT_SYSINFO_EHDR
        // aux vector entry, which gives the information necessary to special
        // case its entry when creating the list of mappings.
        // See http://www.trilithium.com/johan/2005/08/linux-gate/ for more
        // information.
        // crashmon patch: the text is kept for the LinuxMaps stream; if it
        // cannot be read here, the original path reads it (and the stream
        // reads it again). Read through the blamed thread, as the stream
        // always was: the group leader's maps read empty once the main
        // thread has called pthread_exit.
        let maps_text = self
            .process_inspector
            .read_file(format!("/proc/{}/task/{}/maps", self.process_id, self.blamed_thread))
            .ok()
            .and_then(|mut file| {
                let mut text = Vec::new();
                file.read_to_end(&mut text).ok().map(|_| text)
            });
        self.mappings = match &maps_text {
            Some(text) => MappingInfo::from_maps_text(text, self.auxv.get_linux_gate_address()),
            None => MappingInfo::for_pid(
                &self.process_inspector,
                self.process_id,
                self.auxv.get_linux_gate_address(),
            ),
        }
        .map_err(InitError::AggregateMappingsFailed)?;
        self.maps_text = maps_text;

        // Although the initial executable is usually the first mapping, it's not
        // guaranteed (see http://crosbug.com/25355); therefore, try to use the
        // actual entry point to find the mapping.
        if let Some(entry_point_loc) = self
            .auxv
            .get_entry_address()
            .map(|u| usize::try_from(u).unwrap())
        {
            // If this module contains the entry-point, and it's not already the first
            // one, then we need to make it be first.  This is because the minidump
            // format assumes the first module is the one that corresponds to the main
            // executable (as codified in
            // processor/minidump.cc:MinidumpModuleList::GetMainModule()).
            if let Some(entry_mapping_idx) = self.mappings.iter().position(|mapping| {
                (mapping.start_address..mapping.start_address + mapping.size)
                    .contains(&entry_point_loc)
            }) {
                self.mappings.swap(0, entry_mapping_idx);
            }
        }
        Ok(())
    }

    /// Read thread info from /proc/$pid/status.
    /// Fill out the |tgid|, |ppid| and |pid| members of |info|. If unavailable,
    /// these members are set to -1. Returns true if all three members are
    /// available.
    pub fn get_thread_info_by_index(&self, index: usize) -> Result<ThreadInfo, ThreadInfoError> {
        if index > self.threads.len() {
            return Err(ThreadInfoError::IndexOutOfBounds(index, self.threads.len()));
        }

        let tid = self.threads[index].tid;
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            ThreadInfo::create_with_regs(
                &self.process_inspector,
                tid,
                self.regs_at_stop.get(&tid).copied(),
            )
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        {
            ThreadInfo::create(&self.process_inspector, tid)
        }
    }

    // Returns a valid stack pointer and the mapping that contains the stack.
    // The stack pointer will usually point within this mapping, but it might
    // not in case of stack overflows, hence the returned pointer might be
    // different from the one that was passed in.
    pub fn get_stack_info(&self, int_stack_pointer: usize) -> Result<(usize, usize), WriterError> {
        // Round the stack pointer to the nearest page, this will cause us to
        // capture data below the stack pointer which might still be relevant.
        let mut stack_pointer = int_stack_pointer & !(self.page_size - 1);
        let mut mapping = self.find_mapping(stack_pointer);

        // The guard page has been 1 MiB in size since kernel 4.12, older
        // kernels used a 4 KiB one instead. Note the saturating add, as 32-bit
        // processes can have a stack pointer within 1MiB of usize::MAX
        let guard_page_max_addr = stack_pointer.saturating_add(1024 * 1024);

        // If we found no mapping, or the mapping we found has no permissions
        // then we might have hit a guard page, try looking for a mapping in
        // addresses past the stack pointer. Stack grows towards lower addresses
        // on the platforms we care about so the stack should appear after the
        // guard page.
        // crashmon patch: the walk ends at the top of the address space
        // (a corrupt stack pointer near usize::MAX made upstream's `+=`
        // wrap around to 0 and walk the whole address space, the app
        // stopped meanwhile).
        while !Self::may_be_stack(mapping) {
            match stack_pointer.checked_add(self.page_size) {
                Some(next) if next <= guard_page_max_addr => stack_pointer = next,
                _ => break,
            }
            mapping = self.find_mapping(stack_pointer);
        }

        mapping
            .map(|mapping| {
                let valid_stack_pointer = if mapping.contains_address(stack_pointer) {
                    stack_pointer
                } else {
                    mapping.start_address
                };

                let stack_len = mapping.size - (valid_stack_pointer - mapping.start_address);
                (valid_stack_pointer, stack_len)
            })
            .ok_or(WriterError::NoStackPointerMapping)
    }

    fn may_be_stack(mapping: Option<&MappingInfo>) -> bool {
        if let Some(mapping) = mapping {
            return mapping
                .permissions
                .intersects(MMPermissions::READ | MMPermissions::WRITE);
        }

        false
    }

    pub fn sanitize_stack_copy(
        &self,
        stack_copy: &mut [u8],
        stack_pointer: usize,
        sp_offset: usize,
    ) -> Result<(), WriterError> {
        // We optimize the search for containing mappings in three ways:
        // 1) We expect that pointers into the stack mapping will be common, so
        //    we cache that address range.
        // 2) The last referenced mapping is a reasonable predictor for the next
        //    referenced mapping, so we test that first.
        // 3) We precompute a bitfield based upon bits 32:32-n of the start and
        //    stop addresses, and use that to short circuit any values that can
        //    not be pointers. (n=11)
        let defaced;
        #[cfg(target_pointer_width = "64")]
        {
            defaced = 0x0defaced0defacedusize.to_ne_bytes();
        }
        #[cfg(target_pointer_width = "32")]
        {
            defaced = 0x0defacedusize.to_ne_bytes();
        };
        // the bitfield length is 2^test_bits long.
        let test_bits = 11;
        // byte length of the corresponding array.
        let array_size: usize = 1 << (test_bits - 3);
        let array_mask = array_size - 1;
        // The amount to right shift pointers by. This captures the top bits
        // on 32 bit architectures. On 64 bit architectures this would be
        // uninformative so we take the same range of bits.
        let shift = 32 - 11;
        // let MappingInfo* last_hit_mapping = nullptr;
        // let MappingInfo* hit_mapping = nullptr;
        let stack_mapping = self.find_mapping_no_bias(stack_pointer);
        let mut last_hit_mapping: Option<&MappingInfo> = None;
        // The magnitude below which integers are considered to be to be
        // 'small', and not constitute a PII risk. These are included to
        // avoid eliding useful register values.
        let small_int_magnitude: isize = 4096;

        let mut could_hit_mapping = vec![0; array_size];
        // Initialize the bitfield such that if the (pointer >> shift)'th
        // bit, modulo the bitfield size, is not set then there does not
        // exist a mapping in mappings that would contain that pointer.
        for mapping in &self.mappings {
            if !mapping.is_executable() {
                continue;
            }
            // For each mapping, work out the (unmodulo'ed) range of bits to
            // set.
            let mut start = mapping.start_address;
            let mut end = start + mapping.size;
            start >>= shift;
            end >>= shift;
            for bit in start..=end {
                // Set each bit in the range, applying the modulus.
                could_hit_mapping[(bit >> 3) & array_mask] |= 1 << (bit & 7);
            }
        }

        // Zero memory that is below the current stack pointer.
        let offset =
            (sp_offset + std::mem::size_of::<usize>() - 1) & !(std::mem::size_of::<usize>() - 1);
        for x in &mut stack_copy[0..offset] {
            *x = 0;
        }
        let mut chunks = stack_copy[offset..].chunks_exact_mut(std::mem::size_of::<usize>());

        // Apply sanitization to each complete pointer-aligned word in the
        // stack.
        for sp in &mut chunks {
            let addr = usize::from_ne_bytes(sp.to_vec().as_slice().try_into()?);
            let addr_signed = isize::from_ne_bytes(sp.to_vec().as_slice().try_into()?);

            if addr <= small_int_magnitude as usize && addr_signed >= -small_int_magnitude {
                continue;
            }

            if let Some(stack_map) = stack_mapping
                && stack_map.contains_address(addr)
            {
                continue;
            }
            if let Some(last_hit) = last_hit_mapping
                && last_hit.contains_address(addr)
            {
                continue;
            }

            let test = addr >> shift;
            if (could_hit_mapping[(test >> 3) & array_mask] & (1 << (test & 7)) != 0)
                && let Some(hit_mapping) = self.find_mapping_no_bias(addr)
                && hit_mapping.is_executable()
            {
                last_hit_mapping = Some(hit_mapping);
                continue;
            }
            sp.copy_from_slice(&defaced);
        }
        // Zero any partial word at the top of the stack, if alignment is
        // such that that is required.
        for sp in chunks.into_remainder() {
            *sp = 0;
        }
        Ok(())
    }

    // Find the mapping which the given memory address falls in.
    pub fn find_mapping(&self, address: usize) -> Option<&MappingInfo> {
        self.mappings
            .iter()
            .find(|map| address >= map.start_address && address - map.start_address < map.size)
    }

    // Find the mapping which the given memory address falls in. Uses the
    // unadjusted mapping address range from the kernel, rather than the
    // biased range.
    pub fn find_mapping_no_bias(&self, address: usize) -> Option<&MappingInfo> {
        self.mappings.iter().find(|map| {
            address >= map.system_mapping_info.start_address
                && address < map.system_mapping_info.end_address
        })
    }

    pub fn build_id_from_process_memory_for_index(
        &mut self,
        idx: usize,
    ) -> Result<Vec<u8>, WriterError> {
        let reader = self.process_inspector.process_reader();
        module_reader::read_build_id_from_module(module_reader::ProcessModuleMemoryReader::new(
            &reader,
            self.mappings[idx].start_address,
        ))
        .map_err(WriterError::ModuleReaderError)
    }

    pub fn soname_from_process_memory_for_index(
        &mut self,
        idx: usize,
    ) -> Result<String, WriterError> {
        let reader = self.process_inspector.process_reader();
        module_reader::read_soname_from_module(module_reader::ProcessModuleMemoryReader::new(
            &reader,
            self.mappings[idx].start_address,
        ))
        .map_err(WriterError::ModuleReaderError)
    }

    /// Copies a block of bytes from the target process, returning the heap
    /// allocated copy
    #[inline]
    pub fn copy_from_process(
        process_inspector: &ProcessInspector,
        src: usize,
        length: usize,
    ) -> Result<Vec<u8>, CopyFromProcessError> {
        let length =
            std::num::NonZeroUsize::new(length).ok_or(CopyFromProcessError::InvalidArgument)?;
        let mem = process_inspector.process_reader();
        mem.read_to_vec(src, length)
    }
}

impl Drop for MinidumpWriter {
    fn drop(&mut self) {
        // Always try to resume all threads (e.g. in case of error)
        // (crashmon patch: the process was never SIGSTOPped, so no SIGCONT.)
        self.resume_threads(error_graph::strategy::DontCare);
    }
}

fn write_file(
    process_inspector: &ProcessInspector,
    buffer: &mut DumpBuf,
    filename: &str,
) -> std::result::Result<MDLocationDescriptor, MemoryWriterError> {
    let content = process_inspector
        .read_file(filename)
        .map_err(std::io::Error::other)
        .and_then(|mut file| {
            let mut v = Vec::new();
            file.read_to_end(&mut v)?;
            Ok(v)
        })?;

    let section = MemoryArrayWriter::write_bytes(buffer, &content);
    Ok(section.location())
}

/// crashmon patch: `write_file` for bytes read before (`machine`).
fn write_read(
    buffer: &mut DumpBuf,
    read: &std::io::Result<Vec<u8>>,
) -> std::result::Result<MDLocationDescriptor, MemoryWriterError> {
    let bytes = read.as_ref().map_err(machine::copy_io_error)?;
    let section = MemoryArrayWriter::write_bytes(buffer, bytes);
    Ok(section.location())
}

fn write_soft_errors(
    buffer: &mut DumpBuf,
    soft_errors: ErrorList<WriterError>,
) -> Result<MDLocationDescriptor, WriterError> {
    let soft_errors_json_str =
        serde_json::to_string_pretty(&soft_errors).map_err(WriterError::ConvertToJsonFailed)?;
    let section = MemoryArrayWriter::write_bytes(buffer, soft_errors_json_str.as_bytes());
    Ok(section.location())
}

/// The name of thread `tid` of process `pid` (`/proc/PID/task/TID/comm`).
/// (crashmon patch: one `read`; a comm is at most 16 bytes.)
fn read_thread_name(pid: Pid, tid: Pid) -> std::io::Result<String> {
    let mut file = std::fs::File::open(format!("/proc/{pid}/task/{tid}/comm"))?;
    let mut buf = [0u8; 64];
    let n = file.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
}
