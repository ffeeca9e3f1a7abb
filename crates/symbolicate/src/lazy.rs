//! Lazy per-address lookup in an ELF file's DWARF and symbol table, for
//! modules whose SymCache is not in the cache yet (the first report of a
//! new binary).
//!
//! Building a module's whole SymCache parses every compilation unit of its
//! DWARF (~10 s for a 360 MB debug binary). A stack needs a few dozen
//! addresses. For one address `a` this module builds a *small* SymCache,
//! with the same converter, from exactly the input that decides the whole
//! table's answer at `a`:
//!
//! * the SymCache answers `a` with the entry at the greatest key `<= a`;
//! * the symbol table is processed after the functions, and every symbol
//!   start is a key: so with `s` the greatest symbol start `<= a` (or 0),
//!   the answer is decided by the keys in `[s, a]`;
//! * those keys come from the functions of the compilation units whose
//!   address ranges meet `[s, a]` (parsed with symbolic's own function
//!   parser, [`dwarf`], in unit order, with one set of seen ranges as in a
//!   whole-file walk) and from the symbols that start or end in `[s, a]`
//!   (in symbol-table order). A unit whose root entry gives no range
//!   (`DW_AT_low_pc` alone, an empty range list), which the whole-file walk
//!   parses all the same, counts with the ranges of its functions.
//!
//! So names, languages, files, lines and inlined frames are the ones the
//! whole table gives; the crate's tests compare both on real dumps. The
//! answer is memoised per address (a deep recursion repeats the same
//! return address thousands of times).

mod dwarf;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use symbolic_debuginfo::dwarf::Dwarf as _;
use symbolic_debuginfo::elf::ElfObject;
use symbolic_debuginfo::{Function, ObjectKind, Symbol, SymbolMap};

use crate::provider::readable_name;

/// More units than this for one address (a file whose symbol table is
/// missing, so the window reaches back to 0): give up the lazy path.
const MAX_UNITS_PER_LOOKUP: usize = 64;

/// One frame of a lookup, innermost first (as `SymCache::lookup` yields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// The readable name ([`readable_name`]).
    pub function: String,
    /// Entry of the function, relative to the module (`u32::MAX` for
    /// inlined functions).
    pub entry_pc: u32,
    pub file: Option<String>,
    pub line: u32,
}

/// Why a file cannot be looked up lazily (it then gets a whole SymCache).
#[derive(Debug)]
pub(crate) struct Unsupported(pub String);

/// Owner of the decompressed copies of a file's compressed DWARF sections
/// (`SHF_COMPRESSED`, as distro debug files have them), which a
/// [`LazyElf`] borrows; kept with the file's bytes.
#[derive(Default)]
pub(crate) struct Decompressed([std::sync::OnceLock<Vec<u8>>; dwarf::SECTION_NAMES.len()]);

impl std::fmt::Debug for Decompressed {
    /// Sizes only (the sections are megabytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: usize = self.0.iter().filter_map(|s| s.get()).map(Vec::len).sum();
        write!(f, "Decompressed({bytes} bytes)")
    }
}

/// An ELF file opened for lazy lookups; borrows its bytes (a memory map
/// owned by the caller) and the decompressed copies of its compressed
/// sections.
pub(crate) struct LazyElf<'d> {
    symbols: Arc<SymbolMap<'d>>,
    /// The symbol table in file order (the converter's order).
    symbol_list: Vec<Symbol<'d>>,
    /// Sorted symbol start addresses.
    symbol_starts: Vec<u64>,
    /// Symbols by start and end address (indices into `symbol_list`).
    symbol_edges: BTreeMap<u64, Vec<usize>>,
    /// The units' address ranges as elementary intervals: from
    /// `boundaries[i]` to `boundaries[i + 1]`, the units `covering[i]`.
    boundaries: Vec<u64>,
    covering: Vec<Vec<usize>>,
    sections: [&'d [u8]; 13],
    endian: dwarf::Endian,
    address_offset: i64,
    kind: ObjectKind,
    /// The unit headers and the units read so far (behind a `Mutex`: the
    /// provider is shared across the processor's tasks).
    info: Mutex<Option<dwarf::DwarfInfo<'d>>>,
    memo: Mutex<HashMap<u64, Arc<Vec<Location>>>>,
    /// symbolic's functions of each set of units parsed so far.
    functions: Mutex<HashMap<Vec<usize>, Arc<UnitFunctions<'d>>>>,
}

