//! The function parser of symbolic-debuginfo 13.9 (`src/dwarf.rs`,
//! <https://github.com/getsentry/symbolic>, MIT licence, Copyright (c)
//! 2017 Sentry), restricted to one compilation unit at a time.
//!
//! symbolic only offers "all functions of the file"; the lazy lookup needs
//! "the functions of the units that contain this address". The code below
//! is symbolic's own, kept as close to the original as possible (only the
//! unit iteration, the Mach-O `BcSymbolMap` and the session types were
//! left out), so that the [`Function`]s it yields — names (symbol table
//! first, then linkage name, `DW_AT_name`, abstract origin), languages,
//! line rows and inlinees — are exactly the ones the SymCache converter is
//! fed when it builds a module's whole table. Keep it in sync when
//! symbolic-debuginfo is upgraded (the crate's tests compare both paths).

#![allow(clippy::all, missing_docs, dead_code, unused_imports, elided_lifetimes_in_paths)]

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::ops::Deref;

use gimli::read::{AttributeValue, Error as GimliError, Range};
use gimli::{AbbreviationsCacheStrategy, DwarfFileType, UnitSectionOffset, constants};
use symbolic_common::{Language, Name, NameMangling};
use symbolic_debuginfo::function_builder::FunctionBuilder;
use symbolic_debuginfo::{FileInfo, Function, ObjectKind, SymbolMap};

pub(crate) use gimli::RunTimeEndian as Endian;

pub(crate) type Slice<'a> = gimli::read::EndianSlice<'a, Endian>;
type RangeLists<'a> = gimli::read::RangeLists<Slice<'a>>;
type Unit<'a> = gimli::read::Unit<Slice<'a>>;
type DwarfInner<'a> = gimli::read::Dwarf<Slice<'a>>;

type Die<'d> = gimli::read::DebuggingInformationEntry<Slice<'d>, usize>;
type Attribute<'a> = gimli::read::Attribute<Slice<'a>>;
type UnitOffset = gimli::read::UnitOffset<usize>;
type DebugInfoOffset = gimli::DebugInfoOffset<usize>;
type EntriesRaw<'d, 'u> = gimli::EntriesRaw<'u, Slice<'d>>;

type UnitHeader<'a> = gimli::read::UnitHeader<Slice<'a>>;
type IncompleteLineNumberProgram<'a> = gimli::read::IncompleteLineProgram<Slice<'a>>;
type LineNumberProgramHeader<'a> = gimli::read::LineProgramHeader<Slice<'a>>;
type LineProgramFileEntry<'a> = gimli::read::FileEntry<Slice<'a>>;

/// Stand-in for symbolic's Mach-O symbol map (never present for ELF).
#[derive(Debug)]
pub(crate) struct BcSymbolMap<'d>(std::marker::PhantomData<&'d ()>);

fn resolve_cow_name<'d>(_map: Option<&'d BcSymbolMap<'d>>, name: Cow<'d, str>) -> Cow<'d, str> {
    name
}

fn resolve_byte_name<'d>(_map: Option<&'d BcSymbolMap<'d>>, name: &'d [u8]) -> &'d [u8] {
    name
}

/// This applies the offset to the address.
fn offset(addr: u64, offset: i64) -> u64 {
    (addr as i64).wrapping_sub(offset) as u64
}

/// Errors of the parser.
#[derive(Debug)]
pub(crate) enum DwarfError {
    Gimli(GimliError),
    InvalidUnitRef(usize),
    InvertedFunctionRange,
}

impl std::fmt::Display for DwarfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DwarfError::Gimli(e) => write!(f, "{e}"),
            DwarfError::InvalidUnitRef(offset) => write!(f, "invalid unit reference {offset:#x}"),
            DwarfError::InvertedFunctionRange => f.write_str("function with inverted address range"),
        }
    }
}

impl From<GimliError> for DwarfError {
    fn from(e: GimliError) -> Self {
        DwarfError::Gimli(e)
    }
}

/// symbolic's error kinds, as far as the code below names them.
enum DwarfErrorKind {
    InvalidUnitRef(usize),
    InvertedFunctionRange,
}

impl From<DwarfErrorKind> for DwarfError {
    fn from(kind: DwarfErrorKind) -> Self {
        match kind {
            DwarfErrorKind::InvalidUnitRef(offset) => DwarfError::InvalidUnitRef(offset),
            DwarfErrorKind::InvertedFunctionRange => DwarfError::InvertedFunctionRange,
        }
    }
}

/// The DWARF sections symbolic reads, borrowed from the file (or
/// decompressed).
#[derive(Default)]
pub(crate) struct Sections<'d> {
    pub debug_abbrev: &'d [u8],
    pub debug_addr: &'d [u8],
    pub debug_aranges: &'d [u8],
    pub debug_info: &'d [u8],
    pub debug_line: &'d [u8],
    pub debug_line_str: &'d [u8],
    pub debug_names: &'d [u8],
    pub debug_str: &'d [u8],
    pub debug_str_offsets: &'d [u8],
    pub debug_ranges: &'d [u8],
    pub debug_rnglists: &'d [u8],
    pub debug_macinfo: &'d [u8],
    pub debug_macro: &'d [u8],
}

/// The section names, without the leading dot, in [`Sections`] order.
pub(crate) const SECTION_NAMES: [&str; 13] = [
    "debug_abbrev",
    "debug_addr",
    "debug_aranges",
    "debug_info",
    "debug_line",
    "debug_line_str",
    "debug_names",
    "debug_str",
    "debug_str_offsets",
    "debug_ranges",
    "debug_rnglists",
    "debug_macinfo",
    "debug_macro",
];

