use {
    super::{
        auxv::AuxvDumpInfo, minidump_writer::MinidumpWriter, process_inspection::ProcessInspector,
        process_reader::CopyFromProcessError, serializers::*,
    },
    crate::{
        mem_writer::{
            Buffer, MemoryArrayWriter, MemoryWriter, MemoryWriterError, write_string_to_location,
        },
        minidump_format::*,
    },
};

type Result<T> = std::result::Result<T, SectionDsoDebugError>;

cfg_if::cfg_if! {
    if #[cfg(target_pointer_width = "32")] {
        use goblin::elf::program_header::program_header32::SIZEOF_PHDR;
    } else if #[cfg(target_pointer_width = "64")] {
        use goblin::elf::program_header::program_header64::SIZEOF_PHDR;
    }
}

cfg_if::cfg_if! {
    if #[cfg(all(target_pointer_width = "64", target_arch = "arm"))] {
        type ElfAddr = u64;
    } else if #[cfg(all(target_pointer_width = "64", not(target_arch = "arm")))] {
        type ElfAddr = libc::Elf64_Addr;
    } else if #[cfg(all(target_pointer_width = "32", target_arch = "arm"))] {
        type ElfAddr = u32;
    } else if #[cfg(all(target_pointer_width = "32", not(target_arch = "arm")))] {
        type ElfAddr = libc::Elf32_Addr;
    }
}

