//! Finding the symbols of each module of a dump, by build id, in order:
//!
//! 1. the binary at the module's path, if its build id matches the dump's
//!    and it carries DWARF;
//! 2. a separate debug file whose build id matches:
//!    `<debug dir>/.build-id/xx/rest.debug` for each debug directory
//!    (default `/usr/lib/debug`), then the binary's `.gnu_debuglink` name
//!    next to the binary, in its `.debug/` directory and under
//!    `<debug dir>/<binary's directory>` (CRC-32 checked);
//! 3. a Breakpad `.sym` file in a `--symbols` directory,
//!    `<dir>/<debug file>/<DEBUG ID>/<debug file>.sym`, whose `MODULE`
//!    record names the dump's debug id;
//! 4. the same path on each `--symbol-server` (see [`crate::server`]);
//! 5. the binary's own symbol table, if it matches but has no DWARF (names
//!    without lines, better than nothing).
//!
//! Every failed place that was worth trying is recorded as a miss in the
//! module's report; nothing here is fatal.

use std::path::{Path, PathBuf};

use minidump::{MinidumpModule, Module};

use crate::buildid::{self, LocalIds};
use crate::report::{SymbolSource, SymbolStatus};
use crate::server::ServerClient;

/// The file a module's symbols are read from.
#[derive(Debug, Clone)]
pub(crate) enum SymbolFile {
    /// An ELF file: the binary or a separate debug file.
    Elf(PathBuf),
    /// A Breakpad text `.sym` file.
    Breakpad(PathBuf),
}

impl SymbolFile {
    pub(crate) fn path(&self) -> &Path {
        match self {
            SymbolFile::Elf(p) | SymbolFile::Breakpad(p) => p,
        }
    }
}

/// The outcome of the lookup for one module.
#[derive(Debug)]
pub(crate) struct Located {
    /// `Loaded` if symbols were found, else what is wrong with the binary.
    pub status: SymbolStatus,
    pub source: Option<SymbolSource>,
    pub file: Option<SymbolFile>,
    /// The URL for symbols from a server (`file` is then its cached copy).
    pub url: Option<String>,
    /// The local binary, when it is the build that ran (for CFI unwinding).
    pub binary: Option<PathBuf>,
    /// Whether that binary has DWARF.
    pub binary_has_dwarf: bool,
    pub misses: Vec<String>,
}

impl Located {
    /// The ELF file to read CFI from: the verified binary, else the debug
    /// file (whose `.eh_frame` may be empty; then the processor falls back
    /// to frame pointers and scanning).
    pub(crate) fn unwind_file(&self) -> Option<PathBuf> {
        self.binary.clone().or_else(|| match &self.file {
            Some(SymbolFile::Elf(path)) => Some(path.clone()),
            _ => None,
        })
    }

    /// The key of this module's entry in the symbol cache: build (or debug)
    /// id plus the kind of file.
    pub(crate) fn cache_key(&self, module: &MinidumpModule) -> Option<String> {
        let source = self.source?;
        let id = match (source, module.code_identifier()) {
            (SymbolSource::Binary | SymbolSource::DebugFile, Some(id)) => id.as_str().to_ascii_lowercase(),
            _ => module.debug_identifier()?.breakpad().to_string(),
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let kind = match source {
            // A stripped binary's table (symbol table only) must not stand
            // in for the full one of the same build, nor the other way.
            SymbolSource::Binary if !self.binary_has_dwarf => "symtab",
            SymbolSource::Binary => "binary",
            SymbolSource::DebugFile => "debug-file",
            SymbolSource::SymbolsDir | SymbolSource::SymbolServer => "breakpad",
        };
        Some(format!("{id}-{kind}"))
    }
}

/// Where to look.
#[derive(Debug)]
pub(crate) struct Locator<'a> {
    pub debug_dirs: &'a [PathBuf],
    pub symbol_dirs: &'a [PathBuf],
    pub servers: Option<&'a ServerClient>,
}

