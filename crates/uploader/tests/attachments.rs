//! Attachments and breadcrumbs travel with the report, scrubbed like the
//! dump; filtered reports are never sent. Each case is checked by parsing
//! what reached the loopback receiver.

mod common;

use common::*;
use crashmon_database::{Attachment, Breadcrumb, ReportId, ReportState};
use crashmon_test_support::receiver::{Receiver, Reply};
use crashmon_uploader::{Outcome, SentryEndpoint, Target, upload_pending, upload_report};

const LOG: &str = "line one\nconnecting with API_TOKEN=hunter2secret\nthe secret again: hunter2secret\nbye\n";

/// A report with the real dump, two attachments and three breadcrumbs.
fn report(t: &TestDb) -> (ReportId, Vec<u8>) {
    let id = t.add(real_dump(), &[("channel", "beta"), ("note", "login with --password=opensesame failed")]);
    let dir = t.db.attachments_dir(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.log"), LOG).unwrap();
    // A binary attachment bigger than one read chunk.
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("state.bin"), &blob).unwrap();
    let mut meta = t.metadata(id);
    meta.attachments = vec![
        Attachment { name: "app.log".into(), size: LOG.len() as u64, truncated: false },
        Attachment { name: "state.bin".into(), size: blob.len() as u64, truncated: true },
        // Named but missing, and a name that tries to leave the directory: left out.
        Attachment { name: "gone.txt".into(), size: 3, truncated: false },
        Attachment { name: "../settings.json".into(), size: 3, truncated: false },
    ];
    meta.breadcrumbs = vec![
        Breadcrumb {
            timestamp_ms: T0 - 3000,
            level: "info".into(),
            category: "net".into(),
            message: "GET /api?token=abc123xyz&page=2".into(),
        },
        Breadcrumb {
            timestamp_ms: T0 - 2000,
            level: "warning".into(),
            category: "auth".into(),
            message: format!("retrying with {ENV_SECRET}"),
        },
        Breadcrumb {
            timestamp_ms: T0 - 1000,
            level: "trace".into(),
            category: String::new(),
            message: "about to crash".into(),
        },
    ];
    t.db.update_metadata(id, &meta).unwrap();
    (id, blob)
}

fn assert_breadcrumbs_scrubbed(crumbs: &[serde_json::Value], message_key: &str) {
    assert_eq!(crumbs.len(), 3, "{crumbs:?}");
    assert_eq!(crumbs[0][message_key], "GET /api?token=*********&page=2");
    assert_eq!(crumbs[1][message_key], format!("retrying with {}", "*".repeat(ENV_SECRET.len())));
    assert_eq!(crumbs[2][message_key], "about to crash");
}

fn scrubbed_log() -> String {
    LOG.replace(ENV_SECRET, &"*".repeat(ENV_SECRET.len()))
}

#[test]
fn breakpad_multipart_carries_attachments_and_breadcrumbs() {
    let t = TestDb::new();
    let (id, blob) = report(&t);
    let receiver = Receiver::start();
    let target = Target::parse(&receiver.url("/submit")).unwrap();
    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    let r = &receiver.requests()[0];
    assert!(r.decompressed, "gzipped as a whole");
    let parts = r.multipart().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["ProductName", "channel", "note", "breadcrumbs", "upload_file_minidump", "app.log", "state.bin"]
    );
    // Annotation values are scrubbed of secret-looking flags.
    assert_eq!(parts[2].text(), "login with --password=********** failed");
    // Breadcrumbs: one JSON field.
    let crumbs: Vec<serde_json::Value> = serde_json::from_slice(&parts[3].data).unwrap();
    assert_breadcrumbs_scrubbed(&crumbs, "message");
    assert_eq!(crumbs[1]["level"], "warning");
    assert_eq!(crumbs[1]["category"], "auth");
    assert_eq!(crumbs[1]["timestamp_ms"], T0 - 2000);
    assert_parses(&parts[4].data);
    // Attachments: file parts, contents intact except the dump's secrets.
    let log = &parts[5];
    assert_eq!(log.filename.as_deref(), Some("app.log"));
    assert_eq!(log.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(log.text(), scrubbed_log());
    assert_eq!(parts[6].data, blob);
    for secret in [ENV_SECRET, ARG_SECRET, "abc123xyz"] {
        assert!(!r.body_contains(secret.as_bytes()), "{secret} was sent");
    }
    // The stored attachment is untouched.
    assert_eq!(std::fs::read_to_string(t.db.attachments_dir(id).join("app.log")).unwrap(), LOG);
}

