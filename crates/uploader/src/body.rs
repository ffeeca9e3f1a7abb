//! Request bodies that stream the dump from disk.
//!
//! A body is a list of segments — bytes built in memory (part headers, form
//! fields, event JSON: small) and the dump, read from its file in 64 KiB
//! chunks through the [`ScrubReader`] — read one after the other as a
//! single [`Read`]. With whole-body compression the chain is read through a
//! [`flate2::read::GzEncoder`]; a dump segment may also be compressed on its
//! own (Sentry's minidump endpoint recognises a gzipped dump by its magic
//! bytes). Memory use does not depend on the dump's size.
//!
//! Every request carries an exact `Content-Length` (Socorro's collector
//! refuses bodies without one). Without compression it is the sum of the
//! segment sizes (scrubbing never changes the dump's size). With
//! compression the body is compressed once to count its bytes and once
//! more while sending; gzip output is deterministic for the same input, so
//! both passes agree. That costs CPU but neither memory nor disk.
//!
//! Multipart encoding (RFC 7578) is done here rather than with ureq's
//! `unversioned::multipart`: that API is explicitly outside ureq's semver
//! promise, pulls in MIME guessing, and cannot be compressed as a whole.
//! The boundary is 128 random bits; names and file names are quoted with
//! `"`, CR and LF percent-encoded, as browsers do.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};

use flate2::Compression;
use flate2::read::GzEncoder;

use crate::scrub::{FileRange, ScrubPlan, ScrubReader};

/// The dump as it will be sent: its open (locked) file, its length and what
/// to scrub; and the report's attachments.
pub(crate) struct DumpSource<'a> {
    pub(crate) file: &'a File,
    pub(crate) len: u64,
    pub(crate) plan: &'a ScrubPlan,
    /// Open attachment files, referred to by index from
    /// [`Segment::Attachment`].
    pub(crate) attachments: &'a [AttachmentFile],
    /// What to scrub in attachments (the dump's secrets, wherever they
    /// appear: [`ScrubPlan::replacements_only`]).
    pub(crate) attachment_plan: &'a ScrubPlan,
}

/// An attachment as it will be sent: its open file and its length.
#[derive(Debug)]
pub(crate) struct AttachmentFile {
    /// Name sent (file name of the part or item).
    pub(crate) name: String,
    pub(crate) file: File,
    pub(crate) len: u64,
}

fn scrubbed<'a>(file: &'a File, len: u64, plan: &'a ScrubPlan) -> Box<dyn Read + 'a> {
    let range = FileRange::new(file, len);
    if plan.is_empty() { Box::new(range) } else { Box::new(ScrubReader::new(range, plan)) }
}

impl DumpSource<'_> {
    fn reader(&self) -> Box<dyn Read + '_> {
        scrubbed(self.file, self.len, self.plan)
    }

    fn attachment(&self, index: usize) -> Box<dyn Read + '_> {
        match self.attachments.get(index) {
            Some(a) => scrubbed(&a.file, a.len, self.attachment_plan),
            None => Box::new(io::empty()),
        }
    }

    fn attachment_len(&self, index: usize) -> u64 {
        self.attachments.get(index).map_or(0, |a| a.len)
    }
}

/// One piece of a body.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// Bytes built in memory.
    Bytes(Vec<u8>),
    /// The dump, optionally gzipped on its own.
    Dump {
        /// Compress this segment with gzip.
        gzip: bool,
    },
    /// Attachment number `index` of the [`DumpSource`], streamed from its
    /// file (scrubbing keeps its length).
    Attachment {
        /// Index into [`DumpSource::attachments`].
        index: usize,
    },
}

/// A request body: its content type and segments.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) content_type: String,
    /// Gzip the whole body (and send `Content-Encoding: gzip`).
    pub(crate) gzip: bool,
    segments: Vec<Segment>,
}

fn encoder<'a>(inner: impl Read + 'a) -> Box<dyn Read + 'a> {
    Box::new(GzEncoder::new(inner, Compression::default()))
}

