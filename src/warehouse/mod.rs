//! Warehouses: where models run and where retl keeps its sync state.
//!
//! One trait, [`Warehouse`], one folder per dialect with the same rooms
//! (`mod` connects and answers the trait, `stage` diffs, `state` keeps what
//! syncs commit, `history` reads it back). The trait is shaped around the
//! engine's steps so that the heavy lifting (running the model, hashing
//! rows, diffing against the snapshot, merging what was delivered into it)
//! happens inside the warehouse as set-based SQL, and only changed rows ever
//! leave it, page by page.
//!
//! A new warehouse touches one new folder and one line in [`connect`].

mod batch_plan;
mod error;
mod masked;
mod mysql;
mod postgres;
mod record_log;
pub(crate) mod rows;
mod runs;
mod sample;
pub(crate) mod server;
pub(crate) mod server_options;
mod sqlite;
mod state_tx;
mod stream;

pub use error::WarehouseError;
pub use record_log::{LogCount, LoggedFailure};
pub use rows::RowDecoder;
pub use sample::SampledRow;
pub use server::decode_row;
pub use sqlite::register_hash_function as register_sqlite_hash;

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;

use crate::api::{SecretKeyRef, SourceSpec, SourceType};
use crate::record::ChangeKind;

pub use crate::record::{OutcomeKind, RecordOutcome, Row};

/// Secret values a caller resolved beforehand (from the API server, or from
/// files and the environment in a local run), by reference.
pub type SecretValues = BTreeMap<(String, String), String>;

/// Looks up a resolved secret; the error names the Secret and key, never the value.
pub fn secret_value<'a>(secrets: &'a SecretValues, r: &SecretKeyRef) -> Result<&'a str, WarehouseError> {
    secrets
        .get(&(r.name.clone(), r.key.clone()))
        .map(String::as_str)
        .ok_or_else(|| WarehouseError::MissingSecret { name: r.name.clone(), key: r.key.clone() })
}

/// Opens the warehouse a Source describes. `base_dir` anchors relative file
/// paths (SQLite) in local runs.
pub async fn connect(
    source_name: &str,
    spec: &SourceSpec,
    secrets: &SecretValues,
    base_dir: &Path,
) -> Result<Box<dyn Warehouse>, WarehouseError> {
    // Errors are masked where they leave the dialect: a server may echo a
    // password or URL it was sent.
    let masker = crate::mask::Masker::new(secrets);
    let inner: Result<Box<dyn Warehouse>, WarehouseError> = match spec.type_ {
        SourceType::Sqlite => sqlite::SqliteWarehouse::connect(source_name, spec, base_dir).await.map(|w| Box::new(w) as _),
        SourceType::Postgres => postgres::PostgresWarehouse::connect(source_name, spec, secrets).await.map(|w| Box::new(w) as _),
        SourceType::Mysql => mysql::MysqlWarehouse::connect(source_name, spec, secrets).await.map(|w| Box::new(w) as _),
    };
    match inner {
        Ok(inner) => Ok(Box::new(masked::Masked { inner, masker })),
        Err(e) => Err(e.masked(&masker)),
    }
}

/// Every Secret reference a Source needs resolved before [`connect`].
pub fn secret_refs(spec: &SourceSpec) -> Vec<SecretKeyRef> {
    [&spec.postgres, &spec.mysql]
        .into_iter()
        .flatten()
        .flat_map(|s| [s.password_secret_ref.clone(), s.url_secret_ref.clone()])
        .flatten()
        .collect()
}

/// One column a model's query returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_name: Option<String>,
}

/// Identifies one Mapping's state inside the warehouse. Table names are
/// derived from the Mapping's UID, never from user text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateScope {
    /// The Mapping's UID with everything but `[0-9a-z]` removed.
    pub id: String,
}

impl StateScope {
    pub fn from_uid(uid: &str) -> StateScope {
        StateScope { id: uid.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect() }
    }
}