/// symbolic's functions of a set of units, in its order, each with the
/// span of addresses where the converter puts its keys.
struct UnitFunctions<'d> {
    functions: Vec<Function<'d>>,
    spans: Vec<(u64, u64)>,
}

impl<'d> LazyElf<'d> {
    /// Reads the file's headers, symbol table and the address ranges of its
    /// compilation units (their root entries only).
    ///
    /// Compressed DWARF sections are decompressed here into `decompressed`
    /// (the provider opens each file once). libc6-dbg's libc, release
    /// build: ~30 ms for the decompression and this open, against ~180 ms
    /// for its whole table. If the open fails after that, the copies stay
    /// with the file (~9 MB for libc's) while its whole table is built.
    pub(crate) fn open(data: &'d [u8], decompressed: &'d Decompressed) -> Result<Self, Unsupported> {
        let object = ElfObject::parse(data).map_err(|e| Unsupported(format!("not a readable ELF file: {e}")))?;
        let mut sections: [&'d [u8]; 13] = [&[]; 13];
        for ((slot, name), kept) in sections.iter_mut().zip(dwarf::SECTION_NAMES).zip(&decompressed.0) {
            if let Some(section) = object.section(name) {
                *slot = match section.data {
                    std::borrow::Cow::Borrowed(bytes) => bytes,
                    std::borrow::Cow::Owned(bytes) => kept.get_or_init(|| bytes),
                };
            }
        }
        let symbol_list: Vec<Symbol<'d>> = object.symbols().collect();
        // What `object.symbol_map()` collects, without a second walk.
        let symbols = Arc::new(SymbolMap::from(symbol_list.clone()));
        let mut symbol_starts: Vec<u64> = symbol_list.iter().filter(|s| s.name.is_some()).map(|s| s.address).collect();
        symbol_starts.sort_unstable();
        let mut symbol_edges: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, symbol) in symbol_list.iter().enumerate() {
            if symbol.name.is_none() {
                continue;
            }
            symbol_edges.entry(symbol.address).or_default().push(i);
            if symbol.size > 0 {
                symbol_edges.entry(symbol.address + symbol.size).or_default().push(i);
            }
        }
        let endian = if object.endianity() == symbolic_debuginfo::dwarf::Endian::Little {
            dwarf::Endian::Little
        } else {
            dwarf::Endian::Big
        };
        let mut lazy = LazyElf {
            symbols,
            symbol_list,
            symbol_starts,
            symbol_edges,
            boundaries: Vec::new(),
            covering: Vec::new(),
            sections,
            endian,
            address_offset: object.load_address() as i64,
            kind: object.kind(),
            info: Mutex::new(None),
            memo: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        };
        if !sections[3].is_empty() {
            lazy.index_units()?;
        }
        Ok(lazy)
    }