impl Body {
    /// The body as one stream.
    pub(crate) fn open<'a>(&'a self, dump: &'a DumpSource<'a>) -> Box<dyn Read + 'a> {
        let parts: VecDeque<Box<dyn Read + 'a>> = self
            .segments
            .iter()
            .map(|segment| -> Box<dyn Read + 'a> {
                match segment {
                    Segment::Bytes(bytes) => Box::new(bytes.as_slice()),
                    Segment::Dump { gzip: true } => encoder(dump.reader()),
                    Segment::Dump { gzip: false } => dump.reader(),
                    Segment::Attachment { index } => dump.attachment(*index),
                }
            })
            .collect();
        let chain = Concat { parts };
        if self.gzip { encoder(chain) } else { Box::new(chain) }
    }

    /// The body ready to send: its exact length and a reader that yields
    /// exactly that many bytes.
    ///
    /// Uncompressed, the length is the sum of the parts and the dump streams
    /// from disk. Compressed, the body is gzipped once into an anonymous
    /// temporary file (memory stays bounded; the length cannot be known
    /// otherwise, and compressing twice is not guaranteed to give the same
    /// bytes), and that file is sent.
    pub(crate) fn prepare<'a>(&'a self, dump: &'a DumpSource<'a>) -> io::Result<(u64, Box<dyn Read + 'a>)> {
        let compressed = self.gzip || self.segments.iter().any(|s| matches!(s, Segment::Dump { gzip: true }));
        if compressed {
            let mut spool = tempfile::tempfile()?;
            let len = io::copy(&mut self.open(dump), &mut spool)?;
            io::Seek::seek(&mut spool, io::SeekFrom::Start(0))?;
            return Ok((len, Box::new(io::BufReader::new(spool))));
        }
        let len = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Bytes(bytes) => bytes.len() as u64,
                Segment::Dump { .. } => dump.len,
                Segment::Attachment { index } => dump.attachment_len(*index),
            })
            .sum();
        Ok((len, self.open(dump)))
    }

    /// The in-memory bytes of the body (for tests and logs).
    #[cfg(test)]
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// Reads its parts one after the other.
struct Concat<'a> {
    parts: VecDeque<Box<dyn Read + 'a>>,
}

impl Read for Concat<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while let Some(part) = self.parts.front_mut() {
            let n = part.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.parts.pop_front();
        }
        Ok(0)
    }
}

/// Builds a `multipart/form-data` body.
#[derive(Debug)]
pub(crate) struct Multipart {
    boundary: String,
    segments: Vec<Segment>,
    /// Bytes not yet pushed as a segment.
    pending: Vec<u8>,
}

