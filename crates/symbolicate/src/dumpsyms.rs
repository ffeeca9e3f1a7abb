//! Writing a Breakpad text symbol file (`.sym`) for an ELF binary, from the
//! same debug information the symbolicator reads: `MODULE`, `INFO CODE_ID`,
//! `FILE`, `INLINE_ORIGIN`, `FUNC` with `INLINE` and line records,
//! `PUBLIC` for symbol-table entries no `FUNC` covers (`_start`, assembly),
//! and `STACK CFI` from `.eh_frame`/`.debug_frame`.
//!
//! Function names are demangled without parameters or Rust hashes, as
//! crashmon's own reports show them. Line records describe the innermost
//! function at each address; `INLINE` records carry the call sites, as
//! rust-minidump and Breakpad's processor expect.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use symbolic_debuginfo::{FileInfo, Function, LineInfo, Object};

use crate::provider::readable_name;

/// Why a `.sym` file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpSymsError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an object file symbolic can read, or its debug
    /// information is damaged.
    #[error("{}: {reason}", path.display())]
    BadObject {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The separate debug file is of another build than the binary.
    #[error("{} is not the debug file of {}: build ids differ", debug.display(), binary.display())]
    DebugFileMismatch {
        /// The binary.
        binary: PathBuf,
        /// The debug file.
        debug: PathBuf,
    },
}

/// What [`write_sym`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSymsSummary {
    /// The file the functions and lines were read from (the binary or its
    /// separate debug file).
    pub debug_info_from: PathBuf,
    /// The Breakpad debug id (the `MODULE` record's).
    pub debug_id: String,
    /// The module name (the `MODULE` record's).
    pub name: String,
    /// `FUNC` records written.
    pub functions: usize,
    /// `PUBLIC` records written.
    pub publics: usize,
    /// `STACK CFI INIT` records written.
    pub cfi: usize,
}

impl DumpSymsSummary {
    /// The path of this module's file in a Breakpad symbol tree:
    /// `<name>/<DEBUG ID>/<name>.sym`.
    pub fn tree_path(&self) -> String {
        crate::locate::breakpad_relative_path(&self.name, &self.debug_id)
    }
}

/// Writes the `.sym` file of `binary` to `out`. The debug information is
/// read from `debug_file` if given, else from the binary if it has DWARF,
/// else from a matching separate debug file under `debug_dirs`
/// (`.build-id/xx/rest.debug`), else the binary's symbol table alone.
pub fn write_sym(
    binary: &Path,
    debug_file: Option<&Path>,
    debug_dirs: &[PathBuf],
    out: &mut dyn Write,
) -> Result<DumpSymsSummary, DumpSymsError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DumpSymsError::Io { path, source }
    };
    let bad = |path: &Path| {
        let path = path.to_owned();
        move |e: symbolic_debuginfo::ObjectError| DumpSymsError::BadObject { path, reason: e.to_string() }
    };
    let binary_data = std::fs::read(binary).map_err(io(binary))?;
    // Both files are read before either is parsed: the parsed objects
    // borrow from them with one lifetime.
    let debug_path = {
        let object = Object::parse(&binary_data).map_err(bad(binary))?;
        match debug_file {
            Some(path) => Some(path.to_owned()),
            None if object.has_debug_info() => None,
            None => object.code_id().and_then(|id| {
                let hex = id.as_str().to_ascii_lowercase();
                let (head, rest) = (hex.get(..2)?, hex.get(2..)?);
                debug_dirs
                    .iter()
                    .map(|dir| dir.join(".build-id").join(head).join(format!("{rest}.debug")))
                    .find(|p| p.is_file())
            }),
        }
    };
    let debug_data = match &debug_path {
        Some(path) => Some(std::fs::read(path).map_err(io(path))?),
        None => None,
    };
    let binary_object = Object::parse(&binary_data).map_err(bad(binary))?;
    let debug_object = match (&debug_data, &debug_path) {
        (Some(data), Some(path)) => {
            let object = Object::parse(data).map_err(bad(path))?;
            if object.code_id().is_some() && object.code_id() != binary_object.code_id() {
                return Err(DumpSymsError::DebugFileMismatch { binary: binary.to_owned(), debug: path.clone() });
            }
            Some(object)
        }
        _ => None,
    };
    let info_object = debug_object.as_ref().unwrap_or(&binary_object);
    let info_path = debug_path.clone().unwrap_or_else(|| binary.to_owned());

    let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let debug_id = binary_object.debug_id().breakpad().to_string();
    let mut text = String::new();
    let _ = writeln!(text, "MODULE Linux {} {debug_id} {name}", binary_object.arch().name());
    if let Some(code_id) = binary_object.code_id() {
        let _ = writeln!(text, "INFO CODE_ID {}", code_id.as_str().to_ascii_uppercase());
    }

    // Functions, with their line and inline records.
    let session = info_object.debug_session().map_err(|e| DumpSymsError::BadObject {
        path: info_path.clone(),
        reason: format!("cannot read its debug information: {e}"),
    })?;
    let mut functions: Vec<Function<'_>> = Vec::new();
    for function in session.functions() {
        match function {
            Ok(f) if f.size > 0 => functions.push(f),
            Ok(_) => {}
            Err(e) => {
                return Err(DumpSymsError::BadObject {
                    path: info_path.clone(),
                    reason: format!("damaged debug information: {e}"),
                });
            }
        }
    }
    functions.sort_by_key(|f| f.address);
    functions.dedup_by_key(|f| f.address);

    let mut files = Interner::default();
    let mut origins = Interner::default();
    let mut body = String::new();
    for function in &functions {
        let _ = writeln!(
            body,
            "FUNC {:x} {:x} 0 {}",
            function.address,
            function.size,
            one_line(&readable_name(function.name.clone()))
        );
        write_inlines(&mut body, function, 0, &mut files, &mut origins);
        let mut lines = Vec::new();
        leaf_lines(function, &mut lines);
        lines.sort_by_key(|l| l.address);
        for (i, line) in lines.iter().enumerate() {
            let end = lines.get(i + 1).map_or(function.end_address(), |next| next.address);
            let size = line.size.unwrap_or(u64::MAX).min(end.saturating_sub(line.address));
            if size == 0 {
                continue;
            }
            let file = files.id(&abs_path(function.compilation_dir, &line.file));
            let _ = writeln!(body, "{:x} {size:x} {} {file}", line.address, line.line);
        }
    }

    // Symbol-table entries outside every FUNC (binary and debug file).
    let ranges: BTreeMap<u64, u64> = functions.iter().map(|f| (f.address, f.end_address())).collect();
    let covered = |addr: u64| ranges.range(..=addr).next_back().is_some_and(|(_, &end)| addr < end);
    let mut publics: BTreeMap<u64, String> = BTreeMap::new();
    for object in [Some(&binary_object), debug_object.as_ref()].into_iter().flatten() {
        for symbol in object.symbols() {
            let Some(name) = symbol.name.as_deref().filter(|n| !n.is_empty()) else { continue };
            if covered(symbol.address) || symbol.address == 0 {
                continue;
            }
            publics.entry(symbol.address).or_insert_with(|| {
                readable_name(symbolic_common::Name::new(
                    name,
                    symbolic_common::NameMangling::Unknown,
                    symbolic_common::Language::Unknown,
                ))
            });
        }
    }

    let mut header = String::new();
    for (id, path) in files.items.iter().enumerate() {
        let _ = writeln!(header, "FILE {id} {}", one_line(path));
    }
    for (id, origin) in origins.items.iter().enumerate() {
        let _ = writeln!(header, "INLINE_ORIGIN {id} {}", one_line(origin));
    }
    let mut publics_text = String::new();
    for (address, name) in &publics {
        let _ = writeln!(publics_text, "PUBLIC {address:x} 0 {}", one_line(name));
    }

    // CFI: the binary's .eh_frame (the debug file's may be NOBITS), plus the
    // debug file's .debug_frame if it has one the binary lacks.
    let mut cfi = Vec::new();
    let cfi_source = if binary_object.has_unwind_info() { &binary_object } else { info_object };
    if cfi_source.has_unwind_info()
        && let Err(e) = symbolic_cfi::AsciiCfiWriter::new(&mut cfi).process(cfi_source)
    {
        tracing::warn!(binary = %binary.display(), "no STACK CFI records: {e}");
        cfi.clear();
    }
    let cfi_count = cfi.split(|&b| b == b'\n').filter(|l| l.starts_with(b"STACK CFI INIT")).count();

    let write_all = |out: &mut dyn Write| -> std::io::Result<()> {
        out.write_all(text.as_bytes())?;
        out.write_all(header.as_bytes())?;
        out.write_all(body.as_bytes())?;
        out.write_all(publics_text.as_bytes())?;
        out.write_all(&cfi)?;
        out.flush()
    };
    write_all(out).map_err(io(Path::new("<output>")))?;
    Ok(DumpSymsSummary {
        debug_info_from: info_path,
        debug_id,
        name,
        functions: functions.len(),
        publics: publics.len(),
        cfi: cfi_count,
    })
}

