//! SQLite: retl's state tables (created on first use, upgraded in place),
//! what a sync writes as it goes (in-flight marks, commits) and the merge of
//! its acknowledged records into the snapshot.
//!
//! SQLite has no schemas: the tables live in the database file with
//! `stateSchema` as a name prefix. State layout 2 as in the server dialects
//! (docs/warehouses.md): acknowledged records are committed as one `acks`
//! row per batch and operation, `[key, hash]` pairs in a JSON array read
//! back with `json_each`; only rejected records get a row each.

use std::path::PathBuf;

use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Executor};

use crate::warehouse::batch_plan::BatchPlan;
use crate::warehouse::rows::quote_ident;
use crate::warehouse::state_tx::StateTx;
use crate::warehouse::{RecordOutcome, StateScope, WarehouseError, now_ms};

/// Version of the state layout this build writes: 2 keeps acknowledged
/// records as arrays (layout 1 had a row per record and per in-flight key).
const LAYOUT_VERSION: i64 = 2;

/// Where a Source's state lives.
pub(super) struct Store {
    pub pool: SqlitePool,
    /// `stateSchema`, made a safe table-name prefix.
    pub prefix: String,
    /// The database file: lock files go beside it.
    pub path: PathBuf,
}

pub(super) fn state_err(action: &'static str, e: sqlx::Error) -> WarehouseError {
    WarehouseError::State { action, message: e.to_string() }
}

impl Store {
    /// A per-Mapping state table: `snapshot`, `pending`, `records`, `acks`,
    /// `flight`, or the view `log`.
    pub fn table(&self, name: &str, scope: &StateScope) -> String {
        quote_ident(&self.name(name, scope))
    }

    /// A per-Mapping table's name, unquoted.
    pub fn name(&self, name: &str, scope: &StateScope) -> String {
        format!("{}_{}_{}", self.prefix, name, scope.id)
    }

    pub fn runs_table(&self) -> String {
        quote_ident(&format!("{}_sync_runs", self.prefix))
    }

    pub async fn exec(&self, action: &'static str, sql: String) -> Result<u64, WarehouseError> {
        self.pool.execute(AssertSqlSafe(sql)).await.map(|r| r.rows_affected()).map_err(|e| state_err(action, e))
    }

    pub async fn count(&self, sql: String) -> Result<u64, WarehouseError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&self.pool).await.map_err(|e| state_err("read", e))?;
        Ok(n.max(0) as u64)
    }
}

/// The `[key, hash]` pairs of acks rows (`a`), as rows `j` of `json_each`.
pub(super) const ACKED: &str = "json_each(a.items) AS j";
/// The key and the hash of one `json_each` row of [`ACKED`].
pub(super) const ACKED_KEY: &str = "json_extract(j.value, '$[0]')";
const ACKED_HASH: &str = "json_extract(j.value, '$[1]')";

