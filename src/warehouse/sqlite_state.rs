//! SQLite: the per-batch commit, the in-flight marks, the record log's counts
//! and the sync-run table (the tables themselves are created in `sqlite`).

use sqlx::{AssertSqlSafe, Executor};

use super::sqlite::{SqliteWarehouse, now_ms, state_err};
use super::{HistoryFilter, OutcomeKind, RecordOutcome, StateScope, SyncRun, WarehouseError};
use crate::api::ChangeKind;

/// Commits one batch in one transaction, statement by statement (SQLite
/// runs them in-process: no round trips to save).
pub async fn commit(wh: &SqliteWarehouse, scope: &StateScope, sync: &str, outcomes: &[RecordOutcome]) -> Result<(), WarehouseError> {
    let (s, p, l) = (wh.table("snapshot", scope), wh.table("pending", scope), wh.table("log", scope));
    let i = wh.table("inflight", scope);
    let now = now_ms();
    let upsert_snapshot = format!(
        "INSERT INTO {s} (k, h, delivered_at) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET h = excluded.h, delivered_at = excluded.delivered_at"
    );
    let delete_snapshot = format!("DELETE FROM {s} WHERE k = ?");
    let delete_pending = format!("DELETE FROM {p} WHERE k = ?");
    let delete_in_flight = format!("DELETE FROM {i} WHERE k = ?");
    let upsert_pending = format!(
        "INSERT INTO {p} (k, first_failed_at, last_failed_at, attempts, last_code, last_error) VALUES (?, ?, ?, 1, ?, ?)
         ON CONFLICT (k) DO UPDATE SET last_failed_at = excluded.last_failed_at, attempts = attempts + 1,
         last_code = excluded.last_code, last_error = excluded.last_error"
    );
    let insert_log = format!("INSERT INTO {l} (sync, k, op, outcome, code, error, payload, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    let mut tx = super::state_tx::StateTx::begin(&wh.pool).await.map_err(|e| state_err("committed", e))?;
    for o in outcomes {
        let op = super::kind_name(o.kind);
        let (outcome, code, error, payload) = match &o.result {
            OutcomeKind::Delivered => ("delivered", None, None, None),
            OutcomeKind::Skipped { reason } => ("skipped", Some(reason.as_str()), None, None),
            OutcomeKind::Rejected { code, message, payload } => {
                ("rejected", Some(code.as_str()), Some(message.as_str()), payload.as_deref())
            }
        };
        if let Some(k) = &o.key {
            match (&o.result, o.kind) {
                (OutcomeKind::Rejected { code, message, .. }, _) => {
                    sqlx::query(AssertSqlSafe(upsert_pending.as_str()))
                        .bind(k)
                        .bind(now)
                        .bind(now)
                        .bind(code)
                        .bind(message)
                        .execute(&mut *tx)
                        .await
                }
                (_, ChangeKind::Deleted) => sqlx::query(AssertSqlSafe(delete_snapshot.as_str())).bind(k).execute(&mut *tx).await,
                (_, _) => sqlx::query(AssertSqlSafe(upsert_snapshot.as_str())).bind(k).bind(&o.hash).bind(now).execute(&mut *tx).await,
            }
            .map_err(|e| state_err("committed", e))?;
            // Its outcome is known now: no longer in flight.
            sqlx::query(AssertSqlSafe(delete_in_flight.as_str())).bind(k).execute(&mut *tx).await.map_err(|e| state_err("committed", e))?;
            if !matches!(o.result, OutcomeKind::Rejected { .. }) {
                sqlx::query(AssertSqlSafe(delete_pending.as_str()))
                    .bind(k)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| state_err("committed", e))?;
            }
        }
        sqlx::query(AssertSqlSafe(insert_log.as_str()))
            .bind(sync)
            .bind(&o.key)
            .bind(op)
            .bind(outcome)
            .bind(code)
            .bind(error)
            .bind(payload)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| state_err("committed", e))?;
    }
    tx.commit().await.map_err(|e| state_err("committed", e))
}

/// The hash of a snapshot entry whose record may or may not have reached the
/// destination (a recovered in-flight key): xxh3 in hex is never empty, so
/// the record counts as changed.
const UNKNOWN_HASH: &str = "''";