/// The line records of the innermost function at each address of `f`:
/// `f`'s own lines outside its inlinees (the lines the builder put there
/// for an inlinee's range are call sites), then each inlinee's.
fn leaf_lines<'d>(f: &Function<'d>, out: &mut Vec<LineInfo<'d>>) {
    for line in &f.lines {
        if !f.inlinees.iter().any(|i| i.address <= line.address && line.address < i.end_address()) {
            out.push(line.clone());
        }
    }
    for inlinee in &f.inlinees {
        leaf_lines(inlinee, out);
    }
}

/// `INLINE <depth> <call line> <call file> <origin> <address> <size>` for
/// each inlinee of `f`, recursively. The call site is `f`'s line record at
/// the inlinee's start.
fn write_inlines(out: &mut String, f: &Function<'_>, depth: u32, files: &mut Interner, origins: &mut Interner) {
    for inlinee in &f.inlinees {
        let call = f.lines.iter().rev().find(|l| l.address <= inlinee.address);
        let (call_line, call_file) = match call {
            Some(l) => (l.line, files.id(&abs_path(f.compilation_dir, &l.file))),
            None => (0, files.id("")),
        };
        let origin = origins.id(&readable_name(inlinee.name.clone()));
        let _ =
            writeln!(out, "INLINE {depth} {call_line} {call_file} {origin} {:x} {:x}", inlinee.address, inlinee.size);
        write_inlines(out, inlinee, depth + 1, files, origins);
    }
}

/// The file's path, joined to the compilation directory if relative.
fn abs_path(compilation_dir: &[u8], file: &FileInfo<'_>) -> String {
    let path = file.path_str();
    if path.starts_with('/') || compilation_dir.is_empty() {
        return path;
    }
    format!("{}/{path}", String::from_utf8_lossy(compilation_dir).trim_end_matches('/'))
}

/// Numbers strings in order of first use.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, usize>,
    items: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> usize {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.items.len();
        self.ids.insert(s.to_owned(), id);
        self.items.push(s.to_owned());
        id
    }
}

/// Records are lines: no newlines inside names or paths.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) { s.replace(['\n', '\r'], " ").into() } else { s.into() }
}
