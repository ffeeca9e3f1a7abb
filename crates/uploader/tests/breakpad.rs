//! Uploads to Breakpad-style collectors (Socorro, Crashpad) over loopback
//! HTTP against the scripted receiver, with real dumps.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use crashmon_database::ReportState;
use crashmon_test_support::receiver::{Behaviour, Receiver, Reply};
use crashmon_uploader::reply::Failure;
use crashmon_uploader::retry::backoff_bounds;
use crashmon_uploader::{
    Clock, Flavor, Outcome, ScrubOptions, Target, UploadError, paused_targets, upload_pending, upload_report,
};

fn socorro(receiver: &Receiver) -> Target {
    Target::parse(&receiver.url("/submit")).unwrap()
}

fn all(_: &crashmon_database::Entry) -> bool {
    true
}

#[test]
fn socorro_accepted_moves_to_completed_with_the_server_id() {
    let t = TestDb::new();
    let id =
        t.add(real_dump(), &[("ProductName", "DemoApp"), ("Version", "1.2.3"), ("channel", "beta"), ("uuid", "x")]);
    let receiver =
        Receiver::builder().replies([Reply::socorro_accepted("6d4b2c1a-0d3c-4d9e-8f6a-1b2c3d240101")]).start();
    let target = socorro(&receiver);
    assert!(matches!(target, Target::Breakpad { flavor: Flavor::Socorro, .. }));

    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    assert_eq!(outcome, Outcome::Accepted { server_id: Some("bp-6d4b2c1a-0d3c-4d9e-8f6a-1b2c3d240101".into()) });
    assert_eq!(t.state(id), ReportState::Completed);
    let meta = t.metadata(id);
    assert_eq!(meta.upload.server_report_id.as_deref(), Some("bp-6d4b2c1a-0d3c-4d9e-8f6a-1b2c3d240101"));
    assert_eq!(meta.upload.attempts, 1);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/submit");
    // Gzipped whole body, exact length, decompresses to multipart.
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.decompressed);
    assert_eq!(r.header("content-length").unwrap().parse::<u64>().unwrap(), r.wire_len);
    assert!(r.wire_len < real_dump().len() as u64);
    assert!(r.header("user-agent").unwrap().starts_with("crashmon/"));
    let parts = r.multipart().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ProductName", "Version", "channel", "upload_file_minidump"]);
    assert!(!names.contains(&"uuid"), "Socorro rejects a uuid field");
    assert_eq!(parts[0].text(), "DemoApp");
    assert_eq!(parts[1].text(), "1.2.3");
    assert_eq!(parts[2].text(), "beta");
    let dump = &parts[3];
    assert_eq!(dump.filename.as_deref(), Some(format!("{id}.dmp").as_str()));
    assert_eq!(dump.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(dump.data.len(), real_dump().len());
    assert_parses(&dump.data);
}

#[test]
fn crashpad_flavor_sends_prod_ver_guid_and_stores_the_body_as_id() {
    let t = TestDb::new();
    let id = t.add(real_dump(), &[("ver", "9.9"), ("guid", "not-ours"), ("k", "v")]);
    let receiver = Receiver::builder().replies([Reply::crashpad_id("3f2a9c1e")]).start();
    let target = Target::parse(&format!("crashpad+{}", receiver.url("/upload"))).unwrap();
    let mut o = opts();
    o.compress = false;
    let outcome = upload_report(&t.db, id, &target, &o, &clock()).unwrap();
    assert_eq!(outcome, Outcome::Accepted { server_id: Some("3f2a9c1e".into()) });
    let r = &receiver.requests()[0];
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.wire_len, r.header("content-length").unwrap().parse::<u64>().unwrap());
    let parts = r.multipart().unwrap();
    let field = |n: &str| parts.iter().find(|p| p.name == n).map(|p| p.text());
    assert_eq!(field("prod").as_deref(), Some("demo-app"), "product defaults to the executable's name");
    assert_eq!(field("ver").as_deref(), Some("9.9"));
    let client_id = t.db.settings().unwrap().client_id;
    assert_eq!(field("guid"), Some(client_id.hyphenated().to_string()));
    assert_eq!(parts.iter().filter(|p| p.name == "guid" || p.name == "ver").count(), 2, "no duplicates");
    assert_eq!(field("k").as_deref(), Some("v"));
    // Uncompressed: the part is the dump byte for byte apart from scrubbing.
    let dump = parts.iter().find(|p| p.name == "upload_file_minidump").unwrap();
    assert_eq!(dump.data.len(), real_dump().len());
    assert_parses(&dump.data);
}

