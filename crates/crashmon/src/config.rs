//! The configuration file and the one validated settings layer: a command
//! line flag beats an environment variable, which beats the configuration
//! file, which beats the built-in default.
//!
//! The file is TOML (schema in `docs/config.md`). It is found via
//! `--config FILE`, else [`CONFIG_ENV`], else
//! `$XDG_CONFIG_HOME/crashmon/config.toml` (or
//! `~/.config/crashmon/config.toml`), which may be absent. Everything is
//! checked when it is loaded, before any command touches the disk: a syntax
//! error, an unknown key, a bad value, an unsupported URL scheme, a relative
//! path or a group/world-writable database directory is a [`ConfigError`]
//! naming the file, line and key (exit code 2).

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "CRASHMON_CONFIG";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file, at this line.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key.
        line: usize,
    },
    /// An environment variable.
    Env {
        /// Its name.
        name: String,
    },
    /// A command-line flag.
    Flag {
        /// Its name, e.g. `--database`.
        name: String,
    },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { name } => write!(f, "env {name}"),
            Origin::Flag { name } => write!(f, "flag {name}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Its origin.
    pub origin: Origin,
}

impl<T> Setting<T> {
    fn default(value: T) -> Setting<T> {
        Setting { value, origin: Origin::Default }
    }
}

/// A configuration that cannot be used. Displayed as
/// `FILE:LINE:COL: KEY: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file, if the problem is in one.
    pub path: Option<PathBuf>,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    /// The dotted key, e.g. `upload.timeout_secs`.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn render(&self) -> String {
        let mut s = String::from("configuration: ");
        if let Some(p) = &self.path {
            s.push_str(&p.display().to_string());
            if let Some((line, col)) = self.position {
                s.push_str(&format!(":{line}:{col}"));
            }
            s.push_str(": ");
        }
        if let Some(k) = &self.key {
            s.push_str(&format!("key `{k}`: "));
        }
        s.push_str(&self.message);
        s
    }
}

/// The `[monitor]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSettings {
    /// The shared monitor's socket; `None`: `$XDG_RUNTIME_DIR/crashmon/monitor.sock`.
    pub socket: Option<Setting<PathBuf>>,
    /// Most clients served at once on a shared socket.
    pub max_clients: Setting<usize>,
    /// Largest dump written; `None`: no cap.
    pub max_dump_size: Option<Setting<u64>>,
}

/// The `[upload]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSettings {
    /// The target string (URL or DSN), already checked to parse; the
    /// command line (`--upload`, `--dsn`) and `CRASHMON_UPLOAD` override it.
    pub target: Option<Setting<String>>,
    /// Bound on one whole request.
    pub timeout: Setting<Duration>,
    /// Bound on connecting.
    pub connect_timeout: Setting<Duration>,
    /// Proxy URL.
    pub proxy: Option<Setting<String>>,
    /// PEM file of trusted CAs.
    pub ca_file: Option<Setting<PathBuf>>,
    /// Secret scrubbing on.
    pub scrub: Setting<bool>,
    /// Extra secret key patterns.
    pub scrub_patterns: Setting<Vec<String>>,
}

/// The `[symbols]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSettings {
    /// Breakpad symbol trees.
    pub dirs: Setting<Vec<PathBuf>>,
    /// Symbol server base URLs.
    pub servers: Setting<Vec<String>>,
    /// Symbol cache directory; `None`: the symbolicator's default.
    pub cache_dir: Option<Setting<PathBuf>>,
    /// Symbol cache size bound; `None`: the symbolicator's default.
    pub cache_max_size: Option<Setting<u64>>,
}

/// The `[retention]` settings; `None` keeps the built-in default of that
/// limit (see [`crashmon_database::Retention::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Most reports kept.
    pub max_count: Option<Setting<usize>>,
    /// Most bytes kept.
    pub max_size: Option<Setting<u64>>,
    /// Oldest report kept, in days.
    pub max_age_days: Option<Setting<u64>>,
}

/// The `[filter]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSettings {
    /// Crash signatures (substrings) not reported.
    pub ignore_signatures: Setting<Vec<String>>,
    /// Annotation key/value pairs whose crashes are not reported.
    pub ignore_annotations: Setting<BTreeMap<String, String>>,
}