#[derive(Debug, thiserror::Error, serde::Serialize)]
pub enum SectionDsoDebugError {
    #[error("Failed to write to memory")]
    MemoryWriterError(#[from] MemoryWriterError),
    #[error("Could not find: {0}")]
    CouldNotFind(&'static str),
    #[error("Failed to copy memory from process")]
    CopyFromProcessError(#[from] CopyFromProcessError),
    #[error("Failed to copy memory from process")]
    FromUTF8Error(
        #[from]
        #[serde(serialize_with = "serialize_from_utf8_error")]
        std::string::FromUtf8Error,
    ),
}

// COPY from <link.h>
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct LinkMap {
    /* These first few members are part of the protocol with the debugger.
    This is the same format used in SVR4.  */
    l_addr: ElfAddr, /* Difference between the address in the ELF
                     file and the addresses in memory.  */
    l_name: usize, /* Absolute file name object was found in. WAS: `char*`  */
    l_ld: usize,   /* Dynamic section of the shared object.  WAS: `ElfW(Dyn) *` */
    l_next: usize, /* Chain of loaded objects. WAS: `struct link_map *` */
    l_prev: usize, /* Chain of loaded objects. WAS: `struct link_map *` */
}

// COPY from <link.h>
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct RDebug {
    r_version: libc::c_int, /* Version number for this protocol.  */
    r_map: usize,           /* Head of the chain of loaded objects. WAS: `struct link_map *` */

    /* This is the address of a function internal to the run-time linker,
    that will always be called when the linker begins to map in a
    library or unmap it, and again when the mapping change is complete.
    The debugger can set a breakpoint at this address if it wants to
    notice shared object mapping changes.  */
    r_brk: ElfAddr,
    // crashmon patch: a plain int (RT_CONSISTENT, RT_ADD, RT_DELETE), not
    // upstream's enum. The bytes come from a crashed process, and any
    // other value read into the enum would be undefined behaviour.
    r_state: libc::c_int,
    r_ldbase: ElfAddr, /* Base address the linker is loaded at.  */
}

/// crashmon patch: the most link-map entries followed. A corrupt (or
/// cyclic) `l_next` chain in a crashed process must not keep the capture
/// (and the stopped process) going forever.
const MAX_LINK_MAP_ENTRIES: usize = 4096;

/// crashmon patch: copies a `T` (a `repr(C)` struct of integers) out of
/// the target's memory, or fails if the read came back short; upstream
/// indexed the first element of a possibly empty slice (a panic) and
/// assumed the copy was aligned.
fn copy_struct<T: Copy>(process_inspector: &ProcessInspector, address: usize) -> Result<T> {
    let bytes = MinidumpWriter::copy_from_process(process_inspector, address, std::mem::size_of::<T>())?;
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(SectionDsoDebugError::CouldNotFind("a whole r_debug or link_map record"));
    }
    // SAFETY: `bytes` holds at least size_of::<T>() initialised bytes, the
    // read is unaligned, and every `T` used here (RDebug, LinkMap) is made
    // of integers only, for which any bit pattern is a valid value.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn write_dso_debug_stream(
    process_inspector: &ProcessInspector,
    buffer: &mut Buffer,
    auxv: &AuxvDumpInfo,
) -> Result<MDRawDirectory> {
    let phnum_max =
        auxv.get_program_header_count()
            .ok_or(SectionDsoDebugError::CouldNotFind("AT_PHNUM in auxv"))? as usize;
    let phdr = auxv
        .get_program_header_address()
        .ok_or(SectionDsoDebugError::CouldNotFind("AT_PHDR in auxv"))? as usize;

    let ph = MinidumpWriter::copy_from_process(process_inspector, phdr, SIZEOF_PHDR * phnum_max)?;
    // crashmon patch: a short read (the table runs into an unreadable
    // page) parses the whole headers read; goblin's `from_bytes` panicked.
    let phnum_max = phnum_max.min(ph.len() / SIZEOF_PHDR);
    let ph = &ph[..phnum_max * SIZEOF_PHDR];
    let program_headers;
    #[cfg(target_pointer_width = "64")]
    {
        program_headers = goblin::elf::program_header::program_header64::ProgramHeader::from_bytes(
            ph, phnum_max,
        );
    }
    #[cfg(target_pointer_width = "32")]
    {
        program_headers = goblin::elf::program_header::program_header32::ProgramHeader::from_bytes(
            ph, phnum_max,
        );
    };

    // Assume the program base is at the beginning of the same page as the PHDR
    let mut base = phdr & !0xfff;
    let mut dyn_addr = 0;
    let mut dyn_memsz = 0;
    // Search for the program PT_DYNAMIC segment
    for ph in program_headers {
        // Adjust base address with the virtual address of the PT_LOAD segment
        // corresponding to offset 0
        if ph.p_type == goblin::elf::program_header::PT_LOAD && ph.p_offset == 0 {
            base = base.wrapping_sub(ph.p_vaddr as usize);
        }
        if ph.p_type == goblin::elf::program_header::PT_DYNAMIC {
            dyn_addr = ph.p_vaddr;
            dyn_memsz = ph.p_memsz as usize;
        }
    }

    if dyn_addr == 0 {
        return Err(SectionDsoDebugError::CouldNotFind(
            "dyn_addr in program headers",
        ));
    }

    dyn_addr = dyn_addr.wrapping_add(base as ElfAddr);

    // crashmon patch: an entry is two native words (`goblin::elf::Dyn` has
    // 64-bit fields on every target).
    let word = std::mem::size_of::<usize>();
    let dyn_size = 2 * word;
    let mut r_debug = 0usize;

    // The dynamic linker makes information available that helps gdb find all
    // DSOs loaded into the program. If this information is indeed available,
    // dump it to a MD_LINUX_DSO_DEBUG stream.
    //
    // crashmon patch: the segment is read at once (its size from the
    // program header, at most 64 KiB), not one entry per read (~30 reads
    // of 16 bytes for a Rust program); past its end, if it has no
    // DT_NULL, one entry at a time as upstream does.
    let first = (dyn_memsz - dyn_memsz % dyn_size).clamp(dyn_size, 64 * 1024);
    let mut dyn_bytes = MinidumpWriter::copy_from_process(process_inspector, dyn_addr as usize, first)
        .or_else(|_| MinidumpWriter::copy_from_process(process_inspector, dyn_addr as usize, dyn_size))?;
    let mut dynamic_length = 0usize;
    loop {
        // crashmon patch: a section without DT_NULL ends after 4096 entries
        // (upstream read on, one entry per read, as far as memory went).
        if dynamic_length >= 4096 * dyn_size {
            return Err(SectionDsoDebugError::CouldNotFind("DT_NULL in the dynamic section"));
        }
        if dynamic_length + dyn_size > dyn_bytes.len() {
            let more = MinidumpWriter::copy_from_process(
                process_inspector,
                (dyn_addr as usize).wrapping_add(dynamic_length),
                dyn_size,
            )?;
            if more.len() < dyn_size {
                return Err(SectionDsoDebugError::CouldNotFind(
                    "a whole entry of the dynamic section",
                ));
            }
            dyn_bytes.truncate(dynamic_length);
            dyn_bytes.extend_from_slice(&more[..dyn_size]);
        }
        let entry = &dyn_bytes[dynamic_length..dynamic_length + dyn_size];
        dynamic_length += dyn_size;
        let d_tag = usize::from_ne_bytes(entry[..word].try_into().expect("one word")) as u64;
        let d_val = usize::from_ne_bytes(entry[word..2 * word].try_into().expect("one word")) as u64;

        if d_tag == goblin::elf::dynamic::DT_DEBUG {
            r_debug = d_val as usize;
        } else if d_tag == goblin::elf::dynamic::DT_NULL {
            break;
        }
    }
    dyn_bytes.truncate(dynamic_length);

    // The "r_map" field of that r_debug struct contains a linked list of all
    // loaded DSOs.
    // Our list of DSOs potentially is different from the ones in the crashing
    // process. So, we have to be careful to never dereference pointers
    // directly. Instead, we use CopyFromProcess() everywhere.
    // See <link.h> for a more detailed discussion of the how the dynamic
    // loader communicates with debuggers.

    if r_debug == 0 {
        return Err(SectionDsoDebugError::CouldNotFind("DT_DEBUG in the dynamic section"));
    }
    let debug_entry: RDebug = copy_struct(process_inspector, r_debug)?;

    // Count the number of loaded DSOs (crashmon patch: at most
    // MAX_LINK_MAP_ENTRIES, and a chain that comes back to an entry already
    // seen ends there).
    let mut dso_vec: Vec<LinkMap> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut curr_map = debug_entry.r_map;
    while curr_map != 0 && seen.insert(curr_map) {
        if dso_vec.len() == MAX_LINK_MAP_ENTRIES {
            return Err(SectionDsoDebugError::CouldNotFind(
                "the end of the link map (more entries than the limit)",
            ));
        }
        let map: LinkMap = copy_struct(process_inspector, curr_map)?;
        curr_map = map.l_next;
        dso_vec.push(map);
    }

    let mut linkmap_rva = u32::MAX;
    if !dso_vec.is_empty() {
        // If we have at least one DSO, create an array of MDRawLinkMap
        // entries in the minidump file.
        let mut linkmap = MemoryArrayWriter::<MDRawLinkMap>::alloc_array(buffer, dso_vec.len())?;
        linkmap_rva = linkmap.location().rva;

        // Iterate over DSOs and write their information to mini dump
        for (idx, map) in dso_vec.iter().enumerate() {
            let mut filename = String::new();
            if map.l_name > 0 {
                let filename_data =
                    MinidumpWriter::copy_from_process(process_inspector, map.l_name, 256)?;

                // C - string is NULL-terminated (crashmon patch: a name
                // that is not UTF-8 is kept, lossily, instead of failing
                // the whole stream).
                if let Some(name) = filename_data.splitn(2, |x| *x == b'\0').next() {
                    filename = String::from_utf8_lossy(name).into_owned();
                }
            }
            let location = write_string_to_location(buffer, &filename)?;
            let entry = MDRawLinkMap {
                addr: map.l_addr,
                name: location.rva,
                ld: map.l_ld as ElfAddr,
            };

            linkmap.set_value_at(buffer, entry, idx)?;
        }
    }

    // Write MD_LINUX_DSO_DEBUG record
    let debug = MDRawDebug {
        version: debug_entry.r_version as u32,
        map: linkmap_rva,
        dso_count: dso_vec.len() as u32,
        brk: debug_entry.r_brk,
        ldbase: debug_entry.r_ldbase,
        dynamic: dyn_addr,
    };
    let debug_loc = MemoryWriter::<MDRawDebug>::alloc_with_val(buffer, debug)?;

    let mut dirent = MDRawDirectory {
        stream_type: MDStreamType::LinuxDsoDebug as u32,
        location: debug_loc.location(),
    };

    dirent.location.data_size += dynamic_length as u32;
    // crashmon patch: the entries read above, not read again.
    MemoryArrayWriter::write_bytes(buffer, &dyn_bytes);

    Ok(dirent)
}
