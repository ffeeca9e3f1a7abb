//! Reading a dump, running `minidump-processor` with the local debug info of
//! the verified modules, and turning its `ProcessState` into a [`Report`].

use minidump::system_info::Cpu;
use std::path::{Path, PathBuf};

use minidump::{
    Minidump, MinidumpException, MinidumpModule, MinidumpModuleList, MinidumpSystemInfo, MinidumpThreadList, Module,
};
use minidump_processor::{ProcessState, ProcessorOptions};
use minidump_unwind::{CallStack, FrameTrust, StackFrame};

use crate::cache::SymbolCache;
use crate::error::SymbolicateError;
use crate::locate::{Located, Locator, SymbolFile};
use crate::mapped::MappedElf;
use crate::provider::{CacheStats, ModuleSymbols, Provider};
use crate::report::{CrashSummary, FrameReport, ModuleReport, Report, SystemSummary, ThreadReport};
use crate::server::ServerClient;
use crate::signature;
use crate::{Options, PendingTables, SCHEMA_VERSION};

type Dump = Minidump<'static, Vec<u8>>;

/// See [`crate::symbolicate_path`].
pub(crate) fn symbolicate_path(
    path: &Path,
    options: &Options,
) -> Result<(Report, CacheStats, PendingTables), SymbolicateError> {
    let started = std::time::Instant::now();
    let bytes = std::fs::read(path).map_err(|source| SymbolicateError::Read { path: path.to_owned(), source })?;
    let len = bytes.len();
    let dump = Minidump::read(bytes).map_err(|e| read_error(path, len, e))?;
    check_bounds(&dump, len).map_err(|reason| SymbolicateError::Damaged { path: path.to_owned(), reason })?;

    let damaged = |what: &str, e: minidump::Error| SymbolicateError::Damaged {
        path: path.to_owned(),
        reason: format!("cannot read its {what}: {e}"),
    };
    let system_info: MinidumpSystemInfo = dump.get_stream().map_err(|e| damaged("system info stream", e))?;
    if !matches!(system_info.cpu, Cpu::X86_64 | Cpu::Arm64) {
        // DebugInfoSymbolProvider has no unwinder for other CPUs (it would
        // panic with `unimplemented!()`).
        return Err(SymbolicateError::UnsupportedCpu { path: path.to_owned(), cpu: system_info.cpu.to_string() });
    }
    let modules: MinidumpModuleList = match dump.get_stream() {
        Ok(modules) => modules,
        Err(minidump::Error::StreamNotFound) => MinidumpModuleList::new(),
        Err(e) => return Err(damaged("module list", e)),
    };
    if let Err(e) = dump.get_stream::<MinidumpThreadList<'_>>() {
        return Err(damaged("thread list", e));
    }
    let exception = match dump.get_stream::<MinidumpException<'_>>() {
        Ok(exception) => Some(exception),
        Err(minidump::Error::StreamNotFound) => None,
        Err(e) => return Err(damaged("exception stream", e)),
    };

    // Find every module's symbols by build id (only files of the build that
    // ran are used), then unwind and symbolicate.
    let cache = options.cache_dir.as_deref().map(|dir| SymbolCache::new(dir, options.cache_max_bytes));
    let servers = ServerClient::new(&options.symbol_servers, options.cache_dir.as_deref(), options.server_timeout);
    let locator =
        Locator { debug_dirs: &options.debug_dirs, symbol_dirs: &options.symbol_dirs, servers: servers.as_ref() };
    let dump_modules: Vec<MinidumpModule> = modules.iter().cloned().collect();
    let located: Vec<Located> = dump_modules.iter().map(|m| locator.locate(m)).collect();
    let binaries: Vec<Option<PathBuf>> = located.iter().map(Located::unwind_file).collect();
    // ELF symbol files are mapped (not read): the lazy lookup touches only
    // what it needs. Mapping is cheap; nothing is parsed until a frame of
    // the module is looked up.
    let mapped: Vec<Option<MappedElf>> = located
        .iter()
        .map(|l| match &l.file {
            Some(SymbolFile::Elf(path)) => MappedElf::open(path).ok(),
            _ => None,
        })
        .collect();
    let symbols: Vec<ModuleSymbols> =
        dump_modules.iter().zip(&located).map(|(m, l)| ModuleSymbols::new(l.file.clone(), l.cache_key(m))).collect();
    tracing::debug!(
        modules = located.len(),
        with_symbols = located.iter().filter(|l| l.file.is_some()).count(),
        ms = started.elapsed().as_millis() as u64,
        "located the modules' symbols"
    );

    // The processor is async (the Breakpad symbolizer's interface); a
    // current-thread runtime drives it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|source| SymbolicateError::Runtime { path: path.to_owned(), source })?;
    let (state, stats, pending) = runtime
        .block_on(async {
            let provider = Provider::new(
                &system_info,
                &dump_modules,
                symbols,
                &mapped,
                &binaries,
                cache.clone(),
                options.build_tables_first,
            )
            .await;
            let state =
                minidump_processor::process_minidump_with_options(&dump, &provider, ProcessorOptions::default()).await;
            let stats = *provider.stats.lock().unwrap_or_else(|e| e.into_inner());
            let pending = provider.pending();
            state.map(|s| (s, stats, pending))
        })
        .map_err(|e| SymbolicateError::Damaged { path: path.to_owned(), reason: e.to_string() })?;

    let report = build_report(&state, &dump_modules, &located, exception.as_ref(), &system_info, options);
    tracing::info!(
        dump = %path.display(),
        ms = started.elapsed().as_millis() as u64,
        cache_hits = stats.hits,
        tables_built = stats.built,
        lazy_modules = stats.lazy,
        signature = %report.signature,
        "symbolicated"
    );
    Ok((report, stats, PendingTables { cache, entries: pending }))
}

