//! Sending a request with ureq and reading (a bounded part of) the reply.
//!
//! - Redirects are never followed (`max_redirects(0)`): a 3xx comes back as
//!   a reply and is classified as "target refused", naming the `Location`.
//!   So no credential (the Sentry key in the query or in `X-Sentry-Auth`)
//!   ever reaches another host, and a POST body is never replayed.
//! - TLS is rustls with the Mozilla roots (webpki-roots). A TLS failure is
//!   an error; the URL's scheme is never changed, so there is no fallback
//!   to plain HTTP.
//! - One overall timeout ([`UploadOptions::timeout`], 60 s by default like
//!   Crashpad) bounds the whole exchange, from DNS to the last byte read: a
//!   stalled or trickling server cannot hold an upload longer.
//! - At most [`UploadOptions::max_reply_bytes`] (64 KiB) of a reply body
//!   are read; the rest is dropped with the connection.
//! - A separate connect timeout ([`UploadOptions::connect_timeout`], 10 s)
//!   bounds DNS, TCP connect, proxy CONNECT and the TLS handshake.
//! - Proxies: [`UploadOptions::proxy`], else (unless
//!   [`UploadOptions::use_env_proxy`] is false) the environment, chosen here
//!   rather than by ureq (whose `Proxy::try_from_env` takes the first of
//!   `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` whatever the URL's scheme):
//!   `https_proxy`/`HTTPS_PROXY` for an https target, `http_proxy` for an
//!   http one (lowercase only, like curl, because CGI servers put a
//!   client's `Proxy:` header in `HTTP_PROXY`), then `all_proxy`/`ALL_PROXY`;
//!   none for a host that `no_proxy`/`NO_PROXY` names (`*`, a host or a
//!   domain suffix, `.example.com` or `example.com`). ureq always tunnels
//!   through an HTTP proxy with `CONNECT host:port`, for http targets too,
//!   so the proxy never sees a request line or header (no credential of the
//!   target reaches it); SOCKS proxies are not built in.
//! - A private CA: [`UploadOptions::ca_file`] (PEM) replaces the built-in
//!   roots for the upload's TLS connections (rustls; ureq's `rustls`
//!   backend with webpki-roots otherwise).

use std::io::{self, Read};
use std::path::Path;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};
use ureq::{Agent, Proxy, SendBody};

use crate::body::DumpSource;
use crate::reply::{Failure, RawReply};
use crate::request::Request;
use crate::scrub::LocalReadError;
use crate::target::Target;
use crate::{UploadError, UploadOptions};

/// An HTTP client configured for uploads to `target`.
pub(crate) fn agent(options: &UploadOptions, target: &Target) -> Result<Agent, UploadError> {
    let mut config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .save_redirect_history(false)
        .https_only(false)
        .timeout_global(Some(options.timeout))
        .timeout_connect(Some(options.connect_timeout.min(options.timeout)))
        .user_agent(format!("crashmon/{}", env!("CARGO_PKG_VERSION")))
        .proxy(proxy_for(options, target, &|k| std::env::var(k).ok())?);
    if let Some(path) = &options.ca_file {
        let roots = RootCerts::new_with_certs(&read_ca_file(path)?);
        config = config.tls_config(TlsConfig::builder().root_certs(roots).build());
    }
    Ok(Agent::new_with_config(config.build()))
}

/// Checks that the options can be used for `target` (proxy URL, CA file),
/// without sending anything.
pub fn check_options(options: &UploadOptions, target: &Target) -> Result<(), UploadError> {
    agent(options, target).map(drop)
}

fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, UploadError> {
    let error = |detail: String| UploadError::CaFile { path: path.to_owned(), detail };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        match item.map_err(|e| error(format!("not a PEM file: {e}")))? {
            PemItem::Certificate(cert) => certs.push(cert),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(error("no CERTIFICATE in it".to_owned()));
    }
    Ok(certs)
}