/// The effective, validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The configuration file read, and where its name came from.
    pub file: Option<Setting<PathBuf>>,
    /// The database directory (absolute or relative to the working
    /// directory if from a flag/env); `None`: the platform default.
    pub database: Option<Setting<PathBuf>>,
    /// `[monitor]`.
    pub monitor: MonitorSettings,
    /// `[upload]`.
    pub upload: UploadSettings,
    /// `[symbols]`.
    pub symbols: SymbolSettings,
    /// `[retention]`.
    pub retention: RetentionSettings,
    /// `[filter]`.
    pub filter: FilterSettings,
}

impl Default for Config {
    fn default() -> Config {
        let d = crashmon_uploader::UploadOptions::default();
        Config {
            file: None,
            database: None,
            monitor: MonitorSettings { socket: None, max_clients: Setting::default(1024), max_dump_size: None },
            upload: UploadSettings {
                target: None,
                timeout: Setting::default(d.timeout),
                connect_timeout: Setting::default(d.connect_timeout),
                proxy: None,
                ca_file: None,
                scrub: Setting::default(true),
                scrub_patterns: Setting::default(Vec::new()),
            },
            symbols: SymbolSettings {
                dirs: Setting::default(Vec::new()),
                servers: Setting::default(Vec::new()),
                cache_dir: None,
                cache_max_size: None,
            },
            retention: RetentionSettings { max_count: None, max_size: None, max_age_days: None },
            filter: FilterSettings {
                ignore_signatures: Setting::default(Vec::new()),
                ignore_annotations: Setting::default(BTreeMap::new()),
            },
        }
    }
}

/// Keys the file schema knows but that nothing reads yet: setting one is an
/// error rather than being silently ignored.
const NOT_SUPPORTED_YET: &[(&str, &str)] = &[(
    "monitor.reply_timeout_secs",
    "the reply timeout is the app's (HandlerConfig::reply_timeout); the monitor cannot change it",
)];

// ---------------------------------------------------------------- raw file

/// A size: an integer number of bytes or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: a number of bytes or a string like \"512MiB\" (units B, KiB, MiB, GiB, TiB)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| E::custom(format!("a size cannot be negative, got {v}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse `"123"`, `"64KiB"`, `"2 GiB"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (expected e.g. 512MiB or 2GiB)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!("unknown size unit {other:?} in {s:?}: use B, KiB, MiB, GiB or TiB (powers of 1024)"));
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    database: Option<Spanned<String>>,
    monitor: Option<RawMonitor>,
    upload: Option<RawUpload>,
    symbols: Option<RawSymbols>,
    retention: Option<RawRetention>,
    filter: Option<RawFilter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    socket: Option<Spanned<String>>,
    max_clients: Option<Spanned<i64>>,
    max_dump_size: Option<Spanned<Size>>,
    reply_timeout_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpload {
    url: Option<Spanned<String>>,
    dsn: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<i64>>,
    connect_timeout_secs: Option<Spanned<i64>>,
    proxy: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    scrub: Option<Spanned<bool>>,
    scrub_patterns: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSymbols {
    dirs: Option<Spanned<Vec<String>>>,
    servers: Option<Spanned<Vec<String>>>,
    cache_dir: Option<Spanned<String>>,
    cache_max_size: Option<Spanned<Size>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_count: Option<Spanned<i64>>,
    max_size: Option<Spanned<Size>>,
    max_age_days: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    ignore_signatures: Option<Spanned<Vec<String>>>,
    ignore_annotations: Option<Spanned<BTreeMap<String, String>>>,
}

// ---------------------------------------------------------------- loading

/// 1-based line and column of a byte offset.
fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, col)
}

