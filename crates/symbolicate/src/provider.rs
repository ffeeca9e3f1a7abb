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
use std::sync::{Arc, Mutex, OnceLock};
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
use crate::lazy::{LazyElf, Location};
use crate::locate::SymbolFile;
use crate::mapped::{Mapped, MappedElf};

/// One module's symbols, as the provider sees them.
pub(crate) struct ModuleSymbols {
    pub file: Option<SymbolFile>,
    pub cache_key: Option<String>,
}

impl ModuleSymbols {
    pub(crate) fn new(file: Option<SymbolFile>, cache_key: Option<String>) -> Self {
        ModuleSymbols { file, cache_key }
    }
}

/// How each module's table was obtained (for logs and the benchmark).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Tables read from the cache.
    pub hits: u32,
    /// Tables built from symbol files (and stored, if there is a cache)
    /// before the report was complete.
    pub built: u32,
    /// Modules looked up lazily, address by address, in their symbol file
    /// (no table was in the cache; see [`crate::PendingTables`]).
    pub lazy: u32,
}

/// How one module's frames are named.
enum Source<'m> {
    /// A whole SymCache, built.
    Table(Vec<u8>),
    /// A whole SymCache from the cache.
    Cached(crate::cache::CacheEntry),
    /// Per-address lookups in the mapped ELF file.
    Lazy(Box<LazyElf<'m>>),
    /// No usable symbols.
    None,
}

/// Per-module state of the provider.
struct ModuleState<'m> {
    symbols: ModuleSymbols,
    mapped: Option<&'m MappedElf>,
    source: OnceLock<Source<'m>>,
    /// A whole table built because the lazy lookup gave up on this file.
    fallback: OnceLock<Option<Vec<u8>>>,
}

pub(crate) struct Provider<'m> {
    /// Keyed by module base address.
    modules: HashMap<u64, ModuleState<'m>>,
    cache: Option<SymbolCache>,
    /// Build whole tables before the report (no lazy lookups).
    tables_first: bool,
    unwinder: DebugInfoSymbolProvider,
    breakpad: Symbolizer,
    breakpad_bases: Vec<u64>,
    /// Frames by absolute instruction address.
    memo: Mutex<HashMap<u64, Arc<Vec<Location>>>>,
    pub(crate) stats: Mutex<CacheStats>,
}

