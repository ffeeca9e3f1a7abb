//! The on-disk symbol cache: one SymCache file (symbolic-symcache's compact,
//! binary-searchable function/line/inline table) per module build and
//! symbol source, so the second report for the same binary costs a file
//! read and a few binary searches instead of parsing its DWARF again.
//!
//! Layout: `<dir>/symcache/<key>.symc`, where the key is the module's build
//! id (or Breakpad debug id) plus the kind of file the table was built from
//! (`binary`, `debug-file`, `breakpad`): a table built from a stripped
//! binary's symbol table must not stand in for one built from its debug
//! file once that is installed. Each entry is a 16-byte header (magic,
//! payload length, CRC-32 of the payload) and the SymCache bytes; an entry
//! that is short, fails its CRC or does not parse is deleted and rebuilt.
//!
//! Writers write a temporary file in the same directory and rename it into
//! place, so concurrent writers (two reports of the same binary at once)
//! never expose a partial entry; the last rename wins and both are equal.
//! Reading an entry sets its mtime, and after every write the oldest entries
//! (by mtime) are removed until the directory is under its size bound.
//!
//! Besides the entries: `.build-<key>.lock`, locked (`flock`) by the one
//! process building that table ([`SymbolCache::build_lock`]), and
//! `.failed-<key>`, left by a build that failed, so it is not retried for a
//! day ([`SymbolCache::record_failure`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// First bytes of every cache entry.
const MAGIC: &[u8; 8] = b"CMSYMC01";
const HEADER_LEN: usize = 16;

/// Default bound of the cache directory's size.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A cache directory.
#[derive(Debug, Clone)]
pub(crate) struct SymbolCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl SymbolCache {
    pub(crate) fn new(root: &Path, max_bytes: u64) -> Self {
        SymbolCache { dir: root.join("symcache"), max_bytes }
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.symc"))
    }

    /// The SymCache bytes stored under `key`, if present and intact. A
    /// damaged entry is removed (and `None` returned, so it is rebuilt).
    ///
    /// The entry is memory-mapped, not read: a big binary's table is tens
    /// of MB, and a report touches a few pages of it besides the checksum.
    pub(crate) fn load(&self, key: &str) -> Option<CacheEntry> {
        let path = self.entry_path(key);
        let map = crate::mapped::Mapped::open(&path).ok()?;
        match check_entry(map.bytes()) {
            Ok(()) => {
                // LRU: a use makes the entry young again.
                if let Ok(file) = std::fs::File::options().append(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Some(CacheEntry(map))
            }
            Err(why) => {
                tracing::warn!(entry = %path.display(), "ignoring a damaged symbol cache entry: {why}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!(".build-{key}.lock"))
    }

    /// Claims the building of `key`'s table for this process: `None` if
    /// another process (or another claim in this one) is building it, so two
    /// reports of the same new binary do not both spend seconds and memory
    /// on it.
    ///
    /// The claim is an advisory lock (`flock`) on a persistent file,
    /// `.build-<key>.lock`, held until the [`BuildLock`] is dropped or the
    /// process ends (killed builders included: the kernel releases it). The
    /// file is never removed while locked; [`SymbolCache::trim`] removes
    /// unlocked ones unused for an hour, and a claim that locked a file
    /// removed meanwhile is given up.
    pub(crate) fn build_lock(&self, key: &str) -> Option<BuildLock> {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(&self.dir).ok()?;
        let path = self.lock_path(key);
        let file = std::fs::File::options().write(true).create(true).truncate(false).open(&path).ok()?;
        file.try_lock().ok()?;
        // Still the file at that name? (`trim` may have removed it between
        // our open and our lock.)
        let (ours, named) = (file.metadata().ok()?, std::fs::metadata(&path).ok()?);
        if ours.ino() != named.ino() || ours.dev() != named.dev() {
            return None;
        }
        // Its mtime is its last use (for `trim`).
        let _ = file.set_modified(SystemTime::now());
        Some(BuildLock { _file: file })
    }

    fn failure_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!(".failed-{key}"))
    }

    /// Records that building `key`'s table failed (symbolic stops at the
    /// first DWARF error of any unit, while the lazy lookup reads only the
    /// units a report needs), so the build is not retried after every
    /// report of that binary: see [`SymbolCache::failed_recently`]. The
    /// marker's mtime is the time of the failure; its content says why.
    pub(crate) fn record_failure(&self, key: &str, why: &str) {
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::write(self.failure_path(key), why));
        if let Err(e) = written {
            tracing::warn!(dir = %self.dir.display(), "cannot record a failed symbol table build: {e}");
        }
    }

    /// Whether building `key`'s table failed less than [`FAILURE_RETRY`]
    /// ago (then it is not built again). A marker dated in the future (the
    /// clock was set back) does not count.
    pub(crate) fn failed_recently(&self, key: &str) -> bool {
        std::fs::metadata(self.failure_path(key))
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).is_ok_and(|age| age < FAILURE_RETRY))
    }

    /// Whether an entry is stored under `key` (not checked).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entry_path(key).is_file()
    }

    /// Stores `symcache` under `key` (atomically), then trims the cache to
    /// its bound. Errors are logged, never fatal: the cache is an
    /// optimisation.
    pub(crate) fn store(&self, key: &str, symcache: &[u8]) {
        if let Err(e) = self.try_store(key, symcache) {
            tracing::warn!(dir = %self.dir.display(), "cannot write the symbol cache: {e}");
        }
        self.trim();
    }

    fn try_store(&self, key: &str, symcache: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").suffix(".symc").tempfile_in(&self.dir)?;
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&u32::try_from(symcache.len()).unwrap_or(u32::MAX).to_le_bytes());
        header[12..16].copy_from_slice(&crc32fast::hash(symcache).to_le_bytes());
        tmp.write_all(&header)?;
        // In pieces, as crashmon_database::write_in_chunks writes dumps: on
        // this project's VMs one 10 MB write to a new file takes 50-120 ms,
        // the same bytes in 256 KiB pieces 2.5-3.5 ms.
        const WRITE_CHUNK: usize = 256 * 1024;
        symcache.chunks(WRITE_CHUNK).try_for_each(|chunk| tmp.write_all(chunk))?;
        tmp.as_file().sync_data()?;
        tmp.persist(self.entry_path(key)).map_err(|e| e.error)?;
        Ok(())
    }

    /// Removes the least recently used entries (and stale temporary files)
    /// until the directory holds at most `max_bytes`.
    fn trim(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let now = SystemTime::now();
        let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") {
                // Left behind by a writer that died; a live one takes seconds.
                if now.duration_since(mtime).is_ok_and(|age| age.as_secs() > 3600) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if name.starts_with(".build-") {
                // A build lock unused for an hour, removed only while we hold
                // it (never from under a builder).
                if now.duration_since(mtime).is_ok_and(|age| age.as_secs() > 3600)
                    && let Ok(file) = std::fs::File::options().write(true).open(&path)
                    && file.try_lock().is_ok()
                {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if name.starts_with(".failed-") {
                // Expired failure markers (the build is tried again anyway).
                if now.duration_since(mtime).is_ok_and(|age| age >= FAILURE_RETRY) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if name.ends_with(".symc") {
                files.push((mtime, meta.len(), path));
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::debug!(entry = %path.display(), "evicted from the symbol cache");
                total -= len;
            }
        }
    }
}

/// An intact cache entry, mapped.
#[derive(Debug)]
pub(crate) struct CacheEntry(crate::mapped::Mapped);

impl CacheEntry {
    /// The SymCache bytes.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.0.bytes()[HEADER_LEN..]
    }
}

