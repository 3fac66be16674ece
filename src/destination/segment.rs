//! `segment`: the Segment-compatible batch tracking API.
//!
//! Each record becomes one message of the Mapping's action (`identify`,
//! `track`, `group`, `page`, `screen` or `alias`) with the fields Segment
//! defines for it, built in here so that a Destination declares none.
//! Messages go `POST <baseUrl>/v1/batch` as `{"batch": [...], "sentAt"}`,
//! the write key as HTTP basic auth, through the shared
//! [`transport`](super::transport) (retries on 429/5xx with `Retry-After`,
//! timeouts, rate limit, masking).
//!
//! Limits: at most 2,500 messages and 500,000 bytes a request, 32,000
//! bytes a message (the API's documented limits, in decimal bytes so that
//! either reading of "KB" holds). A record larger than that, or without the
//! identity its action needs, fails alone before anything is sent.
//!
//! Attribution: the API answers a request as a whole. 2xx accepts every
//! message in it. 400 and 413 refuse the whole request, so it is split in
//! halves that are sent again until the malformed message is alone: it is
//! rejected with the API's message, and every other message lands (at most
//! 2n-1 requests for n messages). 401, 403 and other 4xx reject every
//! message of the request with code `HTTP_<status>`.
//!
//! Each message's `messageId` is the record's stable id
//! ([`super::record_id`]): a batch sent again after a crash carries the
//! same ids, and the API deduplicates them. Deletes are skipped with reason
//! `DeletesNotSupported`: Segment deletes users through its separate
//! regulations API, not the tracking API.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value, json};

use super::transport::{self, HttpTransport, Knobs, snippet};
use super::{Built, Delivery, Destination, DestinationError, Kind, OutRecord};
use crate::api::{self, Action, ActionField, ChangeKind, DestinationSpec, FieldType, SecretKeyRef};
use crate::record::{codes, skip};
use crate::warehouse::SecretValues;

/// Most bytes of one request.
pub const MAX_REQUEST_BYTES: usize = 500_000;
/// Most bytes of one message.
pub const MAX_MESSAGE_BYTES: usize = 32_000;
/// Most messages in one request.
pub const MAX_MESSAGES: usize = 2_500;
/// Where batches go unless `baseUrl` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.segment.io";
/// Room kept for `{"batch":[`, `],"sentAt":"..."}`.
const ENVELOPE_BYTES: usize = 100;

/// The `segment` type.
pub struct Segment;

impl Kind for Segment {
    /// Deletes go through Segment's regulations API, not the tracking API.
    fn skip_reason(&self, kind: ChangeKind) -> Option<&'static str> {
        (kind == ChangeKind::Deleted).then_some(skip::DELETES_NOT_SUPPORTED)
    }

    fn build(&self, name: &str, spec: &DestinationSpec, secrets: &SecretValues, _: &std::path::Path) -> Built {
        let settings = spec.segment.as_ref().ok_or_else(|| super::missing_settings(name, "segment"))?;
        // A declared action or field the type lacks makes the Destination not Ready.
        actions(name, &spec.actions)?;
        Ok(Arc::new(SegmentDestination::new(name, settings, secrets)?))
    }

    fn secret_refs(&self, spec: &DestinationSpec) -> Vec<SecretKeyRef> {
        spec.segment.iter().map(|s| s.write_key_secret_ref.clone()).collect()
    }

    fn actions<'a>(&self, name: &str, spec: &'a DestinationSpec) -> Result<Cow<'a, [Action]>, DestinationError> {
        actions(name, &spec.actions).map(Cow::Owned)
    }
}