impl<'d> Sections<'d> {
    /// From the section data in [`SECTION_NAMES`] order.
    pub(crate) fn from_slices(s: [&'d [u8]; 13]) -> Self {
        Sections {
            debug_abbrev: s[0],
            debug_addr: s[1],
            debug_aranges: s[2],
            debug_info: s[3],
            debug_line: s[4],
            debug_line_str: s[5],
            debug_names: s[6],
            debug_str: s[7],
            debug_str_offsets: s[8],
            debug_ranges: s[9],
            debug_rnglists: s[10],
            debug_macinfo: s[11],
            debug_macro: s[12],
        }
    }
}

/// symbolic's `DwarfInfo`: the gimli `Dwarf`, the unit headers, lazily
/// parsed units, the symbol table.
pub(crate) struct DwarfInfo<'d> {
    inner: DwarfInner<'d>,
    headers: Vec<UnitHeader<'d>>,
    units: Vec<OnceCell<Option<Unit<'d>>>>,
    symbol_map: std::sync::Arc<SymbolMap<'d>>,
    address_offset: i64,
    kind: ObjectKind,
}

impl std::fmt::Debug for DwarfInfo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DwarfInfo").field("units", &self.headers.len()).finish()
    }
}

impl<'d> Deref for DwarfInfo<'d> {
    type Target = DwarfInner<'d>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<'d> DwarfInfo<'d> {
    pub(crate) fn parse(
        sections: &Sections<'d>,
        endian: Endian,
        symbol_map: std::sync::Arc<SymbolMap<'d>>,
        address_offset: i64,
        kind: ObjectKind,
    ) -> Result<Self, DwarfError> {
        let s = |data: &'d [u8]| Slice::new(data, endian);
        let mut inner = gimli::read::Dwarf {
            abbreviations_cache: Default::default(),
            debug_abbrev: s(sections.debug_abbrev).into(),
            debug_addr: s(sections.debug_addr).into(),
            debug_aranges: s(sections.debug_aranges).into(),
            debug_info: s(sections.debug_info).into(),
            debug_line: s(sections.debug_line).into(),
            debug_line_str: s(sections.debug_line_str).into(),
            debug_names: s(sections.debug_names).into(),
            debug_str: s(sections.debug_str).into(),
            debug_str_offsets: s(sections.debug_str_offsets).into(),
            debug_types: Default::default(),
            debug_macinfo: s(sections.debug_macinfo).into(),
            debug_macro: s(sections.debug_macro).into(),
            locations: Default::default(),
            ranges: RangeLists::new(s(sections.debug_ranges).into(), s(sections.debug_rnglists).into()),
            file_type: DwarfFileType::Main,
            sup: Default::default(),
        };
        inner.populate_abbreviations_cache(AbbreviationsCacheStrategy::Duplicates);
        let mut headers = Vec::new();
        let mut iter = inner.units();
        while let Some(header) = iter.next()? {
            headers.push(header);
        }
        let units = headers.iter().map(|_| OnceCell::new()).collect();
        Ok(DwarfInfo { inner, headers, units, symbol_map, address_offset, kind })
    }

    /// Number of units.
    pub(crate) fn unit_count(&self) -> usize {
        self.headers.len()
    }

    /// Loads a compilation unit.
    fn get_unit(&self, index: usize) -> Result<Option<&Unit<'d>>, DwarfError> {
        let cell = match self.units.get(index) {
            Some(cell) => cell,
            None => return Ok(None),
        };
        if let Some(unit) = cell.get() {
            return Ok(unit.as_ref());
        }
        let header = self.headers[index];
        let unit = match self.inner.unit(header) {
            Ok(unit) => Some(unit),
            Err(gimli::read::Error::MissingUnitDie) => None,
            Err(error) => return Err(DwarfError::from(error)),
        };
        Ok(cell.get_or_init(|| unit).as_ref())
    }

    /// Resolves an offset into a different compilation unit.
    fn find_unit_offset(&self, offset: DebugInfoOffset) -> Result<(UnitRef<'d, '_>, UnitOffset), DwarfError> {
        let section_offset = UnitSectionOffset(offset.0);
        let search_result = self.headers.binary_search_by_key(&section_offset, UnitHeader::offset);

        let index = match search_result {
            Ok(index) => index,
            Err(0) => return Err(DwarfErrorKind::InvalidUnitRef(offset.0).into()),
            Err(next_index) => next_index - 1,
        };

        if let Some(unit) = self.get_unit(index)? {
            if let Some(unit_offset) = section_offset.to_unit_offset(unit) {
                return Ok((UnitRef { unit, info: self }, unit_offset));
            }
        }

        Err(DwarfErrorKind::InvalidUnitRef(offset.0).into())
    }

    /// The address ranges of unit `index` (its root DIE's), relative to the
    /// load address; empty for units symbolic skips.
    ///
    /// A unit that symbolic parses but whose root gives no non-empty range
    /// (`DW_AT_low_pc` without `DW_AT_high_pc` or `DW_AT_ranges`, for which
    /// gimli gives nothing; an empty range list; `low_pc == high_pc`) may
    /// still have functions anywhere, and a whole-file walk parses them: its
    /// ranges are then those of its functions and inlined calls, read as
    /// symbolic reads them ([`DwarfInfo::function_ranges`]). Such units are
    /// rare and mostly dead code (no function ranges at all).
    pub(crate) fn unit_ranges(&self, index: usize) -> Result<Vec<(u64, u64)>, DwarfError> {
        let Some(unit) = self.get_unit(index)? else { return Ok(Vec::new()) };
        // The units `DwarfUnit::from_unit` skips (without preparing their
        // line programs, which is most of the cost of reading a unit).
        let mut entries = unit.entries();
        let Some(root) = entries.next_dfs()? else { return Err(gimli::read::Error::MissingUnitDie.into()) };
        if self.kind != ObjectKind::Relocatable && unit.low_pc == 0 && root.attr(constants::DW_AT_ranges).is_none() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut ranges = self.inner.unit_ranges(unit)?;
        while let Some(range) = ranges.next()? {
            if range.begin < range.end {
                out.push((offset(range.begin, self.address_offset), offset(range.end, self.address_offset)));
            }
        }
        if out.is_empty() {
            return Ok(self.function_ranges(unit));
        }
        Ok(out)
    }

    /// The ranges of the functions and inlined calls of `unit` (at any
    /// depth), relative to the load address, as the function parser reads
    /// them; for units whose root DIE has none. Reads the unit's DIEs, not
    /// its line program.
    ///
    /// A unit whose DIEs cannot be read gives no ranges: symbolic's
    /// whole-file walk stops at the same error, so there is no table whose
    /// names the lazy lookups could differ from.
    fn function_ranges(&self, unit: &Unit<'d>) -> Vec<(u64, u64)> {
        let scanner = DwarfUnit {
            inner: UnitRef { info: self, unit },
            bcsymbolmap: None,
            language: Language::Unknown,
            line_program: None,
            prefer_dwarf_names: false,
        };
        let mut out = Vec::new();
        let mut range_buf = Vec::new();
        let mut scan = || -> Result<(), DwarfError> {
            let mut entries = unit.entries_raw(None)?;
            while !entries.is_empty() {
                let Some(abbrev) = entries.read_abbreviation()? else { continue };
                if abbrev.tag() == constants::DW_TAG_subprogram || abbrev.tag() == constants::DW_TAG_inlined_subroutine
                {
                    let (ranges, _) = scanner.parse_ranges(&mut entries, abbrev, &mut range_buf)?;
                    out.extend(
                        ranges
                            .iter()
                            .filter(|r| r.begin < r.end)
                            .map(|r| (offset(r.begin, self.address_offset), offset(r.end, self.address_offset))),
                    );
                } else {
                    entries.skip_attributes(abbrev.attributes())?;
                }
            }
            Ok(())
        };
        if scan().is_err() {
            return Vec::new();
        }
        out
    }

    /// symbolic's functions of the units `indices` (ascending), with one
    /// set of seen ranges across them as in a whole-file walk.
    pub(crate) fn functions_of_units(&self, indices: &[usize]) -> Result<Vec<Function<'d>>, DwarfError> {
        let mut seen_ranges = BTreeSet::new();
        let mut out = Vec::new();
        for &index in indices {
            let Some(unit) = self.get_unit(index)? else { continue };
            let Some(unit) = DwarfUnit::from_unit(unit, self, None)? else { continue };
            out.extend(unit.functions(&mut seen_ranges)?);
        }
        Ok(out)
    }
}

