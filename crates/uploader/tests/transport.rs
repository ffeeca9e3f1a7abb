//! Transport options: an explicit proxy (the receiver acts as an HTTP
//! CONNECT proxy), a private CA file for TLS (a loopback rustls server with a
//! certificate from `tests/fixtures`), and bad option values.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use crashmon_database::ReportState;
use crashmon_test_support::receiver::Receiver;
use crashmon_uploader::reply::Failure;
use crashmon_uploader::{Outcome, Target, UploadError, check_options, upload_report};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn explicit_proxy_tunnels_to_a_host_only_the_proxy_can_reach() {
    let t = TestDb::new();
    let id = t.add_real();
    let proxy = Receiver::start();
    // `.invalid` never resolves: only the proxy can get the request there.
    let target = Target::parse("http://collector.invalid:9/submit").unwrap();
    let mut o = opts();
    o.proxy = Some(proxy.url(""));
    let outcome = upload_report(&t.db, id, &target, &o, &clock()).unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(proxy.proxy_connects(), ["collector.invalid:9"]);
    let r = &proxy.requests()[0];
    assert_eq!(r.path, "/submit");
    assert_eq!(r.header("host"), Some("collector.invalid:9"));
    assert!(r.multipart().unwrap().iter().any(|p| p.name == "upload_file_minidump"));

    // Without the proxy the same target is a DNS failure, report kept.
    let id = t.add_real();
    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    assert!(matches!(outcome, Outcome::RetryLater { .. }), "{outcome:?}");
    assert_eq!(t.state(id), ReportState::Pending);
}

#[test]
fn bad_proxy_and_ca_options_are_errors_before_anything_is_sent() {
    let t = TestDb::new();
    let id = t.add_real();
    let receiver = Receiver::start();
    let target = Target::parse(&receiver.url("/submit")).unwrap();
    let mut o = opts();
    o.proxy = Some("socks5://user:pw1234@127.0.0.1:1".into());
    let err = upload_report(&t.db, id, &target, &o, &clock()).unwrap_err();
    assert!(matches!(err, UploadError::Proxy { .. }), "{err:?}");
    assert!(!err.to_string().contains("pw1234"), "{err}");
    let mut o = opts();
    o.ca_file = Some(fixture("README.md"));
    assert!(matches!(check_options(&o, &target), Err(UploadError::CaFile { .. })));
    assert_eq!(receiver.connection_count(), 0);
    assert_eq!(t.state(id), ReportState::Pending);
    assert_eq!(t.metadata(id).upload.attempts, 0);
}

/// Serves one HTTPS connection with the fixture certificate; returns the
/// request head, or the error that ended the connection.
fn serve_tls_once(listener: TcpListener) -> std::thread::JoinHandle<Result<String, String>> {
    std::thread::spawn(move || {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(fixture("test-server.pem")).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(fixture("test-server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("no connection: {e}")),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = BufReader::new(rustls::StreamOwned::new(conn, stream));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            tls.read_line(&mut line).map_err(|e| e.to_string())?;
            if line.is_empty() || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let len: u64 = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        std::io::copy(&mut tls.by_ref().take(len), &mut std::io::sink()).map_err(|e| e.to_string())?;
        let body = "CrashID=bp-6d4b2c1a-0d3c-4d9e-8f6a-1b2c3d241202";
        let mut tls = tls.into_inner();
        write!(tls, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            .map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        let _ = tls.flush();
        Ok(head)
    })
}

#[test]
fn private_ca_file_is_trusted_and_nothing_else() {
    let t = TestDb::new();
    let id = t.add_real();
    // Without the CA: a TLS failure, nothing sent, the report kept.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_tls_once(listener);
    let target = Target::parse(&format!("https://127.0.0.1:{port}/submit")).unwrap();
    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    let Outcome::RetryLater { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert!(matches!(failure, Failure::Tls { .. }), "{failure:?}");
    assert!(server.join().unwrap().is_err(), "the server saw no request");
    assert_eq!(t.state(id), ReportState::Pending);

    // With it: accepted over TLS.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_tls_once(listener);
    let target = Target::parse(&format!("https://127.0.0.1:{port}/submit")).unwrap();
    let mut o = opts();
    o.ca_file = Some(fixture("test-ca.pem"));
    o.force = true;
    let outcome = upload_report(&t.db, id, &target, &o, &clock()).unwrap();
    assert_eq!(outcome, Outcome::Accepted { server_id: Some("bp-6d4b2c1a-0d3c-4d9e-8f6a-1b2c3d241202".into()) });
    let head = server.join().unwrap().expect("request over TLS");
    assert!(head.starts_with("POST /submit HTTP/1.1\r\n"), "{head}");
    assert_eq!(t.state(id), ReportState::Completed);
}
