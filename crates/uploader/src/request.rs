//! Building the request for one report: URL, headers and a streaming body.
//!
//! Breakpad multipart (Crashpad and Socorro flavors):
//!
//! - product and version fields (`prod`/`ver` or `ProductName`/`Version`):
//!   [`UploadOptions::product`]/[`version`](UploadOptions::version), else
//!   the report's annotation of that name (or `product`/`version`), else
//!   (product only) the executable's file name;
//! - `guid` = the database's client id (Crashpad flavor only);
//! - every other annotation as its own text field, value scrubbed; names
//!   that would collide with the fields above, and `uuid` for Socorro
//!   (reserved and rejected by Antenna), are not sent;
//! - the breadcrumbs (if any) as one text field `breadcrumbs` holding a JSON
//!   array of `{timestamp_ms, level, category, message}`, messages scrubbed;
//! - the dump as `upload_file_minidump`, file name `<report id>.dmp`,
//!   `application/octet-stream`;
//! - each attachment as its own file part named after the attachment (as
//!   Crashpad's handler does), `application/octet-stream`, streamed from
//!   its file; a name that would collide with another field is sent as
//!   `attachment_<name>`;
//! - with compression the whole body is gzipped (`Content-Encoding: gzip`),
//!   as Crashpad does and Socorro accepts.
//!
//! Sentry, minidump endpoint: `upload_file_minidump` plus a `sentry` part
//! with the event JSON ([`crate::sentry`]; breadcrumbs are in the event's
//! `breadcrumbs`, rather than in `__sentry-breadcrumb1/2` parts, which
//! Sentry expects in sentry-native's msgpack format) and one more file part
//! per attachment (Sentry stores every other file part as an attachment);
//! with compression only the dump part is gzipped (Sentry recognises a
//! compressed dump by its magic bytes).
//! Sentry, envelope endpoint: envelope header `{"event_id"}`, an `event`
//! item (with the breadcrumbs), an `attachment` item
//! (`attachment_type: "event.minidump"`) and one `attachment` item per
//! attachment (`event.attachment`); with compression the whole body is
//! gzipped. The key goes in `X-Sentry-Auth`, never in the envelope.

use std::collections::BTreeMap;

use crashmon_database::{Breadcrumb, Metadata};
use serde_json::{Value, json};

use crate::UploadOptions;
use crate::body::{AttachmentFile, Body, Envelope, Multipart};
use crate::sentry::{build_event, event_id};
use crate::target::{Flavor, SentryEndpoint, Target};

/// Name of the dump's form field.
pub const DUMP_FIELD: &str = "upload_file_minidump";
/// Name of the breadcrumbs' form field (Breakpad multipart).
pub const BREADCRUMBS_FIELD: &str = "breadcrumbs";

/// A request ready to send (except for the dump's bytes).
#[derive(Debug)]
pub(crate) struct Request {
    /// May contain the Sentry key: never log it.
    pub(crate) url: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Body,
}

fn annotation<'a>(annotations: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<(&'a str, &'a str)> {
    keys.iter().find_map(|k| annotations.get_key_value(*k)).map(|(k, v)| (k.as_str(), v.as_str()))
}

/// What is sent about one report besides the dump's bytes.
#[derive(Debug)]
pub(crate) struct ReportData<'a> {
    pub(crate) metadata: &'a Metadata,
    /// Already scrubbed.
    pub(crate) annotations: &'a BTreeMap<String, String>,
    pub(crate) client_id: &'a uuid::Uuid,
    /// The symbolicated report, if any.
    pub(crate) report: Option<&'a Value>,
    /// Length of the dump file.
    pub(crate) dump_len: u64,
    /// Already scrubbed.
    pub(crate) breadcrumbs: &'a [Breadcrumb],
    /// The attachments, in the order of [`crate::body::DumpSource::attachments`].
    pub(crate) attachments: &'a [AttachmentFile],
}

fn breadcrumbs_json(breadcrumbs: &[Breadcrumb]) -> String {
    serde_json::to_string(breadcrumbs).unwrap_or_else(|_| "[]".to_owned())
}