/// Creates (or upgrades) the state tables of one Mapping, in one
/// transaction that holds the write lock from its first statement: two runs
/// of one Mapping starting together (two `retl run`s) take turns, instead
/// of one dropping the `log` view the other has just created.
pub async fn prepare(st: &Store, scope: &StateScope) -> Result<(), WarehouseError> {
    let err = |e| state_err("created", e);
    let mut tx = StateTx::begin_with(&st.pool, "BEGIN IMMEDIATE").await.map_err(err)?;
    let layout = quote_ident(&format!("{}_layout", st.prefix));
    tx.execute(AssertSqlSafe(format!("CREATE TABLE IF NOT EXISTS {layout} (version INTEGER NOT NULL)"))).await.map_err(err)?;
    let version: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT MAX(version) FROM {layout}")))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| state_err("read", e))?;
    if let Some(v) = version
        && v > LAYOUT_VERSION
    {
        return Err(WarehouseError::State {
            action: "used",
            message: format!(
                "the state tables {}_* were written by a newer retl (layout {v}, this build knows {LAYOUT_VERSION}); \
                 upgrade retl, or set another stateSchema",
                st.prefix
            ),
        });
    }
    let t = |name: &str| st.table(name, scope);
    let (s, p, r, a, f, l) = (t("snapshot"), t("pending"), t("records"), t("acks"), t("flight"), t("log"));
    let is_table = |name: &str| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?").bind(st.name(name, scope))
    };
    // Layout 1 kept a row per record in `log`: it becomes `records`.
    if is_table("log").fetch_one(&mut *tx).await.map_err(err)? > 0 {
        tx.execute(AssertSqlSafe(format!("ALTER TABLE {l} RENAME TO {r}"))).await.map_err(err)?;
    }
    let ri = quote_ident(&format!("{}_log_{}_sync", st.prefix, scope.id));
    let ai = quote_ident(&format!("{}_acks_{}_sync", st.prefix, scope.id));
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {s} (k TEXT PRIMARY KEY, h TEXT NOT NULL, delivered_at INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS {p} (k TEXT PRIMARY KEY, first_failed_at INTEGER NOT NULL, last_failed_at INTEGER NOT NULL,
             attempts INTEGER NOT NULL, last_code TEXT, last_error TEXT);
         CREATE TABLE IF NOT EXISTS {r} (sync TEXT NOT NULL, k TEXT, op TEXT NOT NULL, outcome TEXT NOT NULL,
             code TEXT, error TEXT, payload TEXT, at INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS {ri} ON {r} (sync);
         CREATE TABLE IF NOT EXISTS {a} (id INTEGER PRIMARY KEY AUTOINCREMENT, sync TEXT NOT NULL, at INTEGER NOT NULL,
             op TEXT NOT NULL, outcome TEXT NOT NULL, code TEXT, n INTEGER NOT NULL, items TEXT NOT NULL,
             merged INTEGER NOT NULL DEFAULT 0);
         CREATE INDEX IF NOT EXISTS {ai} ON {a} (sync);
         CREATE TABLE IF NOT EXISTS {f} (sync TEXT NOT NULL, batch INTEGER NOT NULL, items TEXT NOT NULL, at INTEGER NOT NULL,
             PRIMARY KEY (sync, batch));
         DROP VIEW IF EXISTS {l};
         CREATE VIEW {l} AS
           SELECT sync, k, op, outcome, code, error, payload, at FROM {r}
           UNION ALL
           SELECT a.sync, {ACKED_KEY}, a.op, a.outcome, a.code, NULL, NULL, a.at FROM {a} a, {ACKED};
         CREATE TABLE IF NOT EXISTS {runs} (namespace TEXT NOT NULL, sync TEXT NOT NULL, mapping TEXT NOT NULL,
             mapping_uid TEXT NOT NULL, model TEXT NOT NULL, destination TEXT NOT NULL, trigger_kind TEXT NOT NULL,
             phase TEXT NOT NULL, started_ms INTEGER NOT NULL, completed_ms INTEGER, status_json TEXT NOT NULL,
             PRIMARY KEY (namespace, sync));",
        runs = st.runs_table()
    );
    tx.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await.map_err(err)?;
    // Layout 1 marked each key in flight: one mark per sync now.
    if is_table("inflight").fetch_one(&mut *tx).await.map_err(err)? > 0 {
        let old = t("inflight");
        tx.execute(AssertSqlSafe(format!(
            "INSERT OR IGNORE INTO {f} (sync, batch, items, at) SELECT sync, -1, json_group_array(k), MAX(at) FROM {old} GROUP BY sync"
        )))
        .await
        .map_err(err)?;
        tx.execute(AssertSqlSafe(format!("DROP TABLE {old}"))).await.map_err(err)?;
    }
    let set = match version {
        None => format!("INSERT INTO {layout} (version) VALUES ({LAYOUT_VERSION})"),
        Some(_) => format!("UPDATE {layout} SET version = {LAYOUT_VERSION}"),
    };
    tx.execute(AssertSqlSafe(set)).await.map_err(err)?;
    tx.commit().await.map_err(err)
}

