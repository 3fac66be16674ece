//! Destinations: where records go.
//!
//! One trait, [`Destination`], one file per type. The engine hands a
//! destination one batch at a time and needs one [`Delivery`] per record
//! back, in order. Every HTTP type sends through the one
//! [`transport::HttpTransport`] (retries, timeouts, rate limit, headers,
//! masking) and only encodes batches and reads replies. A new destination
//! type is one new file implementing [`Kind`] and one line in [`kind`].

mod error;
pub mod exchange;
mod file;
pub(crate) mod http;
mod reply;
mod segment;
mod table;
pub mod transport;

pub use error::DestinationError;
pub use transport::limits::{MAX_BATCH_SIZE, MAX_IN_FLIGHT};

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::api::{Action, ChangeKind, DestinationSpec, DestinationType, SecretKeyRef};
pub use crate::record::Payload;
use crate::warehouse::SecretValues;

/// One record as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct OutRecord {
    /// The record's primary key as text.
    pub key: String,
    /// What happened to the row: added or updated rows are upserts, deleted ones deletes.
    pub kind: ChangeKind,
    /// The mapped payload's JSON text (`null` for deletes).
    pub payload: Payload,
    /// A stable id of this change ([`record_id`]), when the destination
    /// asks for ids ([`Destination::record_ids`]; empty otherwise): the same Mapping, key,
    /// operation and row values give the same id, so a batch sent again
    /// after a crash carries the same ids and receivers that deduplicate
    /// by id (Segment's `messageId`) apply it once.
    pub id: String,
}

/// What the destination did with one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    Rejected { code: String, message: String },
}

/// A destination.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Records per batch.
    fn batch_size(&self) -> usize;
    /// Batches in flight at once.
    fn max_in_flight(&self) -> usize;
    /// Checks that the destination can be reached, without sending records.
    async fn check(&self) -> Result<(), DestinationError>;
    /// Sends one batch for `action`. `Ok` holds one delivery per record, in
    /// order; `Err` means the whole batch could not be delivered even after
    /// retries (unreachable, or 429/5xx to the end).
    async fn send(&self, action: &str, batch: &[OutRecord]) -> Result<Vec<Delivery>, DestinationError>;
    /// For a change kind this destination does not send, the skip reason
    /// (from [`crate::record::skip`]) that such records get instead.
    fn skip_reason(&self, _kind: ChangeKind) -> Option<&'static str> {
        None
    }
    /// Whether records need their [`OutRecord::id`] (a destination that
    /// sends it, such as Segment's `messageId`): working one out costs a
    /// SHA-1 per record, so others go without.
    fn record_ids(&self) -> bool {
        false
    }
}

/// What [`Kind::build`] returns.
pub type Built = Result<Arc<dyn Destination>, DestinationError>;

/// One destination type: how a spec of that type becomes a destination,
/// and what callers need to know before building one.
pub trait Kind: Sync {
    /// Builds the destination; an invalid spec is a [`DestinationError::Config`]
    /// (the Destination's Ready condition shows it).
    fn build(&self, name: &str, spec: &DestinationSpec, secrets: &SecretValues, base_dir: &Path) -> Built;
    /// The Secret keys the spec names, resolved before [`Kind::build`].
    fn secret_refs(&self, _spec: &DestinationSpec) -> Vec<SecretKeyRef> {
        Vec::new()
    }
    /// For a change kind the type does not send, the skip reason (from
    /// [`crate::record::skip`]) such records get instead.
    fn skip_reason(&self, _kind: ChangeKind) -> Option<&'static str> {
        None
    }
    /// The actions a Mapping may name: by default those the spec declares.
    fn actions<'a>(&self, _name: &str, spec: &'a DestinationSpec) -> Result<Cow<'a, [Action]>, DestinationError> {
        Ok(Cow::Borrowed(&spec.actions))
    }
}

/// Every destination type. A new type adds its line here.
fn kind(t: DestinationType) -> &'static dyn Kind {
    match t {
        DestinationType::Http => &http::Http,
        DestinationType::File => &file::File,
        DestinationType::Segment => &segment::Segment,
        DestinationType::Postgres | DestinationType::Mysql => &table::Table,
    }
}

