//! Read-only memory maps of symbol files and symbol cache entries, so a
//! report touches only the pages it reads (a 360 MB debug binary is not
//! read into memory for one stack, nor a 60 MB cached table copied).

#![allow(unsafe_code)]

use std::path::Path;

/// A file mapped read-only into memory.
#[derive(Debug)]
pub(crate) struct Mapped {
    map: memmap2::Mmap,
}

impl Mapped {
    pub(crate) fn open(path: &Path) -> std::io::Result<Mapped> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the map is read-only and private. Its contents change only
        // if the file is truncated or rewritten in place while it is mapped.
        // Symbol files are binaries and debug files, which installers and
        // linkers replace (new inode) rather than rewrite; symbol cache
        // entries are written to a temporary file and renamed into place,
        // never rewritten. A truncation would make a read fault (SIGBUS), not
        // let safe code observe invalid values: the data is plain bytes that
        // every reader bounds-checks. The monitor symbolicates in a limited
        // child process, so such a fault fails only that report.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mapped { map })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }
}