/// The built-in actions and their fields, as Segment's spec defines them.
pub fn builtin() -> Vec<Action> {
    use FieldType::{Datetime, Object, String as Text};
    let identity: &[(&str, FieldType, bool)] = &[("userId", Text, false), ("anonymousId", Text, false)];
    let common: &[(&str, FieldType, bool)] = &[("timestamp", Datetime, false), ("context", Object, false), ("integrations", Object, false)];
    let action = |name: &str, description: &str, own: &[(&str, FieldType, bool)], with_identity: bool| Action {
        name: name.into(),
        description: Some(description.into()),
        fields: (if with_identity { identity } else { &[] })
            .iter()
            .chain(own)
            .chain(common)
            .map(|&(name, type_, required)| ActionField { name: name.into(), type_, required, properties: None, description: None })
            .collect(),
    };
    vec![
        action("identify", "Who the user is, and their traits.", &[("traits", Object, false)], true),
        action(
            "track",
            "Something the user did: an event and its properties.",
            &[("event", Text, true), ("properties", Object, false)],
            true,
        ),
        action(
            "group",
            "A group (account, company) the user belongs to, and its traits.",
            &[("groupId", Text, true), ("traits", Object, false)],
            true,
        ),
        action("page", "A web page the user viewed.", &[("name", Text, false), ("properties", Object, false)], true),
        action("screen", "An app screen the user viewed.", &[("name", Text, false), ("properties", Object, false)], true),
        action(
            "alias",
            "Merges an earlier identity (previousId) into userId.",
            &[("userId", Text, true), ("previousId", Text, true)],
            false,
        ),
    ]
}

/// The actions a Mapping may name: every built-in one when none is
/// declared; else the declared ones, each a built-in action whose declared
/// fields may be made `required` or given fixed `properties`.
pub fn actions(name: &str, declared: &[Action]) -> Result<Vec<Action>, DestinationError> {
    let builtin = builtin();
    if declared.is_empty() {
        return Ok(builtin);
    }
    let config = |message: String| DestinationError::Config { destination: name.to_string(), message };
    let list = |names: Vec<&str>| names.join(", ");
    let mut out: Vec<Action> = Vec::with_capacity(declared.len());
    for (i, d) in declared.iter().enumerate() {
        let Some(base) = builtin.iter().find(|b| b.name == d.name) else {
            return Err(config(format!(
                "spec.actions[{i}]: a segment destination has no action {:?} (its actions: {}); name one of those, or leave spec.actions out to allow them all",
                d.name,
                list(builtin.iter().map(|b| b.name.as_str()).collect())
            )));
        };
        if out.iter().any(|a| a.name == d.name) {
            return Err(config(format!("spec.actions[{i}]: action {:?} is listed twice; list it once", d.name)));
        }
        let mut action = base.clone();
        action.description = d.description.clone().or(action.description);
        for (j, f) in d.fields.iter().enumerate() {
            let at = format!("spec.actions[{i}].fields[{j}]");
            let known = list(base.fields.iter().map(|f| f.name.as_str()).collect());
            let Some(b) = action.fields.iter_mut().find(|b| b.name == f.name) else {
                return Err(config(format!(
                    "{at}: segment's {} action has no field {:?} (its fields: {known}); put your own data into traits or properties",
                    d.name, f.name
                )));
            };
            if f.type_ != FieldType::Any && f.type_ != b.type_ {
                return Err(config(format!(
                    "{at}: field {:?} of segment's {} action has type {}; write that type or leave type out",
                    f.name,
                    d.name,
                    type_word(b.type_)
                )));
            }
            if f.properties.is_some() && b.type_ != FieldType::Object {
                return Err(config(format!("{at}: field {:?} is not an object, so it takes no properties list", f.name)));
            }
            b.required |= f.required;
            b.properties = f.properties.clone().or(b.properties.take());
            b.description = f.description.clone().or(b.description.take());
        }
        out.push(action);
    }
    Ok(out)
}