/// What to stage for a sync.
#[derive(Clone, Debug)]
pub struct DiffRequest {
    /// The model's SQL, run as given (wrapped as a subquery).
    pub query: String,
    /// The model's primary key column.
    pub primary_key: String,
    /// The model's columns, from [`Warehouse::describe`].
    pub columns: Vec<Column>,
    /// Normal diff, or replay of a past sync's records.
    pub mode: DiffMode,
    /// Pending failures first seen before this time (unix milliseconds) are
    /// past their retry window: staged as expired, not sent.
    pub expire_before_ms: i64,
    /// Unique name of this staging (the sync's name); stage tables are
    /// dropped by [`Warehouse::drop_stage`].
    pub stage: String,
    /// Only look (`retl plan`): change no state at all.
    pub dry_run: bool,
}

/// How the changes are found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffMode {
    /// Model rows against the snapshot of the last delivered state.
    Normal,
    /// Every record the given sync extracted, with the model's current values;
    /// a record the model no longer returns is staged as deleted.
    Replay { sync: String },
}

/// What the diff found; `total = added + updated + deleted + unchanged`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffCounts {
    pub model_rows: u64,
    pub snapshot_rows: u64,
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub retried: u64,
    /// The changes were not staged but are read straight from the model
    /// ([`Warehouse::changes`]): a first sync (or one after a reset), with
    /// an empty snapshot and no pending failures, where every model row is
    /// added (`added` = `model_rows`, counted by the stage).
    pub streamed: bool,
}

/// The six counts a stage query returns, in this order: added, updated,
/// deleted, retried, model rows, snapshot rows.
pub type StageCounts = (i64, i64, i64, i64, i64, i64);

impl DiffCounts {
    /// The diff's counts from a stage's; unchanged rows are the model's rows
    /// that are not changes (a replay re-sends every row: none unchanged).
    pub fn from_stage(counts: StageCounts, mode: &DiffMode) -> DiffCounts {
        let (added, updated, deleted, retried, model_rows, snapshot_rows) = counts;
        let [added, updated, deleted, retried, model_rows, snapshot_rows] =
            [added, updated, deleted, retried, model_rows, snapshot_rows].map(|n| n.max(0) as u64);
        let unchanged = match mode {
            DiffMode::Normal => model_rows.saturating_sub(added + updated),
            DiffMode::Replay { .. } => 0,
        };
        DiffCounts { model_rows, snapshot_rows, added, updated, deleted, unchanged, retried, streamed: false }
    }
}

/// One staged change, as read back page by page.
#[derive(Clone, Debug, PartialEq)]
pub struct StagedChange {
    /// Position in the stage; pages are read in order of it.
    pub position: i64,
    /// The primary key as text; `None` when the row's key is null.
    pub key: Option<String>,
    /// The row's hash (empty for deletes).
    pub hash: String,
    /// The row's JSON text, an object of its values by column in the
    /// model's column order (`None` for deletes), or why the row cannot be
    /// carried as JSON. Decoded by whoever needs its values
    /// ([`decode_row`]): most rows are only copied.
    pub row: Option<Result<String, String>>,
    pub kind: ChangeKind,
    /// An earlier sync failed to deliver this record.
    pub retried: bool,
    /// Why it is not sent as it is, when the warehouse already knows.
    pub flag: Option<StageFlag>,
}

/// What the warehouse found wrong with a staged change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageFlag {
    NullKey,
    DuplicateKey,
    /// Its retry window is over: drop it.
    Expired,
}

/// One row of the sync-run table: a sync's identity and its final (or
/// current) status as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncRun {
    pub sync: String,
    pub namespace: String,
    pub mapping: String,
    pub mapping_uid: String,
    pub model: String,
    pub destination: String,
    pub trigger: String,
    pub phase: String,
    pub started_ms: i64,
    pub completed_ms: Option<i64>,
    /// The Sync's status, serialized.
    pub status_json: String,
}

