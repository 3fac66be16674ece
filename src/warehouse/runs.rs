//! The sync-run table's rows, bound and read the same way in every dialect
//! (only the statements around them differ).

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use super::SyncRun;

/// The columns of the sync-run table, in the order [`bind`] binds them.
pub const COLUMNS: &str =
    "namespace, sync, mapping, mapping_uid, model, destination, trigger_kind, phase, started_ms, completed_ms, status_json";

/// Binds a run's values in [`COLUMNS`] order.
pub fn bind<'q, DB>(q: Query<'q, DB, DB::Arguments>, run: &'q SyncRun) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    for<'e> &'e String: Encode<'e, DB> + Type<DB>,
    for<'e> i64: Encode<'e, DB> + Type<DB>,
    for<'e> Option<i64>: Encode<'e, DB> + Type<DB>,
{
    q.bind(&run.namespace)
        .bind(&run.sync)
        .bind(&run.mapping)
        .bind(&run.mapping_uid)
        .bind(&run.model)
        .bind(&run.destination)
        .bind(&run.trigger)
        .bind(&run.phase)
        .bind(run.started_ms)
        .bind(run.completed_ms)
        .bind(&run.status_json)
}

/// Reads a run from a row that has the [`COLUMNS`].
pub fn read<'r, R>(r: &'r R) -> Result<SyncRun, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(SyncRun {
        namespace: r.try_get("namespace")?,
        sync: r.try_get("sync")?,
        mapping: r.try_get("mapping")?,
        mapping_uid: r.try_get("mapping_uid")?,
        model: r.try_get("model")?,
        destination: r.try_get("destination")?,
        trigger: r.try_get("trigger_kind")?,
        phase: r.try_get("phase")?,
        started_ms: r.try_get("started_ms")?,
        completed_ms: r.try_get("completed_ms")?,
        status_json: r.try_get("status_json")?,
    })
}