fn type_word(t: FieldType) -> String {
    serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub struct SegmentDestination {
    transport: HttpTransport,
    batch_size: usize,
}

/// What the API said about one request.
enum Verdict {
    Accepted,
    /// 400 or 413: the request (some message in it) is malformed or too large.
    Malformed {
        code: String,
        message: String,
    },
    /// Any other refusal, for every message of the request.
    Refused {
        code: String,
        message: String,
    },
}

impl SegmentDestination {
    pub fn new(name: &str, s: &api::SegmentDestination, secrets: &SecretValues) -> Result<Self, DestinationError> {
        let config = |message: String| DestinationError::Config { destination: name.to_string(), message };
        let base = s.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL).trim_end_matches('/');
        let url = Url::parse(&format!("{base}/v1/batch"))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| config(format!("spec.segment.baseUrl {base:?} is not an http(s) URL; write e.g. {DEFAULT_BASE_URL}")))?;
        let r = &s.write_key_secret_ref;
        let key = secrets
            .get(&(r.name.clone(), r.key.clone()))
            .ok_or_else(|| DestinationError::MissingSecret { name: r.name.clone(), key: r.key.clone() })?;
        if key.trim().is_empty() {
            return Err(config(format!(
                "the write key in Secret {:?}, key {:?}, is empty; put the source's write key there (Segment: the source's Settings, API Keys)",
                r.name, r.key
            )));
        }
        let (auth, value) = transport::basic_auth(key.trim(), "");
        let mut headers = HeaderMap::new();
        headers.insert(auth, value);
        let knobs = Knobs {
            timeout_seconds: s.timeout_seconds,
            max_in_flight: s.max_in_flight,
            requests_per_second: s.requests_per_second,
            max_retries: s.max_retries,
            initial_backoff_millis: s.initial_backoff_millis,
        };
        Ok(SegmentDestination {
            transport: HttpTransport::new(name, url, Method::POST, headers, knobs, secrets)?,
            batch_size: (s.batch_size.unwrap_or(100) as usize).clamp(1, MAX_MESSAGES),
        })
    }

    /// Sends messages `(index, JSON)` in as few requests as the limits
    /// allow, filling `out` at each message's index.
    async fn deliver(&self, messages: &[(usize, Vec<u8>)], out: &mut [Option<Delivery>]) {
        let mut parts: Vec<&[(usize, Vec<u8>)]> = pack(messages);
        parts.reverse();
        while let Some(part) = parts.pop() {
            let verdict = match self.transport.send(body(part), &read).await {
                Ok(v) => v,
                Err(e) => {
                    // Retries ran out: this part and every part not sent yet
                    // wait for the next sync.
                    let message = e.to_string();
                    for (i, _) in parts.iter().flat_map(|p| p.iter()).chain(part) {
                        out[*i] = Some(Delivery::Rejected { code: codes::DESTINATION_UNAVAILABLE.into(), message: message.clone() });
                    }
                    return;
                }
            };
            match verdict {
                Verdict::Accepted => part.iter().for_each(|(i, _)| out[*i] = Some(Delivery::Accepted)),
                Verdict::Malformed { .. } if part.len() > 1 => {
                    let (a, b) = part.split_at(part.len() / 2);
                    parts.extend([b, a]);
                }
                Verdict::Malformed { code, message } => {
                    let message = format!("the API refused this message: {message}");
                    part.iter().for_each(|(i, _)| out[*i] = Some(Delivery::Rejected { code: code.clone(), message: message.clone() }));
                }
                Verdict::Refused { code, message } => {
                    for (i, _) in part {
                        out[*i] = Some(Delivery::Rejected { code: code.clone(), message: message.clone() });
                    }
                }
            }
        }
    }
}

/// Reads a reply the transport did not retry: any 2xx accepts (Segment
/// answers `{"success": true}`; compatible APIs answer `OK`).
fn read(status: StatusCode, text: &str) -> Result<Verdict, String> {
    if status.is_success() {
        return Ok(Verdict::Accepted);
    }
    // Errors come as `{"success": false, "message": "..."}`: the message
    // reads better than its JSON.
    let said = serde_json::from_str::<Value>(text).ok().and_then(|v| v.get("message").and_then(Value::as_str).map(snippet));
    let (code, message) = (format!("HTTP_{}", status.as_u16()), format!("HTTP {status}: {}", said.unwrap_or_else(|| snippet(text))));
    Ok(if status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE {
        Verdict::Malformed { code, message }
    } else {
        Verdict::Refused { code, message }
    })
}

