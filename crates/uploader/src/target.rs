//! Upload targets: Breakpad-style multipart collectors (Crashpad, Socorro,
//! BugSplat, Backtrace, ...) and Sentry projects named by their DSN.
//!
//! Accepted strings ([`Target::parse`]):
//!
//! | string | target |
//! |---|---|
//! | `https://KEY@HOST[:PORT]/[PATH/]PROJECT_ID` (a URL with user info) | Sentry, minidump endpoint |
//! | `sentry+https://KEY@HOST/...` | the same, explicitly |
//! | `socorro+https://HOST/submit` | Breakpad multipart, Socorro field names |
//! | `crashpad+https://HOST/...` | Breakpad multipart, Crashpad field names |
//! | `https://HOST/.../submit` | Socorro (Antenna's endpoint is `/submit`) |
//! | any other `http(s)://` URL | Crashpad field names (the default flavor) |
//!
//! Secrets are never shown: the DSN key and any user info are printed as
//! `***` and a query string as `?***`, both in [`Display`](std::fmt::Display)
//! and [`Debug`] output and in every [`TargetError`].

use std::fmt;
use std::str::FromStr;

/// Which field names a Breakpad-style multipart upload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Crashpad's fields: `prod`, `ver`, `guid` (the client id). The default.
    Crashpad,
    /// Socorro/Antenna's fields: `ProductName`, `Version`; never `uuid`
    /// (reserved) and no `guid`.
    Socorro,
}

impl Flavor {
    /// The flavor a plain URL gets: Socorro if its path ends in `/submit`
    /// (Antenna's endpoint), else Crashpad.
    pub fn guess(url_path: &str) -> Flavor {
        if url_path.trim_end_matches('/').ends_with("/submit") { Flavor::Socorro } else { Flavor::Crashpad }
    }

    /// The name of the product field.
    pub fn product_field(self) -> &'static str {
        match self {
            Flavor::Crashpad => "prod",
            Flavor::Socorro => "ProductName",
        }
    }

    /// The name of the version field.
    pub fn version_field(self) -> &'static str {
        match self {
            Flavor::Crashpad => "ver",
            Flavor::Socorro => "Version",
        }
    }
}

impl FromStr for Flavor {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Flavor, TargetError> {
        match s.to_ascii_lowercase().as_str() {
            "crashpad" | "breakpad" => Ok(Flavor::Crashpad),
            "socorro" | "antenna" => Ok(Flavor::Socorro),
            _ => Err(TargetError::UnknownFlavor { flavor: s.chars().take(40).collect() }),
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Crashpad => "crashpad",
            Flavor::Socorro => "socorro",
        })
    }
}

/// Which Sentry endpoint receives the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentryEndpoint {
    /// `POST /api/PROJECT_ID/minidump/?sentry_key=KEY`: multipart with the
    /// dump and a `sentry` part holding the event JSON. The default.
    #[default]
    Minidump,
    /// `POST /api/PROJECT_ID/envelope/` with `X-Sentry-Auth`: an `event`
    /// item and an `attachment` item of type `event.minidump`.
    Envelope,
}

/// Why a target string was refused. The string shown is always redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The scheme is not one we upload to.
    #[error(
        "unsupported scheme {scheme:?} in upload target {target}: use an http(s):// URL \
         (optionally socorro+https:// or crashpad+https://) or a Sentry DSN https://KEY@HOST/PROJECT_ID"
    )]
    UnsupportedScheme {
        /// The target, redacted.
        target: String,
        /// The scheme found.
        scheme: String,
    },
    /// The string is not a usable URL.
    #[error("upload target {target} is not a valid URL: {reason}")]
    InvalidUrl {
        /// The target, redacted.
        target: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The string looks like a Sentry DSN but is not a valid one.
    #[error("malformed Sentry DSN {target}: {reason} (expected https://KEY@HOST[:PORT]/[PATH/]PROJECT_ID)")]
    MalformedDsn {
        /// The DSN, redacted.
        target: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An unknown Breakpad flavor name.
    #[error("unknown upload flavor {flavor:?}: use crashpad or socorro")]
    UnknownFlavor {
        /// The name given.
        flavor: String,
    },
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The pieces of an `http(s)://` URL, split by hand (no URL crate needed
/// for this much).
struct Parts<'a> {
    scheme: Scheme,
    userinfo: Option<&'a str>,
    /// `host[:port]` as written.
    hostport: &'a str,
    /// Path, starting with `/` (or empty).
    path: &'a str,
    query: Option<&'a str>,
}

fn split_url<'a>(s: &'a str, scheme_str: &str, redacted: &str) -> Result<Parts<'a>, TargetError> {
    let invalid = |reason| TargetError::InvalidUrl { target: redacted.to_owned(), reason };
    let scheme = match scheme_str.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => {
            return Err(TargetError::UnsupportedScheme {
                target: redacted.to_owned(),
                scheme: scheme_str.chars().take(20).collect(),
            });
        }
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains whitespace or control characters"));
    }
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    // Drop a fragment; it is never sent anyway.
    let s = s.split_once('#').map_or(s, |(before, _)| before);
    let authority_end = s.find(['/', '?']).unwrap_or(s.len());
    let (authority, rest) = s.split_at(authority_end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    if hostport.is_empty() {
        return Err(invalid("no host"));
    }
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let parts = Parts { scheme, userinfo, hostport, path, query };
    parts.port().map_err(invalid)?;
    Ok(parts)
}