/// The proxy for `target`: [`UploadOptions::proxy`], else one from the
/// environment (`env` reads a variable), see the [module docs](self).
pub(crate) fn proxy_for(
    options: &UploadOptions,
    target: &Target,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, UploadError> {
    let (url, from) = match &options.proxy {
        Some(url) => (url.clone(), "the proxy option".to_owned()),
        None if !options.use_env_proxy => return Ok(None),
        None => {
            let names: &[&str] = if target.is_https() {
                &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
            } else {
                &["http_proxy", "all_proxy", "ALL_PROXY"]
            };
            let Some((name, url)) = names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
            else {
                return Ok(None);
            };
            let host_key = target.host_key();
            let host = host_key.rsplit_once(':').map_or(host_key.as_str(), |(h, _)| h);
            let no_proxy = env("no_proxy").or_else(|| env("NO_PROXY")).unwrap_or_default();
            if no_proxy_matches(&no_proxy, host) {
                tracing::debug!(%target, "no proxy for this host (NO_PROXY)");
                return Ok(None);
            }
            (url, name.to_owned())
        }
    };
    let url = url.trim();
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if let Some(scheme) = &scheme
        && scheme != "http"
        && scheme != "https"
    {
        return Err(UploadError::Proxy {
            proxy: crate::target::redact(url),
            from,
            detail: format!("unsupported proxy scheme {scheme}:// (http:// and https:// are supported)"),
        });
    }
    let proxy = Proxy::new(url).map_err(|e| UploadError::Proxy {
        proxy: crate::target::redact(url),
        from: from.clone(),
        detail: crate::target::redact(&e.to_string()),
    })?;
    tracing::debug!(%target, proxy = %crate::target::redact(url), %from, "uploading through a proxy");
    Ok(Some(proxy))
}

/// Whether a `NO_PROXY` list names `host` (lowercase, IPv6 in brackets).
fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    list.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches("*.").trim_start_matches('.').to_ascii_lowercase();
        // `host:port` and `[v6]:port` entries: the port is ignored.
        let entry = match entry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or("").to_owned(),
            None if entry.matches(':').count() == 1 => entry.split(':').next().unwrap_or("").to_owned(),
            None => entry,
        };
        !entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))
    })
}

/// Turns a transport error into a [`Failure`], credentials removed.
fn failure(err: ureq::Error, target: &Target) -> Failure {
    let detail = target.redact_message(&err.to_string());
    match err {
        ureq::Error::Timeout(_) => Failure::Timeout { detail },
        ureq::Error::HostNotFound => Failure::Dns { detail },
        ureq::Error::ConnectionFailed => Failure::Connect { detail },
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) | ureq::Error::TlsRequired => {
            Failure::Tls { detail }
        }
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => Failure::Protocol { detail },
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => Failure::Redirect { status: 0, location: None },
        ureq::Error::Io(e) => io_failure(&e, target),
        _ => Failure::Network { detail },
    }
}

fn io_failure(e: &io::Error, target: &Target) -> Failure {
    let detail = target.redact_message(&e.to_string());
    if let Some(inner) = e.get_ref() {
        if inner.is::<LocalReadError>() {
            return Failure::LocalRead { detail };
        }
        if inner.is::<rustls::Error>() {
            return Failure::Tls { detail };
        }
    }
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused | K::NetworkUnreachable | K::HostUnreachable | K::AddrNotAvailable | K::NetworkDown => {
            Failure::Connect { detail }
        }
        K::TimedOut | K::WouldBlock => Failure::Timeout { detail },
        K::InvalidData if target.is_https() => Failure::Tls { detail },
        K::InvalidData => Failure::Protocol { detail },
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof | K::NotConnected => {
            Failure::ConnectionLost { detail }
        }
        // getaddrinfo failures have no stable ErrorKind; the detail says what.
        _ => Failure::Network { detail },
    }
}

