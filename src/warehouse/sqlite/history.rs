//! SQLite: what a sync leaves for people to read — its record log (counts
//! and failed records), the sync-run table — with pruning after the retry
//! window, and the lock that lets one sync of a Mapping run at a time.

use std::time::Duration;

use sqlx::AssertSqlSafe;

use super::state::{Store, state_err};
use crate::warehouse::record_log::{failed_records_sql, log_counts_sql, page_bounds, read_failed_records, read_log_counts};
use crate::warehouse::{HistoryFilter, LogCount, LoggedFailure, StateScope, SyncLock, SyncRun, WarehouseError};

pub async fn log_counts(st: &Store, scope: &StateScope, sync: &str) -> Result<Vec<LogCount>, WarehouseError> {
    let sql = log_counts_sql(&st.table("records", scope), &st.table("acks", scope), ["?", "?"], "INTEGER");
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(sync).fetch_all(&st.pool).await.map_err(|e| state_err("read", e))?;
    read_log_counts(&rows).map_err(|e| state_err("read", e))
}

pub async fn failed_records(
    st: &Store,
    scope: &StateScope,
    sync: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<LoggedFailure>, WarehouseError> {
    let sql = failed_records_sql(&st.table("records", scope), "k", ["?", "?", "?"]);
    let (limit, offset) = page_bounds(offset, limit);
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(limit).bind(offset).fetch_all(&st.pool).await;
    read_failed_records(&rows.map_err(|e| state_err("read", e))?).map_err(|e| state_err("read", e))
}

pub async fn save_run(st: &Store, run: &SyncRun) -> Result<(), WarehouseError> {
    let sql = format!(
        "INSERT OR REPLACE INTO {} ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        st.runs_table(),
        crate::warehouse::runs::COLUMNS
    );
    crate::warehouse::runs::bind(sqlx::query(AssertSqlSafe(sql)), run)
        .execute(&st.pool)
        .await
        .map(|_| ())
        .map_err(|e| state_err("saved", e))
}

pub async fn runs(st: &Store, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
    if filter.mapping_uids.is_empty() {
        return Ok(Vec::new());
    }
    let table = st.runs_table();
    let exists =
        st.count(format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{}'", table.trim_matches('"'))).await?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; filter.mapping_uids.len()].join(", ");
    let sql = format!(
        "SELECT {} FROM {table} WHERE mapping_uid IN ({marks}) AND (? IS NULL OR phase = ?)
         AND (? IS NULL OR started_ms >= ?) AND (? IS NULL OR started_ms <= ?) ORDER BY started_ms DESC, sync DESC",
        crate::warehouse::runs::COLUMNS
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for uid in &filter.mapping_uids {
        q = q.bind(uid);
    }
    let rows = q
        .bind(&filter.phase)
        .bind(&filter.phase)
        .bind(filter.since_ms)
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .bind(filter.until_ms)
        .fetch_all(&st.pool)
        .await
        .map_err(|e| state_err("read", e))?;
    rows.iter().map(|r| crate::warehouse::runs::read(r).map_err(|e| state_err("read", e))).collect()
}

/// Deletes record-log entries and runs of a Mapping older than a time
/// (acks only once merged: the snapshot has taken them in).
pub async fn prune(st: &Store, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError> {
    st.exec("pruned", format!("DELETE FROM {} WHERE at < {older_than_ms}", st.table("records", scope))).await?;
    st.exec("pruned", format!("DELETE FROM {} WHERE at < {older_than_ms} AND merged = 1", st.table("acks", scope))).await?;
    st.exec("pruned", format!("DELETE FROM {} WHERE mapping_uid = '{}' AND started_ms < {older_than_ms}", st.runs_table(), scope.id))
        .await
        .map(|_| ())
}

pub async fn lock_sync(st: &Store, scope: &StateScope, wait: Duration) -> Result<Option<SyncLock>, WarehouseError> {
    super::lock::lock_sync(&super::lock::lock_path(&st.path, &st.prefix, scope), wait).await
}

/// Whether the sync-run table holds `sync` of this Mapping (a replay's target must).
pub async fn has_run(st: &Store, scope: &StateScope, sync: &str) -> Result<bool, WarehouseError> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE sync = ? AND mapping_uid = ?)", st.runs_table());
    let found: i64 =
        sqlx::query_scalar(AssertSqlSafe(sql)).bind(sync).bind(&scope.id).fetch_one(&st.pool).await.map_err(|e| state_err("read", e))?;
    Ok(found != 0)
}