/// A row in the DWARF line program.
#[derive(Debug)]
struct DwarfRow {
    address: u64,
    file_index: u64,
    line: Option<u64>,
    size: Option<u64>,
}

/// A sequence in the DWARF line program.
#[derive(Debug)]
struct DwarfSequence {
    start: u64,
    end: u64,
    rows: Vec<DwarfRow>,
}

/// Helper that prepares a DwarfLineProgram for more efficient access.
#[derive(Debug)]
struct DwarfLineProgram<'d> {
    header: LineNumberProgramHeader<'d>,
    sequences: Vec<DwarfSequence>,
}

impl<'d> DwarfLineProgram<'d> {
    fn prepare(program: IncompleteLineNumberProgram<'d>) -> Self {
        let mut sequences = Vec::new();
        let mut sequence_rows = Vec::<DwarfRow>::new();
        let mut prev_address = 0;
        let mut state_machine = program.rows();

        while let Ok(Some((_, &program_row))) = state_machine.next_row() {
            let address = program_row.address();

            // we have seen rustc emit for WASM targets a bad sequence that spans from 0 to
            // the end of the program.  https://github.com/rust-lang/rust/issues/79410
            // We want to skip these bad sequences. Unfortunately, code in .o files can legitimately
            // be located at address 0, so we incorrectly skip line sequences in that case, too.
            // See https://github.com/getsentry/symbolic/issues/471 .
            if address == 0 {
                continue;
            }

            if let Some(last_row) = sequence_rows.last_mut() {
                if address >= last_row.address {
                    last_row.size = Some(address - last_row.address);
                }
            }

            if program_row.end_sequence() {
                // Theoretically, there could be multiple DW_LNE_end_sequence in a row. We're not
                // interested in empty sequences, so we can skip them completely.
                if !sequence_rows.is_empty() {
                    sequences.push(DwarfSequence {
                        start: sequence_rows[0].address,
                        // Take a defensive approach and ensure that `high_address` always covers
                        // the last encountered row, assuming a 1 byte instruction.
                        end: if address < prev_address { prev_address + 1 } else { address },
                        rows: std::mem::take(&mut sequence_rows),
                    });
                }
                prev_address = 0;
            } else if address < prev_address {
                // The standard says:
                // "Within a sequence, addresses and operation pointers may only increase."
                // So this row is invalid, we can ignore it.
                //
                // If we wanted to handle this, we could start a new sequence
                // here, but let's wait until that is needed.
            } else {
                let file_index = program_row.file_index();
                let line = program_row.line().map(|v| v.get());
                let mut duplicate = false;
                if let Some(last_row) = sequence_rows.last_mut() {
                    if last_row.address == address {
                        last_row.file_index = file_index;
                        last_row.line = line;
                        duplicate = true;
                    }
                }
                if !duplicate {
                    sequence_rows.push(DwarfRow { address, file_index, line, size: None });
                }
                prev_address = address;
            }
        }

        if !sequence_rows.is_empty() {
            // A sequence without an end_sequence row.
            // Let's assume the last row covered 1 byte.
            let start = sequence_rows[0].address;
            let end = prev_address + 1;
            sequences.push(DwarfSequence { start, end, rows: sequence_rows });
        }

        // Sequences are not guaranteed to be in order.
        sequences.sort_by_key(|x| x.start);

        DwarfLineProgram { header: state_machine.header().clone(), sequences }
    }

