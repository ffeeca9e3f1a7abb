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
//! - HTTP(S) proxies come from the environment (`HTTPS_PROXY`, `NO_PROXY`,
//!   ...) unless [`UploadOptions::use_env_proxy`] is false.

use std::io::{self, Read};

use ureq::{Agent, SendBody};

use crate::UploadOptions;
use crate::body::DumpSource;
use crate::reply::{Failure, RawReply};
use crate::request::Request;
use crate::scrub::LocalReadError;
use crate::target::Target;

/// An HTTP client configured for uploads.
pub(crate) fn agent(options: &UploadOptions) -> Agent {
    let mut config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .save_redirect_history(false)
        .https_only(false)
        .timeout_global(Some(options.timeout))
        .user_agent(format!("crashmon/{}", env!("CARGO_PKG_VERSION")));
    if !options.use_env_proxy {
        config = config.proxy(None);
    }
    Agent::new_with_config(config.build())
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