    fn parse_info(&self) -> Result<dwarf::DwarfInfo<'d>, Unsupported> {
        let sections = dwarf::Sections::from_slices(self.sections);
        dwarf::DwarfInfo::parse(&sections, self.endian, Arc::clone(&self.symbols), self.address_offset, self.kind)
            .map_err(|e| Unsupported(format!("cannot read its DWARF: {e}")))
    }

    fn index_units(&mut self) -> Result<(), Unsupported> {
        let info = self.parse_info()?;
        let mut ranges = Vec::new();
        for unit in 0..info.unit_count() {
            let unit_ranges =
                info.unit_ranges(unit).map_err(|e| Unsupported(format!("cannot read compilation unit {unit}: {e}")))?;
            ranges.extend(unit_ranges.into_iter().map(|(begin, end)| (begin, end, unit)));
        }
        *self.info.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(info);
        // Sweep the range edges: +1 at a begin, -1 at an end.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ranges.len() * 2);
        for (begin, end, unit) in ranges {
            events.push((begin, true, unit));
            events.push((end, false, unit));
        }
        events.sort_unstable();
        let mut active: BTreeMap<usize, u32> = BTreeMap::new();
        let mut i = 0;
        while i < events.len() {
            let at = events[i].0;
            while i < events.len() && events[i].0 == at {
                let (_, begins, unit) = events[i];
                if begins {
                    *active.entry(unit).or_default() += 1;
                } else if let Some(n) = active.get_mut(&unit) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(&unit);
                    }
                }
                i += 1;
            }
            self.boundaries.push(at);
            self.covering.push(active.keys().copied().collect());
        }
        Ok(())
    }

    /// The units whose ranges meet `[lo, hi]`, ascending.
    fn units_meeting(&self, lo: u64, hi: u64) -> Vec<usize> {
        // The interval containing `lo`, through the last one starting at or
        // before `hi`.
        let first = self.boundaries.partition_point(|&b| b <= lo).saturating_sub(1);
        let last = self.boundaries.partition_point(|&b| b <= hi);
        let mut units: Vec<usize> = self.covering[first.min(last)..last].iter().flatten().copied().collect();
        units.sort_unstable();
        units.dedup();
        units
    }

    /// symbolic's functions of `units` (parsed once per set of units).
    fn unit_functions(&self, units: &[usize]) -> Result<Arc<UnitFunctions<'d>>, Unsupported> {
        if let Some(hit) = self.functions.lock().unwrap_or_else(|e| e.into_inner()).get(units) {
            return Ok(Arc::clone(hit));
        }
        let functions = {
            let mut guard = self.info.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                *guard = Some(self.parse_info()?);
            }
            let info = guard.as_ref().expect("just set");
            info.functions_of_units(units).map_err(|e| Unsupported(format!("cannot read its DWARF: {e}")))?
        };
        let spans = functions.iter().map(|f| (first_key(f), f.end_address())).collect();
        let functions = Arc::new(UnitFunctions { functions, spans });
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).insert(units.to_vec(), Arc::clone(&functions));
        Ok(functions)
    }

    /// The frames at module-relative address `address`, innermost first
    /// (empty if nothing covers it). Fails only if the DWARF cannot be
    /// read; the caller then builds the whole table.
    pub(crate) fn lookup(&self, address: u64) -> Result<Arc<Vec<Location>>, Unsupported> {
        if let Some(hit) = self.memo.lock().unwrap_or_else(|e| e.into_inner()).get(&address) {
            return Ok(Arc::clone(hit));
        }
        let found = Arc::new(self.lookup_uncached(address)?);
        self.memo.lock().unwrap_or_else(|e| e.into_inner()).insert(address, Arc::clone(&found));
        Ok(found)
    }

    fn lookup_uncached(&self, address: u64) -> Result<Vec<Location>, Unsupported> {
        if address > u64::from(u32::MAX) {
            return Ok(Vec::new());
        }
        let start = match self.symbol_starts.partition_point(|&s| s <= address) {
            0 => 0,
            i => self.symbol_starts[i - 1],
        };
        let units = self.units_meeting(start, address);
        if units.len() > MAX_UNITS_PER_LOOKUP {
            return Err(Unsupported(format!("{} compilation units meet the lookup window", units.len())));
        }

        let mut converter = symbolic_symcache::SymCacheConverter::new();
        if !units.is_empty() {
            // Only the functions that put keys into [start, address] matter
            // (a function's first line row may begin before its range).
            let parsed = self.unit_functions(&units)?;
            for (function, &(first, end)) in parsed.functions.iter().zip(&parsed.spans) {
                if first <= address && end >= start {
                    converter.process_symbolic_function(function);
                }
            }
        }
        let mut symbols: Vec<usize> =
            self.symbol_edges.range(start..=address).flat_map(|(_, v)| v.iter().copied()).collect();
        symbols.sort_unstable();
        symbols.dedup();
        for i in symbols {
            converter.process_symbolic_symbol(&self.symbol_list[i]);
        }
        let mut bytes = Vec::new();
        converter.serialize(&mut bytes).map_err(|e| Unsupported(format!("cannot build a table: {e}")))?;
        let symcache = symbolic_symcache::SymCache::parse(&bytes)
            .map_err(|e| Unsupported(format!("cannot read back a table: {e}")))?;
        Ok(symcache
            .lookup(address)
            .map(|location| Location {
                function: readable_name(location.function().name_for_demangling()),
                entry_pc: location.function().entry_pc(),
                file: location.file().map(|f| f.full_path()),
                line: location.line(),
            })
            .collect())
    }
}