#[test]
fn discarded_goes_to_failed_with_the_reason() {
    let t = TestDb::new();
    let id = t.add_real();
    let receiver = Receiver::builder().replies([Reply::socorro_discarded("rule_has_hangid_and_browser")]).start();
    let outcome = upload_report(&t.db, id, &socorro(&receiver), &opts(), &clock()).unwrap();
    assert_eq!(
        outcome,
        Outcome::Rejected { failure: Failure::Discarded { status: 200, rule: "rule_has_hangid_and_browser".into() } }
    );
    assert_eq!(t.state(id), ReportState::Failed);
    let meta = t.metadata(id);
    assert!(meta.failure.unwrap().contains("rule_has_hangid_and_browser"));
    assert_eq!(meta.upload.server_report_id, None);
}

#[test]
fn bad_request_and_too_large_go_to_failed() {
    let t = TestDb::new();
    let a = t.add_real();
    let b = t.add_real();
    let receiver =
        Receiver::builder().replies([Reply::socorro_malformed("no_annotations"), Reply::too_large()]).start();
    let results = upload_pending(&t.db, &socorro(&receiver), &opts(), &clock(), &all).unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].0, a);
    assert!(matches!(
        results[0].1.as_ref().unwrap(),
        Outcome::Rejected { failure: Failure::Discarded { status: 400, rule } } if rule == "malformed_no_annotations"
    ));
    assert!(matches!(results[1].1.as_ref().unwrap(), Outcome::Rejected { failure: Failure::TooLarge { status: 413 } }));
    assert_eq!(t.state(a), ReportState::Failed);
    assert_eq!(t.state(b), ReportState::Failed);
    let reason = t.metadata(b).failure.unwrap();
    assert!(reason.contains("too large; compression may help"), "{reason}");
}

#[test]
fn three_503_then_200_with_backoff_persisted_across_reopen() {
    let t = TestDb::new();
    let id = t.add_real();
    let receiver = Receiver::builder()
        .replies([Reply::unavailable(), Reply::unavailable(), Reply::unavailable(), Reply::socorro_accepted("1-2")])
        .start();
    let target = socorro(&receiver);
    let clock = clock();
    for attempt in 1..=3u32 {
        // A restarted uploader: fresh database handle.
        let db = t.reopen();
        let now = clock.now_ms();
        let outcome = upload_report(&db, id, &target, &opts(), &clock).unwrap();
        let Outcome::RetryLater { failure, attempts, next_attempt_ms } = outcome else { panic!("{outcome:?}") };
        assert!(matches!(failure, Failure::ServerError { status: 503, .. }));
        assert_eq!(attempts, attempt);
        let (lo, hi) = backoff_bounds(attempt);
        let wait = Duration::from_millis(next_attempt_ms - now);
        assert!(lo <= wait && wait <= hi, "attempt {attempt}: {wait:?} not in {lo:?}..={hi:?}");
        let meta = t.reopen().find(&id.to_string()).unwrap().metadata;
        assert_eq!(meta.upload.attempts, attempt);
        assert_eq!(meta.upload.next_attempt_ms, Some(next_attempt_ms));
        assert!(meta.upload.last_error.unwrap().contains("503"));
        // Not due yet: nothing sent.
        let early = upload_report(&db, id, &target, &opts(), &clock).unwrap();
        assert_eq!(early, Outcome::NotDue { next_attempt_ms });
        clock.set(next_attempt_ms);
    }
    let outcome = upload_report(&t.reopen(), id, &target, &opts(), &clock).unwrap();
    assert_eq!(outcome, Outcome::Accepted { server_id: Some("bp-1-2".into()) });
    assert_eq!(receiver.request_count(), 4);
    assert_eq!(t.metadata(id).upload.attempts, 4);
    assert_eq!(t.state(id), ReportState::Completed);
}

