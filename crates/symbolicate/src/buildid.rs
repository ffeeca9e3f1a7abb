//! Checking that the local file a dump's module names is the build that ran.
//!
//! The debug-info symbol provider reads whatever file is at the module's
//! path today; after a rebuild or an upgrade that is a different binary and
//! would name the wrong functions. So each module's local file is verified
//! against the dump first, and only verified modules are handed to the
//! provider.
//!
//! For Linux dumps written by `minidump-writer` the module's code id is the
//! raw ELF build id (the `NT_GNU_BUILD_ID` note), hex. For a binary linked
//! without a build id, `minidump-writer` records instead the first 4 KiB of
//! the first executable section XOR-folded into 16 bytes (Breakpad's
//! scheme); such a file is verified by computing the same hash.

use std::fs::File;
use std::io;
use std::path::Path;

use minidump::{MinidumpModule, Module};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::{Endian, Endianness, FileKind, ReadCache, ReadRef};

use crate::report::SymbolStatus;

/// Bytes of the executable section folded into the fallback identifier.
const TEXT_HASH_BYTES: u64 = 4096;
/// Size of the fallback identifier (a GUID).
const TEXT_HASH_LEN: usize = 16;

/// What the local file at a module's path is.
#[derive(Debug)]
pub(crate) struct LocalBinary {
    /// Whether it may be used: [`SymbolStatus::Loaded`] if it is the build
    /// that ran.
    pub status: SymbolStatus,
    /// Its identifiers and debug sections (when it could be read).
    pub ids: Option<LocalIds>,
}

/// Checks `module`'s local file against the dump.
pub(crate) fn check_local_binary(module: &MinidumpModule) -> LocalBinary {
    let code_file = module.code_file();
    let path = Path::new(code_file.as_ref());
    let status = |status| LocalBinary { status, ids: None };
    // Names such as `linux-gate.so` (the vDSO) are not paths on this machine;
    // don't let them resolve against the current directory.
    if !path.is_absolute() {
        tracing::debug!(module = %code_file, "not an absolute path: no local file");
        return status(SymbolStatus::Missing);
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(module = %code_file, "no local file");
            return status(SymbolStatus::Missing);
        }
        Err(e) => {
            tracing::warn!(module = %code_file, "cannot open the local file: {e}");
            return status(SymbolStatus::Unreadable);
        }
    };
    let Some(expected) = module.code_identifier().and_then(|id| decode_hex(id.as_str())) else {
        tracing::debug!(module = %code_file, "the dump records no build id for this module");
        return status(SymbolStatus::NoBuildId);
    };
    let local = match LocalIds::read(file) {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(module = %code_file, "cannot read the local file as ELF: {e}");
            return status(SymbolStatus::Unreadable);
        }
    };
    let verdict = local.verify(&expected);
    match verdict {
        SymbolStatus::Mismatch => tracing::warn!(
            module = %code_file,
            dump = %encode_hex(&expected),
            local = %local.describe(),
            "the local file is a different build than the one in the dump: not using its symbols"
        ),
        _ => tracing::debug!(module = %code_file, status = %verdict, "module checked"),
    }
    LocalBinary { status: verdict, ids: Some(local) }
}

/// The build id of the ELF file at `path` (`None` if it has none or is not
/// ELF).
pub(crate) fn file_build_id(path: &Path) -> Option<Vec<u8>> {
    LocalIds::read(File::open(path).ok()?).ok()?.build_id
}

/// The identifiers of a local ELF file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LocalIds {
    /// The `NT_GNU_BUILD_ID` note, if the file has one.
    pub build_id: Option<Vec<u8>>,
    /// The fallback identifier, computed only for files without a build id.
    pub text_hash: Option<[u8; TEXT_HASH_LEN]>,
    /// Whether it has DWARF debug info (a non-empty `.debug_info`).
    pub has_dwarf: bool,
    /// Its `.gnu_debuglink`: the debug file's name and CRC-32.
    pub debuglink: Option<(String, u32)>,
}

impl LocalIds {
    /// Reads the identifiers of the ELF file `file`, reading only the parts
    /// needed (headers, notes), not the whole file.
    pub(crate) fn read(file: File) -> Result<LocalIds, String> {
        let cache = ReadCache::new(file);
        let data = &cache;
        match FileKind::parse(data).map_err(|e| format!("not an ELF file ({e})"))? {
            FileKind::Elf32 => read_ids::<elf::FileHeader32<Endianness>, _>(data),
            FileKind::Elf64 => read_ids::<elf::FileHeader64<Endianness>, _>(data),
            other => return Err(format!("not an ELF file ({other:?})")),
        }
        .map_err(|e| e.to_string())
    }

