//! Breakpad symbol servers: `GET <url>/<debug file>/<DEBUG ID>/<debug file>.sym`
//! with short timeouts, the answer kept in an on-disk cache
//! (`<cache dir>/breakpad/`, the same layout) so each file is downloaded
//! once. A 404 from every server is remembered for an hour (a `.miss`
//! marker) so a module no server has does not cost a round trip per report;
//! an unreachable server is never remembered. Nothing here is fatal: a
//! failure is a per-module miss with its reason.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Largest `.sym` file accepted from a server.
const MAX_SYM_BYTES: u64 = 2 << 30;
/// How long a "no server has it" answer is remembered.
const MISS_TTL: Duration = Duration::from_secs(3600);

/// A client for the configured servers.
#[derive(Debug)]
pub(crate) struct ServerClient {
    urls: Vec<String>,
    dir: PathBuf,
    /// Keeps `dir` alive when there is no cache directory.
    _temp: Option<tempfile::TempDir>,
    agent: ureq::Agent,
}

impl ServerClient {
    /// `None` if there are no servers (or no place to put downloads).
    pub(crate) fn new(urls: &[String], cache_root: Option<&Path>, timeout: Duration) -> Option<ServerClient> {
        if urls.is_empty() {
            return None;
        }
        let (dir, temp) = match cache_root {
            Some(root) => (root.join("breakpad"), None),
            None => {
                let temp = tempfile::tempdir().ok()?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .user_agent(format!("crashmon/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Some(ServerClient {
            urls: urls.iter().map(|u| u.trim_end_matches('/').to_owned()).collect(),
            dir,
            _temp: temp,
            agent: ureq::Agent::new_with_config(config),
        })
    }

    /// The cached or downloaded `.sym` for `relative` (see
    /// [`crate::locate::breakpad_relative_path`]), the URL it came from and
    /// the servers that failed before, or the reasons each server failed.
    pub(crate) fn fetch(&self, relative: &str, debug_id: &str) -> Result<(PathBuf, String, Vec<String>), Vec<String>> {
        let path = self.dir.join(relative);
        let url_file = path.with_extension("sym.url");
        if path.is_file() && crate::locate::check_sym_module(&path, debug_id).is_ok() {
            let url = std::fs::read_to_string(&url_file).unwrap_or_else(|_| path.display().to_string());
            return Ok((path, url, Vec::new()));
        }
        let miss_file = path.with_extension("sym.miss");
        if let Ok(meta) = std::fs::metadata(&miss_file)
            && meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok()).is_some_and(|a| a < MISS_TTL)
        {
            return Err(vec![format!("no symbol server had {relative} (answer cached {})", miss_file.display())]);
        }
        let mut misses = Vec::new();
        let mut all_not_found = true;
        for base in &self.urls {
            let url = format!("{base}/{relative}");
            match self.download(&url, &path, debug_id) {
                Ok(()) => {
                    let _ = std::fs::write(&url_file, &url);
                    return Ok((path, url, misses));
                }
                Err((not_found, why)) => {
                    all_not_found &= not_found;
                    misses.push(format!("{url}: {why}"));
                }
            }
        }
        if all_not_found {
            if let Some(parent) = miss_file.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&miss_file, b"");
        }
        Err(misses)
    }

    /// Downloads `url` into `path` (atomically). The error says whether the
    /// server answered "not found".
    fn download(&self, url: &str, path: &Path, debug_id: &str) -> Result<(), (bool, String)> {
        let started = std::time::Instant::now();
        let mut response = self.agent.get(url).call().map_err(|e| (false, format!("unreachable: {e}")))?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => return Err((true, "not found (HTTP 404)".to_owned())),
            _ => return Err((false, format!("HTTP {status}"))),
        }
        let parent = path.parent().ok_or((false, "bad path".to_owned()))?;
        std::fs::create_dir_all(parent).map_err(|e| (false, format!("cannot create {}: {e}", parent.display())))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(|e| (false, format!("cannot write into {}: {e}", parent.display())))?;
        let mut reader = response.body_mut().as_reader().take(MAX_SYM_BYTES);
        std::io::copy(&mut reader, tmp.as_file_mut()).map_err(|e| (false, format!("download failed: {e}")))?;
        crate::locate::check_sym_module(tmp.path(), debug_id).map_err(|why| (false, format!("bad answer: {why}")))?;
        tmp.persist(path).map_err(|e| (false, format!("cannot store {}: {}", path.display(), e.error)))?;
        tracing::info!(url, ms = started.elapsed().as_millis() as u64, "downloaded symbols");
        Ok(())
    }
}
