use {
    super::*,
    error_graph::WriteErrorList,
};

#[derive(Debug, Error, serde::Serialize)]
pub enum SectionSystemInfoError {
    #[error("Failed to write to memory")]
    MemoryWriterError(#[from] MemoryWriterError),
    #[error("Failed to get CPU Info")]
    CpuInfoError(#[from] CpuInfoError),
    #[error("Failed trying to write CPU information")]
    WriteCpuInformationFailed(#[source] CpuInfoError),
}

/// crashmon patch: the stream from the machine as read once per process
/// (`machine`), replacing upstream's `write`, which read it for every dump
/// (same bytes).
pub fn write_from(
    buffer: &mut DumpBuf,
    machine: &super::machine::Machine,
    cpu_error: Option<CpuInfoError>,
    mut soft_errors: impl WriteErrorList<SectionSystemInfoError>,
) -> Result<MDRawDirectory, SectionSystemInfoError> {
    let mut info_section = MemoryWriter::<MDRawSystemInfo>::alloc(buffer)?;
    let dirent = MDRawDirectory {
        stream_type: MDStreamType::SystemInfoStream as u32,
        location: info_section.location(),
    };

    let os_version_loc = write_string_to_location(buffer, &machine.os_version)?;

    let mut info = machine.system_info.clone();
    info.platform_id = machine.platform_id;
    info.csd_version_rva = os_version_loc.rva;

    if let Some(e) = cpu_error {
        soft_errors.push(SectionSystemInfoError::WriteCpuInformationFailed(e));
    }

    info_section.set_value(buffer, info)?;
    Ok(dirent)
}