/// Quotes a form-data name or file name (RFC 7578 §2, WHATWG encoding).
fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("%22"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Multipart {
    /// An empty form with a random boundary from `rng`.
    pub(crate) fn new(rng: &mut fastrand::Rng) -> Multipart {
        let boundary = format!("crashmon-{:016x}{:016x}", rng.u64(..), rng.u64(..));
        Multipart { boundary, segments: Vec::new(), pending: Vec::new() }
    }

    fn part_header(&mut self, name: &str, file_name: Option<&str>, content_type: Option<&str>) {
        let mut header = format!("--{}\r\nContent-Disposition: form-data; name={}", self.boundary, quote(name));
        if let Some(file_name) = file_name {
            header.push_str("; filename=");
            header.push_str(&quote(file_name));
        }
        header.push_str("\r\n");
        if let Some(content_type) = content_type {
            header.push_str("Content-Type: ");
            header.push_str(content_type);
            header.push_str("\r\n");
        }
        header.push_str("\r\n");
        self.pending.extend_from_slice(header.as_bytes());
    }

    /// A text field.
    pub(crate) fn text(&mut self, name: &str, value: &str) {
        self.part_header(name, None, None);
        self.pending.extend_from_slice(value.as_bytes());
        self.pending.extend_from_slice(b"\r\n");
    }

    /// A part with a content type (e.g. JSON).
    pub(crate) fn typed(&mut self, name: &str, content_type: &str, value: &[u8]) {
        self.part_header(name, None, Some(content_type));
        self.pending.extend_from_slice(value);
        self.pending.extend_from_slice(b"\r\n");
    }

    /// The dump as a file part, `application/octet-stream`.
    pub(crate) fn dump(&mut self, name: &str, file_name: &str, gzip: bool) {
        self.part_header(name, Some(file_name), Some("application/octet-stream"));
        self.segments.push(Segment::Bytes(std::mem::take(&mut self.pending)));
        self.segments.push(Segment::Dump { gzip });
        self.pending.extend_from_slice(b"\r\n");
    }

    /// An attachment as a file part, `application/octet-stream`, streamed
    /// from its file.
    pub(crate) fn attachment(&mut self, name: &str, file_name: &str, index: usize) {
        self.part_header(name, Some(file_name), Some("application/octet-stream"));
        self.segments.push(Segment::Bytes(std::mem::take(&mut self.pending)));
        self.segments.push(Segment::Attachment { index });
        self.pending.extend_from_slice(b"\r\n");
    }

    /// The finished body.
    pub(crate) fn finish(mut self, gzip: bool) -> Body {
        self.pending.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self.segments.push(Segment::Bytes(self.pending));
        Body { content_type: format!("multipart/form-data; boundary={}", self.boundary), gzip, segments: self.segments }
    }
}

/// Builds a Sentry envelope: a header line, then items, each a JSON header
/// line (with the payload's `length`), the payload and a newline.
#[derive(Debug)]
pub(crate) struct Envelope {
    segments: Vec<Segment>,
    pending: Vec<u8>,
}

impl Envelope {
    pub(crate) fn new(header: &serde_json::Value) -> Envelope {
        let mut pending = header.to_string().into_bytes();
        pending.push(b'\n');
        Envelope { segments: Vec::new(), pending }
    }

    /// An item with an in-memory payload; `length` is added to `header`.
    pub(crate) fn item(&mut self, mut header: serde_json::Value, payload: &[u8]) {
        header["length"] = payload.len().into();
        self.pending.extend_from_slice(header.to_string().as_bytes());
        self.pending.push(b'\n');
        self.pending.extend_from_slice(payload);
        self.pending.push(b'\n');
    }

    /// The dump as an item of `dump_len` bytes.
    pub(crate) fn dump_item(&mut self, mut header: serde_json::Value, dump_len: u64) {
        header["length"] = dump_len.into();
        self.pending.extend_from_slice(header.to_string().as_bytes());
        self.pending.push(b'\n');
        self.segments.push(Segment::Bytes(std::mem::take(&mut self.pending)));
        self.segments.push(Segment::Dump { gzip: false });
        self.pending.push(b'\n');
    }

    /// Attachment number `index` as an item of `len` bytes.
    pub(crate) fn attachment_item(&mut self, mut header: serde_json::Value, index: usize, len: u64) {
        header["length"] = len.into();
        self.pending.extend_from_slice(header.to_string().as_bytes());
        self.pending.push(b'\n');
        self.segments.push(Segment::Bytes(std::mem::take(&mut self.pending)));
        self.segments.push(Segment::Attachment { index });
        self.pending.push(b'\n');
    }

    pub(crate) fn finish(mut self, gzip: bool) -> Body {
        self.segments.push(Segment::Bytes(self.pending));
        Body { content_type: "application/x-sentry-envelope".to_owned(), gzip, segments: self.segments }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dump_file(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.dmp");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    fn prepared(body: &Body, dump: &DumpSource<'_>) -> (u64, Vec<u8>) {
        let (len, mut reader) = body.prepare(dump).unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        (len, out)
    }

    fn read(body: &Body, dump: &DumpSource<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        body.open(dump).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn multipart_layout_and_length() {
        let (_dir, file) = dump_file(b"MDMPdump-bytes");
        let plan = ScrubPlan::default();
        let dump = DumpSource { file: &file, len: 14, plan: &plan, attachments: &[], attachment_plan: &plan };
        let mut form = Multipart::new(&mut fastrand::Rng::with_seed(1));
        form.text("prod", "demo");
        form.text("we\"ird\nname", "v");
        form.dump("upload_file_minidump", "id.dmp", false);
        let body = form.finish(false);
        let bytes = read(&body, &dump);
        assert_eq!(prepared(&body, &dump), (bytes.len() as u64, bytes.clone()));
        let text = String::from_utf8(bytes).unwrap();
        let boundary = body.content_type.strip_prefix("multipart/form-data; boundary=").unwrap();
        assert_eq!(
            text,
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"prod\"\r\n\r\ndemo\r\n\
                 --{b}\r\nContent-Disposition: form-data; name=\"we%22ird%0Aname\"\r\n\r\nv\r\n\
                 --{b}\r\nContent-Disposition: form-data; name=\"upload_file_minidump\"; filename=\"id.dmp\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\nMDMPdump-bytes\r\n--{b}--\r\n",
                b = boundary
            )
        );
        assert_eq!(body.segments().len(), 3);
    }

    #[test]
    fn gzip_length_matches_and_decompresses() {
        let content: Vec<u8> = (0..500_000u32).flat_map(|i| (i / 7).to_le_bytes()).collect();
        let (_dir, file) = dump_file(&content);
        let plan = ScrubPlan::default();
        let dump = DumpSource {
            file: &file,
            len: content.len() as u64,
            plan: &plan,
            attachments: &[],
            attachment_plan: &plan,
        };
        let mut form = Multipart::new(&mut fastrand::Rng::with_seed(2));
        form.dump("upload_file_minidump", "x.dmp", false);
        let body = form.finish(true);
        let (len, bytes) = prepared(&body, &dump);
        assert_eq!(len, bytes.len() as u64, "the announced length is the length sent");
        assert!(bytes.len() < content.len() / 2);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain).unwrap();
        assert!(plain.windows(content.len()).any(|w| w == content.as_slice()));
    }

    #[test]
    fn envelope_layout() {
        let (_dir, file) = dump_file(b"MDMP1234");
        let plan = ScrubPlan::default();
        let dump = DumpSource { file: &file, len: 8, plan: &plan, attachments: &[], attachment_plan: &plan };
        let mut env = Envelope::new(&serde_json::json!({"event_id": "ab"}));
        env.item(serde_json::json!({"type": "event"}), b"{}");
        env.dump_item(serde_json::json!({"type": "attachment"}), 8);
        let body = env.finish(false);
        let text = String::from_utf8(read(&body, &dump)).unwrap();
        assert_eq!(
            text,
            "{\"event_id\":\"ab\"}\n{\"length\":2,\"type\":\"event\"}\n{}\n{\"length\":8,\"type\":\"attachment\"}\nMDMP1234\n"
        );
    }

    #[test]
    fn the_dump_is_read_in_bounded_chunks() {
        // A 64 MiB sparse file read with a huge output buffer: no read of the
        // dump returns (or buffers) more than one 64 KiB chunk.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.dmp");
        let file = File::create(&path).unwrap();
        file.set_len(64 << 20).unwrap();
        let file = File::open(&path).unwrap();
        let plan = ScrubPlan::default();
        let dump = DumpSource { file: &file, len: 64 << 20, plan: &plan, attachments: &[], attachment_plan: &plan };
        let mut range = dump.reader();
        let mut buf = vec![0u8; 8 << 20];
        let mut total = 0u64;
        loop {
            let n = range.read(&mut buf).unwrap();
            assert!(n <= crate::scrub::CHUNK, "read {n} bytes at once");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        assert_eq!(total, 64 << 20);
    }

    #[test]
    fn short_file_is_a_local_error() {
        let (_dir, file) = dump_file(b"1234");
        let plan = ScrubPlan::default();
        let dump = DumpSource { file: &file, len: 10, plan: &plan, attachments: &[], attachment_plan: &plan };
        let mut form = Multipart::new(&mut fastrand::Rng::with_seed(3));
        form.dump("f", "f", false);
        let body = form.finish(false);
        let err = body.open(&dump).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.get_ref().is_some_and(|e| e.is::<crate::scrub::LocalReadError>()));
    }
}