    /// Finds the first sequence which contains rows overlapping with the specified `range`.
    ///
    ///
    /// ```text
    ///       ┌─────────────────────────────────────────────────┐┌───────────────────────┐
    ///       │┌─────────────────┐┌───┐┌──────────────────────┐ ││┌─────────────────────┐│
    ///       ││Row 1            ││ 2 ││Row 3                 │ │││Row X                ││
    ///       │└─────────────────┘└───┘└──────────────────────┘ ││└─────────────────────┘│
    ///       └─────────────────────────────────────────────────┘└───────────────────────┘
    ///
    ///                             ├────────────────────────┘ Range A
    ///                             └────────────────────────┬────────┘ Range B
    /// └────────────────────────────────────────────────────┘ Range C
    /// ```
    ///
    /// Range `A` and `B` yield rows 2 and 3, range `C` yields all rows of the sequence,
    /// `1`, `2`, and `3`.
    pub fn get_rows(&self, range: &Range) -> &[DwarfRow] {
        for seq in &self.sequences {
            if range.begin >= seq.end || seq.start >= range.end {
                continue;
            }

            let from = match seq.rows.binary_search_by_key(&range.begin, |x| x.address) {
                Ok(idx) => idx,
                // If the range begins before the sequence, we clamp it to the beginning of the
                // sequence as a range determined by the low and high pc may include a function
                // prologue which is not mapped into the addr/line matrix.
                //
                // Since the sequences are ordered by address, this can only happen if the beginning
                // of the range is not part of another sequence already.
                Err(0) => 0,
                Err(next_idx) => next_idx - 1,
            };

            let len = seq.rows[from..]
                .binary_search_by_key(&range.end, |x| x.address)
                // Similarly here, we clamp the end of the range to the end of the sequence.
                //
                // There is a potential argument to be made that a range can span multiple
                // sequences, the spec isn't entirely clear about whether this is possible.
                //
                // For the moment we haven't observed any such case.
                .unwrap_or_else(|e| e);

            return &seq.rows[from..from + len];
        }
        &[]
    }
}

/// A slim wrapper around a DWARF unit.
#[derive(Clone, Copy, Debug)]
struct UnitRef<'d, 'a> {
    info: &'a DwarfInfo<'d>,
    unit: &'a Unit<'d>,
}