impl Locator<'_> {
    pub(crate) fn locate(&self, module: &MinidumpModule) -> Located {
        let local = buildid::check_local_binary(module);
        let mut located = Located {
            status: local.status,
            source: None,
            file: None,
            url: None,
            binary: None,
            binary_has_dwarf: local.ids.as_ref().is_some_and(|ids| ids.has_dwarf),
            misses: Vec::new(),
        };
        let code_file = module.code_file();
        let binary_path = PathBuf::from(code_file.as_ref());
        let mut stripped_binary = false;
        if local.status == SymbolStatus::Loaded {
            located.binary = Some(binary_path.clone());
            if local.ids.as_ref().is_some_and(|ids| ids.has_dwarf) {
                return located.found(SymbolSource::Binary, SymbolFile::Elf(binary_path));
            }
            stripped_binary = true;
        } else if binary_path.is_absolute() {
            located.misses.push(format!("{}: {}", binary_path.display(), local.status.describe()));
        }

        // Separate debug files.
        let build_id = module.code_identifier().and_then(|id| buildid::decode_hex(id.as_str()));
        if let Some(build_id) = build_id.as_deref().filter(|id| id.len() >= 2) {
            let hex = buildid::encode_hex(build_id);
            for dir in self.debug_dirs {
                let path = dir.join(".build-id").join(&hex[..2]).join(format!("{}.debug", &hex[2..]));
                if !path.exists() {
                    continue;
                }
                if buildid::file_build_id(&path).as_deref() == Some(build_id) {
                    return located.found(SymbolSource::DebugFile, SymbolFile::Elf(path));
                }
                located.misses.push(format!("{}: build id differs", path.display()));
            }
            if let Some((name, crc)) = local.ids.as_ref().and_then(|ids| ids.debuglink.clone())
                && stripped_binary
            {
                for path in debuglink_candidates(&binary_path, &name, self.debug_dirs) {
                    if path == binary_path || !path.is_file() {
                        continue;
                    }
                    match check_debuglink(&path, crc, build_id) {
                        Ok(()) => return located.found(SymbolSource::DebugFile, SymbolFile::Elf(path)),
                        Err(why) => located.misses.push(format!("{}: {why}", path.display())),
                    }
                }
            }
        }

        // Breakpad symbol directories, then servers.
        let debug_file = module.debug_file().map(|f| basename(&f).to_owned());
        let debug_id = module.debug_identifier().map(|id| id.breakpad().to_string());
        if let (Some(debug_file), Some(debug_id)) = (debug_file, debug_id)
            && !debug_file.is_empty()
            && !debug_file.contains("..")
        {
            let relative = breakpad_relative_path(&debug_file, &debug_id);
            for dir in self.symbol_dirs {
                let path = dir.join(&relative);
                if !path.is_file() {
                    continue;
                }
                match check_sym_module(&path, &debug_id) {
                    Ok(()) => return located.found(SymbolSource::SymbolsDir, SymbolFile::Breakpad(path)),
                    Err(why) => located.misses.push(format!("{}: {why}", path.display())),
                }
            }
            if let Some(servers) = self.servers {
                match servers.fetch(&relative, &debug_id) {
                    Ok((path, url, misses)) => {
                        located.misses.extend(misses);
                        located.url = Some(url);
                        return located.found(SymbolSource::SymbolServer, SymbolFile::Breakpad(path));
                    }
                    Err(misses) => located.misses.extend(misses),
                }
            }
        }

        if stripped_binary {
            // Only the symbol table: names without lines.
            return located.found(SymbolSource::Binary, SymbolFile::Elf(binary_path));
        }
        located
    }
}

impl Located {
    fn found(mut self, source: SymbolSource, file: SymbolFile) -> Located {
        self.status = SymbolStatus::Loaded;
        self.source = Some(source);
        self.file = Some(file);
        self
    }
}

/// `<debug file>/<DEBUG ID>/<debug file without .pdb>.sym`, Breakpad's layout.
pub(crate) fn breakpad_relative_path(debug_file: &str, debug_id: &str) -> String {
    let stem = debug_file.strip_suffix(".pdb").unwrap_or(debug_file);
    format!("{debug_file}/{debug_id}/{stem}.sym")
}

/// Where gdb looks for a `.gnu_debuglink` name: next to the binary, in
/// `.debug/` next to it, and under each debug directory followed by the
/// binary's directory.
fn debuglink_candidates(binary: &Path, name: &str, debug_dirs: &[PathBuf]) -> Vec<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return Vec::new();
    }
    let Some(dir) = binary.parent() else { return Vec::new() };
    let mut out = vec![dir.join(name), dir.join(".debug").join(name)];
    for debug_dir in debug_dirs {
        out.push(debug_dir.join(dir.strip_prefix("/").unwrap_or(dir)).join(name));
    }
    out
}

/// A `.gnu_debuglink` target must have the recorded CRC-32 and, if it has
/// a build id, the dump's.
fn check_debuglink(path: &Path, crc: u32, build_id: &[u8]) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let actual = crc32fast::hash(&bytes);
    if actual != crc {
        return Err(format!("CRC-32 {actual:08x} is not the {crc:08x} the binary's .gnu_debuglink records"));
    }
    let ids = LocalIds::read(std::fs::File::open(path).map_err(|e| e.to_string())?)?;
    match ids.build_id {
        Some(id) if id != build_id => Err("build id differs".to_owned()),
        _ => Ok(()),
    }
}

/// The first line of a `.sym` file must be `MODULE <os> <arch> <debug id> <name>`
/// with the dump's debug id.
pub(crate) fn check_sym_module(path: &Path, debug_id: &str) -> Result<(), String> {
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(file.take(4096)).read_line(&mut line).map_err(|e| format!("cannot read it: {e}"))?;
    let mut words = line.split_whitespace();
    if words.next() != Some("MODULE") {
        return Err("not a Breakpad symbol file (no MODULE record)".to_owned());
    }
    match words.nth(2) {
        Some(id) if id.eq_ignore_ascii_case(debug_id) => Ok(()),
        Some(id) => Err(format!("its MODULE record names debug id {id}, not {debug_id}")),
        None => Err("its MODULE record has no debug id".to_owned()),
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
