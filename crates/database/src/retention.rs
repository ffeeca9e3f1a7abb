//! Retention: keep the database within count, size and age limits by
//! removing the oldest reports first.

use std::fs;
use std::time::Duration;

use serde::Serialize;

use crate::{Database, DbError, Entry};

/// Limits; `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most reports kept (all states).
    pub max_count: Option<usize>,
    /// Most bytes kept (dumps, metadata and reports).
    pub max_bytes: Option<u64>,
    /// Oldest report kept.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    /// The defaults: 128 MiB or 365 days, whichever is reached first.
    fn default() -> Self {
        Retention { max_count: None, max_bytes: Some(128 << 20), max_age: Some(Duration::from_secs(365 * 86_400)) }
    }
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneStats {
    /// Reports removed.
    pub removed: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Reports kept.
    pub kept: usize,
    /// Bytes still used.
    pub bytes_kept: u64,
    /// Reports over a limit that were skipped because an uploader holds
    /// them right now.
    pub busy: usize,
}

fn file_size(path: &std::path::Path) -> u64 {
    fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0)
}

impl Database {
    /// Bytes a report uses on disk.
    fn entry_bytes(&self, e: &Entry) -> u64 {
        let json = self.root().join(e.state.dir_name()).join(format!("{}.json", e.id));
        e.dump_path.as_deref().map_or(0, file_size) + e.report_path.as_deref().map_or(0, file_size) + file_size(&json)
    }

    /// Remove reports, oldest first, until the database is within `limits`
    /// at time `now_ms` (unix ms). A report an uploader holds (its dump is
    /// locked) is skipped and counted as busy. Every removal is logged.
    pub fn prune(&self, limits: &Retention, now_ms: u64) -> Result<PruneStats, DbError> {
        let mut entries = self.list()?;
        // Oldest first.
        entries.sort_by_key(|e| (e.metadata.captured_at_ms, e.id));
        let sizes: Vec<u64> = entries.iter().map(|e| self.entry_bytes(e)).collect();
        let mut count = entries.len();
        let mut bytes: u64 = sizes.iter().sum();
        let cutoff = limits.max_age.map(|a| now_ms.saturating_sub(a.as_millis() as u64));
        let mut stats = PruneStats::default();
        for (e, size) in entries.iter().zip(&sizes) {
            let too_old = cutoff.is_some_and(|c| e.metadata.captured_at_ms < c);
            let too_many = limits.max_count.is_some_and(|m| count > m);
            let too_big = limits.max_bytes.is_some_and(|m| bytes > m);
            if !(too_old || too_many || too_big) {
                continue;
            }
            match self.remove_entry(e) {
                Ok(true) => {
                    tracing::info!(report = %e.id, state = %e.state, size, too_old, too_many, too_big, "pruned");
                    count -= 1;
                    bytes -= size;
                    stats.removed += 1;
                    stats.bytes_freed += size;
                }
                // Held by an uploader: it stays (and counts as kept), rather
                // than a newer report going in its place.
                Ok(false) => {
                    count -= 1;
                    bytes -= size;
                    stats.busy += 1;
                    stats.kept += 1;
                    stats.bytes_kept += size;
                }
                Err(err) => tracing::warn!(report = %e.id, "cannot prune: {err}"),
            }
        }
        stats.kept += count;
        stats.bytes_kept += bytes;
        Ok(stats)
    }

    /// Delete a report's files. False if its dump is locked (an upload in
    /// progress).
    fn remove_entry(&self, e: &Entry) -> Result<bool, DbError> {
        let dir = self.root().join(e.state.dir_name());
        let lock = match &e.dump_path {
            Some(dump) => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(dump)
                    .map_err(|source| DbError::Io { op: "open", path: dump.clone(), source })?;
                if file.try_lock().is_err() {
                    return Ok(false);
                }
                Some(file)
            }
            None => None,
        };
        // Dump first: once it is gone the report is gone; leftovers are
        // swept as orphans.
        for suffix in [".dmp", ".report.json", ".json"] {
            let path = dir.join(format!("{}{suffix}", e.id));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DbError::Io { op: "remove", path, source }),
            }
        }
        drop(lock);
        self.remove_attachments(e.id)?;
        Ok(true)
    }
}
