//! Uploads to Sentry (minidump and envelope endpoints) over loopback HTTP.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use crashmon_database::ReportState;
use crashmon_test_support::receiver::{Receiver, Reply};
use crashmon_uploader::reply::Failure;
use crashmon_uploader::{Outcome, SentryEndpoint, Target, TargetError, upload_report};

const KEY: &str = "0123abcdkey";

fn dsn(receiver: &Receiver) -> String {
    format!("http://{KEY}@127.0.0.1:{}/sentry/42", receiver.addr().port())
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], b"\x1f\x8b", "gzip magic");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn dsn_parsing_good_and_bad() {
    let t = Target::parse("https://abc@o1.ingest.sentry.io:8443/prefix/1234").unwrap();
    let Target::Sentry { dsn, endpoint: SentryEndpoint::Minidump } = &t else { panic!("{t:?}") };
    assert_eq!(dsn.project_id(), "1234");
    assert_eq!(dsn.host(), "o1.ingest.sentry.io:8443");
    assert_eq!(dsn.minidump_url(), "https://o1.ingest.sentry.io:8443/prefix/api/1234/minidump/?sentry_key=abc");
    assert_eq!(t.to_string(), "https://***@o1.ingest.sentry.io:8443/prefix/1234 (sentry minidump)");
    for bad in ["https://secretkey@host/notanumber", "https://secretkey@host", "sentry+ftp://secretkey@host/1"] {
        let err = Target::parse(bad).unwrap_err();
        assert!(
            matches!(err, TargetError::MalformedDsn { .. } | TargetError::UnsupportedScheme { .. }),
            "{bad}: {err:?}"
        );
        assert!(!err.to_string().contains("secretkey"), "{err}");
    }
}

#[test]
fn minidump_endpoint_upload_with_event_and_stack() {
    let t = TestDb::new();
    let id = t.add(real_dump(), &[("channel", "beta"), ("session_id", "s-e-c-r-e-t")]);
    t.db.write_report(
        id,
        br#"{"signature":"crash_here","crash":{"reason":"SIGSEGV / SEGV_MAPERR"},
            "threads":[{"tid":4242,"frames":[{"function":"crash_here","file":"src/main.rs","line":12,"module":"demo-app"},
                                            {"function":"main","module":"demo-app"}]}]}"#,
    )
    .unwrap();
    let receiver = Receiver::builder()
        .replies([Reply::unavailable(), Reply::sentry_id("fc6d8c0c43fc4630ad850ee518f1b9d0")])
        .start();
    let target = Target::parse(&dsn(&receiver)).unwrap();
    let clock = clock();
    let first = upload_report(&t.db, id, &target, &opts(), &clock).unwrap();
    assert!(matches!(first, Outcome::RetryLater { .. }));
    let mut forced = opts();
    forced.force = true;
    let outcome = upload_report(&t.db, id, &target, &forced, &clock).unwrap();
    assert_eq!(outcome, Outcome::Accepted { server_id: Some("fc6d8c0c43fc4630ad850ee518f1b9d0".into()) });
    assert_eq!(t.state(id), ReportState::Completed);
    assert_eq!(t.metadata(id).upload.server_report_id.as_deref(), Some("fc6d8c0c43fc4630ad850ee518f1b9d0"));

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let mut event_ids = Vec::new();
    for r in &requests {
        assert_eq!(r.path, "/sentry/api/42/minidump/");
        assert_eq!(r.query_param("sentry_key").as_deref(), Some(KEY));
        assert_eq!(r.header("x-sentry-auth"), None);
        assert_eq!(r.header("content-encoding"), None, "only the dump part is compressed");
        let parts = r.multipart().unwrap();
        let event: serde_json::Value =
            serde_json::from_slice(&parts.iter().find(|p| p.name == "sentry").unwrap().data).unwrap();
        event_ids.push(event["event_id"].as_str().unwrap().to_owned());
        let exc = &event["exception"]["values"][0];
        assert_eq!(exc["type"], "SIGSEGV");
        let frames = exc["stacktrace"]["frames"].as_array().unwrap();
        assert_eq!(frames.last().unwrap()["function"], "crash_here");
        assert_eq!(frames.last().unwrap()["lineno"], 12);
        assert_eq!(event["tags"]["channel"], "beta");
        assert_eq!(event["extra"]["session_id"], "***********", "scrubbed annotation");
        assert_eq!(event["extra"]["crashmon_signature"], "crash_here");
        let dump = parts.iter().find(|p| p.name == "upload_file_minidump").unwrap();
        assert_eq!(dump.filename.as_deref(), Some(format!("{id}.dmp").as_str()));
        let plain = gunzip(&dump.data);
        assert!(!contains(&plain, ENV_SECRET.as_bytes()));
        assert_parses(&plain);
    }
    // The same event id on the retry, derived from the report id.
    assert_eq!(event_ids[0], event_ids[1]);
    assert_eq!(event_ids[0], id.as_uuid().simple().to_string());
}