/// The dotted key whose line holds `offset`: the nearest `[table]` header
/// above it and the `key =` on its line (or the nearest line above with one).
fn key_at(src: &str, offset: usize) -> Option<String> {
    let before = &src[..offset.min(src.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[line_start..].find('\n').map_or(src.len(), |i| line_start + i);
    let mut lines: Vec<&str> = src[..line_end].lines().collect();
    let header = |l: &str| {
        let t = l.trim();
        (t.starts_with('[') && !t.starts_with("[[")).then(|| t.trim_matches(['[', ']']).trim().to_owned())
    };
    let mut key = None;
    while let Some(l) = lines.pop() {
        if let Some(h) = header(l) {
            return Some(match key {
                Some(k) => format!("{h}.{k}"),
                None => h,
            });
        }
        if key.is_none()
            && let Some((k, _)) = l.split_once('=')
        {
            let k = k.trim().trim_matches('"');
            if !k.is_empty() && !k.starts_with('#') {
                key = Some(k.to_owned());
            }
        }
    }
    key
}

struct Ctx<'a> {
    path: &'a Path,
    src: &'a str,
}

impl Ctx<'_> {
    fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: Some(self.path.to_owned()),
            position: Some(position(self.src, span.start)),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }
    fn origin(&self, span: Range<usize>) -> Origin {
        Origin::File { path: self.path.to_owned(), line: position(self.src, span.start).0 }
    }
    fn abs_path(&self, s: &Spanned<String>, key: &str) -> Result<Setting<PathBuf>, ConfigError> {
        let p = PathBuf::from(s.get_ref());
        if s.get_ref().is_empty() {
            return Err(self.error(s.span(), key, "must not be empty"));
        }
        if !p.is_absolute() {
            return Err(self.error(
                s.span(),
                key,
                format!(
                    "{:?} is a relative path; use an absolute path (relative to what would be ambiguous)",
                    s.get_ref()
                ),
            ));
        }
        Ok(Setting { value: p, origin: self.origin(s.span()) })
    }
    fn positive(&self, s: &Spanned<i64>, key: &str, max: i64, what: &str) -> Result<Setting<u64>, ConfigError> {
        let v = *s.get_ref();
        if v <= 0 || v > max {
            return Err(self.error(s.span(), key, format!("must be a positive number of {what} (1..={max}), got {v}")));
        }
        Ok(Setting { value: v as u64, origin: self.origin(s.span()) })
    }
    fn secs(&self, s: &Spanned<i64>, key: &str) -> Result<Setting<Duration>, ConfigError> {
        let v = self.positive(s, key, 86_400, "seconds")?;
        Ok(Setting { value: Duration::from_secs(v.value), origin: v.origin })
    }
    fn plain<T: Clone>(&self, s: &Spanned<T>) -> Setting<T> {
        Setting { value: s.get_ref().clone(), origin: self.origin(s.span()) }
    }
    fn size(&self, s: &Spanned<Size>, key: &str) -> Result<Setting<u64>, ConfigError> {
        if s.get_ref().0 == 0 {
            return Err(self.error(s.span(), key, "must be larger than 0"));
        }
        Ok(Setting { value: s.get_ref().0, origin: self.origin(s.span()) })
    }
    fn http_url(&self, s: &Spanned<String>, key: &str) -> Result<Setting<String>, ConfigError> {
        let v = s.get_ref().trim();
        let scheme = v.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http" | "https") if v.len() > scheme.as_deref().map_or(0, str::len) + 3 => {
                Ok(Setting { value: v.to_owned(), origin: self.origin(s.span()) })
            }
            Some("http" | "https") => Err(self.error(s.span(), key, format!("{v:?} has no host"))),
            Some(other) => Err(self.error(
                s.span(),
                key,
                format!("unsupported URL scheme {other:?} in {v:?}: use http:// or https://"),
            )),
            None => Err(self.error(s.span(), key, format!("{v:?} is not a URL (expected http:// or https://...)"))),
        }
    }
}