/// A table whose build failed is not built again for this long.
pub(crate) const FAILURE_RETRY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The claim on building a table ([`SymbolCache::build_lock`]): an open,
/// locked lock file; dropping it closes the file, which releases the lock.
#[derive(Debug)]
pub(crate) struct BuildLock {
    _file: std::fs::File,
}

fn check_entry(bytes: &[u8]) -> Result<(), &'static str> {
    let header = bytes.get(..HEADER_LEN).ok_or("shorter than its header")?;
    if &header[..8] != MAGIC {
        return Err("wrong magic");
    }
    let len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len {
        return Err("truncated");
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    symbolic_symcache::SymCache::parse(payload).map_err(|_| "not a SymCache")?;
    Ok(())
}

/// The default cache directory: `$CRASHMON_SYMBOL_CACHE`, else
/// `$XDG_CACHE_HOME/crashmon/symbols`, else `~/.cache/crashmon/symbols`.
/// `CRASHMON_SYMBOL_CACHE=off` (or empty) disables the cache.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        if dir.is_empty() || dir == "off" {
            return None;
        }
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
        return Some(PathBuf::from(xdg).join("crashmon/symbols"));
    }
    let home = std::env::var_os("HOME").filter(|d| Path::new(d).is_absolute())?;
    Some(PathBuf::from(home).join(".cache/crashmon/symbols"))
}