/// JSON text of an array, for an ack's or a mark's `items`.
fn json_array<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string())
}

/// Commits answered batches in one transaction: an `acks` row per operation
/// and outcome, a row per rejected record and its pending failure, and the
/// batches' in-flight marks cleared.
pub async fn commit(st: &Store, scope: &StateScope, sync: &str, batches: &[i64], outcomes: &[RecordOutcome]) -> Result<(), WarehouseError> {
    let plan = BatchPlan::new(outcomes);
    let [p, r, a, f] = ["pending", "records", "acks", "flight"].map(|t| st.table(t, scope));
    let now = now_ms();
    let err = |e| state_err("committed", e);
    let mut tx = StateTx::begin(&st.pool).await.map_err(err)?;
    let insert_ack = format!("INSERT INTO {a} (sync, at, op, outcome, code, n, items) VALUES (?, ?, ?, ?, ?, ?, ?)");
    for g in &plan.acks {
        let pairs: Vec<(&str, &str)> = g.keys.iter().copied().zip(g.hashes.iter().copied()).collect();
        sqlx::query(AssertSqlSafe(insert_ack.as_str()))
            .bind(sync)
            .bind(now)
            .bind(g.op)
            .bind(g.outcome)
            .bind(g.code)
            .bind(g.keys.len() as i64)
            .bind(json_array(&pairs))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    let upsert_pending = format!(
        "INSERT INTO {p} (k, first_failed_at, last_failed_at, attempts, last_code, last_error) VALUES (?, ?, ?, 1, ?, ?)
         ON CONFLICT (k) DO UPDATE SET last_failed_at = excluded.last_failed_at, attempts = attempts + 1,
         last_code = excluded.last_code, last_error = excluded.last_error"
    );
    for (k, code, message) in &plan.pending {
        sqlx::query(AssertSqlSafe(upsert_pending.as_str()))
            .bind(*k)
            .bind(now)
            .bind(now)
            .bind(*code)
            .bind(*message)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    let insert_log = format!("INSERT INTO {r} (sync, k, op, outcome, code, error, payload, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    for e in &plan.log_rows {
        sqlx::query(AssertSqlSafe(insert_log.as_str()))
            .bind(sync)
            .bind(e.key)
            .bind(e.op)
            .bind(e.outcome)
            .bind(e.code)
            .bind(e.error)
            .bind(e.payload)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    let clear = format!("DELETE FROM {f} WHERE sync = ? AND batch = ?");
    for b in batches {
        sqlx::query(AssertSqlSafe(clear.as_str())).bind(sync).bind(*b).execute(&mut *tx).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

/// The hash of a snapshot entry whose record may or may not have reached the
/// destination (a recovered in-flight key): xxh3 in hex is never empty, so
/// the record counts as changed.
const UNKNOWN_HASH: &str = "''";

/// Marks a batch's new keys as in flight before it is sent: one row.
pub async fn mark_in_flight(st: &Store, scope: &StateScope, sync: &str, batch: i64, keys: &[&str]) -> Result<(), WarehouseError> {
    let sql = format!("INSERT OR REPLACE INTO {} (sync, batch, items, at) VALUES (?, ?, ?, ?)", st.table("flight", scope));
    sqlx::query(AssertSqlSafe(sql))
        .bind(sync)
        .bind(batch)
        .bind(json_array(keys))
        .bind(now_ms())
        .execute(&st.pool)
        .await
        .map(|_| ())
        .map_err(|e| state_err("updated", e))
}

/// Moves keys still marked in flight into the snapshot with a hash no row
/// has (see [`crate::warehouse::Warehouse::recover_in_flight`]).
pub async fn recover_in_flight(st: &Store, scope: &StateScope) -> Result<u64, WarehouseError> {
    let (s, f) = (st.table("snapshot", scope), st.table("flight", scope));
    let mut tx = StateTx::begin(&st.pool).await.map_err(|e| state_err("updated", e))?;
    // A key the snapshot already holds keeps its entry: that record was an
    // update or a delete, which the next diff finds anyway.
    let moved = tx
        .execute(AssertSqlSafe(format!(
            "INSERT OR IGNORE INTO {s} (k, h, delivered_at) SELECT j.value, {UNKNOWN_HASH}, {} FROM {f} f, json_each(f.items) AS j",
            now_ms()
        )))
        .await
        .map_err(|e| state_err("updated", e))?
        .rows_affected();
    tx.execute(AssertSqlSafe(format!("DELETE FROM {f}"))).await.map_err(|e| state_err("updated", e))?;
    tx.commit().await.map_err(|e| state_err("updated", e))?;
    Ok(moved)
}

/// Merges every sync's acknowledged records not merged yet into the
/// snapshot, one sync at a time in the order they were committed, each in
/// one transaction; returns how many records moved. An empty snapshot (a
/// first sync, a reset) is made anew and its unique index built after the
/// rows are in.
pub async fn merge(st: &Store, scope: &StateScope) -> Result<u64, WarehouseError> {
    let [s, p, a] = ["snapshot", "pending", "acks"].map(|t| st.table(t, scope));
    let syncs: Vec<String> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT sync FROM {a} WHERE merged = 0 GROUP BY sync ORDER BY MIN(id)")))
            .fetch_all(&st.pool)
            .await
            .map_err(|e| state_err("read", e))?;
    let acked = format!("{a} a, {ACKED} WHERE a.sync = ? AND a.merged = 0");
    let upserts = format!("SELECT {ACKED_KEY}, {ACKED_HASH}, a.at FROM {acked} AND a.op <> 'deleted'");
    let index = quote_ident(&format!("{}_snapshot_{}_k", st.prefix, scope.id));
    let mut moved = 0;
    for sync in syncs {
        let err = |e| state_err("merged", e);
        let mut tx = StateTx::begin(&st.pool).await.map_err(err)?;
        let empty: bool =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT NOT EXISTS (SELECT 1 FROM {s})"))).fetch_one(&mut *tx).await.map_err(err)?;
        // Statements with the sync's name bound, and whether they move records.
        let mut statements: Vec<(String, bool, bool)> = if empty {
            vec![
                (format!("DROP TABLE {s}"), false, false),
                (format!("CREATE TABLE {s} (k TEXT NOT NULL, h TEXT NOT NULL, delivered_at INTEGER NOT NULL)"), false, false),
                (format!("INSERT INTO {s} (k, h, delivered_at) {upserts}"), true, true),
                (format!("CREATE UNIQUE INDEX {index} ON {s} (k)"), false, false),
            ]
        } else {
            vec![
                (
                    format!(
                        "INSERT INTO {s} (k, h, delivered_at) {upserts}
                         ON CONFLICT (k) DO UPDATE SET h = excluded.h, delivered_at = excluded.delivered_at"
                    ),
                    true,
                    true,
                ),
                (format!("DELETE FROM {s} WHERE k IN (SELECT {ACKED_KEY} FROM {acked} AND a.op = 'deleted')"), true, true),
            ]
        };
        statements.push((format!("DELETE FROM {p} WHERE k IN (SELECT {ACKED_KEY} FROM {acked})"), true, false));
        statements.push((format!("UPDATE {a} SET merged = 1 WHERE sync = ? AND merged = 0"), true, false));
        for (sql, bound, moves) in statements {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            if bound {
                q = q.bind(&sync);
            }
            let n = q.execute(&mut *tx).await.map_err(err)?.rows_affected();
            if moves {
                moved += n;
            }
        }
        tx.commit().await.map_err(err)?;
    }
    Ok(moved)
}