/// The lowest address at which the converter puts a key for `function`:
/// its start, or an earlier line row (symbolic clamps a function's first
/// row to the row that contains its start).
fn first_key(function: &Function<'_>) -> u64 {
    let own = function.lines.first().map_or(function.address, |l| l.address).min(function.address);
    function.inlinees.iter().map(first_key).fold(own, u64::min)
}

#[cfg(test)]
mod tests {
    //! The lazy lookup against the whole SymCache, address by address, on
    //! real optimised binaries (Rust and C at -O2 with inlining, libc).
    //! The report-level comparison on real dumps is in
    //! `tests/lazy_identity.rs`.

    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::locate::SymbolFile;

    /// Every function entry (and the byte after it) and a sample of all
    /// addresses from the first function to past the last one: the lazy
    /// lookup must give exactly the frames of the whole table.
    fn assert_identical(path: &Path) -> usize {
        let started = std::time::Instant::now();
        let full = crate::provider::build_symcache(&SymbolFile::Elf(path.to_owned())).unwrap();
        eprintln!("whole table: {:?}", started.elapsed());
        let symcache = symbolic_symcache::SymCache::parse(&full).unwrap();
        let mut entries: Vec<u64> =
            symcache.functions().map(|f| u64::from(f.entry_pc())).filter(|&e| e != u64::from(u32::MAX)).collect();
        entries.sort_unstable();
        entries.dedup();
        assert!(entries.len() >= 4, "{}: {} functions", path.display(), entries.len());
        let (lo, hi) = (entries[0], entries[entries.len() - 1] + 4096);
        let stride = ((hi - lo) / 6000).max(1) | 1;
        let mut addresses: Vec<u64> = entries.iter().flat_map(|&e| [e, e + 1, e.saturating_sub(1)]).collect();
        addresses.extend((lo.saturating_sub(64)..hi).step_by(stride as usize));
        let data = std::fs::read(path).unwrap();
        let started = std::time::Instant::now();
        let decompressed = Decompressed::default();
        let lazy = LazyElf::open(&data, &decompressed).unwrap();
        eprintln!("open: {:?}", started.elapsed());
        for &address in &addresses {
            let expected = crate::provider::table_lookup(&full, address).unwrap();
            let got = lazy.lookup(address).unwrap();
            assert_eq!(*got, expected, "{} at {address:#x}", path.display());
        }
        eprintln!("lookups: {:?}", started.elapsed());
        addresses.len()
    }

    fn compile(dir: &Path, tool: &str, args: &[&str], source_name: &str, source: &str) -> Option<PathBuf> {
        let src = dir.join(source_name);
        std::fs::write(&src, source).unwrap();
        let exe = dir.join(format!("{source_name}.bin"));
        match Command::new(tool).args(args).arg("-o").arg(&exe).arg(&src).status() {
            Ok(status) if status.success() => Some(exe),
            Ok(status) => panic!("{tool} failed: {status}"),
            Err(e) => {
                eprintln!("SKIPPED: cannot run {tool}: {e}");
                None
            }
        }
    }

    const RUST: &str = r#"use std::hint::black_box;
#[inline(always)]
fn poke(p: *mut u32, v: u32) { unsafe { std::ptr::write_volatile(p, v) } }
#[inline(always)]
fn level2(p: *mut u32, v: u32) { poke(p, v + 1); black_box(v); }
#[inline(never)]
fn level1(p: *mut u32, v: u32) { level2(p, v * 2); black_box(v); }
fn main() {
    let mut x = 0u32;
    let v: Vec<String> = std::env::args().collect();
    level1(black_box(&mut x), v.len() as u32);
    println!("{x} {:?}", v.iter().map(|s| s.len()).collect::<std::collections::BTreeSet<_>>());
}
"#;

    const C: &str = r#"#include <stdio.h>
#include <stdlib.h>
static volatile int sink;
static inline __attribute__((always_inline)) void poke(volatile int *p, int v) { *p = v; }
static inline __attribute__((always_inline)) void check(const int *a, const int *b) { poke(&sink, *a - *b); }
static int compare(const void *x, const void *y) { check(x, y); return *(const int *)x - *(const int *)y; }
__attribute__((noinline)) static void sort_all(int *v, size_t n) { qsort(v, n, sizeof *v, compare); sink++; }
int main(void) { int v[] = {5, 1, 4, 3, 2}; sort_all(v, 5); printf("%d\n", v[0]); return sink; }
"#;