/// Filters of `retl history` (the filters of the sync overview).
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub mapping_uids: Vec<String>,
    pub phase: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// Held while one sync of a Mapping runs (see [`Warehouse::lock_sync`]).
/// Dropping it releases the lock: it is a connection or an open file of its
/// own, so the death of the process releases it too, and a killed sync
/// never keeps its Mapping locked.
pub struct SyncLock {
    _held: Box<dyn std::any::Any + Send>,
}

impl SyncLock {
    pub(crate) fn new(held: impl std::any::Any + Send) -> SyncLock {
        SyncLock { _held: Box::new(held) }
    }
}

/// How often a sync waiting for its Mapping's lock tries again.
pub(crate) const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A warehouse: runs models and keeps sync state.
#[async_trait]
pub trait Warehouse: Send + Sync {
    /// Checks that the warehouse answers (without reading model data).
    async fn check(&self) -> Result<(), WarehouseError>;

    /// The columns a query returns, without reading its rows.
    async fn describe(&self, query: &str) -> Result<Vec<Column>, WarehouseError>;

    /// Creates the state tables of a Mapping if missing; idempotent.
    async fn prepare_state(&self, scope: &StateScope) -> Result<(), WarehouseError>;

    /// Forgets a Mapping's snapshot and pending failures (the next sync
    /// sends everything as added). The record log and runs stay as history.
    async fn reset(&self, scope: &StateScope) -> Result<(), WarehouseError>;

    /// Runs the model, hashes every row and diffs it against the snapshot
    /// inside the warehouse, staging the changes for [`Self::read_stage`].
    async fn stage(&self, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError>;

    /// Reads up to `limit` staged changes after `after` (a position).
    async fn read_stage(&self, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError>;

    /// The changes of a stage, a page of up to `page` at a time, in order:
    /// read from the stage table, or for a streamed stage
    /// ([`DiffCounts::streamed`]) from the model itself as the warehouse
    /// returns it, so that the model's rows are turned into JSON while
    /// earlier ones are sent.
    fn changes<'a>(&'a self, scope: &'a StateScope, req: &'a DiffRequest, streamed: bool, page: usize) -> ChangeStream<'a> {
        let _ = (req, streamed);
        paged(self, scope, &req.stage, page)
    }

    /// Drops a stage; idempotent.
    async fn drop_stage(&self, scope: &StateScope, stage: &str) -> Result<(), WarehouseError>;

    /// Records, before batch number `batch` of a sync is sent, the keys of
    /// its records that the snapshot does not hold yet (one row per batch):
    /// once the request is out, the destination may have them, whether or
    /// not their outcome is ever committed.
    async fn mark_in_flight(&self, scope: &StateScope, sync: &str, batch: i64, keys: &[&str]) -> Result<(), WarehouseError>;

    /// Moves keys still marked in flight (a sync died between sending them
    /// and committing their outcome) into the snapshot with a hash no row
    /// has, so the next diff sends them again, or sends a delete if the model
    /// no longer returns them. Called by a sync holding the Mapping's lock,
    /// after [`Self::merge`], so no running sync's marks are touched. Returns
    /// how many keys moved.
    async fn recover_in_flight(&self, scope: &StateScope) -> Result<u64, WarehouseError>;

    /// Commits the outcomes of answered batches atomically, in O(1)
    /// statements and rows per batch: the acknowledged records as arrays,
    /// a row per rejected record and its pending failure, and the in-flight
    /// marks of `batches` cleared. The snapshot moves at [`Self::merge`].
    async fn commit(&self, scope: &StateScope, sync: &str, batches: &[i64], outcomes: &[RecordOutcome]) -> Result<(), WarehouseError>;