/// 429 with the given reply: the report's next attempt and the target's
/// pause are `expected` after now, and a second report waits too.
fn rate_limit_case(reply: Reply, expected: Duration) {
    let t = TestDb::new();
    let first = t.add_real();
    let second = t.add_real();
    let receiver = Receiver::builder().replies([reply]).start();
    let target = socorro(&receiver);
    let clock = clock();
    let outcome = upload_report(&t.db, first, &target, &opts(), &clock).unwrap();
    let Outcome::RateLimited { until_ms, attempts: 1, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(until_ms, T0 + expected.as_millis() as u64);
    assert_eq!(t.metadata(first).upload.next_attempt_ms, Some(until_ms));
    // The pause is persisted, 0600, keyed by host:port.
    let pauses = paused_targets(&t.reopen()).unwrap();
    assert_eq!(pauses[&target.host_key()].until_ms, until_ms);
    let mode = std::fs::metadata(t.root().join("upload-state.json")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    // Every report to the target waits, even forced ones.
    let mut forced = opts();
    forced.force = true;
    assert_eq!(upload_report(&t.db, second, &target, &forced, &clock).unwrap(), Outcome::TargetPaused { until_ms });
    let results = upload_pending(&t.db, &target, &opts(), &clock, &all).unwrap();
    assert!(results.iter().all(|(_, r)| matches!(r, Ok(Outcome::NotDue { .. } | Outcome::TargetPaused { .. }))));
    assert_eq!(receiver.request_count(), 1);
    // After the pause both go.
    clock.set(until_ms);
    let results = upload_pending(&t.db, &target, &opts(), &clock, &all).unwrap();
    assert!(results.iter().all(|(_, r)| r.as_ref().unwrap().is_success()), "{results:?}");
    assert_eq!(receiver.request_count(), 3);
    assert_eq!(t.state(second), ReportState::Completed);
}

#[test]
fn rate_limited_retry_after_seconds() {
    rate_limit_case(Reply::rate_limited("120"), Duration::from_secs(120));
}

#[test]
fn rate_limited_retry_after_http_date() {
    let when = UNIX_EPOCH + Duration::from_millis(T0) + Duration::from_secs(3600);
    rate_limit_case(Reply::rate_limited_until(when), Duration::from_secs(3600));
}

#[test]
fn rate_limited_retry_after_garbage_means_60s() {
    rate_limit_case(Reply::rate_limited("in a while"), Duration::from_secs(60));
}

#[test]
fn rate_limited_retry_after_huge_is_clamped_to_24h() {
    rate_limit_case(Reply::rate_limited("31536000000"), Duration::from_secs(86_400));
}

#[test]
fn connection_refused_stays_pending_with_one_more_attempt() {
    let t = TestDb::new();
    let id = t.add_real();
    // A port nobody listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let target = Target::parse(&format!("http://127.0.0.1:{port}/submit")).unwrap();
    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    let Outcome::RetryLater { failure, attempts: 1, .. } = &outcome else { panic!("{outcome:?}") };
    assert!(matches!(failure, Failure::Connect { .. }), "{failure:?}");
    assert!(outcome.is_failure());
    assert_eq!(t.state(id), ReportState::Pending);
    assert_eq!(t.metadata(id).upload.attempts, 1);
}

#[test]
fn dns_failure_stays_pending() {
    let t = TestDb::new();
    let id = t.add_real();
    let target = Target::parse("http://crashmon-upload-test.invalid/submit").unwrap();
    let mut o = opts();
    o.timeout = Duration::from_secs(3);
    let outcome = upload_report(&t.db, id, &target, &o, &clock()).unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RetryLater { failure: Failure::Network { .. } | Failure::Dns { .. }, attempts: 1, .. }
        ),
        "{outcome:?}"
    );
    assert_eq!(t.state(id), ReportState::Pending);
}

