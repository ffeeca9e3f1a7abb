//! Common module reader types.
use {
    crate::process_reader::{CopyFromProcessError, ProcessReader},
    std::borrow::Cow,
};

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use crate::linux::module_reader::*;

#[cfg(target_os = "windows")]
pub use crate::windows::module_reader::*;

#[cfg(target_os = "macos")]
pub use crate::mac::module_reader::*;

pub struct ProcessModuleMemoryReader<'a> {
    pub(super) reader: &'a ProcessReader<'a>,
    pub(super) start_address: u64,
    /// crashmon patch: the module's first page, read once: the ELF header,
    /// program headers and notes (build id) almost always lie in it, and
    /// each small read was a `process_vm_readv` of its own.
    head: std::cell::OnceCell<Option<Vec<u8>>>,
}

/// Bytes of a module's start read at once (one page).
const HEAD_LEN: usize = 4096;

/// crashmon patch: the most bytes one read of a module's memory may ask
/// for. The lengths come from ELF headers in the (crashed) process's
/// memory; a corrupt one made upstream allocate whatever it said.
const MAX_MODULE_READ: usize = 16 << 20;

impl<'a> ProcessModuleMemoryReader<'a> {
    pub fn new(reader: &'a ProcessReader<'a>, start_address: usize) -> Self {
        Self {
            reader,
            start_address: start_address as u64,
            head: std::cell::OnceCell::new(),
        }
    }
    pub fn read(&self, offset: u64, length: u64) -> Result<Cow<'a, [u8]>, ModuleMemoryReadError> {
        if let Some(end) = offset.checked_add(length)
            && length > 0
            && end <= HEAD_LEN as u64
        {
            let head = self.head.get_or_init(|| {
                let address = usize::try_from(self.start_address).ok()?;
                self.reader
                    .read_to_vec(address, std::num::NonZeroUsize::new(HEAD_LEN)?)
                    .ok()
            });
            // (A short head read falls through to a read of its own.)
            if let Some(bytes) = head.as_ref().and_then(|head| head.get(offset as usize..end as usize)) {
                return Ok(Cow::Owned(bytes.to_vec()));
            }
        }
        let inner = || {
            let address = self
                .start_address
                .checked_add(offset)
                .ok_or(ReadError::Overflow)?;
            let address = usize::try_from(address).map_err(|_| ReadError::Overflow)?;
            let length = usize::try_from(length).map_err(|_| ReadError::Overflow)?;
            if length > MAX_MODULE_READ {
                return Err(ReadError::OutOfBounds);
            }
            let length =
                std::num::NonZeroUsize::new(length).ok_or(ReadError::ZeroLengthProcessRead)?;
            self.reader
                .read_to_vec(address, length)
                .map(Cow::Owned)
                .map_err(ReadError::CopyError)
        };

        inner().map_err(|error| ModuleMemoryReadError {
            start_address: Some(self.start_address),
            offset,
            length,
            error,
        })
    }
}

#[derive(Debug, thiserror::Error, serde::Serialize)]
#[error("Error reading {length} bytes at {offset:#x}{}: {error}",
    .start_address.map(|s| format!(" (module start address {s:#x})")).unwrap_or_default()
)]
pub struct ModuleMemoryReadError {
    pub offset: u64,
    pub length: u64,
    pub start_address: Option<u64>,
    #[source]
    pub error: ReadError,
}

#[derive(Debug, thiserror::Error, serde::Serialize)]
pub enum ReadError {
    #[error("Attempted to read 0 bytes from process memory")]
    ZeroLengthProcessRead,
    #[error("Read overflowed the address space")]
    Overflow,
    #[error("Read was out of slice memory bounds")]
    OutOfBounds,
    #[error(transparent)]
    CopyError(#[from] CopyFromProcessError),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[error(transparent)]
    PlatformSpecific(crate::linux::BackendError),
}