/// Builds the request for a report.
pub(crate) fn build(
    target: &Target,
    data: &ReportData<'_>,
    options: &UploadOptions,
    rng: &mut fastrand::Rng,
) -> Request {
    let ReportData { metadata, annotations, client_id, report, dump_len, breadcrumbs, attachments } = *data;
    let file_name = format!("{}.dmp", metadata.id);
    match target {
        Target::Breakpad { flavor, .. } => {
            let mut form = Multipart::new(rng);
            let mut consumed: Vec<&str> = Vec::new();
            let product_keys = [flavor.product_field(), "product", "prod", "ProductName"];
            let product = options.product.clone().or_else(|| {
                let (key, value) = annotation(annotations, &product_keys)?;
                consumed.push(key);
                Some(value.to_owned())
            });
            let product = product.or_else(|| {
                metadata.exe.as_ref().and_then(|exe| exe.file_name()).map(|n| n.to_string_lossy().into_owned())
            });
            let version_keys = [flavor.version_field(), "version", "ver", "Version"];
            let version = options.version.clone().or_else(|| {
                let (key, value) = annotation(annotations, &version_keys)?;
                consumed.push(key);
                Some(value.to_owned())
            });
            if let Some(product) = &product {
                form.text(flavor.product_field(), product);
            }
            if let Some(version) = &version {
                form.text(flavor.version_field(), version);
            }
            if *flavor == Flavor::Crashpad {
                form.text("guid", &client_id.hyphenated().to_string());
            }
            for (key, value) in annotations {
                let reserved = key == DUMP_FIELD
                    || key == flavor.product_field()
                    || key == flavor.version_field()
                    || (*flavor == Flavor::Crashpad && key == "guid")
                    || (*flavor == Flavor::Socorro && key.eq_ignore_ascii_case("uuid"))
                    || (!breadcrumbs.is_empty() && key == BREADCRUMBS_FIELD)
                    || consumed.contains(&key.as_str());
                if reserved {
                    if !consumed.contains(&key.as_str()) {
                        tracing::debug!(report = %metadata.id, annotation = %key, "annotation not sent: reserved field name");
                    }
                    continue;
                }
                form.text(key, value);
            }
            if !breadcrumbs.is_empty() {
                form.text(BREADCRUMBS_FIELD, &breadcrumbs_json(breadcrumbs));
            }
            form.dump(DUMP_FIELD, &file_name, false);
            for (index, attachment) in attachments.iter().enumerate() {
                let taken = attachment.name == DUMP_FIELD
                    || attachment.name == BREADCRUMBS_FIELD
                    || attachment.name == flavor.product_field()
                    || attachment.name == flavor.version_field()
                    || attachment.name == "guid"
                    || annotations.contains_key(&attachment.name);
                let field = if taken { format!("attachment_{}", attachment.name) } else { attachment.name.clone() };
                form.attachment(&field, &attachment.name, index);
            }
            Request { url: target.request_url(), headers: Vec::new(), body: form.finish(options.compress) }
        }
        Target::Sentry { dsn, endpoint } => {
            let release = options
                .version
                .as_deref()
                .or_else(|| annotation(annotations, &["release", "version", "ver"]).map(|(_, v)| v));
            let event = build_event(metadata, annotations, report, release, breadcrumbs);
            let event_json = serde_json::to_vec(&event).unwrap_or_else(|_| b"{}".to_vec());
            match endpoint {
                SentryEndpoint::Minidump => {
                    let mut form = Multipart::new(rng);
                    form.typed("sentry", "application/json", &event_json);
                    form.dump(DUMP_FIELD, &file_name, options.compress);
                    for (index, attachment) in attachments.iter().enumerate() {
                        let field = if attachment.name == DUMP_FIELD || attachment.name == "sentry" {
                            format!("attachment_{}", attachment.name)
                        } else {
                            attachment.name.clone()
                        };
                        form.attachment(&field, &attachment.name, index);
                    }
                    Request { url: target.request_url(), headers: Vec::new(), body: form.finish(false) }
                }
                SentryEndpoint::Envelope => {
                    let mut envelope = Envelope::new(&json!({ "event_id": event_id(metadata) }));
                    envelope.item(json!({"type": "event", "content_type": "application/json"}), &event_json);
                    envelope.dump_item(
                        json!({
                            "type": "attachment",
                            "attachment_type": "event.minidump",
                            "filename": file_name,
                            "content_type": "application/octet-stream",
                        }),
                        dump_len,
                    );
                    for (index, attachment) in attachments.iter().enumerate() {
                        envelope.attachment_item(
                            json!({
                                "type": "attachment",
                                "attachment_type": "event.attachment",
                                "filename": attachment.name,
                                "content_type": "application/octet-stream",
                            }),
                            index,
                            attachment.len,
                        );
                    }
                    Request {
                        url: target.request_url(),
                        headers: vec![("X-Sentry-Auth", dsn.auth_header())],
                        body: envelope.finish(options.compress),
                    }
                }
            }
        }
    }
}