/// Turns an error of [`Minidump::read`] into ours.
fn read_error(path: &Path, len: usize, e: minidump::Error) -> SymbolicateError {
    let not = |reason: String| SymbolicateError::NotMinidump { path: path.to_owned(), reason };
    match e {
        minidump::Error::MissingHeader => not(format!("it is too short for a minidump header ({len} bytes)")),
        minidump::Error::HeaderMismatch => not("it does not start with the minidump signature \"MDMP\"".to_owned()),
        minidump::Error::VersionMismatch => not("unsupported minidump format version".to_owned()),
        minidump::Error::MissingDirectory => SymbolicateError::Damaged {
            path: path.to_owned(),
            reason: format!("its stream directory is missing ({len} bytes; truncated?)"),
        },
        e => SymbolicateError::Damaged { path: path.to_owned(), reason: e.to_string() },
    }
}

/// Checks that everything the dump's directory, thread list and memory list
/// refer to lies inside the file. `minidump` silently drops thread stacks
/// and memory regions that do not, which would turn a truncated dump into a
/// plausible-looking but wrong report.
fn check_bounds(dump: &Dump, len: usize) -> Result<(), String> {
    let len = len as u64;
    let in_bounds = |rva: u32, size: u32| u64::from(rva) + u64::from(size) <= len;
    let past_end = |what: String, rva: u32, size: u32| {
        format!(
            "{what} (bytes {rva}..{}) extends past the end of the file ({len} bytes): the dump is truncated",
            u64::from(rva) + u64::from(size)
        )
    };
    for dir in dump.all_streams() {
        let loc = dir.location;
        if !in_bounds(loc.rva, loc.data_size) {
            return Err(past_end(format!("the {} stream", stream_name(dir.stream_type)), loc.rva, loc.data_size));
        }
    }
    if let Ok(threads) = dump.get_stream::<MinidumpThreadList<'_>>() {
        for thread in &threads.threads {
            let (ctx, stack) = (thread.raw.thread_context, thread.raw.stack.memory);
            if !in_bounds(ctx.rva, ctx.data_size) {
                return Err(past_end(
                    format!("the context of thread {}", thread.raw.thread_id),
                    ctx.rva,
                    ctx.data_size,
                ));
            }
            if !in_bounds(stack.rva, stack.data_size) {
                return Err(past_end(
                    format!("the stack of thread {}", thread.raw.thread_id),
                    stack.rva,
                    stack.data_size,
                ));
            }
        }
    }
    if let Ok(exception) = dump.get_stream::<MinidumpException<'_>>() {
        let ctx = exception.raw.thread_context;
        if !in_bounds(ctx.rva, ctx.data_size) {
            return Err(past_end("the exception context".to_owned(), ctx.rva, ctx.data_size));
        }
    }
    // MINIDUMP_MEMORY_LIST: u32 count, then {u64 start, u32 size, u32 rva}.
    if let Ok(raw) = dump.get_raw_stream(MEMORY_LIST_STREAM) {
        let u32_at = |at: usize| -> Option<u32> {
            let b: [u8; 4] = raw.get(at..at + 4)?.try_into().ok()?;
            Some(if dump.endian.is_little() { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
        };
        let count = u32_at(0).ok_or("its memory list stream is empty")?;
        for i in 0..count as usize {
            let at = 4 + i * 16;
            let (Some(size), Some(rva)) = (u32_at(at + 8), u32_at(at + 12)) else {
                return Err(format!("its memory list stream is shorter than its {count} entries"));
            };
            if !in_bounds(rva, size) {
                return Err(past_end(format!("memory region {i}"), rva, size));
            }
        }
    }
    Ok(())
}

const MEMORY_LIST_STREAM: u32 = 5;

fn stream_name(stream_type: u32) -> String {
    let name = match stream_type {
        3 => "thread list",
        4 => "module list",
        5 => "memory list",
        6 => "exception",
        7 => "system info",
        15 => "misc info",
        16 => "memory info list",
        24 => "thread names",
        0x4767_0003 => "Linux /proc/cpuinfo",
        0x4767_0004 => "Linux /proc/status",
        0x4767_0005 => "Linux lsb-release",
        0x4767_0006 => "Linux command line",
        0x4767_0007 => "Linux environment",
        0x4767_0008 => "Linux auxv",
        0x4767_0009 => "Linux maps",
        0x4767_000a => "Linux DSO debug",
        _ => return format!("{stream_type:#x}"),
    };
    name.to_owned()
}

fn build_report(
    state: &ProcessState,
    modules: &[MinidumpModule],
    located: &[Located],
    exception: Option<&MinidumpException<'_>>,
    system_info: &MinidumpSystemInfo,
    options: &Options,
) -> Report {
    let crash = state.exception_info.as_ref().map(|info| {
        let reason = info.reason.to_string();
        let (signal, code) = split_reason(&reason);
        CrashSummary {
            reason,
            signal,
            code,
            address: info.address.0,
            tid: exception.map(|e| e.get_crashing_thread_id()),
        }
    });

    let sys = &state.system_info;
    let system = SystemSummary {
        os: sys.os.to_string(),
        os_version: sys.format_os_version().map(|v| v.into_owned()),
        cpu: system_info.cpu.to_string(),
        cpu_count: u32::try_from(sys.cpu_count).ok().filter(|&n| n > 0),
    };

    let mut threads: Vec<ThreadReport> = state
        .threads
        .iter()
        .enumerate()
        .map(|(i, stack)| thread_report(stack, Some(i) == state.requesting_thread))
        .collect();
    let mut crashing_thread = state.requesting_thread.filter(|&i| i < threads.len());
    if options.crashing_thread_only {
        threads = crashing_thread.map(|i| vec![threads.swap_remove(i)]).unwrap_or_default();
        crashing_thread = crashing_thread.map(|_| 0);
    }

    let modules = modules
        .iter()
        .zip(located)
        .map(|(module, located)| ModuleReport {
            base: module.base_address(),
            size: module.size(),
            code_file: module.code_file().into_owned(),
            code_id: module.code_identifier().map(|id| id.as_str().to_owned()),
            debug_id: module.debug_identifier().map(|id| id.breakpad().to_string()),
            symbols: located.status,
            symbol_source: located.source,
            symbol_file: located.url.clone().or_else(|| located.file.as_ref().map(|f| f.path().display().to_string())),
            symbol_misses: located.misses.clone(),
        })
        .collect();

    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        crash,
        system,
        crashing_thread,
        threads,
        modules,
        signature: String::new(),
    };
    report.signature = signature::report_signature(&report);
    report
}

