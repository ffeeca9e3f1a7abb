//! Privacy scrubbing of dumps and annotations before upload (RELIABILITY D3).
//!
//! minidump-writer copies the crashed process's environment (stream
//! `0x47670007`, LinuxEnviron) and command line (`0x47670006`, LinuxCmdLine)
//! into the dump, and the main thread's stack memory, dumped from the stack
//! pointer to the top of the stack mapping, holds the very same strings (the
//! kernel puts argv and envp there). Scrubbing therefore works in two steps:
//!
//! 1. **Plan** ([`ScrubPlan::for_dump`]): read only the minidump header, the
//!    stream directory and those two (small, capped) streams. Every secret
//!    found there gives byte ranges to blank inside the streams and
//!    *replacements* to apply anywhere in the dump:
//!    - an environment entry `KEY=VALUE` whose key contains a secret pattern
//!      (case-insensitive substring, [`DEFAULT_SECRET_PATTERNS`] plus
//!      [`ScrubOptions::extra_patterns`]): the value;
//!    - arguments `--password=VALUE`, `--token VALUE` (flag names matched the
//!      same way) and `KEY=VALUE` arguments: the value;
//!    - the password of a URL's user info (`scheme://user:PASSWORD@host`)
//!      in any entry.
//!
//!    Each changed entry becomes a replacement of the original entry by its
//!    scrubbed form (for `--token VALUE` the pair `--token\0VALUE`); a bare
//!    value of at least [`MIN_BARE_VALUE_LEN`] bytes is also replaced on its
//!    own, wherever it appears.
//! 2. **Stream** (`ScrubReader`): the dump is read in 64 KiB chunks, the
//!    ranges are blanked and the replacements applied across chunk
//!    boundaries (a window of the longest pattern is held back), so memory
//!    does not grow with the dump.
//!
//! Every secret byte is replaced by `*`, one for one, so the dump keeps its
//! size and every offset in it stays valid: it still parses.
//!
//! A dump whose header or directory cannot be read is not uploaded when
//! scrubbing is on: we cannot know what it would leak.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// Key substrings that mark an environment variable, flag or annotation as
/// secret (matched case-insensitively).
pub const DEFAULT_SECRET_PATTERNS: [&str; 10] =
    ["TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "AUTH", "CREDENTIAL", "SESSION", "COOKIE", "PRIVATE"];

/// Secret values at least this long are also replaced wherever they appear
/// in the dump (shorter ones only in their own entry, where their context
/// makes them unambiguous), so that a short value cannot blank unrelated
/// bytes of the dump.
pub const MIN_BARE_VALUE_LEN: usize = 6;

/// Stream type of `/proc/PID/cmdline` in a minidump.
pub const STREAM_LINUX_CMDLINE: u32 = 0x4767_0006;
/// Stream type of `/proc/PID/environ` in a minidump.
pub const STREAM_LINUX_ENVIRON: u32 = 0x4767_0007;

/// `MDMP`, little-endian.
const MINIDUMP_SIGNATURE: u32 = 0x504d_444d;
const MINIDUMP_VERSION: u32 = 0xa793;
const HEADER_LEN: usize = 32;
const DIRECTORY_ENTRY_LEN: usize = 12;
/// More streams than this is not a dump minidump-writer wrote.
const MAX_STREAMS: u32 = 4096;
/// Largest environment or command-line stream we scrub (Linux caps argv +
/// envp far below this by default).
const MAX_SCRUBBED_STREAM: u32 = 16 << 20;
/// Read size of the dump.
pub(crate) const CHUNK: usize = 64 * 1024;

/// What to scrub. Scrubbing is on by default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScrubOptions {
    /// Scrub at all. Off sends the dump and annotations exactly as stored.
    pub enabled: bool,
    /// More key substrings to treat as secret, in addition to
    /// [`DEFAULT_SECRET_PATTERNS`] (case-insensitive).
    pub extra_patterns: Vec<String>,
}

impl Default for ScrubOptions {
    fn default() -> ScrubOptions {
        ScrubOptions { enabled: true, extra_patterns: Vec::new() }
    }
}

