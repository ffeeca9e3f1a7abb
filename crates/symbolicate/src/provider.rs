//! The `SymbolProvider` handed to `minidump-processor`.
//!
//! * Names, files, lines and inlined frames come from one SymCache per
//!   module, loaded from the on-disk cache or built from the module's
//!   symbol file ([`crate::locate`]) the first time a frame of that module
//!   is looked up (so modules no stack touches cost nothing).
//! * Unwinding uses CFI: `.eh_frame`/`.debug_frame` of the verified local
//!   binaries (framehop, through `DebugInfoSymbolProvider` with its symbol
//!   loading switched off), and `STACK CFI` records for modules whose
//!   symbols are a Breakpad `.sym` file (rust-minidump's `Symbolizer`).
//!   The processor falls back to frame pointers and stack scanning, and
//!   says so in each frame's trust.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use minidump::{MinidumpModule, Module};
use minidump_unwind::symbols::debuginfo::DebugInfoSymbolProvider;
use minidump_unwind::{
    FileError, FileKind, FillSymbolError, FrameSymbolizer, FrameWalker, LocateSymbolsResult, SymbolError,
    SymbolFile as BreakpadSymbols, SymbolProvider, SymbolSupplier, Symbolizer,
};
use symbolic_common::Name;
use symbolic_demangle::{Demangle, DemangleOptions};
use symbolic_symcache::SymCache;

use crate::cache::SymbolCache;
use crate::locate::SymbolFile;

/// One module's symbols, as the provider sees them.
pub(crate) struct ModuleSymbols {
    pub file: Option<SymbolFile>,
    pub cache_key: Option<String>,
    table: OnceLock<Option<Vec<u8>>>,
}

impl ModuleSymbols {
    pub(crate) fn new(file: Option<SymbolFile>, cache_key: Option<String>) -> Self {
        ModuleSymbols { file, cache_key, table: OnceLock::new() }
    }
}

/// How each module's table was obtained (for logs and the benchmark).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Tables read from the cache.
    pub hits: u32,
    /// Tables built from symbol files (and stored, if there is a cache).
    pub built: u32,
}

pub(crate) struct Provider {
    /// Keyed by module base address.
    modules: HashMap<u64, ModuleSymbols>,
    cache: Option<SymbolCache>,
    unwinder: DebugInfoSymbolProvider,
    breakpad: Symbolizer,
    breakpad_bases: Vec<u64>,
    pub(crate) stats: Mutex<CacheStats>,
}

impl Provider {
    pub(crate) async fn new(
        system_info: &minidump::MinidumpSystemInfo,
        dump_modules: &[MinidumpModule],
        symbols: Vec<ModuleSymbols>,
        binaries: &[Option<PathBuf>],
        cache: Option<SymbolCache>,
    ) -> Provider {
        // CFI from the verified local binaries (or debug files) only; the
        // unwinder opens the module's `name`.
        let verified = minidump::MinidumpModuleList::from_modules(
            dump_modules
                .iter()
                .zip(binaries)
                .filter_map(|(m, file)| {
                    let mut m = m.clone();
                    m.name = file.as_ref()?.to_str()?.to_owned();
                    Some(m)
                })
                .collect(),
        );
        let unwinder = minidump_unwind::symbols::debuginfo::DebugInfoSymbolProviderBuilder::new()
            .symbols(false)
            .build(system_info, &verified)
            .await;
        let mut sym_files = HashMap::new();
        let mut breakpad_bases = Vec::new();
        for (module, symbols) in dump_modules.iter().zip(&symbols) {
            if let Some(SymbolFile::Breakpad(path)) = &symbols.file {
                sym_files.insert(module.base_address(), path.clone());
                breakpad_bases.push(module.base_address());
            }
        }
        let modules = dump_modules.iter().map(|m| m.base_address()).zip(symbols).collect();
        Provider {
            modules,
            cache,
            unwinder,
            breakpad: Symbolizer::new(SymPaths(sym_files)),
            breakpad_bases,
            stats: Mutex::new(CacheStats::default()),
        }
    }

    /// The module's SymCache bytes: from the cache, else built now.
    fn table(&self, base: u64) -> Option<&[u8]> {
        let entry = self.modules.get(&base)?;
        entry
            .table
            .get_or_init(|| {
                let file = entry.file.as_ref()?;
                if let (Some(cache), Some(key)) = (&self.cache, &entry.cache_key)
                    && let Some(bytes) = cache.load(key)
                {
                    self.stats.lock().unwrap_or_else(|e| e.into_inner()).hits += 1;
                    tracing::debug!(key, "symbol cache hit");
                    return Some(bytes);
                }
                let started = Instant::now();
                match build_symcache(file) {
                    Ok(bytes) => {
                        tracing::debug!(
                            file = %file.path().display(),
                            ms = started.elapsed().as_millis() as u64,
                            bytes = bytes.len(),
                            "built a symbol table"
                        );
                        self.stats.lock().unwrap_or_else(|e| e.into_inner()).built += 1;
                        if let (Some(cache), Some(key)) = (&self.cache, &entry.cache_key) {
                            cache.store(key, &bytes);
                        }
                        Some(bytes)
                    }
                    Err(e) => {
                        tracing::warn!(file = %file.path().display(), "cannot read symbols: {e}");
                        None
                    }
                }
            })
            .as_deref()
    }
}