/// Parse and validate a configuration file's text. `path` names it in
/// errors and origins.
pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        ConfigError {
            path: Some(path.to_owned()),
            position: Some(position(src, span.start)),
            key: key_at(src, span.start),
            message,
        }
    })?;
    let cx = Ctx { path, src };
    let mut c = Config::default();

    // Keys known to the schema that nothing reads yet.
    let mut set_keys: Vec<(&str, Range<usize>)> = Vec::new();
    if let Some(s) = raw.monitor.as_ref().and_then(|m| m.reply_timeout_secs.as_ref()) {
        set_keys.push(("monitor.reply_timeout_secs", s.span()));
    }
    for (key, span) in set_keys {
        if let Some((_, why)) = NOT_SUPPORTED_YET.iter().find(|(k, _)| *k == key) {
            return Err(cx.error(span, key, format!("not supported yet: {why}; remove the key")));
        }
    }

    if let Some(db) = &raw.database {
        let s = cx.abs_path(db, "database")?;
        check_database_dir(&s.value).map_err(|m| cx.error(db.span(), "database", m))?;
        c.database = Some(s);
    }
    if let Some(m) = raw.monitor {
        if let Some(s) = &m.socket {
            c.monitor.socket = Some(cx.abs_path(s, "monitor.socket")?);
        }
        if let Some(s) = &m.max_clients {
            let v = cx.positive(s, "monitor.max_clients", 65_536, "clients")?;
            c.monitor.max_clients = Setting { value: v.value as usize, origin: v.origin };
        }
        if let Some(s) = &m.max_dump_size {
            let v = cx.size(s, "monitor.max_dump_size")?;
            if v.value < 64 * 1024 {
                return Err(cx.error(s.span(), "monitor.max_dump_size", "must be at least 64KiB"));
            }
            c.monitor.max_dump_size = Some(v);
        }
    }
    if let Some(u) = raw.upload {
        let target = match (&u.url, &u.dsn) {
            (Some(_), Some(d)) => {
                return Err(cx.error(d.span(), "upload.dsn", "set either upload.url or upload.dsn, not both"));
            }
            (Some(s), None) => Some((s, "upload.url")),
            (None, Some(s)) => Some((s, "upload.dsn")),
            (None, None) => None,
        };
        if let Some((s, key)) = target {
            crashmon_uploader::Target::parse(s.get_ref()).map_err(|e| cx.error(s.span(), key, e.to_string()))?;
            c.upload.target = Some(cx.plain(s));
        }
        if let Some(s) = &u.timeout_secs {
            c.upload.timeout = cx.secs(s, "upload.timeout_secs")?;
        }
        if let Some(s) = &u.connect_timeout_secs {
            c.upload.connect_timeout = cx.secs(s, "upload.connect_timeout_secs")?;
        }
        if let Some(s) = &u.proxy {
            c.upload.proxy = Some(cx.http_url(s, "upload.proxy")?);
        }
        if let Some(s) = &u.ca_file {
            let p = cx.abs_path(s, "upload.ca_file")?;
            if !p.value.is_file() {
                return Err(cx.error(
                    s.span(),
                    "upload.ca_file",
                    format!("{} is not a readable file", p.value.display()),
                ));
            }
            c.upload.ca_file = Some(p);
        }
        if let Some(s) = &u.scrub {
            c.upload.scrub = cx.plain(s);
        }
        if let Some(s) = &u.scrub_patterns {
            if s.get_ref().iter().any(|p| p.trim().is_empty()) {
                return Err(cx.error(s.span(), "upload.scrub_patterns", "patterns must not be empty"));
            }
            c.upload.scrub_patterns = cx.plain(s);
        }
    }
    if let Some(sy) = raw.symbols {
        if let Some(s) = &sy.dirs {
            let mut dirs = Vec::new();
            for d in s.get_ref() {
                let p = PathBuf::from(d);
                if !p.is_absolute() {
                    return Err(cx.error(
                        s.span(),
                        "symbols.dirs",
                        format!("{d:?} is a relative path; use an absolute path"),
                    ));
                }
                dirs.push(p);
            }
            c.symbols.dirs = Setting { value: dirs, origin: cx.origin(s.span()) };
        }
        if let Some(s) = &sy.servers {
            for url in s.get_ref() {
                cx.http_url(&Spanned::new(s.span(), url.clone()), "symbols.servers")?;
            }
            c.symbols.servers = cx.plain(s);
        }
        if let Some(s) = &sy.cache_dir {
            c.symbols.cache_dir = Some(cx.abs_path(s, "symbols.cache_dir")?);
        }
        if let Some(s) = &sy.cache_max_size {
            c.symbols.cache_max_size = Some(cx.size(s, "symbols.cache_max_size")?);
        }
    }
    if let Some(r) = raw.retention {
        if let Some(s) = &r.max_count {
            let v = cx.positive(s, "retention.max_count", i64::MAX, "reports")?;
            c.retention.max_count = Some(Setting { value: v.value as usize, origin: v.origin });
        }
        if let Some(s) = &r.max_size {
            c.retention.max_size = Some(cx.size(s, "retention.max_size")?);
        }
        if let Some(s) = &r.max_age_days {
            c.retention.max_age_days = Some(cx.positive(s, "retention.max_age_days", 36_500, "days")?);
        }
    }
    if let Some(f) = raw.filter {
        if let Some(s) = &f.ignore_signatures {
            c.filter.ignore_signatures = cx.plain(s);
        }
        if let Some(s) = &f.ignore_annotations {
            if s.get_ref().keys().any(|k| k.is_empty()) {
                return Err(cx.error(s.span(), "filter.ignore_annotations", "annotation keys must not be empty"));
            }
            c.filter.ignore_annotations = cx.plain(s);
        }
        if let Some(s) = &f.ignore_signatures
            && s.get_ref().iter().any(|p| p.trim().is_empty())
        {
            return Err(cx.error(s.span(), "filter.ignore_signatures", "patterns must not be empty"));
        }
    }
    Ok(c)
}