/// One message's JSON, or why the record fails before sending.
pub fn encode(action: &str, r: &OutRecord) -> Result<Vec<u8>, Delivery> {
    let reject = |code: &str, message: String| Delivery::Rejected { code: code.to_string(), message };
    if r.kind == ChangeKind::Deleted {
        return Err(reject(codes::REJECTED, "a segment destination does not send deletes".into()));
    }
    let Value::Object(payload) = r.payload.to_value() else {
        return Err(reject(codes::INVALID_VALUE, "the mapped payload is not an object".into()));
    };
    let has = |field: &str| payload.get(field).and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty());
    if action != "alias" && !has("userId") && !has("anonymousId") {
        return Err(reject(
            codes::MISSING_IDENTITY,
            format!("a segment {action} needs a userId or an anonymousId, and this record has neither"),
        ));
    }
    let mut message = Map::with_capacity(payload.len() + 3);
    message.insert("type".into(), Value::from(action));
    message.insert("messageId".into(), Value::from(r.id.as_str()));
    // A null field is the same as none to the API; some refuse `null` objects.
    for (k, v) in payload.into_iter().filter(|(_, v)| !v.is_null()) {
        message.insert(k, v);
    }
    let context = message.entry("context").or_insert_with(|| json!({}));
    if let Value::Object(c) = context {
        c.entry("library").or_insert_with(|| json!({"name": "retl", "version": env!("CARGO_PKG_VERSION")}));
    }
    let bytes = serde_json::to_vec(&message).map_err(|e| reject(codes::INVALID_VALUE, format!("cannot encode the message: {e}")))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(reject(
            codes::MESSAGE_TOO_LARGE,
            format!("the {action} message is {} bytes; the API takes at most {MAX_MESSAGE_BYTES} bytes a message", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// Splits messages into requests of at most [`MAX_MESSAGES`] messages and
/// [`MAX_REQUEST_BYTES`] bytes.
pub fn pack(messages: &[(usize, Vec<u8>)]) -> Vec<&[(usize, Vec<u8>)]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, ENVELOPE_BYTES);
    for (i, (_, m)) in messages.iter().enumerate() {
        if i > start && (bytes + m.len() + 1 > MAX_REQUEST_BYTES || i - start >= MAX_MESSAGES) {
            parts.push(&messages[start..i]);
            (start, bytes) = (i, ENVELOPE_BYTES);
        }
        bytes += m.len() + 1;
    }
    if start < messages.len() {
        parts.push(&messages[start..]);
    }
    parts
}

/// `{"batch":[...],"sentAt":"..."}` from encoded messages, without re-encoding them.
pub fn body(part: &[(usize, Vec<u8>)]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(part.iter().map(|(_, m)| m.len() + 1).sum::<usize>() + ENVELOPE_BYTES);
    out.extend_from_slice(b"{\"batch\":[");
    for (n, (_, m)) in part.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
    out.extend_from_slice(format!("],\"sentAt\":\"{}\"}}", jiff::Timestamp::now()).as_bytes());
    out.into()
}

#[async_trait]
impl Destination for SegmentDestination {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn max_in_flight(&self) -> usize {
        self.transport.max_in_flight()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        self.transport.check().await
    }

    async fn send(&self, action: &str, batch: &[OutRecord]) -> Result<Vec<Delivery>, DestinationError> {
        let mut out: Vec<Option<Delivery>> = vec![None; batch.len()];
        let mut messages = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match encode(action, r) {
                Ok(m) => messages.push((i, m)),
                Err(refused) => out[i] = Some(refused),
            }
        }
        self.deliver(&messages, &mut out).await;
        let unanswered = || Delivery::Rejected { code: codes::NO_RESULT.into(), message: "no request carried this record".into() };
        Ok(out.into_iter().map(|d| d.unwrap_or_else(unanswered)).collect())
    }

    fn skip_reason(&self, kind: ChangeKind) -> Option<&'static str> {
        Kind::skip_reason(&Segment, kind)
    }

    /// Each message's `messageId`.
    fn record_ids(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