impl ScrubOptions {
    /// No scrubbing at all.
    pub fn disabled() -> ScrubOptions {
        ScrubOptions { enabled: false, extra_patterns: Vec::new() }
    }

    /// Whether values under `key` (an environment variable, flag or
    /// annotation name) are secret.
    pub fn key_is_secret(&self, key: &str) -> bool {
        let key = key.to_ascii_uppercase();
        DEFAULT_SECRET_PATTERNS.iter().any(|p| key.contains(p))
            || self.extra_patterns.iter().any(|p| !p.is_empty() && key.contains(&p.to_ascii_uppercase()))
    }

    /// `value` as it may be sent under `key`: unchanged, or one `*` per
    /// character if the key is secret. Also blanks URL passwords.
    pub fn scrub_annotation(&self, key: &str, value: &str) -> String {
        if !self.enabled {
            return value.to_owned();
        }
        if self.key_is_secret(key) {
            return "*".repeat(value.chars().count());
        }
        self.scrub_text(value)
    }

    /// Free text (a breadcrumb message, an annotation value) as it may be
    /// sent: the values of secret-looking assignments and flags blanked
    /// (`api_key=VALUE`, `--password=VALUE`, `--token VALUE`,
    /// `Authorization: VALUE...` up to the end of the line, `?token=VALUE&`
    /// in a URL) and URL passwords blanked, one `*` per byte. Words are
    /// separated by whitespace and `&?;,"'`.
    pub fn scrub_text(&self, text: &str) -> String {
        if !self.enabled {
            return text.to_owned();
        }
        let mut bytes = text.as_bytes().to_vec();
        for range in url_password_ranges(&bytes) {
            bytes[range].fill(b'*');
        }
        let is_delim = |b: u8| b.is_ascii_whitespace() || matches!(b, b'&' | b'?' | b';' | b',' | b'"' | b'\'');
        let words: Vec<Range<usize>> = {
            let mut out = Vec::new();
            let mut start = None;
            for (i, &b) in bytes.iter().enumerate() {
                match (is_delim(b), start) {
                    (true, Some(s)) => {
                        out.push(s..i);
                        start = None;
                    }
                    (false, None) => start = Some(i),
                    _ => {}
                }
            }
            if let Some(s) = start {
                out.push(s..bytes.len());
            }
            out
        };
        let mut blank: Vec<Range<usize>> = Vec::new();
        for (n, word) in words.iter().enumerate() {
            let w = &bytes[word.clone()];
            let name_start = w.iter().position(|&b| b != b'-').unwrap_or(w.len());
            if let Some(eq) = w.iter().position(|&b| b == b'=' || b == b':').filter(|&eq| eq + 1 < w.len()) {
                // KEY=VALUE, --flag=VALUE, key:value
                let key = String::from_utf8_lossy(&w[name_start..eq]);
                if !key.is_empty() && self.key_is_secret(&key) {
                    blank.push(word.start + eq + 1..word.end);
                }
            } else if w.len() > name_start {
                let is_header = w.ends_with(b":");
                let key =
                    String::from_utf8_lossy(&w[name_start..w.len() - usize::from(is_header || w.ends_with(b"="))]);
                if key.is_empty() || !self.key_is_secret(&key) {
                    continue;
                }
                if is_header {
                    // `Authorization: Bearer xyz`: the rest of the line.
                    let end = bytes[word.end..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| word.end + p);
                    blank.extend(words[n + 1..].iter().filter(|r| r.end <= end).cloned());
                } else if (name_start > 0 || w.ends_with(b"="))
                    && let Some(next) = words.get(n + 1)
                    && !bytes[next.start..].starts_with(b"-")
                {
                    // `--token VALUE`, `token= VALUE`
                    blank.push(next.clone());
                }
            }
        }
        for range in blank {
            bytes[range].fill(b'*');
        }
        // Only whole words (between ASCII delimiters) were replaced by ASCII.
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Why a dump cannot be scrubbed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScrubError {
    /// Reading the file failed.
    #[error("reading the dump: {0}")]
    Io(#[from] io::Error),
    /// The header or directory is not that of a minidump.
    #[error("not a readable minidump ({0}); refusing to upload what cannot be scrubbed")]
    NotAMinidump(&'static str),
}

/// One pattern → same-length replacement, applied anywhere in the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Replacement {
    pattern: Vec<u8>,
    with: Vec<u8>,
}

/// What to change in one dump: ranges to blank and replacements. See the
/// [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct ScrubPlan {
    /// Absolute ranges of the file to fill with `*`, sorted.
    blank: Vec<Range<u64>>,
    /// Longest first.
    replacements: Vec<Replacement>,
}

/// A stream's place in the file.
#[derive(Debug, Clone, Copy)]
struct StreamLocation {
    stream_type: u32,
    size: u32,
    rva: u32,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads the header and the directory (nothing else).
fn read_directory(file: &File, file_len: u64) -> Result<Vec<StreamLocation>, ScrubError> {
    let mut header = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        return Err(ScrubError::NotAMinidump("shorter than a minidump header"));
    }
    file.read_exact_at(&mut header, 0)?;
    if u32_at(&header, 0) != MINIDUMP_SIGNATURE {
        return Err(ScrubError::NotAMinidump("no MDMP signature"));
    }
    if u32_at(&header, 4) & 0xffff != MINIDUMP_VERSION {
        return Err(ScrubError::NotAMinidump("unknown minidump version"));
    }
    let count = u32_at(&header, 8);
    let rva = u32_at(&header, 12);
    if count > MAX_STREAMS {
        return Err(ScrubError::NotAMinidump("implausible stream count"));
    }
    let dir_len = count as usize * DIRECTORY_ENTRY_LEN;
    if u64::from(rva) + dir_len as u64 > file_len {
        return Err(ScrubError::NotAMinidump("stream directory beyond the end of the file"));
    }
    let mut dir = vec![0u8; dir_len];
    file.read_exact_at(&mut dir, u64::from(rva))?;
    Ok(dir
        .chunks_exact(DIRECTORY_ENTRY_LEN)
        .map(|e| StreamLocation { stream_type: u32_at(e, 0), size: u32_at(e, 4), rva: u32_at(e, 8) })
        .collect())
}

impl ScrubPlan {
    /// Plans the scrubbing of the dump open as `file` (of `file_len` bytes),
    /// reading only its header, directory and environment and command-line
    /// streams. An empty plan if scrubbing is disabled.
    pub fn for_dump(file: &File, file_len: u64, options: &ScrubOptions) -> Result<ScrubPlan, ScrubError> {
        let mut plan = ScrubPlan::default();
        if !options.enabled {
            return Ok(plan);
        }
        for stream in read_directory(file, file_len)? {
            if stream.stream_type != STREAM_LINUX_ENVIRON && stream.stream_type != STREAM_LINUX_CMDLINE {
                continue;
            }
            if u64::from(stream.rva) + u64::from(stream.size) > file_len {
                return Err(ScrubError::NotAMinidump("environment or command line beyond the end of the file"));
            }
            if stream.size > MAX_SCRUBBED_STREAM {
                // Too big to examine: blank it all (same length).
                plan.blank.push(u64::from(stream.rva)..u64::from(stream.rva) + u64::from(stream.size));
                continue;
            }
            let mut data = vec![0u8; stream.size as usize];
            file.read_exact_at(&mut data, u64::from(stream.rva))?;
            let base = u64::from(stream.rva);
            let found = if stream.stream_type == STREAM_LINUX_ENVIRON {
                scrub_environ(&data, options)
            } else {
                scrub_cmdline(&data, options)
            };
            plan.add(base, &data, found);
        }
        plan.blank.sort_by_key(|r| r.start);
        plan.replacements.sort_by(|a, b| b.pattern.len().cmp(&a.pattern.len()).then(a.pattern.cmp(&b.pattern)));
        plan.replacements.dedup_by(|a, b| a.pattern == b.pattern);
        Ok(plan)
    }

    /// Adds the findings in a stream at file offset `base`.
    fn add(&mut self, base: u64, data: &[u8], found: Found) {
        for range in &found.blank {
            self.blank.push(base + range.start as u64..base + range.end as u64);
            let value = &data[range.clone()];
            if value.len() >= MIN_BARE_VALUE_LEN {
                self.replacements.push(Replacement { pattern: value.to_vec(), with: vec![b'*'; value.len()] });
            }
        }
        for context in found.contexts {
            let pattern = data[context.clone()].to_vec();
            let mut with = pattern.clone();
            for range in &found.blank {
                let start = range.start.max(context.start);
                let end = range.end.min(context.end);
                if start < end {
                    with[start - context.start..end - context.start].fill(b'*');
                }
            }
            if with != pattern {
                self.replacements.push(Replacement { pattern, with });
            }
        }
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.blank.is_empty() && self.replacements.is_empty()
    }

    /// The same plan without the ranges of the dump's own streams: only the
    /// secret values (and entries) found there, to be replaced wherever they
    /// appear in another file (an attachment).
    pub fn replacements_only(&self) -> ScrubPlan {
        ScrubPlan { blank: Vec::new(), replacements: self.replacements.clone() }
    }

    /// `text` with every secret value found in the dump's environment and
    /// command line replaced by `*` (one per byte), wherever it appears, as
    /// in the dump itself.
    pub fn scrub_text(&self, text: &str) -> String {
        if self.replacements.is_empty() {
            return text.to_owned();
        }
        let mut bytes = text.as_bytes().to_vec();
        let mut i = 0;
        while i < bytes.len() {
            // Longest first: the first pattern that matches here wins.
            match self.replacements.iter().find(|r| bytes[i..].starts_with(&r.pattern)) {
                Some(r) => {
                    bytes[i..i + r.pattern.len()].copy_from_slice(&r.with);
                    i += r.pattern.len();
                }
                None => i += 1,
            }
        }
        // A replaced pattern may end inside a multi-byte character only if it
        // was not UTF-8 itself; then the text is made valid again.
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// How many distinct secrets (ranges) the plan blanks in the streams.
    pub fn secrets_found(&self) -> usize {
        self.blank.len()
    }
}

/// Secrets found in one stream: byte ranges to blank, and the entries (or
/// entry pairs) containing them, which become replacements.
#[derive(Debug, Default)]
struct Found {
    blank: Vec<Range<usize>>,
    contexts: Vec<Range<usize>>,
}

/// The NUL-separated entries of a stream, with their ranges.
fn entries(data: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == 0 {
            if i > start {
                out.push(start..i);
            }
            start = i + 1;
        }
    }
    if start < data.len() {
        out.push(start..data.len());
    }
    out
}

/// Ranges (within `entry`) of URL user-info passwords: `scheme://user:PASSWORD@host`.
fn url_password_ranges(entry: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = find(&entry[from..], b"://") {
        let auth_start = from + found + 3;
        let auth_end = entry[auth_start..]
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#' | b' ' | 0))
            .map_or(entry.len(), |p| auth_start + p);
        let authority = &entry[auth_start..auth_end];
        if let Some(at) = authority.iter().rposition(|&b| b == b'@')
            && let Some(colon) = authority[..at].iter().position(|&b| b == b':')
            && colon + 1 < at
        {
            out.push(auth_start + colon + 1..auth_start + at);
        }
        from = auth_end.max(auth_start);
        if from >= entry.len() {
            break;
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// For `KEY=VALUE` with a secret key: the range of VALUE within `entry`.
fn secret_assignment(entry: &[u8], options: &ScrubOptions, require_identifier: bool) -> Option<Range<usize>> {
    let eq = entry.iter().position(|&b| b == b'=')?;
    let key = std::str::from_utf8(&entry[..eq]).ok()?;
    if require_identifier
        && !(key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return None;
    }
    (eq + 1 < entry.len() && options.key_is_secret(key)).then_some(eq + 1..entry.len())
}

fn scrub_environ(data: &[u8], options: &ScrubOptions) -> Found {
    let mut found = Found::default();
    for entry in entries(data) {
        let bytes = &data[entry.clone()];
        let mut ranges: Vec<Range<usize>> = match secret_assignment(bytes, options, false) {
            Some(value) => vec![value],
            None => url_password_ranges(bytes),
        };
        if !ranges.is_empty() {
            ranges.iter_mut().for_each(|r| *r = entry.start + r.start..entry.start + r.end);
            found.blank.extend(ranges);
            found.contexts.push(entry);
        }
    }
    found
}

fn scrub_cmdline(data: &[u8], options: &ScrubOptions) -> Found {
    let mut found = Found::default();
    let args = entries(data);
    let mut i = 0;
    while i < args.len() {
        let entry = args[i].clone();
        let bytes = &data[entry.clone()];
        let mut ranges = Vec::new();
        let mut context = entry.clone();
        if bytes.starts_with(b"-") {
            let flag = &bytes[bytes.iter().position(|&b| b != b'-').unwrap_or(bytes.len())..];
            let name_end = flag.iter().position(|&b| b == b'=').unwrap_or(flag.len());
            let name = String::from_utf8_lossy(&flag[..name_end]);
            let is_secret = !name.is_empty() && options.key_is_secret(&name);
            if is_secret && name_end < flag.len() {
                // --password=VALUE
                let value_start = entry.start + (bytes.len() - flag.len()) + name_end + 1;
                if value_start < entry.end {
                    ranges.push(value_start..entry.end);
                }
            } else if is_secret
                && let Some(next) = args.get(i + 1)
                && !data[next.clone()].starts_with(b"-")
            {
                // --token VALUE: blank the next argument, as a pair.
                ranges.push(next.clone());
                context = entry.start..next.end;
                i += 1;
            }
        } else if let Some(value) = secret_assignment(bytes, options, true) {
            ranges.push(entry.start + value.start..entry.start + value.end);
        }
        if ranges.is_empty() {
            ranges =
                url_password_ranges(bytes).into_iter().map(|r| entry.start + r.start..entry.start + r.end).collect();
        }
        if !ranges.is_empty() {
            found.blank.extend(ranges);
            found.contexts.push(context);
        }
        i += 1;
    }
    found
}

/// Reads `len` bytes of a file from offset 0 with positional reads, in
/// chunks of at most 64 KiB, without moving the file's offset (so several
/// passes can share one descriptor). Errors are marked as local with
/// [`LocalReadError`], and a file shorter than `len` is an error.
#[derive(Debug)]
pub(crate) struct FileRange<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> FileRange<'a> {
    pub(crate) fn new(file: &'a File, len: u64) -> FileRange<'a> {
        FileRange { file, pos: 0, end: len }
    }
}

/// An I/O error reading the dump on this machine (as opposed to a network
/// error), recognisable inside the `io::Error` the HTTP client returns.
#[derive(Debug, thiserror::Error)]
#[error("reading the dump: {0}")]
pub(crate) struct LocalReadError(pub(crate) io::Error);

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(CHUNK).min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n =
            self.file.read_at(&mut buf[..want], self.pos).map_err(|e| io::Error::new(e.kind(), LocalReadError(e)))?;
        if n == 0 {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, "the dump got shorter while it was being sent");
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, LocalReadError(e)));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Applies a [`ScrubPlan`] to a stream of the whole dump, in bounded memory
/// (one buffer of 64 KiB plus twice the longest pattern, allocated once).
pub(crate) struct ScrubReader<R> {
    inner: R,
    blank: Vec<Range<u64>>,
    replacements: Vec<Replacement>,
    /// One SIMD searcher per replacement pattern (memchr's `memmem`).
    finders: Vec<memchr::memmem::Finder<'static>>,
    /// Matches found: (start, replacement index), reused.
    matches: Vec<(usize, usize)>,
    max_len: usize,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Next byte of `buf` to hand out.
    pos: usize,
    /// `buf[pos..ready]` is final (scrubbed).
    ready: usize,
    /// `buf[..end]` holds data.
    end: usize,
    eof: bool,
}

impl<R: Read> ScrubReader<R> {
    pub(crate) fn new(inner: R, plan: &ScrubPlan) -> ScrubReader<R> {
        let finders = plan.replacements.iter().map(|r| memchr::memmem::Finder::new(&r.pattern).into_owned()).collect();
        let max_len = plan.replacements.iter().map(|r| r.pattern.len()).max().unwrap_or(0);
        ScrubReader {
            inner,
            blank: plan.blank.clone(),
            replacements: plan.replacements.clone(),
            finders,
            matches: Vec::new(),
            max_len,
            buf: vec![0; CHUNK + 2 * max_len],
            base: 0,
            pos: 0,
            ready: 0,
            end: 0,
            eof: false,
        }
    }

    /// Called when everything ready has been handed out: keeps the held-back
    /// bytes, reads more, blanks and replaces what can be decided.
    fn refill(&mut self) -> io::Result<()> {
        if self.pos > 0 {
            // Only the held-back tail (< max_len bytes) moves.
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.ready -= self.pos;
            self.pos = 0;
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
        } else {
            self.blank_ranges(self.end, self.end + n);
            self.end += n;
        }
        // A match may start at i only if all of it is in the buffer (or the
        // input has ended), so hold back max_len - 1 bytes.
        let limit = if self.eof { self.end } else { self.end.saturating_sub(self.max_len.saturating_sub(1)) };
        // Every occurrence (overlapping ones too) of every pattern starting
        // in ready..limit; then, leftmost first and longest first at one
        // position, replace those that do not overlap an earlier one.
        self.matches.clear();
        for (k, finder) in self.finders.iter().enumerate() {
            let mut from = self.ready;
            while from < limit {
                match finder.find(&self.buf[from..self.end]) {
                    Some(at) if from + at < limit => {
                        self.matches.push((from + at, k));
                        from += at + 1;
                    }
                    _ => break,
                }
            }
        }
        // Replacements are sorted longest first, so a lower index wins a tie.
        self.matches.sort_unstable();
        let mut i = self.ready;
        for &(start, k) in &self.matches {
            if start < i {
                continue;
            }
            let r = &self.replacements[k];
            self.buf[start..start + r.pattern.len()].copy_from_slice(&r.with);
            i = start + r.pattern.len();
        }
        let i = i.max(limit);
        self.ready = i.max(self.ready);
        Ok(())
    }

    /// Blanks the planned ranges in `buf[from..to]`.
    fn blank_ranges(&mut self, from: usize, to: usize) {
        let start = self.base + from as u64;
        let end = self.base + to as u64;
        for range in &self.blank {
            let s = range.start.max(start);
            let e = range.end.min(end);
            if s < e {
                self.buf[(s - self.base) as usize..(e - self.base) as usize].fill(b'*');
            }
        }
    }
}

impl<R: Read> Read for ScrubReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos < self.ready {
                let n = out.len().min(self.ready - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            self.refill()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ScrubOptions {
        ScrubOptions::default()
    }

    #[test]
    fn key_patterns() {
        let o = opts();
        for key in ["API_TOKEN", "aws_secret_access_key", "Cookie", "XAUTHORITY", "db_password", "PRIVATE_X"] {
            assert!(o.key_is_secret(key), "{key}");
        }
        for key in ["PATH", "HOME", "LANG", "user"] {
            assert!(!o.key_is_secret(key), "{key}");
        }
        let o = ScrubOptions { extra_patterns: vec!["dsn".into()], ..ScrubOptions::default() };
        assert!(o.key_is_secret("SENTRY_DSN"));
        assert_eq!(o.scrub_annotation("api_key", "héllo"), "*****");
        assert_eq!(o.scrub_annotation("url", "https://u:pw@h/x"), "https://u:**@h/x");
        assert_eq!(ScrubOptions::disabled().scrub_annotation("api_key", "v"), "v");
    }

    #[test]
    fn free_text() {
        let o = opts();
        let cases = [
            ("login ok for user bob", "login ok for user bob"),
            ("retry with api_key=abc123 now", "retry with api_key=****** now"),
            ("GET /x?a=1&token=s3cr3t&b=2 done", "GET /x?a=1&token=******&b=2 done"),
            ("run --password=pw --token tk9 --verbose", "run --password=** --token *** --verbose"),
            ("Authorization: Bearer abc.def\nnext line", "Authorization: ****** *******\nnext line"),
            ("db at postgres://me:pw0rd@db/x", "db at postgres://me:*****@db/x"),
            ("session:héllo", "session:******"),
        ];
        for (input, expected) in cases {
            assert_eq!(o.scrub_text(input), expected, "{input}");
        }
        assert_eq!(ScrubOptions::disabled().scrub_text("api_key=abc"), "api_key=abc");
        let plan = ScrubPlan {
            blank: Vec::new(),
            replacements: vec![
                Replacement { pattern: b"API_TOKEN=hunter2secret".to_vec(), with: b"API_TOKEN=*************".to_vec() },
                Replacement { pattern: b"hunter2secret".to_vec(), with: vec![b'*'; 13] },
            ],
        };
        assert_eq!(
            plan.scrub_text("env API_TOKEN=hunter2secret; saw hunter2secret."),
            "env API_TOKEN=*************; saw *************."
        );
        assert!(plan.replacements_only().blank.is_empty());
    }

    fn apply(data: &[u8], found: &Found) -> Vec<u8> {
        let mut out = data.to_vec();
        for r in &found.blank {
            out[r.clone()].fill(b'*');
        }
        out
    }

    #[test]
    fn environ_entries() {
        let env = b"PATH=/usr/bin\0API_TOKEN=hunter2secret\0DB=postgres://me:pw0rd@db/x\0EMPTY_KEY=\0HOME=/h\0";
        let found = scrub_environ(env, &opts());
        let out = apply(env, &found);
        assert_eq!(
            out.as_slice(),
            b"PATH=/usr/bin\0API_TOKEN=*************\0DB=postgres://me:*****@db/x\0EMPTY_KEY=\0HOME=/h\0".as_slice()
        );
        assert_eq!(found.contexts.len(), 2);
    }

    #[test]
    fn cmdline_args() {
        let cmd = b"prog\0--password=opensesame\0--token\0abc\0--verbose\0API_KEY=k1\0--auth-file\0-x\0path/a=b\0";
        let found = scrub_cmdline(cmd, &opts());
        let out = apply(cmd, &found);
        assert_eq!(
            out.as_slice(),
            b"prog\0--password=**********\0--token\0***\0--verbose\0API_KEY=**\0--auth-file\0-x\0path/a=b\0".as_slice()
        );
    }

    fn read_all(mut r: impl Read, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// A reader handing out at most `n` bytes per call.
    struct Dribble<'a>(&'a [u8], usize);
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn reader_replaces_across_boundaries() {
        let plan = ScrubPlan {
            blank: std::iter::once(2..4).collect(),
            replacements: vec![
                Replacement { pattern: b"--token\0abc".to_vec(), with: b"--token\0***".to_vec() },
                Replacement { pattern: b"hunter2".to_vec(), with: b"*******".to_vec() },
            ],
        };
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for i in 0..20_000u32 {
            input.extend_from_slice(&i.to_le_bytes());
            expected.extend_from_slice(&i.to_le_bytes());
            if i % 997 == 0 {
                input.extend_from_slice(b"xhunter2y--token\0abc\0");
                expected.extend_from_slice(b"x*******y--token\0***\0");
            }
        }
        expected[2..4].fill(b'*');
        for chunk in [1, 3, 7, 4096, 100_000] {
            for dribble in [1, 5, 65_536] {
                let out = read_all(ScrubReader::new(Dribble(&input, dribble), &plan), chunk);
                assert!(out == expected, "chunk {chunk} dribble {dribble}");
            }
        }
    }

    #[test]
    fn empty_plan_is_identity() {
        let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let out = read_all(ScrubReader::new(&input[..], &ScrubPlan::default()), 8192);
        assert_eq!(out, input);
    }

    #[test]
    fn rejects_non_minidumps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dmp");
        std::fs::write(&path, b"this is not a minidump at all, no sir, not even close").unwrap();
        let file = File::open(&path).unwrap();
        let err = ScrubPlan::for_dump(&file, 54, &opts()).unwrap_err();
        assert!(matches!(err, ScrubError::NotAMinidump(_)), "{err}");
        assert!(ScrubPlan::for_dump(&file, 54, &ScrubOptions::disabled()).unwrap().is_empty());
    }
}