#[test]
fn stalled_server_ends_at_the_timeout() {
    let t = TestDb::new();
    let id = t.add_real();
    let receiver = Receiver::builder().replies([Reply::new(200, "").behaviour(Behaviour::Stall)]).start();
    let mut o = opts();
    o.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let outcome = upload_report(&t.db, id, &socorro(&receiver), &o, &clock()).unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let Outcome::RetryLater { failure, attempts: 1, .. } = &outcome else { panic!("{outcome:?}") };
    assert!(matches!(failure, Failure::Timeout { .. }), "{failure:?}");
    assert_eq!(t.state(id), ReportState::Pending);
    assert_eq!(receiver.request_count(), 1, "the request itself arrived");
}

#[test]
fn trickling_and_cut_replies_are_retried() {
    let t = TestDb::new();
    let a = t.add_real();
    let b = t.add_real();
    let receiver = Receiver::builder()
        .replies([
            Reply::socorro_accepted("slow")
                .behaviour(Behaviour::Trickle { chunk: 1, interval: Duration::from_millis(200) }),
            Reply::socorro_accepted("cut-cut-cut-cut").behaviour(Behaviour::CloseMidBody),
        ])
        .start();
    let mut o = opts();
    o.timeout = Duration::from_millis(700);
    let started = Instant::now();
    let outcome = upload_report(&t.db, a, &socorro(&receiver), &o, &clock()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(outcome, Outcome::RetryLater { failure: Failure::Timeout { .. }, .. }), "{outcome:?}");
    let outcome = upload_report(&t.db, b, &socorro(&receiver), &o, &clock()).unwrap();
    assert!(matches!(outcome, Outcome::RetryLater { .. }), "{outcome:?}");
    assert_eq!(t.state(a), ReportState::Pending);
    assert_eq!(t.state(b), ReportState::Pending);
}