#[test]
fn envelope_endpoint_upload() {
    let t = TestDb::new();
    let id = t.add(real_dump(), &[("release", "demo@2.0")]);
    let receiver = Receiver::builder().replies([Reply::sentry_id("abcdefabcdefabcdefabcdefabcdefab")]).start();
    let target = Target::sentry(&dsn(&receiver), SentryEndpoint::Envelope).unwrap();
    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    let r = &receiver.requests()[0];
    assert_eq!(r.path, "/sentry/api/42/envelope/");
    assert_eq!(r.query, None, "the key is not in the URL");
    let auth = r.header("x-sentry-auth").unwrap();
    assert!(auth.starts_with(&format!("Sentry sentry_version=7, sentry_key={KEY}, sentry_client=crashmon/")), "{auth}");
    assert_eq!(r.header("content-type"), Some("application/x-sentry-envelope"));
    assert!(r.decompressed);
    assert!(!r.body_contains(KEY.as_bytes()), "no key in the envelope");
    let items = r.envelope().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].0["event_id"], id.as_uuid().simple().to_string());
    assert_eq!(items[1].0["type"], "event");
    let event: serde_json::Value = serde_json::from_slice(&items[1].1).unwrap();
    assert_eq!(event["release"], "demo@2.0");
    assert_eq!(items[2].0["type"], "attachment");
    assert_eq!(items[2].0["attachment_type"], "event.minidump");
    assert_eq!(items[2].0["length"], real_dump().len());
    assert!(!contains(&items[2].1, ARG_SECRET.as_bytes()));
    assert_parses(&items[2].1);
}

#[test]
fn sentry_rate_limit_header_pauses_the_target() {
    let t = TestDb::new();
    let a = t.add_real();
    let b = t.add_real();
    let receiver = Receiver::builder()
        .replies([Reply::rate_limited("5").header("X-Sentry-Rate-Limits", "300:error;attachment:project:quota")])
        .start();
    let target = Target::parse(&dsn(&receiver)).unwrap();
    let outcome = upload_report(&t.db, a, &target, &opts(), &clock()).unwrap();
    let Outcome::RateLimited { failure: Failure::RateLimited { retry_after_secs: 300, .. }, until_ms, .. } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(until_ms, T0 + 300_000);
    assert_eq!(upload_report(&t.db, b, &target, &opts(), &clock()).unwrap(), Outcome::TargetPaused { until_ms });
    assert_eq!(receiver.request_count(), 1);
}

#[test]
fn unauthorized_keeps_the_report_and_never_leaks_the_key() {
    let t = TestDb::new();
    let id = t.add_real();
    let receiver = Receiver::builder().replies([Reply::new(403, format!("{{\"detail\":\"bad key {KEY}\"}}"))]).start();
    let target = Target::parse(&dsn(&receiver)).unwrap();
    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    assert!(matches!(outcome, Outcome::TargetRefused { failure: Failure::Unauthorized { status: 403, .. }, .. }));
    assert_eq!(t.state(id), ReportState::Pending);
    let meta = t.metadata(id);
    assert!(!meta.upload.last_error.unwrap().contains(KEY));
    // Even a transport error quoting the URL does not show the key.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = Target::parse(&format!("http://{KEY}@127.0.0.1:{port}/42")).unwrap();
    let mut o = opts();
    o.force = true;
    let outcome = upload_report(&t.db, id, &gone, &o, &clock()).unwrap();
    assert!(!format!("{outcome} {outcome:?}").contains(KEY));
    std::thread::sleep(Duration::from_millis(10));
}