/// Builds the destination a Destination spec describes.
pub fn build(name: &str, spec: &DestinationSpec, secrets: &SecretValues, base_dir: &Path) -> Built {
    kind(spec.type_).build(name, spec, secrets, base_dir)
}

/// For a change kind a Destination's type does not send, the skip reason
/// such records get (`retl plan` shows what a sync would skip).
pub fn skip_reason(spec: &DestinationSpec, change: ChangeKind) -> Option<&'static str> {
    kind(spec.type_).skip_reason(change)
}

/// Every Secret reference a Destination needs resolved before [`build`].
pub fn secret_refs(spec: &DestinationSpec) -> Vec<SecretKeyRef> {
    kind(spec.type_).secret_refs(spec)
}

/// The actions a Mapping may name on this Destination: those it declares,
/// or for a type with built-in actions (`segment`) those.
pub fn actions<'a>(name: &str, spec: &'a DestinationSpec) -> Result<Cow<'a, [Action]>, DestinationError> {
    kind(spec.type_).actions(name, spec)
}

/// The action `action` of Destination `name`, or what to fix.
pub fn find_action(name: &str, spec: &DestinationSpec, action: &str) -> Result<Action, String> {
    let actions = actions(name, spec).map_err(|e| e.to_string())?;
    actions.iter().find(|a| a.name == action).cloned().ok_or_else(|| {
        let known: Vec<&str> = actions.iter().map(|a| a.name.as_str()).collect();
        format!("Destination {name:?} has no action {action:?} (its actions: {}); fix the Mapping's spec.action", known.join(", "))
    })
}

/// "type is X but spec.X is missing".
pub(crate) fn missing_settings(name: &str, field: &str) -> DestinationError {
    DestinationError::Config { destination: name.to_string(), message: format!("type is {field} but spec.{field} is missing") }
}

/// Names the ids of [`record_id`] (a UUID of retl's own).
const RECORD_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2a4e_93d7_4b0e_8a51_3c9e_d2f4_7b61);

/// The stable id of one change: a name-based UUID (version 5) of the
/// Mapping's UID, the key, the operation and the row's hash.
pub fn record_id(mapping_uid: &str, key: &str, kind: ChangeKind, hash: &str) -> String {
    // Lengths first, so that no two different inputs make the same name.
    let name = format!("{}:{mapping_uid}|{}:{key}|{}|{hash}", mapping_uid.len(), key.len(), operation(kind));
    uuid::Uuid::new_v5(&RECORD_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// Writes one record's fields as retl's wire format has them,
/// `"key": ..., "operation": ..., "payload": ...`, the payload's text as it
/// is (no record is parsed or copied to encode a batch).
pub fn write_wire_fields(out: &mut Vec<u8>, r: &OutRecord) {
    out.extend_from_slice(b"\"key\":");
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &r.key);
    out.extend_from_slice(b",\"operation\":\"");
    out.extend_from_slice(operation(r.kind).as_bytes());
    out.extend_from_slice(b"\",\"payload\":");
    out.extend_from_slice(r.payload.as_str().as_bytes());
}

/// A batch in retl's wire format: `{"action": ..., "records": [...]}`.
pub fn encode_batch(action: &str, batch: &[OutRecord]) -> Vec<u8> {
    let size: usize = batch.iter().map(|r| r.key.len() + r.payload.as_str().len() + 48).sum();
    let mut out = Vec::with_capacity(size + action.len() + 32);
    out.extend_from_slice(b"{\"action\":");
    let _ = serde_json::to_writer(&mut out, action);
    out.extend_from_slice(b",\"records\":[");
    for (i, r) in batch.iter().enumerate() {
        out.extend_from_slice(if i > 0 { b",{" } else { b"{" });
        write_wire_fields(&mut out, r);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Operation name of a change on the wire: `upsert` or `delete`.
pub fn operation(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Deleted => "delete",
        ChangeKind::Added | ChangeKind::Updated => "upsert",
    }
}