impl<'d> UnitRef<'d, '_> {
    /// Resolve the binary value of an attribute.
    #[inline(always)]
    fn slice_value(&self, value: AttributeValue<Slice<'d>>) -> Option<&'d [u8]> {
        self.info.attr_string(self.unit, value).map(|reader| reader.slice()).ok()
    }

    /// Resolve the actual string value of an attribute.
    #[inline(always)]
    fn string_value(&self, value: AttributeValue<Slice<'d>>) -> Option<Cow<'d, str>> {
        let slice = self.slice_value(value)?;
        Some(String::from_utf8_lossy(slice))
    }

    /// Resolves an entry and if found invokes a function to transform it.
    ///
    /// As this might resolve into cached information the data borrowed from
    /// abbrev can only be temporarily accessed in the callback.
    fn resolve_reference<T, F>(&self, attr: Attribute<'d>, f: F) -> Result<Option<T>, DwarfError>
    where
        F: FnOnce(Self, &Die<'d>) -> Result<Option<T>, DwarfError>,
    {
        let (unit, offset) = match attr.value() {
            AttributeValue::UnitRef(offset) => (*self, offset),
            AttributeValue::DebugInfoRef(offset) => self.info.find_unit_offset(offset)?,
            // TODO: There is probably more that can come back here.
            _ => return Ok(None),
        };

        let mut entries = unit.unit.entries_at_offset(offset)?;
        entries.next_entry()?;

        if let Some(entry) = entries.current() { f(unit, entry) } else { Ok(None) }
    }

    /// Returns the offset of this unit within its section.
    fn offset(&self) -> UnitSectionOffset {
        self.unit.header.offset()
    }

    /// Returns the source language declared in the root DIE of this compilation unit.
    fn language(&self) -> Result<Option<Language>, DwarfError> {
        let mut entries = self.unit.entries();
        let Some(root_entry) = entries.next_dfs()? else {
            return Ok(None);
        };
        let Some(AttributeValue::Language(lang)) = root_entry.attr_value(constants::DW_AT_language) else {
            return Ok(None);
        };
        Ok(Some(language_from_dwarf(lang)))
    }

    /// Maximum recursion depth for following `DW_AT_abstract_origin` chains, matching the limit
    /// used by elfutils `dwarf_attr_integrate`.
    const MAX_ABSTRACT_ORIGIN_DEPTH: u8 = 16;

    /// Resolves the source language for a DIE by following `DW_AT_abstract_origin` chains,
    /// including across compilation unit boundaries. `depth` limits recursion to guard against
    /// cycles or malformed DWARF.
    fn resolve_entry_language(&self, entry: &Die<'d>, depth: u8) -> Result<Option<Language>, DwarfError> {
        if depth == 0 {
            return Ok(None);
        }
        if let Some(attr) = entry.attr(constants::DW_AT_abstract_origin) {
            return self.resolve_reference(*attr, |ref_unit, ref_entry| {
                // Recurse first to follow deeper chains.
                if let Some(lang) = ref_unit.resolve_entry_language(ref_entry, depth - 1)? {
                    return Ok(Some(lang));
                }
                // No deeper reference: use the CU language if this is a cross-unit ref.
                if self.offset() != ref_unit.offset() { ref_unit.language() } else { Ok(None) }
            });
        }
        Ok(None)
    }

    /// Resolves the function name of a debug entry.
    fn resolve_function_name(
        &self,
        entry: &Die<'d>,
        language: Language,
        bcsymbolmap: Option<&'d BcSymbolMap<'d>>,
        prior_offset: Option<UnitOffset>,
    ) -> Result<Option<Name<'d>>, DwarfError> {
        let mut fallback_name = None;
        let mut reference_target = None;

        for attr in entry.attrs() {
            match attr.name() {
                // Prioritize these. If we get them, take them.
                constants::DW_AT_linkage_name | constants::DW_AT_MIPS_linkage_name => {
                    return Ok(self
                        .string_value(attr.value())
                        .map(|n| resolve_cow_name(bcsymbolmap, n))
                        .map(|n| Name::new(n, NameMangling::Mangled, language)));
                }
                constants::DW_AT_name => {
                    fallback_name = Some(attr);
                }
                constants::DW_AT_abstract_origin | constants::DW_AT_specification => {
                    reference_target = Some(attr);
                }
                _ => {}
            }
        }

        if let Some(attr) = fallback_name {
            return Ok(self
                .string_value(attr.value())
                .map(|n| resolve_cow_name(bcsymbolmap, n))
                .map(|n| Name::new(n, NameMangling::Unmangled, language)));
        }

        if let Some(attr) = reference_target {
            return self.resolve_reference(*attr, |ref_unit, ref_entry| {
                // Self-references may have a layer of indirection. Avoid infinite recursion
                // in this scenario.
                if let Some(prior) = prior_offset {
                    if self.offset() == ref_unit.offset() && prior == ref_entry.offset() {
                        return Ok(None);
                    }
                }

                if self.offset() != ref_unit.offset() || entry.offset() != ref_entry.offset() {
                    ref_unit.resolve_function_name(ref_entry, language, bcsymbolmap, Some(entry.offset()))
                } else {
                    Ok(None)
                }
            });
        }

        Ok(None)
    }
}

/// Wrapper around a DWARF Unit.
#[derive(Debug)]
struct DwarfUnit<'d, 'a> {
    inner: UnitRef<'d, 'a>,
    bcsymbolmap: Option<&'d BcSymbolMap<'d>>,
    language: Language,
    line_program: Option<DwarfLineProgram<'d>>,
    prefer_dwarf_names: bool,
}

impl<'d, 'a> DwarfUnit<'d, 'a> {
    /// Creates a DWARF unit from the gimli `Unit` type.
    fn from_unit(
        unit: &'a Unit<'d>,
        info: &'a DwarfInfo<'d>,
        bcsymbolmap: Option<&'d BcSymbolMap<'d>>,
    ) -> Result<Option<Self>, DwarfError> {
        let inner = UnitRef { info, unit };
        let mut entries = unit.entries();
        let entry = match entries.next_dfs()? {
            Some(entry) => entry,
            None => return Err(gimli::read::Error::MissingUnitDie.into()),
        };

        // Clang's LLD might eliminate an entire compilation unit and simply set the low_pc to zero
        // and remove all range entries to indicate that it is missing. Skip such a unit, as it does
        // not contain any code that can be executed. Special case relocatable objects, as here the
        // range information has not been written yet and all units look like this.
        if info.kind != ObjectKind::Relocatable && unit.low_pc == 0 && entry.attr(constants::DW_AT_ranges).is_none() {
            return Ok(None);
        }

        let language = match entry.attr_value(constants::DW_AT_language) {
            Some(AttributeValue::Language(lang)) => language_from_dwarf(lang),
            _ => Language::Unknown,
        };

        let line_program = unit.line_program.as_ref().map(|program| DwarfLineProgram::prepare(program.clone()));

        // The value of DW_AT_producer may be an in-place string or a
        // reference into the debug_str section. We use `string_value`
        // to resolve it correctly in either case.
        let producer =
            entry.attr_value(constants::DW_AT_producer).and_then(|av| av.string_value(&info.inner.debug_str));

        // Trust the symbol table more to contain accurate mangled names. However, since Dart's name
        // mangling is lossy, we need to load the demangled name instead.
        let prefer_dwarf_names = producer.as_deref() == Some(b"Dart VM");

        Ok(Some(DwarfUnit { inner, bcsymbolmap, language, line_program, prefer_dwarf_names }))
    }

    /// The path of the compilation directory. File names are usually relative to this path.
    fn compilation_dir(&self) -> &'d [u8] {
        match self.inner.unit.comp_dir {
            Some(ref dir) => resolve_byte_name(self.bcsymbolmap, dir.slice()),
            None => &[],
        }
    }

    /// Parses the call site and range lists of this Debugging Information Entry.
    ///
    /// This method consumes the attributes of the DIE. This means that the `entries` iterator must
    /// be placed just before the attributes of the DIE. On return, the `entries` iterator is placed
    /// after the attributes, ready to read the next DIE's abbrev.
    fn parse_ranges<'r>(
        &self,
        entries: &mut EntriesRaw<'d, '_>,
        abbrev: &gimli::Abbreviation,
        range_buf: &'r mut Vec<Range>,
    ) -> Result<(&'r mut Vec<Range>, CallLocation), DwarfError> {
        range_buf.clear();

        let mut call_line = None;
        let mut call_file = None;
        let mut low_pc = None;
        let mut high_pc = None;
        let mut high_pc_rel = None;

        let kind = self.inner.info.kind;

        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            match attr.name() {
                constants::DW_AT_low_pc => match attr.value() {
                    AttributeValue::Addr(addr) => low_pc = Some(addr),
                    AttributeValue::DebugAddrIndex(index) => {
                        low_pc = Some(self.inner.info.address(self.inner.unit, index)?)
                    }
                    _ => return Err(GimliError::UnsupportedAttributeForm(attr.form()).into()),
                },
                constants::DW_AT_high_pc => match attr.value() {
                    AttributeValue::Addr(addr) => high_pc = Some(addr),
                    AttributeValue::DebugAddrIndex(index) => {
                        high_pc = Some(self.inner.info.address(self.inner.unit, index)?)
                    }
                    AttributeValue::Udata(size) => high_pc_rel = Some(size),
                    _ => return Err(GimliError::UnsupportedAttributeForm(attr.form()).into()),
                },
                constants::DW_AT_call_line => match attr.value() {
                    AttributeValue::Udata(line) => call_line = Some(line),
                    _ => return Err(GimliError::UnsupportedAttributeForm(attr.form()).into()),
                },
                constants::DW_AT_call_file => match attr.value() {
                    AttributeValue::FileIndex(file) => call_file = Some(file),
                    _ => return Err(GimliError::UnsupportedAttributeForm(attr.form()).into()),
                },
                constants::DW_AT_ranges | constants::DW_AT_rnglists_base | constants::DW_AT_start_scope => {
                    match self.inner.info.attr_ranges(self.inner.unit, attr.value())? {
                        Some(mut ranges) => {
                            while let Some(range) = match ranges.next() {
                                Ok(range) => range,
                                // We have seen broken ranges for some WASM debug files generated by
                                // emscripten. They mostly manifest themselves in these errors, which
                                // are triggered by an inverted range (going high to low).
                                // See a few more examples of broken ranges here:
                                // https://github.com/emscripten-core/emscripten/issues/15552
                                Err(gimli::Error::InvalidCfiSetLoc(_)) => None,
                                Err(err) => {
                                    return Err(err.into());
                                }
                            } {
                                // A range that begins at 0 indicates code that was eliminated by
                                // the linker, see below.
                                if range.begin > 0 || kind == ObjectKind::Relocatable {
                                    range_buf.push(range);
                                }
                            }
                        }
                        None => continue,
                    }
                }
                _ => continue,
            }
        }

        let call_location = CallLocation { call_file, call_line };

        if range_buf.is_empty() {
            if let Some(range) = Self::convert_pc_range(low_pc, high_pc, high_pc_rel, kind)? {
                range_buf.push(range);
            }
        }

        Ok((range_buf, call_location))
    }

    fn convert_pc_range(
        low_pc: Option<u64>,
        high_pc: Option<u64>,
        high_pc_rel: Option<u64>,
        kind: ObjectKind,
    ) -> Result<Option<Range>, DwarfError> {
        // To go by the logic in dwarf2read, a `low_pc` of 0 can indicate an
        // eliminated duplicate when the GNU linker is used. In relocatable
        // objects, all functions are at `0` since they have not been placed
        // yet, so we want to retain them.
        let low_pc = match low_pc {
            Some(low_pc) if low_pc != 0 || kind == ObjectKind::Relocatable => low_pc,
            _ => return Ok(None),
        };

        let high_pc = match (high_pc, high_pc_rel) {
            (Some(high_pc), _) => high_pc,
            (_, Some(high_pc_rel)) => low_pc.wrapping_add(high_pc_rel),
            _ => return Ok(None),
        };

        if low_pc == high_pc {
            // Most likely low_pc == high_pc means the DIE should be ignored.
            // https://sourceware.org/ml/gdb-patches/2011-03/msg00739.html
            return Ok(None);
        }

        if low_pc == u64::MAX || low_pc == u64::MAX - 1 {
            // Similarly, u64::MAX/u64::MAX-1 may be used to indicate deleted code.
            // See https://reviews.llvm.org/D59553
            return Ok(None);
        }

        if low_pc > high_pc {
            return Err(DwarfErrorKind::InvertedFunctionRange.into());
        }

        Ok(Some(Range { begin: low_pc, end: high_pc }))
    }

    /// Resolves file information from a line program.
    fn file_info(&self, line_program: &LineNumberProgramHeader<'d>, file: &LineProgramFileEntry<'d>) -> FileInfo<'d> {
        FileInfo::new(
            Cow::Borrowed(resolve_byte_name(
                self.bcsymbolmap,
                file.directory(line_program).and_then(|attr| self.inner.slice_value(attr)).unwrap_or_default(),
            )),
            Cow::Borrowed(resolve_byte_name(
                self.bcsymbolmap,
                self.inner.slice_value(file.path_name()).unwrap_or_default(),
            )),
        )
    }

    /// Resolves a file entry by its index.
    fn resolve_file(&self, file_id: u64) -> Option<FileInfo<'d>> {
        let line_program = match self.line_program {
            Some(ref program) => &program.header,
            None => return None,
        };

        line_program.file(file_id).map(|file| self.file_info(line_program, file))
    }

    /// Resolves the name of a function from the symbol table.
    fn resolve_symbol_name(&self, address: u64, language: Language) -> Option<Name<'d>> {
        let symbol = self.inner.info.symbol_map.lookup_exact(address)?;
        let name = resolve_cow_name(self.bcsymbolmap, symbol.name.clone()?);
        Some(Name::new(name, NameMangling::Mangled, language))
    }

    /// Resolves the source language for a function by following `DW_AT_abstract_origin` to the
    /// origin compilation unit when crossing unit boundaries.
    ///
    /// With LTO, the linker may create artificial compilation units whose `DW_AT_language`
    /// does not reflect the original source language (e.g., a C++ CU containing functions
    /// originally written in C). When such a CU's subprogram carries a cross-unit
    /// `DW_AT_abstract_origin`, the referenced CU's language is more authoritative.
    fn resolve_function_language(&self, entry: &Die<'d>, fallback_language: Language) -> Language {
        self.inner
            .resolve_entry_language(entry, UnitRef::MAX_ABSTRACT_ORIGIN_DEPTH)
            .ok()
            .flatten()
            .unwrap_or(fallback_language)
    }

    /// Parses any DW_TAG_subprogram DIEs in the DIE subtree.
    fn parse_functions(
        &self,
        depth: isize,
        entries: &mut EntriesRaw<'d, '_>,
        output: &mut FunctionsOutput<'_, 'd>,
    ) -> Result<(), DwarfError> {
        while !entries.is_empty() {
            let dw_die_offset = entries.next_offset();
            let next_depth = entries.next_depth();
            if next_depth <= depth {
                return Ok(());
            }
            if let Some(abbrev) = entries.read_abbreviation()? {
                if abbrev.tag() == constants::DW_TAG_subprogram {
                    self.parse_function(dw_die_offset, next_depth, entries, abbrev, output)?;
                } else {
                    entries.skip_attributes(abbrev.attributes())?;
                }
            }
        }
        Ok(())
    }

    /// Parse a single function from a DWARF DIE subtree.
    ///
    /// The `entries` iterator must be placed after the abbrev / before the attributes of the
    /// function DIE.
    ///
    /// This method can call itself recursively if another DW_TAG_subprogram entry is encountered
    /// in the subtree.
    ///
    /// On return, the `entries` iterator is placed after the attributes of the last-read DIE.
    fn parse_function(
        &self,
        dw_die_offset: gimli::UnitOffset<usize>,
        depth: isize,
        entries: &mut EntriesRaw<'d, '_>,
        abbrev: &gimli::Abbreviation,
        output: &mut FunctionsOutput<'_, 'd>,
    ) -> Result<(), DwarfError> {
        let (ranges, _) = self.parse_ranges(entries, abbrev, &mut output.range_buf)?;

        let seen_ranges = &mut *output.seen_ranges;
        ranges.retain(|range| {
            // Filter out empty and reversed ranges.
            if range.begin > range.end {
                return false;
            }

            // We have seen duplicate top-level function entries being yielded from the
            // [`DwarfFunctionIterator`], which combined with recursively walking its inlinees can
            // blow past symcache limits.
            // We suspect the reason is that the the same top-level functions might be defined in
            // different compile units. We suspect this might be caused by link-time deduplication
            // which merges templated code that is being generated multiple times in each
            // compilation unit. We make sure to detect this here, so we can avoid creating these
            // duplicates as early as possible.
            let address = offset(range.begin, self.inner.info.address_offset);
            let size = range.end - range.begin;

            seen_ranges.insert((address, size))
        });

        // Ranges can be empty for three reasons: (1) the function is a no-op and does not
        // contain any code, (2) the function did contain eliminated dead code, or (3) some
        // tooling created garbage reversed ranges which we filtered out.
        // In the dead code case, a surrogate DIE remains with `DW_AT_low_pc(0)` and empty ranges.
        // That DIE might still contain inlined functions with actual ranges - these must be skipped.
        // However, non-inlined functions may be present in this subtree, so we must still descend
        // into it.
        if ranges.is_empty() {
            return self.parse_functions(depth, entries, output);
        }

        // Resolve functions in the symbol table first. Only if there is no entry, fall back
        // to debug information only if there is no match. Sometimes, debug info contains a
        // lesser quality of symbol names.
        //
        // XXX: Maybe we should actually parse the ranges in the resolve function and always
        // look at the symbol table based on the start of the DIE range.

        let entry = self.inner.unit.entry(dw_die_offset)?;
        // With LTO the current CU may be an artificial unit with an incorrect language. Follow
        // DW_AT_abstract_origin cross-unit to find the true source language. The resolved
        // language is also propagated to all inlinees of this function.
        let language = self.resolve_function_language(&entry, self.language);

        let symbol_name = if self.prefer_dwarf_names {
            None
        } else {
            let first_range_begin = ranges.iter().map(|range| range.begin).min().unwrap();
            let function_address = offset(first_range_begin, self.inner.info.address_offset);
            self.resolve_symbol_name(function_address, language)
        };

        let name = symbol_name
            .or_else(|| self.inner.resolve_function_name(&entry, language, self.bcsymbolmap, None).ok().flatten())
            .unwrap_or_else(|| Name::new("", NameMangling::Unmangled, language));

        // Create one function per range. In the common case there is only one range, so
        // we usually only have one function builder here.
        let mut builders: Vec<(Range, FunctionBuilder)> = ranges
            .iter()
            .map(|range| {
                let address = offset(range.begin, self.inner.info.address_offset);
                let size = range.end - range.begin;
                (*range, FunctionBuilder::new(name.clone(), self.compilation_dir(), address, size))
            })
            .collect();

        self.parse_function_children(depth, 0, entries, &mut builders, output, language)?;

        if let Some(line_program) = &self.line_program {
            for (range, builder) in &mut builders {
                for row in line_program.get_rows(range) {
                    let address = offset(row.address, self.inner.info.address_offset);
                    let size = row.size;
                    let file = self.resolve_file(row.file_index).unwrap_or_default();
                    let line = row.line.unwrap_or(0);
                    builder.add_leaf_line(address, size, file, line);
                }
            }
        }

        for (_range, builder) in builders {
            output.functions.push(builder.finish());
        }

        Ok(())
    }

    /// Traverses a subtree during function parsing.
    fn parse_function_children(
        &self,
        depth: isize,
        inline_depth: u32,
        entries: &mut EntriesRaw<'d, '_>,
        builders: &mut [(Range, FunctionBuilder<'d>)],
        output: &mut FunctionsOutput<'_, 'd>,
        language: Language,
    ) -> Result<(), DwarfError> {
        while !entries.is_empty() {
            let dw_die_offset = entries.next_offset();
            let next_depth = entries.next_depth();
            if next_depth <= depth {
                return Ok(());
            }
            let abbrev = match entries.read_abbreviation()? {
                Some(abbrev) => abbrev,
                None => continue,
            };
            match abbrev.tag() {
                constants::DW_TAG_subprogram => {
                    // Nested subprograms resolve their own language independently.
                    self.parse_function(dw_die_offset, next_depth, entries, abbrev, output)?;
                }
                constants::DW_TAG_inlined_subroutine => {
                    self.parse_inlinee(
                        dw_die_offset,
                        next_depth,
                        inline_depth,
                        entries,
                        abbrev,
                        builders,
                        output,
                        language,
                    )?;
                }
                _ => {
                    entries.skip_attributes(abbrev.attributes())?;
                }
            }
        }
        Ok(())
    }

    /// Recursively parse the inlinees of a function from a DWARF DIE subtree.
    ///
    /// The `entries` iterator must be placed just before the attributes of the inline function DIE.
    ///
    /// This method calls itself recursively for other DW_TAG_inlined_subroutine entries in the
    /// subtree. It can also call `parse_function` if a `DW_TAG_subprogram` entry is encountered.
    ///
    /// On return, the `entries` iterator is placed after the attributes of the last-read DIE.
    #[allow(clippy::too_many_arguments)]
    fn parse_inlinee(
        &self,
        dw_die_offset: gimli::UnitOffset<usize>,
        depth: isize,
        inline_depth: u32,
        entries: &mut EntriesRaw<'d, '_>,
        abbrev: &gimli::Abbreviation,
        builders: &mut [(Range, FunctionBuilder<'d>)],
        output: &mut FunctionsOutput<'_, 'd>,
        language: Language,
    ) -> Result<(), DwarfError> {
        let (ranges, call_location) = self.parse_ranges(entries, abbrev, &mut output.range_buf)?;

        ranges.retain(|range| range.end > range.begin);

        // Ranges can be empty for three reasons: (1) the function is a no-op and does not
        // contain any code, (2) the function did contain eliminated dead code, or (3) some
        // tooling created garbage reversed ranges which we filtered out.
        // In the dead code case, a surrogate DIE remains with `DW_AT_low_pc(0)` and empty ranges.
        // That DIE might still contain inlined functions with actual ranges - these must be skipped.
        // However, non-inlined functions may be present in this subtree, so we must still descend
        // into it.
        if ranges.is_empty() {
            return self.parse_functions(depth, entries, output);
        }

        let entry = self.inner.unit.entry(dw_die_offset)?;
        let language = self.resolve_function_language(&entry, language);

        // Use the language resolved for the enclosing top-level subprogram rather than
        // self.language: the inlinee's DW_AT_abstract_origin may resolve to a partial unit
        // which carries the wrong language (e.g. a C++ LTO partial unit for C code).
        let name = self
            .inner
            .resolve_function_name(&entry, language, self.bcsymbolmap, None)
            .ok()
            .flatten()
            .unwrap_or_else(|| Name::new("", NameMangling::Unmangled, language));

        let call_file = call_location.call_file.and_then(|i| self.resolve_file(i)).unwrap_or_default();
        let call_line = call_location.call_line.unwrap_or(0);

        // Create a separate inlinee for each range.
        for range in ranges.iter() {
            // Find the builder for the outer function that covers this range. Usually there's only
            // one outer range, so only one builder.
            let builder = match builders
                .iter_mut()
                .find(|(outer_range, _builder)| range.begin >= outer_range.begin && range.begin < outer_range.end)
            {
                Some((_outer_range, builder)) => builder,
                None => continue,
            };

            let address = offset(range.begin, self.inner.info.address_offset);
            let size = range.end - range.begin;
            builder.add_inlinee(inline_depth, name.clone(), address, size, call_file.clone(), call_line);
        }

        self.parse_function_children(depth, inline_depth + 1, entries, builders, output, language)
    }

    /// Collects all functions within this compilation unit.
    fn functions(&self, seen_ranges: &mut BTreeSet<(u64, u64)>) -> Result<Vec<Function<'d>>, DwarfError> {
        let mut entries = self.inner.unit.entries_raw(None)?;
        let mut output = FunctionsOutput::with_seen_ranges(seen_ranges);
        self.parse_functions(-1, &mut entries, &mut output)?;
        Ok(output.functions)
    }
}

/// The state we pass around during function parsing.
struct FunctionsOutput<'a, 'd> {
    /// The list of fully-parsed outer functions. Items are appended whenever we are done
    /// parsing an entire function.
    pub functions: Vec<Function<'d>>,
    /// A scratch buffer which avoids frequent allocations.
    pub range_buf: Vec<Range>,
    /// The set of `(address, size)` ranges of the functions we've already parsed.
    pub seen_ranges: &'a mut BTreeSet<(u64, u64)>,
}

impl<'a> FunctionsOutput<'a, '_> {
    pub fn with_seen_ranges(seen_ranges: &'a mut BTreeSet<(u64, u64)>) -> Self {
        Self { functions: Vec::new(), range_buf: Vec::new(), seen_ranges }
    }
}

/// For returning (partial) call location information from `parse_ranges`.
#[derive(Debug, Default, Clone, Copy)]
struct CallLocation {
    pub call_file: Option<u64>,
    pub call_line: Option<u64>,
}

/// Converts a DWARF language number into our `Language` type.
fn language_from_dwarf(language: gimli::DwLang) -> Language {
    match language {
        constants::DW_LANG_C => Language::C,
        constants::DW_LANG_C11 => Language::C,
        constants::DW_LANG_C89 => Language::C,
        constants::DW_LANG_C99 => Language::C,
        constants::DW_LANG_C_plus_plus => Language::Cpp,
        constants::DW_LANG_C_plus_plus_03 => Language::Cpp,
        constants::DW_LANG_C_plus_plus_11 => Language::Cpp,
        constants::DW_LANG_C_plus_plus_14 => Language::Cpp,
        constants::DW_LANG_D => Language::D,
        constants::DW_LANG_Go => Language::Go,
        constants::DW_LANG_ObjC => Language::ObjC,
        constants::DW_LANG_ObjC_plus_plus => Language::ObjCpp,
        constants::DW_LANG_Rust => Language::Rust,
        constants::DW_LANG_Swift => Language::Swift,
        _ => Language::Unknown,
    }
}
