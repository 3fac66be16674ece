//! PostgreSQL: what a sync leaves for people to read — its record log (counts
//! and failed records), the sync-run table — with pruning after the retry
//! window, and the lock that lets one sync of a Mapping run at a time.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::state::Store;
use crate::warehouse::record_log::{failed_records_sql, log_counts_sql, page_bounds, read_failed_records, read_log_counts};
use crate::warehouse::{HistoryFilter, LOCK_POLL, LogCount, LoggedFailure, StateScope, SyncLock, SyncRun, WarehouseError};

pub async fn log_counts(st: &Store, scope: &StateScope, sync: &str) -> Result<Vec<LogCount>, WarehouseError> {
    let sql = log_counts_sql(&st.table("records", scope), &st.table("acks", scope), ["$1", "$1"], "bigint");
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).fetch_all(&st.pool).await.map_err(|e| st.error("read", e))?;
    read_log_counts(&rows).map_err(|e| st.error("read", e))
}

pub async fn failed_records(
    st: &Store,
    scope: &StateScope,
    sync: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<LoggedFailure>, WarehouseError> {
    let sql = failed_records_sql(&st.table("records", scope), "k", ["$1", "$2", "$3"]);
    let (limit, offset) = page_bounds(offset, limit);
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(limit).bind(offset).fetch_all(&st.pool).await;
    read_failed_records(&rows.map_err(|e| st.error("read", e))?).map_err(|e| st.error("read", e))
}

pub async fn save_run(st: &Store, run: &SyncRun) -> Result<(), WarehouseError> {
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (namespace, sync) DO UPDATE SET mapping = excluded.mapping, mapping_uid = excluded.mapping_uid,
         model = excluded.model, destination = excluded.destination, trigger_kind = excluded.trigger_kind,
         phase = excluded.phase, started_ms = excluded.started_ms, completed_ms = excluded.completed_ms,
         status_json = excluded.status_json",
        st.runs_table(),
        crate::warehouse::runs::COLUMNS
    );
    crate::warehouse::runs::bind(sqlx::query(AssertSqlSafe(sql)), run).execute(&st.pool).await.map(|_| ()).map_err(|e| st.error("saved", e))
}

pub async fn runs(st: &Store, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
    if filter.mapping_uids.is_empty() {
        return Ok(Vec::new());
    }
    let table = st.runs_table();
    let err = |e| st.error("read", e);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&table).fetch_one(&st.pool).await.map_err(err)?;
    if !exists {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {} FROM {table} WHERE mapping_uid = ANY($1) AND ($2::text IS NULL OR phase = $2)
         AND ($3::bigint IS NULL OR started_ms >= $3) AND ($4::bigint IS NULL OR started_ms <= $4)
         ORDER BY started_ms DESC, sync DESC",
        crate::warehouse::runs::COLUMNS
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(&filter.mapping_uids)
        .bind(&filter.phase)
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .fetch_all(&st.pool)
        .await
        .map_err(err)?;
    rows.iter().map(|r| crate::warehouse::runs::read(r).map_err(err)).collect()
}

/// Deletes record-log entries and runs of a Mapping older than a time
/// (acks only once merged: the snapshot has taken them in).
pub async fn prune(st: &Store, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError> {
    let err = |e| st.error("pruned", e);
    // A sync saves its run before it logs a record, and runs are pruned
    // last, so no log row is older than the oldest run: without a run to
    // prune there is nothing to look for (the records' BRIN index would
    // still read the newest, unsummarized part of the table).
    let due: bool = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE mapping_uid = $1 AND started_ms < $2)",
        st.runs_table()
    )))
    .bind(&scope.id)
    .bind(older_than_ms)
    .fetch_one(&st.pool)
    .await
    .map_err(err)?;
    if !due {
        return Ok(());
    }
    for sql in [
        format!("DELETE FROM {} WHERE at < $1", st.table("records", scope)),
        format!("DELETE FROM {} WHERE at < $1 AND merged", st.table("acks", scope)),
    ] {
        sqlx::query(AssertSqlSafe(sql)).bind(older_than_ms).execute(&st.pool).await.map_err(err)?;
    }
    sqlx::query(AssertSqlSafe(format!("DELETE FROM {} WHERE mapping_uid = $1 AND started_ms < $2", st.runs_table())))
        .bind(&scope.id)
        .bind(older_than_ms)
        .execute(&st.pool)
        .await
        .map(|_| ())
        .map_err(err)
}

/// One sync per Mapping at a time: a session-level advisory lock on a
/// connection of its own (outside the pool, so no other statement ever runs
/// on it and it is never handed back). The server releases it when that
/// connection closes, which the death of the process holding it does too.
pub async fn lock_sync(st: &Store, scope: &StateScope, wait: std::time::Duration) -> Result<Option<SyncLock>, WarehouseError> {
    let err = |e| st.error("locked", e);
    let mut conn = PgConnection::connect_with(&st.options).await.map_err(err)?;
    let key = format!("retl sync {} {}", st.schema_name, scope.id);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .fetch_one(&mut conn)
            .await
            .map_err(err)?;
        if got {
            return Ok(Some(SyncLock::new(conn)));
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = conn.close().await;
            return Ok(None);
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

/// Whether the sync-run table holds `sync` of this Mapping (a replay's target must).
pub async fn has_run(st: &Store, scope: &StateScope, sync: &str) -> Result<bool, WarehouseError> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE sync = $1 AND mapping_uid = $2)", st.runs_table());
    sqlx::query_scalar(AssertSqlSafe(sql)).bind(sync).bind(&scope.id).fetch_one(&st.pool).await.map_err(|e| st.error("read", e))
}