#[test]
fn uncompressed_crashpad_upload_streams_attachments_with_exact_length() {
    let t = TestDb::new();
    let (id, blob) = report(&t);
    // An annotation with an attachment's name: the part is renamed.
    let mut meta = t.metadata(id);
    meta.annotations.insert("app.log".into(), "annotation".into());
    t.db.update_metadata(id, &meta).unwrap();
    let receiver = Receiver::builder().replies([Reply::crashpad_id("abc")]).start();
    let target = Target::breakpad(&receiver.url("/upload"), Some(crashmon_uploader::Flavor::Crashpad)).unwrap();
    let mut o = opts();
    o.compress = false;
    assert!(upload_report(&t.db, id, &target, &o, &clock()).unwrap().is_success());
    let r = &receiver.requests()[0];
    assert!(!r.decompressed);
    assert_eq!(r.header("content-length").unwrap().parse::<u64>().unwrap(), r.wire_len);
    let parts = r.multipart().unwrap();
    let log = parts.iter().find(|p| p.name == "attachment_app.log").expect("renamed attachment part");
    assert_eq!(log.filename.as_deref(), Some("app.log"));
    assert_eq!(log.text(), scrubbed_log());
    assert_eq!(parts.iter().find(|p| p.name == "app.log").unwrap().text(), "annotation");
    assert_eq!(parts.iter().find(|p| p.name == "state.bin").unwrap().data, blob);
    assert!(parts.iter().any(|p| p.name == "breadcrumbs"));
}

fn sentry_target(receiver: &Receiver, endpoint: SentryEndpoint) -> Target {
    let dsn = format!("http://abcdef0123456789@{}/42", receiver.addr());
    Target::sentry(&dsn, endpoint).unwrap()
}

#[test]
fn sentry_minidump_endpoint_attachments_as_parts_breadcrumbs_in_the_event() {
    let t = TestDb::new();
    let (id, blob) = report(&t);
    let receiver = Receiver::builder().replies([Reply::sentry_id("00000000000000000000000000000001")]).start();
    let target = sentry_target(&receiver, SentryEndpoint::Minidump);
    assert!(upload_report(&t.db, id, &target, &opts(), &clock()).unwrap().is_success());
    let r = &receiver.requests()[0];
    let parts = r.multipart().unwrap();
    let event: serde_json::Value =
        serde_json::from_slice(&parts.iter().find(|p| p.name == "sentry").unwrap().data).unwrap();
    let crumbs = event["breadcrumbs"]["values"].as_array().unwrap();
    assert_breadcrumbs_scrubbed(crumbs, "message");
    assert_eq!(crumbs[2]["level"], "debug", "trace maps to Sentry's debug");
    assert_eq!(crumbs[0]["timestamp"], (T0 - 3000) as f64 / 1000.0);
    assert_eq!(event["extra"]["note"], "login with --password=********** failed");
    assert_eq!(parts.iter().find(|p| p.name == "app.log").unwrap().text(), scrubbed_log());
    assert_eq!(parts.iter().find(|p| p.name == "state.bin").unwrap().data, blob);
    assert!(!r.body_contains(ENV_SECRET.as_bytes()));
}