    fn verify(&self, expected: &[u8]) -> SymbolStatus {
        if let Some(build_id) = &self.build_id {
            return if build_id.as_slice() == expected { SymbolStatus::Loaded } else { SymbolStatus::Mismatch };
        }
        match &self.text_hash {
            Some(hash) if hash.as_slice() == expected => SymbolStatus::Loaded,
            // The dump's id is neither this file's (absent) build id nor its
            // text hash: whatever ran was another file.
            Some(_) => SymbolStatus::Mismatch,
            None => SymbolStatus::NoBuildId,
        }
    }

    fn describe(&self) -> String {
        match (&self.build_id, &self.text_hash) {
            (Some(id), _) => encode_hex(id),
            (None, Some(hash)) => format!("{} (text hash, no build id)", encode_hex(hash)),
            (None, None) => "none".to_owned(),
        }
    }
}

fn read_ids<'data, Elf, R>(data: R) -> object::Result<LocalIds>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let mut ids = LocalIds::default();

    // Program headers first, then sections: the order minidump-writer uses.
    'found: for segment in header.program_headers(endian, data)? {
        if let Some(mut notes) = segment.notes(endian, data)? {
            while let Some(note) = notes.next()? {
                if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                    ids.build_id = Some(note.desc().to_vec());
                    break 'found;
                }
            }
        }
    }
    let sections = header.sections(endian, data)?;
    for section in sections.iter() {
        let name = sections.section_name(endian, section).unwrap_or_default();
        let size: u64 = section.sh_size(endian).into();
        if name == b".debug_info" && section.sh_type(endian) != elf::SHT_NOBITS && size > 0 {
            ids.has_dwarf = true;
        }
        // The name, NUL, padding to 4, then the CRC-32 (file's endian).
        if name == b".gnu_debuglink"
            && section.sh_type(endian) != elf::SHT_NOBITS
            && let Ok(bytes) = section.data(endian, data)
            && let Some(nul) = bytes.iter().position(|&b| b == 0)
            && let Ok(link) = std::str::from_utf8(&bytes[..nul])
            && let Some(crc) = bytes.get(((nul + 4) & !3)..((nul + 4) & !3) + 4)
        {
            let crc: [u8; 4] = crc.try_into().expect("4 bytes");
            let crc = if endian.is_little_endian() { u32::from_le_bytes(crc) } else { u32::from_be_bytes(crc) };
            ids.debuglink = Some((link.to_owned(), crc));
        }
        if ids.build_id.is_none()
            && let Some(mut notes) = section.notes(endian, data)?
        {
            while let Some(note) = notes.next()? {
                if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                    ids.build_id = Some(note.desc().to_vec());
                    break;
                }
            }
        }
    }
    if ids.build_id.is_some() {
        return Ok(ids);
    }

    // No build id: Breakpad's fallback, the first page of the first
    // executable section folded into 16 bytes.
    let text = sections.iter().find(|s| {
        s.sh_type(endian) == elf::SHT_PROGBITS && s.sh_flags(endian).contains(elf::SHF_ALLOC | elf::SHF_EXECINSTR)
    });
    if let Some(text) = text {
        let size: u64 = text.sh_size(endian).into();
        // A file cut short: no hash, so it cannot be verified.
        if let Ok(bytes) = data.read_bytes_at(text.sh_offset(endian).into(), size.min(TEXT_HASH_BYTES)) {
            let mut hash = [0u8; TEXT_HASH_LEN];
            for chunk in bytes.chunks(TEXT_HASH_LEN) {
                for (h, b) in hash.iter_mut().zip(chunk) {
                    *h ^= *b;
                }
            }
            ids.text_hash = Some(hash);
        }
    }
    Ok(ids)
}

/// Decodes a hex string (any case); `None` if it is not hex or empty.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Lower-case hex of `bytes`.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(decode_hex("00aBff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(encode_hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex(""), None);
    }

    /// The test executable's own build id, read by this module, matches the
    /// one the kernel-loaded image carries (`/proc/self/exe` is the same
    /// file, so both reads must agree; and a Rust test binary linked by the
    /// system linker has a build id).
    #[test]
    fn reads_own_build_id() {
        let exe = std::env::current_exe().unwrap();
        let ids = LocalIds::read(File::open(&exe).unwrap()).unwrap();
        let via_proc = LocalIds::read(File::open("/proc/self/exe").unwrap()).unwrap();
        assert_eq!(ids, via_proc);
        let id = ids.build_id.expect("the test executable has a GNU build id");
        assert!(id.len() >= 8, "build id {id:?}");
        assert_eq!(ids.text_hash, None);
    }

    #[test]
    fn non_elf_is_an_error() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"#!/bin/sh\necho hi\n").unwrap();
        let err = LocalIds::read(File::open(f.path()).unwrap()).unwrap_err();
        assert!(err.starts_with("not an ELF file"), "{err}");
    }
}