impl Parts<'_> {
    /// Host without port (brackets kept for IPv6).
    fn host(&self) -> &str {
        if self.hostport.starts_with('[') {
            match self.hostport.find(']') {
                Some(end) => &self.hostport[..=end],
                None => self.hostport,
            }
        } else {
            self.hostport.rsplit_once(':').map_or(self.hostport, |(host, _)| host)
        }
    }

    fn port(&self) -> Result<u16, &'static str> {
        let host = self.host();
        if host.is_empty() || host == "[]" {
            return Err("no host");
        }
        if host.starts_with('[') && !host.ends_with(']') {
            return Err("unterminated IPv6 address");
        }
        let after = &self.hostport[host.len()..];
        match after.strip_prefix(':') {
            None if after.is_empty() => Ok(self.scheme.default_port()),
            None => Err("garbage after the host"),
            Some("") => Ok(self.scheme.default_port()),
            Some(port) => port.parse::<u16>().map_err(|_| "the port is not a number from 0 to 65535"),
        }
    }

    /// `host:port`, lowercase, port always present: the key of a target in
    /// the pause file.
    fn host_key(&self) -> String {
        let port = self.port().unwrap_or_else(|_| self.scheme.default_port());
        format!("{}:{port}", self.host().to_ascii_lowercase())
    }
}

/// A Sentry DSN. The public key is kept private: [`Debug`] and
/// [`Display`](fmt::Display) print it as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SentryDsn {
    scheme: Scheme,
    hostport: String,
    host_key: String,
    /// Path prefix before the project id, without trailing `/` (may be empty).
    path_prefix: String,
    project_id: String,
    public_key: String,
}

impl SentryDsn {
    /// Parses `https://KEY@HOST[:PORT]/[PATH/]PROJECT_ID` (also `http://`,
    /// and the legacy `KEY:SECRET@` form, whose secret is ignored).
    pub fn parse(dsn: &str) -> Result<SentryDsn, TargetError> {
        let dsn = dsn.trim();
        let redacted = redact(dsn);
        let malformed = |reason| TargetError::MalformedDsn { target: redacted.clone(), reason };
        let Some((scheme, _)) = dsn.split_once("://") else {
            return Err(malformed("no scheme"));
        };
        let parts = match split_url(dsn, scheme, &redacted) {
            Ok(parts) => parts,
            Err(TargetError::InvalidUrl { reason, .. }) => return Err(malformed(reason)),
            Err(e) => return Err(e),
        };
        let Some(userinfo) = parts.userinfo else {
            return Err(malformed("no public key before the host (KEY@HOST)"));
        };
        let key = userinfo.split_once(':').map_or(userinfo, |(key, _secret)| key);
        if key.is_empty() {
            return Err(malformed("empty public key"));
        }
        if !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(malformed("the public key must be letters and digits only"));
        }
        if parts.query.is_some() {
            return Err(malformed("a DSN has no query string"));
        }
        let path = parts.path.trim_end_matches('/');
        let (prefix, project_id) = path.rsplit_once('/').unwrap_or(("", ""));
        if project_id.is_empty() {
            return Err(malformed("no project id at the end of the path"));
        }
        if !project_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(malformed("the project id must be a number"));
        }
        if prefix.contains("//") {
            return Err(malformed("empty segment in the path"));
        }
        Ok(SentryDsn {
            scheme: parts.scheme,
            hostport: parts.hostport.to_owned(),
            host_key: parts.host_key(),
            path_prefix: prefix.to_owned(),
            project_id: project_id.to_owned(),
            public_key: key.to_owned(),
        })
    }

    /// The project id.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// `host[:port]` as written in the DSN.
    pub fn host(&self) -> &str {
        &self.hostport
    }

    /// The public key. Treat it as a credential: do not log it.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    fn base(&self) -> String {
        format!("{}://{}{}/api/{}", self.scheme.as_str(), self.hostport, self.path_prefix, self.project_id)
    }

    /// `.../api/PROJECT_ID/minidump/?sentry_key=KEY` (contains the key).
    pub fn minidump_url(&self) -> String {
        format!("{}/minidump/?sentry_key={}", self.base(), self.public_key)
    }

    /// `.../api/PROJECT_ID/envelope/` (the key goes in [`auth_header`](Self::auth_header)).
    pub fn envelope_url(&self) -> String {
        format!("{}/envelope/", self.base())
    }

    /// The `X-Sentry-Auth` header value (contains the key).
    pub fn auth_header(&self) -> String {
        format!(
            "Sentry sentry_version=7, sentry_key={}, sentry_client=crashmon/{}",
            self.public_key,
            env!("CARGO_PKG_VERSION")
        )
    }

    /// Replaces every occurrence of the key in `text` by `***`.
    pub(crate) fn redact_key(&self, text: &str) -> String {
        text.replace(&self.public_key, "***")
    }
}