/// `"SIGSEGV / SEGV_MAPERR"` -> (`SIGSEGV`, `SEGV_MAPERR`).
fn split_reason(reason: &str) -> (Option<String>, Option<String>) {
    let (first, rest) = match reason.split_once(" / ") {
        Some((first, rest)) => (first, Some(rest)),
        None => (reason, None),
    };
    if first.starts_with("SIG") { (Some(first.to_owned()), rest.map(str::to_owned)) } else { (None, None) }
}

fn thread_report(stack: &CallStack, crashed: bool) -> ThreadReport {
    ThreadReport {
        tid: stack.thread_id,
        name: stack.thread_name.clone(),
        crashed,
        frames: flatten_frames(&stack.frames),
    }
}

/// Expands the processor's frames into a flat list: for each physical frame,
/// first the functions inlined into it (innermost first, each with its own
/// source location), then the physical frame itself (the outer function,
/// at the line of the call or inlined call it was executing).
///
/// `StackFrame::inlines` is already ordered innermost first: the
/// debug-info provider adds them outermost first and the processor reverses
/// them.
pub(crate) fn flatten_frames(frames: &[StackFrame]) -> Vec<FrameReport> {
    let mut out = Vec::with_capacity(frames.len());
    for frame in frames {
        let module = frame.module.as_ref();
        let module_name = module.map(|m| basename(&m.code_file()).to_owned());
        let module_offset = module.and_then(|m| frame.instruction.checked_sub(m.base_address()));
        for inline in &frame.inlines {
            out.push(FrameReport {
                index: out.len(),
                instruction: frame.instruction,
                module: module_name.clone(),
                module_offset,
                function: clean_function_name(&inline.function_name),
                function_offset: None,
                file: inline.source_file_name.clone().filter(|f| !f.is_empty()),
                line: inline.source_line.filter(|&l| l > 0),
                inlined: true,
                trust: "inline".to_owned(),
            });
        }
        out.push(FrameReport {
            index: out.len(),
            instruction: frame.instruction,
            module: module_name,
            module_offset,
            function: frame.function_name.as_deref().and_then(clean_function_name),
            function_offset: frame.function_base.and_then(|base| frame.instruction.checked_sub(base)),
            file: frame.source_file_name.clone().filter(|f| !f.is_empty()),
            line: frame.source_line.filter(|&l| l > 0),
            inlined: false,
            trust: trust_name(frame.trust).to_owned(),
        });
    }
    out
}