#[test]
fn sentry_envelope_has_attachment_items() {
    let t = TestDb::new();
    let (id, blob) = report(&t);
    let receiver = Receiver::builder().replies([Reply::sentry_id("00000000000000000000000000000002")]).start();
    let target = sentry_target(&receiver, SentryEndpoint::Envelope);
    assert!(upload_report(&t.db, id, &target, &opts(), &clock()).unwrap().is_success());
    let r = &receiver.requests()[0];
    let mut items = r.envelope().unwrap();
    // The first is the envelope header.
    assert_eq!(items.remove(0).0["event_id"], id.as_uuid().simple().to_string());
    let types: Vec<(String, String)> = items
        .iter()
        .map(|(h, _)| (h["type"].as_str().unwrap().to_owned(), h["attachment_type"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(
        types,
        [
            ("event".to_owned(), String::new()),
            ("attachment".to_owned(), "event.minidump".to_owned()),
            ("attachment".to_owned(), "event.attachment".to_owned()),
            ("attachment".to_owned(), "event.attachment".to_owned()),
        ]
    );
    let event: serde_json::Value = serde_json::from_slice(&items[0].1).unwrap();
    assert_breadcrumbs_scrubbed(event["breadcrumbs"]["values"].as_array().unwrap(), "message");
    assert_eq!(items[2].0["filename"], "app.log");
    assert_eq!(items[2].0["length"], LOG.len());
    assert_eq!(String::from_utf8(items[2].1.clone()).unwrap(), scrubbed_log());
    assert_eq!(items[3].0["filename"], "state.bin");
    assert_eq!(items[3].1, blob);
    assert_parses(&items[1].1);
    assert!(!r.body_contains(ENV_SECRET.as_bytes()));
}

#[test]
fn filtered_reports_are_never_sent() {
    let t = TestDb::new();
    let kept = t.add_real();
    let filtered = t.add_real();
    let mut meta = t.metadata(filtered);
    meta.filtered = Some("ignore-sigsegv-in-tests".into());
    // Even one that is not due yet, and with consent off.
    meta.upload.next_attempt_ms = Some(T0 + 3_600_000);
    t.db.update_metadata(filtered, &meta).unwrap();
    crashmon_uploader::set_consent(&t.db, false).unwrap();
    let receiver = Receiver::start();
    let target = Target::parse(&receiver.url("/submit")).unwrap();
    let results = upload_pending(&t.db, &target, &opts(), &clock(), &|_| true).unwrap();
    let outcome_of = |id| results.iter().find(|(r, _)| *r == id).unwrap().1.as_ref().unwrap().clone();
    assert_eq!(outcome_of(filtered), Outcome::Filtered { rule: "ignore-sigsegv-in-tests".into() });
    assert_eq!(outcome_of(kept), Outcome::ConsentOff);
    assert!(!outcome_of(filtered).is_failure());
    assert_eq!(t.state(filtered), ReportState::Failed);
    assert_eq!(t.metadata(filtered).failure.as_deref(), Some("filtered: ignore-sigsegv-in-tests"));
    // With consent, only the other report goes out.
    crashmon_uploader::set_consent(&t.db, true).unwrap();
    let results = upload_pending(&t.db, &target, &opts(), &clock(), &|_| true).unwrap();
    assert_eq!(results.len(), 1);
    assert!(results[0].1.as_ref().unwrap().is_success());
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let dump = requests[0].multipart().unwrap().into_iter().find(|p| p.name == "upload_file_minidump").unwrap();
    assert_eq!(dump.filename, Some(format!("{kept}.dmp")));
    // Naming a filtered report explicitly does not send it either.
    let again = t.add_real();
    let mut meta = t.metadata(again);
    meta.filtered = Some("rule-2".into());
    t.db.update_metadata(again, &meta).unwrap();
    let mut forced = opts();
    forced.force = true;
    forced.ignore_consent = true;
    assert_eq!(
        upload_report(&t.db, again, &target, &forced, &clock()).unwrap(),
        Outcome::Filtered { rule: "rule-2".into() }
    );
    assert_eq!(receiver.request_count(), 1);
}