/// Sends `request` with the dump streamed from `dump`; returns the reply.
pub(crate) fn send(
    agent: &Agent,
    target: &Target,
    request: &Request,
    dump: &DumpSource<'_>,
    max_reply_bytes: usize,
) -> Result<RawReply, Failure> {
    let (len, mut reader) = request.body.prepare(dump).map_err(|e| io_failure(&e, target))?;
    let mut builder = agent
        .post(&request.url)
        .header("Content-Type", request.body.content_type.as_str())
        .header("Content-Length", len.to_string());
    if request.body.gzip {
        builder = builder.header("Content-Encoding", "gzip");
    }
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.as_str());
    }
    let mut response = builder.send(SendBody::from_reader(&mut reader)).map_err(|e| failure(e, target))?;
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut reply = RawReply {
        status: response.status().as_u16(),
        retry_after: header("retry-after"),
        sentry_rate_limits: header("x-sentry-rate-limits"),
        location: header("location"),
        body: Vec::new(),
    };
    let read = response.body_mut().as_reader().take(max_reply_bytes as u64).read_to_end(&mut reply.body);
    if let Err(e) = read {
        // Without the whole body a success cannot be read (no report id);
        // an error status says enough on its own.
        let failure = match ureq::Error::from(e) {
            ureq::Error::Io(e) => io_failure(&e, target),
            other => failure(other, target),
        };
        if (200..300).contains(&reply.status) {
            return Err(failure);
        }
        tracing::debug!(status = reply.status, "reply body cut short: {failure}");
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    fn proxy(options: &UploadOptions, target: &str, vars: &[(&str, &str)]) -> Option<String> {
        let target = Target::parse(target).unwrap();
        proxy_for(options, &target, &env(vars)).unwrap().map(|p| format!("{}:{}", p.host(), p.port()))
    }

    #[test]
    fn proxy_from_the_environment_by_scheme() {
        let o = UploadOptions::default();
        let vars = [("https_proxy", "http://sec:3128"), ("http_proxy", "http://plain:8080")];
        assert_eq!(proxy(&o, "https://c.example/submit", &vars).as_deref(), Some("sec:3128"));
        assert_eq!(proxy(&o, "http://c.example/submit", &vars).as_deref(), Some("plain:8080"));
        // Uppercase HTTP_PROXY is ignored for http targets (httpoxy); ALL_PROXY is the fallback.
        let vars = [("HTTP_PROXY", "http://evil:1"), ("ALL_PROXY", "http://all:2")];
        assert_eq!(proxy(&o, "http://c.example/submit", &vars).as_deref(), Some("all:2"));
        assert_eq!(proxy(&o, "https://c.example/submit", &[("HTTPS_PROXY", "http://up:3")]).as_deref(), Some("up:3"));
        assert_eq!(proxy(&o, "https://c.example/submit", &[]), None);
        // NO_PROXY: exact host, domain suffix, wildcard; ports ignored.
        for no in ["c.example", ".example", "example", "*", "other, c.example:443", "*.example"] {
            let vars = [("https_proxy", "http://sec:3128"), ("NO_PROXY", no)];
            assert_eq!(proxy(&o, "https://c.example/submit", &vars), None, "{no}");
        }
        let vars = [("https_proxy", "http://sec:3128"), ("no_proxy", "xample,other.example")];
        assert_eq!(proxy(&o, "https://c.example/submit", &vars).as_deref(), Some("sec:3128"));
        // Off, or overridden by an explicit proxy.
        let off = UploadOptions { use_env_proxy: false, ..UploadOptions::default() };
        assert_eq!(proxy(&off, "https://c.example/submit", &[("https_proxy", "http://sec:3128")]), None);
        let explicit = UploadOptions { proxy: Some("http://mine:9".into()), ..UploadOptions::default() };
        assert_eq!(
            proxy(&explicit, "https://c.example/submit", &[("https_proxy", "http://sec:3128")]).as_deref(),
            Some("mine:9")
        );
    }

    #[test]
    fn bad_proxy_is_a_clear_error() {
        let o = UploadOptions { proxy: Some("socks5://u:hunter2@p:1080".into()), ..UploadOptions::default() };
        let target = Target::parse("https://c.example/submit").unwrap();
        let err = proxy_for(&o, &target, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("unsupported proxy scheme socks5"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn ca_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = UploadOptions::default();
        let target = Target::parse("https://c.example/submit").unwrap();
        o.ca_file = Some(dir.path().join("missing.pem"));
        assert!(check_options(&o, &target).unwrap_err().to_string().contains("missing.pem"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        o.ca_file = Some(empty);
        let err = check_options(&o, &target).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}
