//! The vocabulary every layer shares: model rows, change kinds, what became
//! of a record (its outcome), record error codes and skip reasons.
//!
//! This is the bottom floor: it imports no other module of retl, so the
//! warehouse, the field mapping, the destinations and the engine can all
//! speak it without importing each other.

pub mod codes;
pub mod skip;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A model row: column name to value, in the query's column order.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// A kind of change found by diffing the model against the last delivered state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Updated,
    Deleted,
}

impl ChangeKind {
    /// The name as stored and shown: `added`, `updated`, `deleted`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }

    /// The kind a stored name stands for (anything unknown reads as added).
    pub fn parse(name: &str) -> ChangeKind {
        match name {
            "deleted" => ChangeKind::Deleted,
            "updated" => ChangeKind::Updated,
            _ => ChangeKind::Added,
        }
    }
}

/// What became of one record; committed in one transaction per batch.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordOutcome {
    pub key: Option<String>,
    pub hash: String,
    pub kind: ChangeKind,
    pub result: OutcomeKind,
}

/// The result of one record.
#[derive(Clone, Debug, PartialEq)]
pub enum OutcomeKind {
    /// The destination accepted it: the snapshot moves forward.
    Delivered,
    /// Not sent on purpose (not selected, or expired): the snapshot moves
    /// forward so it is not found again.
    Skipped { reason: String },
    /// Rejected: kept as a pending failure and retried on later syncs.
    Rejected { code: String, message: String, payload: Option<String> },
}

impl OutcomeKind {
    /// The outcome's name as the record log stores it.
    pub fn name(&self) -> &'static str {
        match self {
            OutcomeKind::Delivered => "delivered",
            OutcomeKind::Skipped { .. } => "skipped",
            OutcomeKind::Rejected { .. } => "rejected",
        }
    }
}

/// A record's mapped payload: the JSON text of an object, valid by
/// construction (written by the field mapping, from values or copied from
/// the row's own text), sent as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload(Box<str>);

impl Payload {
    /// The payload of a delete: `null`.
    pub fn null() -> Payload {
        Payload("null".into())
    }

    /// Wraps JSON text the caller guarantees is valid JSON.
    pub fn from_json_text(text: String) -> Payload {
        Payload(text.into_boxed_str())
    }

    /// The payload's JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The payload as JSON values (destinations that pick fields out of it).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

impl From<&serde_json::Value> for Payload {
    fn from(v: &serde_json::Value) -> Payload {
        Payload(v.to_string().into_boxed_str())
    }
}

impl From<serde_json::Value> for Payload {
    fn from(v: serde_json::Value) -> Payload {
        Payload::from(&v)
    }
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