#[test]
fn huge_error_body_is_read_only_in_part() {
    let t = TestDb::new();
    let id = t.add_real();
    let receiver = Receiver::builder().replies([Reply::new(500, vec![b'x'; 32 << 20])]).start();
    let started = Instant::now();
    let outcome = upload_report(&t.db, id, &socorro(&receiver), &opts(), &clock()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let Outcome::RetryLater { failure: Failure::ServerError { status: 500, detail }, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(detail.len() <= 203, "excerpt is short");
}

#[test]
fn redirect_to_another_host_is_not_followed() {
    let t = TestDb::new();
    let id = t.add_real();
    let other = Receiver::start();
    // Another host name for the loopback address.
    let location = format!("http://localhost:{}/steal?x=1", other.addr().port());
    let receiver = Receiver::builder().replies([Reply::redirect(&location)]).start();
    let target = Target::parse(&format!("{}?token=s3cr3t", receiver.url("/submit"))).unwrap();
    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    let Outcome::TargetRefused { failure: Failure::Redirect { status: 307, location: Some(loc) }, .. } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(loc, &format!("http://localhost:{}/steal?***", other.addr().port()));
    assert!(outcome.to_string().contains("redirected to"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(other.connection_count(), 0, "nothing reached the redirect target");
    assert_eq!(receiver.request_count(), 1);
    assert_eq!(receiver.requests()[0].query_param("token").as_deref(), Some("s3cr3t"));
    // Kept pending: the target is wrong, not the report.
    assert_eq!(t.state(id), ReportState::Pending);
    assert!(!t.metadata(id).upload.last_error.unwrap().contains("s3cr3t"));
}

#[test]
fn tls_failure_never_falls_back_to_plain_http() {
    let t = TestDb::new();
    let id = t.add_real();
    let receiver = Receiver::start();
    // https:// to a plain-HTTP server: the handshake fails.
    let target = Target::parse(&format!("https://127.0.0.1:{}/submit", receiver.addr().port())).unwrap();
    let outcome = upload_report(&t.db, id, &target, &opts(), &clock()).unwrap();
    let Outcome::RetryLater { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert!(matches!(failure, Failure::Tls { .. }), "{failure:?}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(receiver.request_count(), 0, "no plain-HTTP request was made");
    assert_eq!(receiver.malformed_count(), receiver.connection_count());
    assert_eq!(t.state(id), ReportState::Pending);
}

#[test]
fn secrets_are_scrubbed_from_every_byte_sent() {
    let t = TestDb::new();
    let id = t.add(real_dump(), &[("api_key", "annotated-secret-value"), ("build", "release")]);
    let receiver = Receiver::start();
    upload_report(&t.db, id, &socorro(&receiver), &opts(), &clock()).unwrap();
    let r = &receiver.requests()[0];
    assert!(r.decompressed);
    for secret in [ENV_SECRET, ARG_SECRET, SPLIT_ARG_SECRET, "annotated-secret-value"] {
        assert!(!r.body_contains(secret.as_bytes()), "{secret} was sent");
    }
    let parts = r.multipart().unwrap();
    let api_key = parts.iter().find(|p| p.name == "api_key").unwrap();
    assert_eq!(api_key.text(), "*".repeat("annotated-secret-value".len()));
    let dump = parts.iter().find(|p| p.name == "upload_file_minidump").unwrap();
    assert_eq!(dump.data.len(), real_dump().len(), "scrubbing keeps the size");
    let environ = assert_parses(&dump.data);
    assert!(contains(&environ, b"API_TOKEN=*************"));
    assert!(contains(&environ, b"CRASHMON_TEST_PLAIN=visible-value"), "other variables are kept");
    let cmdline = minidump::Minidump::read(&dump.data[..]).unwrap().get_raw_stream(0x4767_0006).unwrap().to_vec();
    assert!(contains(&cmdline, b"--password=**********\0--token\0**********"));
    // The original in the database is untouched.
    let stored = std::fs::read(t.db.find(&id.to_string()).unwrap().dump_path.unwrap()).unwrap();
    assert!(contains(&stored, ENV_SECRET.as_bytes()));
}

#[test]
fn scrubbing_can_be_turned_off_and_extended() {
    let t = TestDb::new();
    let a = t.add(real_dump(), &[]);
    let receiver = Receiver::start();
    let mut o = opts();
    o.scrub = ScrubOptions::disabled();
    upload_report(&t.db, a, &socorro(&receiver), &o, &clock()).unwrap();
    assert!(receiver.requests()[0].body_contains(ENV_SECRET.as_bytes()), "off means off");

    let b = t.add(real_dump(), &[]);
    let mut o = opts();
    o.scrub.extra_patterns.push("test_plain".into());
    upload_report(&t.db, b, &socorro(&receiver), &o, &clock()).unwrap();
    let r = &receiver.requests()[1];
    assert!(!r.body_contains(b"visible-value"));
    assert!(!r.body_contains(ENV_SECRET.as_bytes()));
}

#[test]
fn unscrubbable_dump_is_not_sent() {
    let t = TestDb::new();
    let id = t.add(b"definitely not a minidump, but it mentions API_TOKEN=xyz", &[]);
    let receiver = Receiver::start();
    let outcome = upload_report(&t.db, id, &socorro(&receiver), &opts(), &clock()).unwrap();
    assert!(matches!(outcome, Outcome::Rejected { failure: Failure::CannotScrub { .. } }), "{outcome:?}");
    assert_eq!(receiver.request_count(), 0);
    assert_eq!(t.state(id), ReportState::Failed);
}

#[test]
fn consent_off_sends_nothing_unless_overridden() {
    let t = TestDb::new();
    crashmon_uploader::set_consent(&t.db, false).unwrap();
    let a = t.add_real();
    let b = t.add_real();
    let receiver = Receiver::start();
    let target = socorro(&receiver);
    let results = upload_pending(&t.db, &target, &opts(), &clock(), &all).unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, r)| matches!(r, Ok(Outcome::ConsentOff))));
    assert_eq!(upload_report(&t.db, a, &target, &opts(), &clock()).unwrap(), Outcome::ConsentOff);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(receiver.connection_count(), 0);
    assert_eq!(t.state(a), ReportState::Pending);
    assert_eq!(t.metadata(a).upload.attempts, 0);

    let mut o = opts();
    o.ignore_consent = true;
    assert!(upload_report(&t.db, b, &target, &o, &clock()).unwrap().is_success());
    assert_eq!(receiver.request_count(), 1);
}

#[test]
fn a_failing_target_stops_the_batch() {
    let t = TestDb::new();
    let ids: Vec<_> = (0..3).map(|_| t.add_real()).collect();
    let receiver = Receiver::builder().replies([Reply::server_error()]).start();
    let results = upload_pending(&t.db, &socorro(&receiver), &opts(), &clock(), &all).unwrap();
    assert_eq!(results.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids, "oldest first");
    assert!(matches!(results[0].1, Ok(Outcome::RetryLater { .. })));
    assert!(matches!(results[1].1, Ok(Outcome::Skipped { .. })));
    assert!(matches!(results[2].1, Ok(Outcome::Skipped { .. })));
    assert_eq!(receiver.request_count(), 1);
    assert_eq!(t.metadata(ids[1]).upload.attempts, 0);
}

#[test]
fn a_rate_limit_in_a_batch_pauses_the_rest() {
    let t = TestDb::new();
    let ids: Vec<_> = (0..3).map(|_| t.add_real()).collect();
    let receiver = Receiver::builder().replies([Reply::rate_limited("120")]).start();
    let results = upload_pending(&t.db, &socorro(&receiver), &opts(), &clock(), &all).unwrap();
    let until_ms = T0 + 120_000;
    assert!(matches!(results[0].1, Ok(Outcome::RateLimited { until_ms: u, .. }) if u == until_ms));
    assert_eq!(results[1].1.as_ref().unwrap(), &Outcome::TargetPaused { until_ms });
    assert_eq!(results[2].1.as_ref().unwrap(), &Outcome::TargetPaused { until_ms });
    assert_eq!(receiver.request_count(), 1);
    assert_eq!(t.metadata(ids[2]).upload.attempts, 0);
}

#[test]
fn named_reports_and_states() {
    let t = TestDb::new();
    let id = t.add_real();
    let receiver = Receiver::start();
    let target = socorro(&receiver);
    assert!(upload_report(&t.db, id, &target, &opts(), &clock()).unwrap().is_success());
    // Again: it is no longer pending; nothing is sent.
    assert_eq!(
        upload_report(&t.db, id, &target, &opts(), &clock()).unwrap(),
        Outcome::NotPending { state: ReportState::Completed }
    );
    assert_eq!(receiver.request_count(), 1);
    let missing = crashmon_database::ReportId::new_random();
    assert!(matches!(upload_report(&t.db, missing, &target, &opts(), &clock()), Err(UploadError::Database(_))));
}

#[test]
fn a_report_locked_by_another_uploader_is_busy() {
    let t = TestDb::new();
    let id = t.add_real();
    let path = t.db.find(&id.to_string()).unwrap().dump_path.unwrap();
    let held =
        nix::fcntl::Flock::lock(std::fs::File::open(&path).unwrap(), nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .unwrap();
    let receiver = Receiver::start();
    assert_eq!(upload_report(&t.db, id, &socorro(&receiver), &opts(), &clock()).unwrap(), Outcome::Busy);
    drop(held);
    assert!(upload_report(&t.db, id, &socorro(&receiver), &opts(), &clock()).unwrap().is_success());
    assert_eq!(receiver.request_count(), 1);
}

#[test]
fn accepted_but_not_moved_is_finished_without_resending() {
    // As if the uploader died between storing the server id and the move.
    let t = TestDb::new();
    let id = t.add_real();
    let mut meta = t.metadata(id);
    meta.upload.server_report_id = Some("bp-earlier".into());
    t.db.update_metadata(id, &meta).unwrap();
    let receiver = Receiver::start();
    let outcome = upload_report(&t.db, id, &socorro(&receiver), &opts(), &clock()).unwrap();
    assert_eq!(outcome, Outcome::Accepted { server_id: Some("bp-earlier".into()) });
    assert_eq!(receiver.request_count(), 0);
    assert_eq!(t.state(id), ReportState::Completed);
}

#[test]
fn outcome_lines_and_json() {
    let o = Outcome::RetryLater {
        failure: Failure::Connect { detail: "refused".into() },
        attempts: 2,
        next_attempt_ms: T0,
    };
    assert_eq!(o.to_string(), "failed (attempt 2), retry after Tue, 14 Nov 2023 22:13:20 GMT: cannot connect: refused");
    let json = serde_json::to_value(&o).unwrap();
    assert_eq!(json["outcome"], "retry_later");
    assert_eq!(json["failure"]["kind"], "connect");
    let _ = SystemTime::now();
}
