//! Failed records of a sync, read from the record log in the warehouse a
//! page at a time (`retl records -f DIR SYNC`, and `kubectl retl records
//! SYNC` for a cluster's Syncs). A Sync's status keeps at most 10 samples,
//! cut short; the log has each record's full error and payload.

use serde::Serialize;

use super::LocalError;
use crate::record::codes::recommended_action;
use crate::warehouse::{self, LoggedFailure, StateScope, Warehouse, WarehouseError};

/// The most records one page may hold: a page is read into memory.
pub const MAX_PAGE: u64 = 10_000;

/// One page of a Sync's failed records.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordsPage {
    pub namespace: String,
    pub sync: String,
    /// Failed records the log holds for the Sync, in all pages.
    pub total: u64,
    /// How many records come before this page.
    pub offset: u64,
    /// The `--offset` of the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    pub items: Vec<RecordView>,
}

/// One failed record as shown.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordView {
    /// The primary key; `null` when the row's key was null.
    pub key: Option<String>,
    pub operation: &'static str,
    pub code: String,
    pub message: String,
    pub recommended_action: String,
    /// The payload as sent (or as it would have been), parsed; its text
    /// when it is not JSON.
    pub payload: Option<serde_json::Value>,
    /// When the record's batch was committed (RFC 3339).
    pub committed_at: String,
}

impl From<LoggedFailure> for RecordView {
    fn from(f: LoggedFailure) -> Self {
        let payload = f.payload.map(|p| serde_json::from_str(&p).unwrap_or(serde_json::Value::String(p)));
        let committed_at = jiff::Timestamp::from_millisecond(f.at_ms).map(|t| t.to_string()).unwrap_or_default();
        RecordView {
            key: f.key,
            operation: f.kind.name(),
            recommended_action: recommended_action(&f.code),
            code: f.code,
            message: f.message,
            payload,
            committed_at,
        }
    }
}

/// Reads one page: `limit` failed records of sync `ns/sync` after `offset`.
pub async fn read_page(
    wh: &dyn Warehouse,
    scope: &StateScope,
    ns: &str,
    sync: &str,
    offset: u64,
    limit: u64,
) -> Result<RecordsPage, WarehouseError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let total = wh.log_counts(scope, sync).await?.iter().filter(|c| c.outcome == "rejected").map(|c| c.count).sum();
    let items: Vec<RecordView> = wh.failed_records(scope, sync, offset, limit).await?.into_iter().map(Into::into).collect();
    let shown = offset + items.len() as u64;
    let next_offset = (items.len() as u64 == limit && shown < total).then_some(shown);
    Ok(RecordsPage { namespace: ns.to_string(), sync: sync.to_string(), total, offset, next_offset, items })
}

/// The failed records of a past local sync `sync` of a Mapping under `dir`.
pub async fn records(dir: &std::path::Path, sync: &str, offset: u64, limit: u64) -> Result<RecordsPage, LocalError> {
    let m = super::Manifests::load(dir)?;
    for (ns, mapping) in m.mappings.iter().map(|((ns, _), mapping)| (ns, mapping)) {
        let Ok(r) = super::resolve::resolve(&m, ns, mapping) else { continue };
        let wh = warehouse::connect(r.source_name(), &r.source.object.spec, &r.secrets, &r.source_dir()).await?;
        let scope = StateScope::from_uid(&r.mapping_uid());
        let filter = warehouse::HistoryFilter { mapping_uids: vec![scope.id.clone()], ..Default::default() };
        if wh.runs(&filter).await?.iter().any(|run| run.sync == sync) {
            return Ok(read_page(wh.as_ref(), &scope, ns, sync, offset, limit).await?);
        }
    }
    Err(LocalError::Usage(format!(
        "no sync named {sync:?} in the history of the Mappings under {}; `retl history -f {}` lists them",
        dir.display(),
        dir.display()
    )))
}

/// A page as text: each record with its error, recommended action and
/// payload, then how to get the next page (`again`: the command that
/// printed this one, without `--offset`).
pub fn text(p: &RecordsPage, again: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if p.items.is_empty() {
        let _ = writeln!(out, "Sync {}/{}: {} failed records; none after the first {}.", p.namespace, p.sync, p.total, p.offset);
        return out;
    }
    let (first, last) = (p.offset + 1, p.offset + p.items.len() as u64);
    let _ = writeln!(out, "Sync {}/{}: failed records {first}-{last} of {}", p.namespace, p.sync, p.total);
    for r in &p.items {
        let key = r.key.as_deref().map_or_else(|| "(null)".to_string(), |k| format!("{k:?}"));
        let _ = writeln!(out, "\nkey {key} ({}): {}: {}", r.operation, r.code, r.message);
        let _ = writeln!(out, "  Recommended action: {}", r.recommended_action);
        if let Some(payload) = &r.payload {
            let _ = writeln!(out, "  Payload: {payload}");
        }
        let _ = writeln!(out, "  Committed: {}", r.committed_at);
    }
    if let Some(next) = p.next_offset {
        let _ = writeln!(out, "\nNext page: {again} --offset {next}");
    }
    out
}

/// A page as a table, one line per record with every field.
pub fn wide(p: &RecordsPage) -> String {
    let header = ["KEY", "OPERATION", "CODE", "ERROR", "RECOMMENDED ACTION", "PAYLOAD", "COMMITTED"];
    let rows: Vec<Vec<String>> = p
        .items
        .iter()
        .map(|r| {
            vec![
                r.key.clone().unwrap_or_else(|| "<null>".into()),
                r.operation.to_string(),
                r.code.clone(),
                r.message.clone(),
                r.recommended_action.clone(),
                r.payload.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                r.committed_at.clone(),
            ]
        })
        .collect();
    crate::local::print::table(&header, &rows)
}