/// The file name of a path as the dump writes it.
fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn trust_name(trust: FrameTrust) -> &'static str {
    match trust {
        FrameTrust::Context => "context",
        FrameTrust::CallFrameInfo => "cfi",
        FrameTrust::FramePointer => "frame-pointer",
        FrameTrust::Scan => "scan",
        FrameTrust::CfiScan => "cfi-scan",
        FrameTrust::PreWalked => "prewalked",
        FrameTrust::None => "none",
    }
}

/// Tidies a function name from the provider: drops empty names and the
/// Rust symbol hash (`::h0123456789abcdef`). Names are otherwise kept as
/// the symbols have them (`_start` stays `_start`).
pub(crate) fn clean_function_name(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some(crate::provider::strip_rust_hash(name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_split() {
        assert_eq!(split_reason("SIGSEGV / SEGV_MAPERR"), (Some("SIGSEGV".into()), Some("SEGV_MAPERR".into())));
        assert_eq!(split_reason("SIGABRT"), (Some("SIGABRT".into()), None));
        assert_eq!(split_reason("DUMP_REQUESTED"), (None, None));
    }

    #[test]
    fn hashes_are_stripped() {
        assert_eq!(clean_function_name("foo::bar::h0123456789abcdef").as_deref(), Some("foo::bar"));
        assert_eq!(clean_function_name("foo::bar::hello").as_deref(), Some("foo::bar::hello"));
        assert_eq!(clean_function_name("  ").as_deref(), None);
    }

    #[test]
    fn names_are_kept_as_they_are() {
        assert_eq!(clean_function_name("_start").as_deref(), Some("_start"));
        assert_eq!(clean_function_name("__libc_read").as_deref(), Some("__libc_read"));
        assert_eq!(clean_function_name("read").as_deref(), Some("read"));
    }
}
