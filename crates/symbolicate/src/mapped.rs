//! Read-only memory maps of symbol files and symbol cache entries, so a
//! report touches only the pages it reads (a 360 MB debug binary is not
//! read into memory for one stack, nor a 60 MB cached table copied).
//!
//! The cost: a mapped file truncated while we read it (rewritten in place
//! by `cp`, `rsync --inplace`, ...) kills the process with SIGBUS; see the
//! SAFETY comment in [`Mapped::open`].

#![allow(unsafe_code)]

use std::path::Path;

/// A file mapped read-only into memory.
#[derive(Debug)]
pub(crate) struct Mapped {
    map: memmap2::Mmap,
}

/// A mapped ELF symbol file with the decompressed copies of its compressed
/// DWARF sections, made by the lazy lookup that borrows them.
#[derive(Debug)]
pub(crate) struct MappedElf {
    pub(crate) map: Mapped,
    pub(crate) decompressed: crate::lazy::Decompressed,
}

impl MappedElf {
    pub(crate) fn open(path: &Path) -> std::io::Result<MappedElf> {
        Ok(MappedElf { map: Mapped::open(path)?, decompressed: Default::default() })
    }
}

impl Mapped {
    pub(crate) fn open(path: &Path) -> std::io::Result<Mapped> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the map is read-only and private, and its bytes are only
        // lent out as `&[u8]` borrowing `self`. `Mmap::map` is unsafe
        // because the file can still change under the map, and we cannot
        // prevent that:
        // * Rewritten in place without shrinking: reads see old or new bytes
        //   (strictly, a `&[u8]` whose bytes change is undefined behaviour
        //   in Rust's model). Every reader (gimli, symbolic, the cache
        //   checks) treats them as untrusted plain bytes and bounds-checks
        //   each access, so the expected result is wrong names or a parse
        //   error.
        // * Truncated: a read of a page past the new end raises SIGBUS,
        //   which kills the process. This does happen: `cp` onto an existing
        //   file, `rsync --inplace`, and some build tools truncate and
        //   rewrite the file in place (same inode). Only replacing the file
        //   (a new inode: linkers, `install`, package managers, plain
        //   `rsync`) leaves an existing map intact, and symbol files are the
        //   user's files. Symbol cache entries are safe from this (crashmon
        //   writes them to a temporary file and renames it into place, never
        //   in place), unless someone else rewrites them.
        // The monitor symbolicates in a limited child process, where a
        // SIGBUS fails only that report (recorded as killed by a signal).
        // The CLI commands that symbolicate in their own process
        // (`crashmon symbolicate`, `crashmon show`; see
        // `crate::symbolicate_path`) die with "Bus error" instead; rerun
        // them once the file is complete.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mapped { map })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }
}
