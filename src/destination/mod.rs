//! Destinations: where records go.
//!
//! One trait, [`Destination`], one file per type. The engine hands a
//! destination one batch at a time and needs one [`Delivery`] per record
//! back, in order. A new destination touches one new file and one line in
//! [`build`].

mod error;
mod file;
pub(crate) mod http;
mod reply;
mod table;

pub use error::DestinationError;
pub use http::limits::{MAX_BATCH_SIZE, MAX_IN_FLIGHT};

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::api::{ChangeKind, DestinationSpec, DestinationType, SecretKeyRef};
use crate::warehouse::SecretValues;

/// One record as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct OutRecord {
    /// The record's primary key as text.
    pub key: String,
    /// What happened to the row: added or updated rows are upserts, deleted ones deletes.
    pub kind: ChangeKind,
    /// The mapped payload (`null` for deletes).
    pub payload: Value,
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
}

/// Builds the destination a Destination spec describes.
pub fn build(
    name: &str,
    spec: &DestinationSpec,
    secrets: &SecretValues,
    base_dir: &Path,
) -> Result<Arc<dyn Destination>, DestinationError> {
    let missing = |field: &str| DestinationError::Config {
        destination: name.to_string(),
        message: format!("type is {field} but spec.{field} is missing"),
    };
    match spec.type_ {
        DestinationType::Http => {
            let settings = spec.http.as_ref().ok_or_else(|| missing("http"))?;
            Ok(Arc::new(http::HttpDestination::new(name, settings, secrets)?))
        }
        DestinationType::File => {
            let settings = spec.file.as_ref().ok_or_else(|| missing("file"))?;
            Ok(Arc::new(file::FileDestination::new(settings, base_dir)))
        }
        DestinationType::Postgres | DestinationType::Mysql => Ok(Arc::new(table::TableDestination::new(name, spec, secrets)?)),
    }
}

/// Every Secret reference a Destination needs resolved before [`build`].
pub fn secret_refs(spec: &DestinationSpec) -> Vec<SecretKeyRef> {
    spec.http.iter().flat_map(|h| h.headers.iter().filter_map(|x| x.value_from.clone())).chain(table::secret_refs(spec)).collect()
}

/// One record as an HTTP batch carries it, borrowing the payload (a batch is
/// encoded without copying any record).
#[derive(serde::Serialize)]
pub struct WireRecord<'a> {
    pub key: &'a str,
    pub operation: &'static str,
    pub payload: &'a Value,
}

impl<'a> From<&'a OutRecord> for WireRecord<'a> {
    fn from(r: &'a OutRecord) -> Self {
        WireRecord { key: &r.key, operation: operation(r.kind), payload: &r.payload }
    }
}

/// Operation name of a change on the wire: `upsert` or `delete`.
pub fn operation(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Deleted => "delete",
        ChangeKind::Added | ChangeKind::Updated => "upsert",
    }
}
