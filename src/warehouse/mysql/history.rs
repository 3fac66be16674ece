//! MySQL/MariaDB: what a sync leaves for people to read — its record log
//! (counts and failed records), the sync-run table — with pruning after the
//! retry window, and the lock that lets one sync of a Mapping run at a time.

use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection, MySql, QueryBuilder};

use super::state::Store;
use crate::warehouse::record_log::{failed_records_sql, log_counts_sql, page_bounds, read_failed_records, read_log_counts};
use crate::warehouse::{HistoryFilter, LogCount, LoggedFailure, StateScope, SyncLock, SyncRun, WarehouseError};

pub async fn log_counts(st: &Store, scope: &StateScope, sync: &str) -> Result<Vec<LogCount>, WarehouseError> {
    let sql = log_counts_sql(&st.table("records", scope), &st.table("acks", scope), ["?", "?"], "SIGNED");
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(sync).fetch_all(&st.pool).await.map_err(|e| st.error("read", e))?;
    read_log_counts(&rows).map_err(|e| st.error("read", e))
}

pub async fn failed_records(
    st: &Store,
    scope: &StateScope,
    sync: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<LoggedFailure>, WarehouseError> {
    let sql = failed_records_sql(&st.table("records", scope), "CONVERT(k USING utf8mb4)", ["?", "?", "?"]);
    let (limit, offset) = page_bounds(offset, limit);
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(limit).bind(offset).fetch_all(&st.pool).await;
    read_failed_records(&rows.map_err(|e| st.error("read", e))?).map_err(|e| st.error("read", e))
}

pub async fn save_run(st: &Store, run: &SyncRun) -> Result<(), WarehouseError> {
    let sql = format!(
        "INSERT INTO {} ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON DUPLICATE KEY UPDATE mapping = VALUES(mapping), mapping_uid = VALUES(mapping_uid), model = VALUES(model),
         destination = VALUES(destination), trigger_kind = VALUES(trigger_kind), phase = VALUES(phase),
         started_ms = VALUES(started_ms), completed_ms = VALUES(completed_ms), status_json = VALUES(status_json)",
        st.runs_table(),
        crate::warehouse::runs::COLUMNS
    );
    crate::warehouse::runs::bind(sqlx::query(AssertSqlSafe(sql)), run).execute(&st.pool).await.map(|_| ()).map_err(|e| st.error("saved", e))
}

pub async fn runs(st: &Store, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
    if filter.mapping_uids.is_empty() {
        return Ok(Vec::new());
    }
    let err = |e| st.error("read", e);
    let exists: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'sync_runs'")
            .bind(&st.db_name)
            .fetch_one(&st.pool)
            .await
            .map_err(err)?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let mut q =
        QueryBuilder::<MySql>::new(format!("SELECT {} FROM {} WHERE mapping_uid IN (", crate::warehouse::runs::COLUMNS, st.runs_table()));
    let mut list = q.separated(", ");
    for uid in &filter.mapping_uids {
        list.push_bind(uid);
    }
    q.push(")");
    if let Some(phase) = &filter.phase {
        q.push(" AND phase = ").push_bind(phase);
    }
    if let Some(since) = filter.since_ms {
        q.push(" AND started_ms >= ").push_bind(since);
    }
    if let Some(until) = filter.until_ms {
        q.push(" AND started_ms <= ").push_bind(until);
    }
    q.push(" ORDER BY started_ms DESC, sync DESC");
    let rows = q.build().fetch_all(&st.pool).await.map_err(err)?;
    rows.iter().map(|r| crate::warehouse::runs::read(r).map_err(err)).collect()
}

/// Deletes record-log entries and runs of a Mapping older than a time
/// (acks only once merged: the snapshot has taken them in).
pub async fn prune(st: &Store, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError> {
    let err = |e| st.error("pruned", e);
    for sql in [
        format!("DELETE FROM {} WHERE at < ?", st.table("records", scope)),
        format!("DELETE FROM {} WHERE at < ? AND merged = 1", st.table("acks", scope)),
    ] {
        sqlx::query(AssertSqlSafe(sql)).bind(older_than_ms).execute(&st.pool).await.map_err(err)?;
    }
    sqlx::query(AssertSqlSafe(format!("DELETE FROM {} WHERE mapping_uid = ? AND started_ms < ?", st.runs_table())))
        .bind(&scope.id)
        .bind(older_than_ms)
        .execute(&st.pool)
        .await
        .map(|_| ())
        .map_err(err)
}

/// One sync per Mapping at a time: a named lock (`GET_LOCK`) on a connection
/// of its own (outside the pool, so no statement timeout cuts the wait and
/// the connection is never handed back). The server releases it when that
/// connection closes, which the death of the process holding it does too.
pub async fn lock_sync(st: &Store, scope: &StateScope, wait: std::time::Duration) -> Result<Option<SyncLock>, WarehouseError> {
    let err = |e| st.error("locked", e);
    let mut conn = MySqlConnection::connect_with(&st.options).await.map_err(err)?;
    // Lock names are at most 64 characters: a hash of the database and the
    // Mapping's scope stands for both.
    let id = format!("{}/{}", st.db_name, scope.id);
    let name = format!("retl-sync-{:032x}", xxhash_rust::xxh3::xxh3_128(id.as_bytes()));
    // GET_LOCK waits whole seconds (at least the wait asked for).
    let secs = wait.as_millis().div_ceil(1000) as i64;
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)").bind(&name).bind(secs).fetch_one(&mut conn).await.map_err(err)?;
    if got == Some(1) {
        return Ok(Some(SyncLock::new(conn)));
    }
    let _ = conn.close().await;
    Ok(None)
}

/// Whether the sync-run table holds `sync` of this Mapping (a replay's target must).
pub async fn has_run(st: &Store, scope: &StateScope, sync: &str) -> Result<bool, WarehouseError> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE sync = ? AND mapping_uid = ?)", st.runs_table());
    let found: i64 =
        sqlx::query_scalar(AssertSqlSafe(sql)).bind(sync).bind(&scope.id).fetch_one(&st.pool).await.map_err(|e| st.error("read", e))?;
    Ok(found != 0)
}