impl fmt::Display for SentryDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://***@{}{}/{}", self.scheme.as_str(), self.hostport, self.path_prefix, self.project_id)
    }
}

impl fmt::Debug for SentryDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SentryDsn").field(&format_args!("{self}")).finish()
    }
}

/// Where reports are uploaded.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A Breakpad-style multipart collector.
    Breakpad {
        /// The URL to `POST` to (validated `http`/`https`, no user info).
        /// May carry a token in its query; shown redacted.
        url: String,
        /// Field names to use.
        flavor: Flavor,
    },
    /// A Sentry project.
    Sentry {
        /// The project's DSN.
        dsn: SentryDsn,
        /// Which endpoint to use.
        endpoint: SentryEndpoint,
    },
}

impl Target {
    /// Parses a target string (see the [module docs](self) for the forms).
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let s = s.trim();
        let redacted = redact(s);
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(TargetError::InvalidUrl {
                target: redacted,
                reason: "no scheme; expected http(s)://... or a Sentry DSN",
            });
        };
        let lower = scheme.to_ascii_lowercase();
        let (prefix, inner) = match lower.split_once('+') {
            Some((prefix, inner)) => (Some(prefix.to_owned()), inner.to_owned()),
            None => (None, lower.clone()),
        };
        let url = format!("{inner}://{rest}");
        match prefix.as_deref() {
            Some("sentry") => Ok(Target::Sentry { dsn: SentryDsn::parse(&url)?, endpoint: SentryEndpoint::Minidump }),
            Some("sentry-envelope") => {
                Ok(Target::Sentry { dsn: SentryDsn::parse(&url)?, endpoint: SentryEndpoint::Envelope })
            }
            Some("socorro") => Target::breakpad(&url, Some(Flavor::Socorro)),
            Some("crashpad" | "breakpad") => Target::breakpad(&url, Some(Flavor::Crashpad)),
            Some(_) => {
                Err(TargetError::UnsupportedScheme { target: redacted, scheme: scheme.chars().take(20).collect() })
            }
            None => {
                let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                if rest[..authority_end].contains('@') {
                    // Only a Sentry DSN carries credentials in the URL.
                    Ok(Target::Sentry { dsn: SentryDsn::parse(s)?, endpoint: SentryEndpoint::Minidump })
                } else {
                    Target::breakpad(s, None)
                }
            }
        }
    }

    /// A Breakpad multipart target; `flavor` `None` guesses it from the path
    /// ([`Flavor::guess`]). URLs with user info are refused (only Sentry DSNs
    /// carry credentials that way).
    pub fn breakpad(url: &str, flavor: Option<Flavor>) -> Result<Target, TargetError> {
        let url = url.trim();
        let redacted = redact(url);
        let Some((scheme, _)) = url.split_once("://") else {
            return Err(TargetError::InvalidUrl { target: redacted, reason: "no scheme; expected http(s)://..." });
        };
        let parts = split_url(url, scheme, &redacted)?;
        if parts.userinfo.is_some() {
            return Err(TargetError::InvalidUrl {
                target: redacted,
                reason: "credentials in a collector URL are not supported (is this a Sentry DSN? use it as one)",
            });
        }
        let flavor = flavor.unwrap_or_else(|| Flavor::guess(parts.path));
        // Normalise: lowercase scheme, no fragment.
        let mut normalised = format!("{}://{}{}", parts.scheme.as_str(), parts.hostport, parts.path);
        if parts.path.is_empty() {
            normalised.push('/');
        }
        if let Some(query) = parts.query {
            normalised.push('?');
            normalised.push_str(query);
        }
        if ureq::http::Uri::try_from(normalised.as_str()).is_err() {
            return Err(TargetError::InvalidUrl { target: redacted, reason: "not a valid HTTP URI" });
        }
        Ok(Target::Breakpad { url: normalised, flavor })
    }

    /// A Sentry target from a DSN.
    pub fn sentry(dsn: &str, endpoint: SentryEndpoint) -> Result<Target, TargetError> {
        Ok(Target::Sentry { dsn: SentryDsn::parse(dsn)?, endpoint })
    }

    /// `host:port` (lowercase host, port always given): the key under which
    /// a rate-limit pause of this target is stored. All targets on one host
    /// and port share a pause.
    pub fn host_key(&self) -> String {
        match self {
            Target::Breakpad { url, .. } => {
                let scheme = url.split_once("://").map_or("https", |(s, _)| s);
                split_url(url, scheme, "").map(|p| p.host_key()).unwrap_or_else(|_| url.clone())
            }
            Target::Sentry { dsn, .. } => dsn.host_key.clone(),
        }
    }

    /// Whether requests go over TLS.
    pub fn is_https(&self) -> bool {
        match self {
            Target::Breakpad { url, .. } => url.starts_with("https://"),
            Target::Sentry { dsn, .. } => dsn.scheme == Scheme::Https,
        }
    }

    /// The URL requests go to. It may contain credentials (the Sentry key in
    /// the minidump endpoint's query): never log it; use `Display`.
    pub(crate) fn request_url(&self) -> String {
        match self {
            Target::Breakpad { url, .. } => url.clone(),
            Target::Sentry { dsn, endpoint: SentryEndpoint::Minidump } => dsn.minidump_url(),
            Target::Sentry { dsn, endpoint: SentryEndpoint::Envelope } => dsn.envelope_url(),
        }
    }

    /// Removes this target's credentials from a message (e.g. an HTTP
    /// library error that quotes the URL).
    pub(crate) fn redact_message(&self, text: &str) -> String {
        match self {
            Target::Breakpad { url, .. } => match url.split_once('?') {
                Some((_, query)) if !query.is_empty() => text.replace(query, "***"),
                _ => text.to_owned(),
            },
            Target::Sentry { dsn, .. } => dsn.redact_key(text),
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Target, TargetError> {
        Target::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Breakpad { url, flavor } => write!(f, "{} ({flavor})", redact(url)),
            Target::Sentry { dsn, endpoint: SentryEndpoint::Minidump } => write!(f, "{dsn} (sentry minidump)"),
            Target::Sentry { dsn, endpoint: SentryEndpoint::Envelope } => write!(f, "{dsn} (sentry envelope)"),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

/// A target string fit for messages: user info becomes `***`, a query
/// string `?***`, and anything too long is cut.
pub fn redact(s: &str) -> String {
    let s = s.trim();
    let mut out = String::new();
    let rest = match s.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            rest
        }
        None => s,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            out.push_str("***@");
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
    match tail.split_once('?') {
        Some((path, _)) => {
            out.push_str(path);
            out.push_str("?***");
        }
        None => out.push_str(tail),
    }
    let mut out: String = out.chars().filter(|c| !c.is_control()).collect();
    if out.chars().count() > 200 {
        out = out.chars().take(200).collect::<String>() + "...";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentry_dsn_forms() {
        let dsn = SentryDsn::parse("https://abc123@o1.ingest.sentry.io/42").unwrap();
        assert_eq!(dsn.project_id(), "42");
        assert_eq!(dsn.minidump_url(), "https://o1.ingest.sentry.io/api/42/minidump/?sentry_key=abc123");
        assert_eq!(dsn.envelope_url(), "https://o1.ingest.sentry.io/api/42/envelope/");
        assert!(dsn.auth_header().starts_with("Sentry sentry_version=7, sentry_key=abc123, sentry_client=crashmon/"));

        let dsn = SentryDsn::parse("http://key@localhost:9000/sentry/prefix/7/").unwrap();
        assert_eq!(dsn.minidump_url(), "http://localhost:9000/sentry/prefix/api/7/minidump/?sentry_key=key");
        assert_eq!(dsn.host_key, "localhost:9000");

        // Legacy key:secret.
        let dsn = SentryDsn::parse("https://pub:priv@sentry.example.com/3").unwrap();
        assert_eq!(dsn.public_key(), "pub");
        assert!(!format!("{dsn} {dsn:?}").contains("pub"), "{dsn} {dsn:?}");
        assert!(!format!("{dsn:?}").contains("priv"));

        let t: Target = "https://abc123@o1.ingest.sentry.io/42".parse().unwrap();
        assert!(matches!(t, Target::Sentry { endpoint: SentryEndpoint::Minidump, .. }));
        assert_eq!(t.host_key(), "o1.ingest.sentry.io:443");
        assert!(!format!("{t} {t:?}").contains("abc123"));
        let t: Target = "sentry-envelope+https://abc@h/1".parse().unwrap();
        assert!(matches!(t, Target::Sentry { endpoint: SentryEndpoint::Envelope, .. }));
    }

    #[test]
    fn malformed_dsns_are_typed_and_redacted() {
        for (dsn, reason) in [
            ("https://s3cr3tkey@host", "no project id"),
            ("https://s3cr3tkey@host/", "no project id"),
            ("https://s3cr3tkey@host/abc", "must be a number"),
            ("https://s3cr3tkey@/42", "no host"),
            ("https://s3cr3tkey@host:99999/42", "port"),
            ("https://s3cr3t-key!@host/42", "letters and digits"),
            ("https://:s3cr3tkey@host/42", "empty public key"),
            ("https://s3cr3tkey@host/42?x=s3cr3tkey", "query"),
        ] {
            let err = Target::parse(dsn).unwrap_err();
            assert!(matches!(err, TargetError::MalformedDsn { .. }), "{dsn}: {err:?}");
            let text = format!("{err} {err:?}");
            assert!(text.contains(reason), "{dsn}: {text}");
            assert!(!text.contains("s3cr3t"), "{dsn}: key leaked in {text}");
        }
        let err = SentryDsn::parse("host/42").unwrap_err();
        assert!(matches!(err, TargetError::MalformedDsn { reason: "no scheme", .. }));
    }

    #[test]
    fn breakpad_urls() {
        let t = Target::parse("https://crash-reports.example.com/submit").unwrap();
        assert_eq!(
            t,
            Target::Breakpad { url: "https://crash-reports.example.com/submit".into(), flavor: Flavor::Socorro }
        );
        let t = Target::parse("HTTP://collector:8080/api/minidump/upload?token=t0ps3cret#frag").unwrap();
        let Target::Breakpad { url, flavor } = &t else { panic!() };
        assert_eq!(url, "http://collector:8080/api/minidump/upload?token=t0ps3cret");
        assert_eq!(*flavor, Flavor::Crashpad);
        assert_eq!(t.host_key(), "collector:8080");
        assert!(!format!("{t} {t:?}").contains("t0ps3cret"), "{t}");
        let t = Target::parse("socorro+https://x.example/upload").unwrap();
        assert!(matches!(t, Target::Breakpad { flavor: Flavor::Socorro, .. }));
        let t = Target::parse("crashpad+https://x.example/submit").unwrap();
        assert!(matches!(t, Target::Breakpad { flavor: Flavor::Crashpad, .. }));
        let t = Target::parse("http://[::1]:3000").unwrap();
        assert_eq!(t.host_key(), "[::1]:3000");
        assert_eq!(t.request_url(), "http://[::1]:3000/");
    }

    #[test]
    fn bad_targets() {
        let err = Target::parse("ftp://host/x").unwrap_err();
        assert!(matches!(&err, TargetError::UnsupportedScheme { scheme, .. } if scheme == "ftp"), "{err:?}");
        let err = Target::parse("gopher+https://host/x").unwrap_err();
        assert!(matches!(err, TargetError::UnsupportedScheme { .. }));
        let err = Target::parse("collector.example.com/submit").unwrap_err();
        assert!(matches!(err, TargetError::InvalidUrl { .. }));
        let err = Target::parse("https://host:http/x").unwrap_err();
        assert!(matches!(err, TargetError::InvalidUrl { .. }), "{err:?}");
        let err = Target::breakpad("https://user:hunter2@host/submit", None).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        let err = Target::parse("https://host/a b").unwrap_err();
        assert!(matches!(err, TargetError::InvalidUrl { .. }));
        assert!("nonsense".parse::<Flavor>().is_err());
        assert_eq!("Socorro".parse::<Flavor>().unwrap(), Flavor::Socorro);
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("https://key:sec@host:1/p/42?x=1#f"), "https://***@host:1/p/42?***");
        assert_eq!(redact("key@host/42"), "***@host/42");
        assert_eq!(redact("http://h/p"), "http://h/p");
    }
}