    #[test]
    fn rust_at_o2_lazy_equals_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let args = ["--edition", "2021", "-C", "opt-level=2", "-g"];
        if let Some(exe) = compile(dir.path(), &rustc, &args, "prog.rs", RUST) {
            let n = assert_identical(&exe);
            eprintln!("{n} addresses compared");
        }
    }

    #[test]
    fn c_at_o2_lazy_equals_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        if let Some(exe) = compile(dir.path(), &cc, &["-O2", "-g"], "prog.c", C) {
            assert_identical(&exe);
        }
    }

    /// A compilation unit with `DW_AT_low_pc` but no `DW_AT_high_pc` or
    /// `DW_AT_ranges` (gimli gives it no range; symbolic's whole-file walk
    /// parses it anyway): its functions must be found lazily too, with
    /// their files and lines. Made from GCC's annotated assembly by renaming
    /// the unit's `DW_AT_high_pc` attribute to a vendor one of the same form
    /// (so no offset moves).
    #[test]
    fn unit_without_high_pc_lazy_equals_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let src = dir.path().join("helper.c");
        std::fs::write(&src, "int helper(int x) { return x * 3 + 1; }\nint other(int x) { return x - 7; }\n").unwrap();
        let asm = dir.path().join("helper.s");
        match Command::new(&cc).args(["-O0", "-g", "-dA", "-S", "-o"]).arg(&asm).arg(&src).status() {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("{cc} failed: {status}"),
            Err(e) => {
                eprintln!("SKIPPED: cannot run {cc}: {e}");
                return;
            }
        }
        let text = std::fs::read_to_string(&asm).unwrap();
        // The unit's abbreviation is the first one.
        let high_pc = "\t.uleb128 0x12\t# (DW_AT_high_pc)\n";
        let Some(at) = text.find(high_pc).filter(|&at| text[..at].contains("(TAG: DW_TAG_compile_unit)")) else {
            eprintln!("SKIPPED: {cc} does not write GCC's annotated DWARF assembly");
            return;
        };
        let text = format!("{}\t.uleb128 0x2000\t# (DW_AT_lo_user)\n{}", &text[..at], &text[at + high_pc.len()..]);
        std::fs::write(&asm, text).unwrap();
        let main = "int helper(int x);\nint other(int x);\nint main(int c, char **v) { (void)v; return helper(c) + other(c); }\n";
        let Some(exe) = compile(dir.path(), &cc, &["-O0", "-g", asm.to_str().unwrap()], "main.c", main) else { return };

        let data = std::fs::read(&exe).unwrap();
        let decompressed = Decompressed::default();
        let lazy = LazyElf::open(&data, &decompressed).unwrap();
        let helper = lazy.symbol_list.iter().find(|s| s.name.as_deref() == Some("helper")).unwrap().address;
        let found = lazy.lookup(helper + 4).unwrap();
        assert_eq!(found[0].function, "helper");
        assert!(found[0].file.as_deref().is_some_and(|f| f.ends_with("helper.c")), "{found:?}");
        assert_identical(&exe);
    }

    fn mapped_libc() -> Option<PathBuf> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libc.so.6"));
        if libc.is_none() {
            eprintln!("SKIPPED: no libc.so.6 mapped");
        }
        libc.map(PathBuf::from)
    }

    /// libc: its symbol table only (the installed library).
    #[test]
    fn libc_lazy_equals_whole_table() {
        let Some(libc) = mapped_libc() else { return };
        assert_identical(&libc);
    }

    /// libc's separate debug file (libc6-dbg), whose DWARF sections Debian
    /// compresses: decompressed once, then looked up lazily.
    #[test]
    fn compressed_libc_debug_file_lazy_equals_whole_table() {
        let Some(libc) = mapped_libc() else { return };
        let id = crate::buildid::encode_hex(&crate::buildid::file_build_id(&libc).expect("libc has a build id"));
        let debug = PathBuf::from(format!("/usr/lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]));
        if !debug.exists() {
            eprintln!("SKIPPED: no debug file for libc ({}; install libc6-dbg)", debug.display());
            return;
        }
        assert_identical(&debug);
    }
}