impl<'m> Provider<'m> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn new(
        system_info: &minidump::MinidumpSystemInfo,
        dump_modules: &[MinidumpModule],
        symbols: Vec<ModuleSymbols>,
        mapped: &'m [Option<MappedElf>],
        binaries: &[Option<PathBuf>],
        cache: Option<SymbolCache>,
        tables_first: bool,
    ) -> Provider<'m> {
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
        // Built without minidump-unwind's `debuginfo-symbols` feature: it
        // names no frames (the methods below do).
        let unwinder = minidump_unwind::symbols::debuginfo::DebugInfoSymbolProviderBuilder::new()
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
        let modules = dump_modules
            .iter()
            .zip(symbols)
            .zip(mapped.iter().map(Option::as_ref).chain(std::iter::repeat(None)))
            .map(|((m, symbols), mapped)| {
                (m.base_address(), ModuleState { symbols, mapped, source: OnceLock::new(), fallback: OnceLock::new() })
            })
            .collect();
        Provider {
            modules,
            cache,
            tables_first,
            unwinder,
            breakpad: Symbolizer::new(SymPaths(sym_files)),
            breakpad_bases,
            memo: Mutex::new(HashMap::new()),
            stats: Mutex::new(CacheStats::default()),
        }
    }

    fn count(&self, f: impl FnOnce(&mut CacheStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// How the module at `base` is named: its cached table, else a lazy
    /// lookup in its ELF file, else (Breakpad `.sym` files, files the lazy
    /// path cannot read) a table built now.
    fn source<'a>(&'a self, state: &'a ModuleState<'m>) -> &'a Source<'m> {
        state.source.get_or_init(|| {
            let Some(file) = state.symbols.file.as_ref() else { return Source::None };
            if let (Some(cache), Some(key)) = (&self.cache, &state.symbols.cache_key)
                && let Some(bytes) = cache.load(key)
            {
                self.count(|s| s.hits += 1);
                tracing::debug!(key, "symbol cache hit");
                return Source::Cached(bytes);
            }
            if let (SymbolFile::Elf(path), Some(mapped), false) = (file, state.mapped, self.tables_first) {
                let started = Instant::now();
                match LazyElf::open(mapped.map.bytes(), &mapped.decompressed) {
                    Ok(lazy) => {
                        tracing::debug!(
                            file = %path.display(),
                            ms = started.elapsed().as_millis() as u64,
                            "symbols looked up lazily"
                        );
                        self.count(|s| s.lazy += 1);
                        return Source::Lazy(Box::new(lazy));
                    }
                    Err(why) => tracing::debug!(file = %path.display(), "building a whole table: {}", why.0),
                }
            }
            match self.build(state) {
                Some(bytes) => Source::Table(bytes),
                None => Source::None,
            }
        })
    }

    /// Builds (and caches) the module's whole table.
    fn build(&self, state: &ModuleState<'m>) -> Option<Vec<u8>> {
        let file = state.symbols.file.as_ref()?;
        let started = Instant::now();
        match build_symcache(file) {
            Ok(bytes) => {
                tracing::debug!(
                    file = %file.path().display(),
                    ms = started.elapsed().as_millis() as u64,
                    bytes = bytes.len(),
                    "built a symbol table"
                );
                self.count(|s| s.built += 1);
                if let (Some(cache), Some(key)) = (&self.cache, &state.symbols.cache_key) {
                    cache.store(key, &bytes);
                }
                Some(bytes)
            }
            Err(e) => {
                tracing::warn!(file = %file.path().display(), "cannot read symbols: {e}");
                None
            }
        }
    }

    /// The frames at `address` (absolute), innermost first.
    fn locations(&self, base: u64, address: u64) -> Option<Arc<Vec<Location>>> {
        if let Some(hit) = self.memo.lock().unwrap_or_else(|e| e.into_inner()).get(&address) {
            return Some(Arc::clone(hit));
        }
        let state = self.modules.get(&base)?;
        let relative = address.checked_sub(base)?;
        let found = match self.source(state) {
            Source::None => return None,
            Source::Table(bytes) => Arc::new(table_lookup(bytes, relative)?),
            Source::Cached(entry) => Arc::new(table_lookup(entry.payload(), relative)?),
            Source::Lazy(lazy) => match lazy.lookup(relative) {
                Ok(found) => found,
                Err(why) => {
                    let path = state.symbols.file.as_ref().map(|f| f.path().display().to_string());
                    tracing::debug!(file = path, "lazy lookup gave up, building the whole table: {}", why.0);
                    let bytes = state.fallback.get_or_init(|| self.build(state)).as_deref()?;
                    Arc::new(table_lookup(bytes, relative)?)
                }
            },
        };
        self.memo.lock().unwrap_or_else(|e| e.into_inner()).insert(address, Arc::clone(&found));
        Some(found)
    }

    /// The modules looked up lazily that have a cache key: their tables
    /// are to be built once the report is out.
    pub(crate) fn pending(&self) -> Vec<(SymbolFile, String)> {
        if self.cache.is_none() {
            return Vec::new();
        }
        let mut out: Vec<(SymbolFile, String)> = self
            .modules
            .values()
            .filter(|m| matches!(m.source.get(), Some(Source::Lazy(_))) && m.fallback.get().is_none())
            .filter_map(|m| Some((m.symbols.file.clone()?, m.symbols.cache_key.clone()?)))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out.dedup_by(|a, b| a.1 == b.1);
        out
    }
}

/// A lookup in a whole SymCache, as [`Location`]s.
pub(crate) fn table_lookup(bytes: &[u8], relative: u64) -> Option<Vec<Location>> {
    let symcache = SymCache::parse(bytes).ok()?;
    Some(
        symcache
            .lookup(relative)
            .map(|location| Location {
                function: readable_name(location.function().name_for_demangling()),
                entry_pc: location.function().entry_pc(),
                file: location.file().map(|f| f.full_path()),
                line: location.line(),
            })
            .collect(),
    )
}

/// Reads a symbol file (ELF with DWARF and/or symbol tables, or Breakpad
/// text) into SymCache bytes.
pub(crate) fn build_symcache(file: &SymbolFile) -> Result<Vec<u8>, String> {
    let data = Mapped::open(file.path()).map_err(|e| format!("cannot read {}: {e}", file.path().display()))?;
    let object = symbolic_debuginfo::Object::parse(data.bytes()).map_err(|e| e.to_string())?;
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
impl SymbolProvider for Provider<'_> {
    async fn fill_symbol(
        &self,
        module: &(dyn Module + Sync),
        frame: &mut (dyn FrameSymbolizer + Send),
    ) -> Result<(), FillSymbolError> {
        let base = module.base_address();
        let locations = self.locations(base, frame.get_instruction()).ok_or(FillSymbolError {})?;
        // Innermost first; the last is the physical function.
        let Some(outer) = locations.last() else { return Ok(()) };
        let function_base = base + u64::from(outer.entry_pc);
        frame.set_function(&outer.function, function_base, 0);
        if let Some(file) = &outer.file {
            frame.set_source_file(file, outer.line, function_base);
        }
        // Outermost inlined call first, as the processor expects.
        for location in locations.iter().rev().skip(1) {
            let line = Some(location.line).filter(|&l| l > 0);
            frame.add_inline_frame(&location.function, location.file.as_deref(), line);
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