/// Environment variable naming the symbol cache directory.
pub const CACHE_ENV: &str = "CRASHMON_SYMBOL_CACHE";

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_symcache() -> Vec<u8> {
        let mut converter = symbolic_symcache::SymCacheConverter::new();
        let sym =
            b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 t\nFILE 0 a.c\nFUNC 1000 10 0 f\n1000 10 7 0\n";
        let object = symbolic_debuginfo::Object::parse(sym).unwrap();
        converter.process_object(&object).unwrap();
        let mut out = Vec::new();
        converter.serialize(&mut out).unwrap();
        out
    }

    #[test]
    fn store_load_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SymbolCache::new(dir.path(), DEFAULT_MAX_BYTES);
        assert!(cache.load("k").is_none());
        let data = sample_symcache();
        cache.store("k", &data);
        assert_eq!(cache.load("k").map(|e| e.payload().to_vec()).as_deref(), Some(&data[..]));

        // A flipped bit: ignored and removed.
        let path = cache.entry_path("k");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(cache.load("k").is_none());
        assert!(!path.exists());
        // Truncated and garbage entries too.
        cache.store("k", &data);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(cache.load("k").is_none());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(cache.load("k").is_none());
        cache.store("k", &data);
        assert_eq!(cache.load("k").map(|e| e.payload().to_vec()).as_deref(), Some(&data[..]));
        // No temporary files left.
        let names: Vec<_> = std::fs::read_dir(&cache.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("k.symc")]);
    }

    #[test]
    fn bounded_by_size_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let data = sample_symcache();
        let entry = (data.len() + HEADER_LEN) as u64;
        let cache = SymbolCache::new(dir.path(), entry * 2);
        let old = SystemTime::now() - std::time::Duration::from_secs(100);
        cache.store("a", &data);
        cache.store("b", &data);
        // `a` is older by mtime unless it is used.
        for (key, age) in [("a", 100), ("b", 50)] {
            let f = std::fs::File::options().append(true).open(cache.entry_path(key)).unwrap();
            f.set_modified(old + std::time::Duration::from_secs(100 - age)).unwrap();
        }
        assert!(cache.load("a").is_some()); // now the youngest
        cache.store("c", &data);
        assert!(cache.entry_path("a").exists());
        assert!(!cache.entry_path("b").exists(), "the least recently used entry goes");
        assert!(cache.entry_path("c").exists());
    }

    #[test]
    fn concurrent_writers_never_expose_partial_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SymbolCache::new(dir.path(), DEFAULT_MAX_BYTES);
        let data = sample_symcache();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        cache.store("k", &data);
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..200 {
                    if let Some(got) = cache.load("k") {
                        assert_eq!(got.payload(), &data[..]);
                    }
                }
            });
        });
        assert_eq!(cache.load("k").map(|e| e.payload().to_vec()).as_deref(), Some(&data[..]));
    }

    #[test]
    fn one_builder_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SymbolCache::new(dir.path(), DEFAULT_MAX_BYTES);
        let path = cache.lock_path("k");
        let old = SystemTime::now() - std::time::Duration::from_secs(7200);
        let age = |path: &Path| std::fs::File::options().append(true).open(path).unwrap().set_modified(old).unwrap();

        let lock = cache.build_lock("k").expect("free");
        assert!(cache.build_lock("k").is_none(), "held by the first builder");
        assert!(cache.build_lock("other").is_some());
        // Trimming never removes a held lock file, however old.
        age(&path);
        cache.trim();
        assert!(path.exists());
        assert!(cache.build_lock("k").is_none());
        drop(lock);
        // Released, not removed.
        assert!(path.exists());
        let lock = cache.build_lock("k").expect("released");
        drop(lock);
        // An unused (unlocked) old lock file is trimmed; a young one stays.
        cache.trim();
        assert!(path.exists(), "used just now");
        age(&path);
        cache.trim();
        assert!(!path.exists());
        drop(cache.build_lock("k").expect("free again"));

        // A lock held by another process, then released by its death.
        // (`flock -o`: its command, a shell that says when the lock is
        // taken then waits on `cat`, does not inherit the lock.)
        let holder = std::process::Command::new("flock")
            .arg("-o")
            .arg(&path)
            .args(["-c", "echo locked; exec cat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut holder) = holder else {
            eprintln!("SKIPPED (other process): cannot run flock");
            return;
        };
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "locked");
        assert!(cache.build_lock("k").is_none(), "held by the other process");
        holder.kill().unwrap();
        holder.wait().unwrap();
        drop(holder.stdin.take()); // ends `cat`
        // Free once the process is gone (polled: a process forked by another
        // test thread may briefly share one of our descriptors).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cache.build_lock("k").is_none() {
            assert!(std::time::Instant::now() < deadline, "the lock of a dead process is free");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn failed_builds_are_not_retried_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SymbolCache::new(dir.path(), DEFAULT_MAX_BYTES);
        assert!(!cache.failed_recently("k"));
        cache.record_failure("k", "bad DWARF");
        assert!(cache.failed_recently("k"));
        assert!(!cache.failed_recently("other"));
        // Storing (and so trimming) keeps a young marker.
        cache.store("other", &sample_symcache());
        assert!(cache.failed_recently("k"));
        // An old marker no longer counts, and trimming removes it.
        let old = SystemTime::now() - FAILURE_RETRY - std::time::Duration::from_secs(1);
        std::fs::File::options().append(true).open(cache.failure_path("k")).unwrap().set_modified(old).unwrap();
        assert!(!cache.failed_recently("k"));
        cache.store("other", &sample_symcache());
        assert!(!cache.failure_path("k").exists());
    }
}