/// An existing database directory must be a real directory that only its
/// owner can write to; an absent one is fine (it is created 0700 on first use).
fn check_database_dir(path: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    };
    if meta.file_type().is_symlink() {
        return Err(format!("{} is a symbolic link; name the real directory", path.display()));
    }
    if !meta.is_dir() {
        return Err(format!("{} exists and is not a directory", path.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is group- or world-writable (mode {mode:03o}); other users could plant reports: run `chmod 700 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// The configuration file to read: `--config`, else [`CONFIG_ENV`], else
/// the platform location if it exists. `Ok(None)`: no file.
pub fn locate(flag: Option<&Path>) -> Result<Option<Setting<PathBuf>>, ConfigError> {
    let explicit = |p: PathBuf, origin: Origin| {
        if p.exists() {
            Ok(Some(Setting { value: p, origin }))
        } else {
            Err(ConfigError {
                path: None,
                position: None,
                key: None,
                message: format!("configuration file {} (from {origin}) does not exist", p.display()),
            })
        }
    };
    if let Some(p) = flag {
        return explicit(p.to_owned(), Origin::Flag { name: "--config".into() });
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return explicit(PathBuf::from(p), Origin::Env { name: CONFIG_ENV.into() });
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute()).map(|h| h.join(".config")));
    Ok(base.map(|b| b.join("crashmon/config.toml")).filter(|p| p.exists()).map(Setting::default))
}

/// Read and validate one file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: Some(path.to_owned()),
        position: None,
        key: None,
        message: format!("cannot read it: {e}"),
    })?;
    parse(path, &src)
}

/// Load the effective configuration: the located file, then the global
/// `--database` flag / `CRASHMON_DATABASE` over it.
pub fn load(config_flag: Option<&Path>, database: Option<Setting<PathBuf>>) -> Result<Config, ConfigError> {
    let file = locate(config_flag)?;
    let mut config = match &file {
        Some(f) => load_file(&f.value)?,
        None => Config::default(),
    };
    config.file = file;
    if database.is_some() {
        config.database = database;
    }
    Ok(config)
}

static GLOBAL: OnceLock<Arc<Config>> = OnceLock::new();

/// Make `config` the process's configuration (once; later calls are ignored).
pub fn set_global(config: Arc<Config>) {
    let _ = GLOBAL.set(config);
}

/// The process's configuration (the defaults if none was set), for code
/// that has no [`crate::Context`] at hand (the monitor's post-processing hook).
pub fn global() -> Arc<Config> {
    GLOBAL.get().cloned().unwrap_or_default()
}

impl Config {
    /// Retention limits: the configured ones over the defaults.
    pub fn retention(&self) -> crashmon_database::Retention {
        let d = crashmon_database::Retention::default();
        crashmon_database::Retention {
            max_count: self.retention.max_count.as_ref().map(|s| s.value).or(d.max_count),
            max_bytes: self.retention.max_size.as_ref().map(|s| s.value).or(d.max_bytes),
            max_age: self.retention.max_age_days.as_ref().map(|s| Duration::from_secs(s.value * 86_400)).or(d.max_age),
        }
    }

    /// Upload options with the `[upload]` settings applied to `base`.
    pub fn apply_upload(&self, mut base: crashmon_uploader::UploadOptions) -> crashmon_uploader::UploadOptions {
        let u = &self.upload;
        if u.timeout.origin != Origin::Default {
            base.timeout = u.timeout.value;
        }
        if u.connect_timeout.origin != Origin::Default {
            base.connect_timeout = u.connect_timeout.value;
        }
        if let Some(p) = &u.proxy {
            base.proxy = Some(p.value.clone());
        }
        if let Some(c) = &u.ca_file {
            base.ca_file = Some(c.value.clone());
        }
        base.scrub.enabled = u.scrub.value;
        base.scrub.extra_patterns.extend(u.scrub_patterns.value.iter().cloned());
        base
    }

    /// Symbolication options with the `[symbols]` settings applied to `base`.
    pub fn apply_symbols(&self, mut base: crashmon_symbolicate::Options) -> crashmon_symbolicate::Options {
        let s = &self.symbols;
        base.symbol_dirs.extend(s.dirs.value.iter().cloned());
        base.symbol_servers.extend(s.servers.value.iter().cloned());
        // CRASHMON_SYMBOL_CACHE (already in `base`) beats the file.
        if let Some(d) = &s.cache_dir
            && std::env::var_os(crashmon_symbolicate::CACHE_ENV).is_none()
        {
            base.cache_dir = Some(d.value.clone());
        }
        if let Some(m) = &s.cache_max_size {
            base.cache_max_bytes = m.value;
        }
        base
    }

    /// Every setting as `(key, value, origin)`, for `crashmon config show`.
    pub fn entries(&self) -> Vec<(&'static str, serde_json::Value, Origin)> {
        use serde_json::{Value, json};
        fn opt<T: Serialize>(s: &Option<Setting<T>>, default: Value) -> (Value, Origin) {
            match s {
                Some(s) => (json!(s.value), s.origin.clone()),
                None => (default, Origin::Default),
            }
        }
        fn set<T: Serialize>(s: &Setting<T>) -> (Value, Origin) {
            (json!(s.value), s.origin.clone())
        }
        fn secs(s: &Setting<Duration>) -> (Value, Origin) {
            (json!(s.value.as_secs()), s.origin.clone())
        }
        let d = crashmon_database::Retention::default();
        let db_default = crashmon_database::default_path().map_or(Value::Null, |p| json!(p));
        let socket_default = crate::cmd::monitor::default_socket().map_or(Value::Null, |p| json!(p));
        let upload_target = match std::env::var(crate::cmd::upload::UPLOAD_ENV) {
            Ok(v) if !v.is_empty() => (
                json!(crashmon_uploader::Target::parse(&v).map_or(v.clone(), |t| t.to_string())),
                Origin::Env { name: crate::cmd::upload::UPLOAD_ENV.into() },
            ),
            _ => match &self.upload.target {
                Some(s) => (
                    json!(crashmon_uploader::Target::parse(&s.value).map_or(s.value.clone(), |t| t.to_string())),
                    s.origin.clone(),
                ),
                None => (Value::Null, Origin::Default),
            },
        };
        let sym = crashmon_symbolicate::Options::default();
        let rows: Vec<(&'static str, (Value, Origin))> = vec![
            ("database", opt(&self.database, db_default)),
            ("monitor.socket", opt(&self.monitor.socket, socket_default)),
            ("monitor.max_clients", set(&self.monitor.max_clients)),
            ("monitor.max_dump_size", opt(&self.monitor.max_dump_size, Value::Null)),
            ("upload.target", upload_target),
            ("upload.timeout_secs", secs(&self.upload.timeout)),
            ("upload.connect_timeout_secs", secs(&self.upload.connect_timeout)),
            ("upload.proxy", opt(&self.upload.proxy, Value::Null)),
            ("upload.ca_file", opt(&self.upload.ca_file, Value::Null)),
            ("upload.scrub", set(&self.upload.scrub)),
            ("upload.scrub_patterns", set(&self.upload.scrub_patterns)),
            ("symbols.dirs", set(&self.symbols.dirs)),
            ("symbols.servers", set(&self.symbols.servers)),
            ("symbols.cache_dir", opt(&self.symbols.cache_dir, json!(sym.cache_dir))),
            ("symbols.cache_max_size", opt(&self.symbols.cache_max_size, json!(sym.cache_max_bytes))),
            ("retention.max_count", opt(&self.retention.max_count, json!(d.max_count))),
            ("retention.max_size", opt(&self.retention.max_size, json!(d.max_bytes))),
            (
                "retention.max_age_days",
                opt(&self.retention.max_age_days, json!(d.max_age.map(|a| a.as_secs() / 86_400))),
            ),
            ("filter.ignore_signatures", set(&self.filter.ignore_signatures)),
            ("filter.ignore_annotations", set(&self.filter.ignore_annotations)),
        ];
        rows.into_iter().map(|(k, (v, o))| (k, v, o)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> ConfigError {
        parse(Path::new("c.toml"), src).expect_err(src)
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("2 GiB").unwrap(), 2 << 30);
        assert!(parse_size("2GB").unwrap_err().contains("KiB"));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999TiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = err("database = \"/tmp/x\"\n\n[upload]\ntimeout_secs = -5\n");
        assert_eq!(e.key.as_deref(), Some("upload.timeout_secs"));
        assert_eq!(e.position.map(|p| p.0), Some(4));
        let e = err("[retention]\nmax_count = 3\nmax_sizee = 4\n");
        assert_eq!(e.key.as_deref(), Some("retention.max_sizee"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(3));
        assert!(e.message.contains("unknown field"), "{e}");
        let e = err("[monitor]\nmax_dump_size = \"2GB\"\n");
        assert_eq!(e.key.as_deref(), Some("monitor.max_dump_size"), "{e}");
        let e = err("[retention]\nmax_size = \"2GB\"\n");
        assert!(e.message.contains("unknown size unit"), "{e}");
        assert_eq!(e.key.as_deref(), Some("retention.max_size"), "{e}");
        let e = err("[monitor]\nmax_dump_size = \"1KiB\"\n");
        assert!(e.message.contains("64KiB"), "{e}");
        let e = err("[filter]\nignore_annotations = { \"\" = \"x\" }\n");
        assert_eq!(e.key.as_deref(), Some("filter.ignore_annotations"), "{e}");
        let c = parse(
            Path::new("c.toml"),
            "[monitor]\nmax_dump_size = \"2GiB\"\n[filter]\nignore_signatures = [\"*abort*\"]\n\
             ignore_annotations = { channel = \"dev\" }\n",
        )
        .unwrap();
        assert_eq!(c.monitor.max_dump_size.unwrap().value, 2 << 30);
        assert_eq!(c.filter.ignore_annotations.value.get("channel").map(String::as_str), Some("dev"));
        let e = err("[uplaod]\nurl = \"https://x\"\n");
        assert_eq!(e.position.map(|p| p.0), Some(1), "{e}");
    }

    #[test]
    fn a_full_file_parses_with_origins() {
        let src = "database = \"/var/lib/crashmon\"\n[monitor]\nsocket = \"/run/crashmon.sock\"\nmax_clients = 8\n\
                   [upload]\ndsn = \"https://key@sentry.example.com/42\"\ntimeout_secs = 5\nscrub_patterns = [\"MY\"]\n\
                   [symbols]\ndirs = [\"/syms\"]\ncache_max_size = \"1GiB\"\n[retention]\nmax_age_days = 7\n";
        let c = parse(Path::new("/etc/c.toml"), src).unwrap();
        assert_eq!(c.monitor.max_clients.value, 8);
        assert_eq!(c.monitor.max_clients.origin, Origin::File { path: "/etc/c.toml".into(), line: 4 });
        assert_eq!(c.upload.timeout.value, Duration::from_secs(5));
        assert_eq!(c.symbols.cache_max_size.as_ref().unwrap().value, 1 << 30);
        assert_eq!(c.retention().max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.retention().max_bytes, crashmon_database::Retention::default().max_bytes);
        let o = c.apply_upload(crashmon_uploader::UploadOptions::default());
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.scrub.extra_patterns, vec!["MY".to_owned()]);
    }
}