/// Reads a symbol file (ELF with DWARF and/or symbol tables, or Breakpad
/// text) into SymCache bytes.
pub(crate) fn build_symcache(file: &SymbolFile) -> Result<Vec<u8>, String> {
    let data = std::fs::read(file.path()).map_err(|e| format!("cannot read {}: {e}", file.path().display()))?;
    let object = symbolic_debuginfo::Object::parse(&data).map_err(|e| e.to_string())?;
    let mut converter = symbolic_symcache::SymCacheConverter::new();
    converter.process_object(&object).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    converter.serialize(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A demangled, readable function name: no parameters, no Rust hash; C
/// names exactly as in the symbol table (`_start` stays `_start`).
pub(crate) fn readable_name(name: Name<'_>) -> String {
    let demangled = name.try_demangle(DemangleOptions::name_only());
    strip_clone_suffix(strip_rust_hash(&demangled)).to_owned()
}

/// Drops the suffixes GCC gives the pieces and clones of a function
/// (`compare.cold`, `msort_with_tmp.part.0`, `f.constprop.0`,
/// `g.isra.0`, `h.lto_priv.0`): symbolic names a function after its symbol,
/// while the source (and gdb) call it by its own name.
pub(crate) fn strip_clone_suffix(name: &str) -> &str {
    let mut name = name;
    loop {
        let Some((head, tail)) = name.rsplit_once('.') else { return name };
        let is_clone = matches!(tail, "cold" | "localalias")
            || (tail.bytes().all(|b| b.is_ascii_digit())
                && [".part", ".constprop", ".isra", ".lto_priv", ".cold"].iter().any(|s| head.ends_with(s)));
        if !is_clone || head.is_empty() {
            return name;
        }
        name = if tail.bytes().all(|b| b.is_ascii_digit()) {
            &head[..head.rfind('.').unwrap_or(head.len())]
        } else {
            head
        };
    }
}

/// Drops a Rust legacy-mangling hash suffix (`::h0123456789abcdef`).
pub(crate) fn strip_rust_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => head,
        _ => name,
    }
}

#[async_trait::async_trait]
impl SymbolProvider for Provider {
    async fn fill_symbol(
        &self,
        module: &(dyn Module + Sync),
        frame: &mut (dyn FrameSymbolizer + Send),
    ) -> Result<(), FillSymbolError> {
        let base = module.base_address();
        let bytes = self.table(base).ok_or(FillSymbolError {})?;
        let symcache = SymCache::parse(bytes).map_err(|_| FillSymbolError {})?;
        let Some(relative) = frame.get_instruction().checked_sub(base) else { return Ok(()) };
        let locations: Vec<_> = symcache.lookup(relative).collect();
        // Innermost first; the last is the physical function.
        let Some(outer) = locations.last() else { return Ok(()) };
        let function_base = base + u64::from(outer.function().entry_pc());
        frame.set_function(&readable_name(outer.function().name_for_demangling()), function_base, 0);
        if let Some(file) = outer.file() {
            frame.set_source_file(&file.full_path(), outer.line(), function_base);
        }
        // Outermost inlined call first, as the processor expects.
        for location in locations.iter().rev().skip(1) {
            let file = location.file().map(|f| f.full_path());
            let line = Some(location.line()).filter(|&l| l > 0);
            frame.add_inline_frame(&readable_name(location.function().name_for_demangling()), file.as_deref(), line);
        }
        Ok(())
    }

    async fn walk_frame(&self, module: &(dyn Module + Sync), walker: &mut (dyn FrameWalker + Send)) -> Option<()> {
        if self.breakpad_bases.contains(&module.base_address()) {
            return self.breakpad.walk_frame(module, walker).await;
        }
        self.unwinder.walk_frame(module, walker).await
    }

    async fn get_file_path(&self, module: &(dyn Module + Sync), file_kind: FileKind) -> Result<PathBuf, FileError> {
        self.unwinder.get_file_path(module, file_kind).await
    }
}

/// Hands the `Symbolizer` the `.sym` file found for each module.
struct SymPaths(HashMap<u64, PathBuf>);

#[async_trait::async_trait]
impl SymbolSupplier for SymPaths {
    async fn locate_symbols(&self, module: &(dyn Module + Sync)) -> Result<LocateSymbolsResult, SymbolError> {
        let path = self.0.get(&module.base_address()).ok_or(SymbolError::NotFound)?;
        let symbols = BreakpadSymbols::from_file(path)?;
        Ok(LocateSymbolsResult { symbols, extra_debug_info: None })
    }

    async fn locate_file(&self, _module: &(dyn Module + Sync), _file_kind: FileKind) -> Result<PathBuf, FileError> {
        Err(FileError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::strip_clone_suffix;

    #[test]
    fn clone_suffixes() {
        assert_eq!(strip_clone_suffix("compare.cold"), "compare");
        assert_eq!(strip_clone_suffix("msort_with_tmp.part.0"), "msort_with_tmp");
        assert_eq!(strip_clone_suffix("sort_all.constprop.0"), "sort_all");
        assert_eq!(strip_clone_suffix("f.constprop.0.isra.0"), "f");
        assert_eq!(strip_clone_suffix("f.part.0.cold"), "f");
        assert_eq!(strip_clone_suffix("_start"), "_start");
        assert_eq!(strip_clone_suffix("a.b"), "a.b");
        assert_eq!(strip_clone_suffix("v1.2"), "v1.2");
        assert_eq!(strip_clone_suffix("<T as core::fmt::Debug>::fmt"), "<T as core::fmt::Debug>::fmt");
    }
}