pub async fn mark_in_flight(wh: &SqliteWarehouse, scope: &StateScope, sync: &str, keys: &[&str]) -> Result<(), WarehouseError> {
    let sql = format!("INSERT OR REPLACE INTO {} (k, sync, at) VALUES (?, ?, ?)", wh.table("inflight", scope));
    let now = now_ms();
    let mut tx = super::state_tx::StateTx::begin(&wh.pool).await.map_err(|e| state_err("updated", e))?;
    for k in keys {
        sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(*k)
            .bind(sync)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| state_err("updated", e))?;
    }
    tx.commit().await.map_err(|e| state_err("updated", e))
}

pub async fn recover_in_flight(wh: &SqliteWarehouse, scope: &StateScope) -> Result<u64, WarehouseError> {
    let (s, i) = (wh.table("snapshot", scope), wh.table("inflight", scope));
    let mut tx = super::state_tx::StateTx::begin(&wh.pool).await.map_err(|e| state_err("updated", e))?;
    // A key the snapshot already holds keeps its entry: that record was an
    // update or a delete, which the next diff finds anyway.
    let moved = tx
        .execute(AssertSqlSafe(format!("INSERT OR IGNORE INTO {s} (k, h, delivered_at) SELECT k, {UNKNOWN_HASH}, {} FROM {i}", now_ms())))
        .await
        .map_err(|e| state_err("updated", e))?
        .rows_affected();
    tx.execute(AssertSqlSafe(format!("DELETE FROM {i}"))).await.map_err(|e| state_err("updated", e))?;
    tx.commit().await.map_err(|e| state_err("updated", e))?;
    Ok(moved)
}

pub async fn log_counts(wh: &SqliteWarehouse, scope: &StateScope, sync: &str) -> Result<Vec<super::LogCount>, WarehouseError> {
    let sql = super::log_counts_sql(&wh.table("log", scope), "?");
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).fetch_all(&wh.pool).await.map_err(|e| state_err("read", e))?;
    super::read_log_counts(&rows).map_err(|e| state_err("read", e))
}

pub async fn failed_records(
    wh: &SqliteWarehouse,
    scope: &StateScope,
    sync: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<super::LoggedFailure>, WarehouseError> {
    let sql = super::failed_records_sql(&wh.table("log", scope), "k", ["?", "?", "?"]);
    let (limit, offset) = super::record_log::page_bounds(offset, limit);
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(limit).bind(offset).fetch_all(&wh.pool).await;
    super::read_failed_records(&rows.map_err(|e| state_err("read", e))?).map_err(|e| state_err("read", e))
}

pub async fn save_run(wh: &SqliteWarehouse, run: &SyncRun) -> Result<(), WarehouseError> {
    let sql = format!(
        "INSERT OR REPLACE INTO {} (namespace, sync, mapping, mapping_uid, model, destination, trigger_kind, phase,
         started_ms, completed_ms, status_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        wh.runs_table()
    );
    super::runs::bind(sqlx::query(AssertSqlSafe(sql)), run).execute(&wh.pool).await.map(|_| ()).map_err(|e| state_err("saved", e))
}

pub async fn runs(wh: &SqliteWarehouse, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
    if filter.mapping_uids.is_empty() {
        return Ok(Vec::new());
    }
    let table = wh.runs_table();
    let exists =
        wh.count(format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{}'", table.trim_matches('"'))).await?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; filter.mapping_uids.len()].join(", ");
    let sql = format!(
        "SELECT namespace, sync, mapping, mapping_uid, model, destination, trigger_kind, phase, started_ms, completed_ms,
         status_json FROM {table} WHERE mapping_uid IN ({marks}) AND (? IS NULL OR phase = ?)
         AND (? IS NULL OR started_ms >= ?) AND (? IS NULL OR started_ms <= ?) ORDER BY started_ms DESC, sync DESC"
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
        .fetch_all(&wh.pool)
        .await
        .map_err(|e| state_err("read", e))?;
    rows.iter().map(|r| super::runs::read(r).map_err(|e| state_err("read", e))).collect()
}