    /// Moves every committed record not merged yet into the snapshot, set
    /// based (acknowledged upserts and deletes; their keys leave the pending
    /// failures). A sync merges when it ends, and a sync that starts merges
    /// what a dead one left before it diffs. Returns how many records moved.
    async fn merge(&self, scope: &StateScope) -> Result<u64, WarehouseError>;

    /// What a sync's record log holds, counted (for a sync that died before
    /// it could save its counts).
    async fn log_counts(&self, scope: &StateScope, sync: &str) -> Result<Vec<LogCount>, WarehouseError>;

    /// Up to `limit` of a sync's rejected records from its record log,
    /// after skipping `offset` of them, in the order they were committed:
    /// every failed record with its error and payload, not only the samples
    /// a Sync's status holds (`kubectl retl records`, `retl records`).
    async fn failed_records(&self, scope: &StateScope, sync: &str, offset: u64, limit: u64) -> Result<Vec<LoggedFailure>, WarehouseError>;

    /// Inserts or replaces a row of the sync-run table.
    async fn save_run(&self, run: &SyncRun) -> Result<(), WarehouseError>;

    /// Runs matching a filter, newest first.
    async fn runs(&self, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError>;

    /// Whether the sync-run table holds `sync` of this Mapping.
    async fn has_run(&self, scope: &StateScope, sync: &str) -> Result<bool, WarehouseError>;

    /// Deletes record-log entries and runs of a Mapping older than a time.
    async fn prune(&self, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError>;

    /// Takes the lock that lets one sync of a Mapping run at a time, waiting
    /// up to `wait` for it; `None` when another sync held it all along. A
    /// sync holds it from before it looks for abandoned syncs to after it
    /// saved its outcome.
    async fn lock_sync(&self, scope: &StateScope, wait: std::time::Duration) -> Result<Option<SyncLock>, WarehouseError>;

    /// Runs one statement as given (the `retl sql` command).
    async fn execute(&self, sql: &str) -> Result<u64, WarehouseError>;

    /// The model's row with primary key `key` (its text, as a sync shows
    /// keys), or its first row with a non-null key, as a sync would carry
    /// it (`retl test`). At most two rows for a key, so that a duplicate
    /// shows; none when there is no such row. Reads `req`'s query, primary
    /// key and columns, nothing else; touches no state.
    async fn sample_row(&self, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError>;
}

/// Pages of staged changes, as [`Warehouse::changes`] reads them.
pub type ChangeStream<'a> = futures::stream::BoxStream<'a, Result<Vec<StagedChange>, WarehouseError>>;

/// A stage table's changes, page by page by position.
pub fn paged<'a, W: Warehouse + ?Sized>(wh: &'a W, scope: &'a StateScope, stage: &'a str, page: usize) -> ChangeStream<'a> {
    Box::pin(futures::stream::try_unfold(0i64, move |after| async move {
        let changes = wh.read_stage(scope, stage, after, page).await?;
        Ok(changes.last().map(|last| last.position).map(|next| (changes, next)))
    }))
}

/// The primary key must be one of the columns, and column names must be unique.
pub fn check_columns(req: &DiffRequest) -> Result<(), WarehouseError> {
    let mut seen = std::collections::HashSet::new();
    for c in &req.columns {
        if !seen.insert(c.name.as_str()) {
            return Err(WarehouseError::DuplicateColumn { column: c.name.clone() });
        }
    }
    if !seen.contains(req.primary_key.as_str()) {
        return Err(WarehouseError::MissingPrimaryKey {
            column: req.primary_key.clone(),
            columns: req.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(())
}

/// Now, in unix milliseconds: the time state rows are stamped with.
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// What a stage says it found wrong with a change (`null_key`,
/// `duplicate_key`, `expired`), as stored.
pub(crate) fn parse_flag(flag: &str) -> Option<StageFlag> {
    match flag {
        "null_key" => Some(StageFlag::NullKey),
        "duplicate_key" => Some(StageFlag::DuplicateKey),
        "expired" => Some(StageFlag::Expired),
        _ => None,
    }
}
