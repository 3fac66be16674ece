//! MySQL/MariaDB: retl's state database — created on first use, upgraded in
//! place — the per-batch commit and the sync-run table.

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, Connection, Executor, MySql, QueryBuilder};

use super::mysql::{MysqlWarehouse, quote};
use super::server::{CommitPlan, now_ms};
use super::{HistoryFilter, StateScope, SyncLock, SyncRun, WarehouseError};

/// Version of the state layout this build writes.
const LAYOUT_VERSION: i32 = 1;

/// In-place upgrades of the shared tables, by target version (none yet).
const UPGRADES: &[(i32, &str)] = &[];

/// Rows per multi-row statement (well under MySQL's 65535 placeholders).
const CHUNK: usize = 1000;

/// Creates (or upgrades) the state database and the tables of one Mapping,
/// under a named lock so that syncs starting together do not race.
pub async fn prepare(wh: &MysqlWarehouse, scope: &StateScope) -> Result<(), WarehouseError> {
    let err = |e| wh.state_err("created", e);
    let db = &wh.db;
    let mut conn = wh.pool.acquire().await.map_err(err)?;
    let lock = format!("retl state {}", wh.db_name);
    sqlx::query("SELECT GET_LOCK(?, 60)").bind(&lock).execute(&mut *conn).await.map_err(err)?;
    let result = async {
        // CREATE DATABASE IF NOT EXISTS needs a global right even when the
        // database exists, so look first.
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(&wh.db_name)
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
        if exists == 0 {
            conn.execute(AssertSqlSafe(format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"))).await.map_err(err)?;
        }
        let [s, p, l] = ["snapshot", "pending", "log"].map(|t| wh.table(t, scope));
        let li = quote(&format!("log_{}_sync", scope.id));
        let la = quote(&format!("log_{}_at", scope.id));
        let statements = [
            format!("CREATE TABLE IF NOT EXISTS {db}.layout (version INT NOT NULL) ENGINE=InnoDB"),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (namespace VARCHAR(253) NOT NULL, sync VARCHAR(253) NOT NULL,
                 mapping VARCHAR(253) NOT NULL, mapping_uid VARCHAR(64) NOT NULL, model VARCHAR(253) NOT NULL,
                 destination VARCHAR(253) NOT NULL, trigger_kind VARCHAR(32) NOT NULL, phase VARCHAR(32) NOT NULL,
                 started_ms BIGINT NOT NULL, completed_ms BIGINT NULL, status_json LONGTEXT NOT NULL,
                 PRIMARY KEY (namespace, sync), INDEX (mapping_uid, started_ms)) ENGINE=InnoDB CHARACTER SET utf8mb4",
                wh.runs_table()
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {s} (k VARBINARY(1024) PRIMARY KEY, h CHAR(32) CHARACTER SET ascii NOT NULL,
                 delivered_at BIGINT NOT NULL) ENGINE=InnoDB"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p} (k VARBINARY(1024) PRIMARY KEY, first_failed_at BIGINT NOT NULL,
                 last_failed_at BIGINT NOT NULL, attempts INT NOT NULL, last_code VARCHAR(255) NULL, last_error TEXT NULL)
                 ENGINE=InnoDB CHARACTER SET utf8mb4"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {l} (sync VARCHAR(253) NOT NULL, k VARBINARY(1024) NULL, op VARCHAR(8) NOT NULL,
                 outcome VARCHAR(16) NOT NULL, code VARCHAR(255) NULL, error TEXT NULL, payload LONGTEXT NULL,
                 at BIGINT NOT NULL, INDEX {li} (sync), INDEX {la} (at)) ENGINE=InnoDB CHARACTER SET utf8mb4"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (k VARBINARY(1024) PRIMARY KEY, sync VARCHAR(253) NOT NULL, at BIGINT NOT NULL)
                 ENGINE=InnoDB CHARACTER SET utf8mb4",
                wh.table("inflight", scope)
            ),
        ];
        for sql in statements {
            conn.execute(AssertSqlSafe(sql)).await.map_err(err)?;
        }
        let version: Option<i32> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT MAX(version) FROM {db}.layout"))).fetch_one(&mut *conn).await.map_err(err)?;
        match version {
            Some(v) if v > LAYOUT_VERSION => Err(WarehouseError::State {
                action: "used",
                message: format!(
                    "the state database {db} was written by a newer retl (layout {v}, this build knows {LAYOUT_VERSION}); \
                     upgrade retl, or point stateSchema at another database"
                ),
            }),
            Some(v) => {
                for (_, sql) in UPGRADES.iter().filter(|(to, _)| *to > v) {
                    conn.execute(AssertSqlSafe(sql.replace("{db}", db))).await.map_err(err)?;
                }
                if v < LAYOUT_VERSION {
                    sqlx::query(AssertSqlSafe(format!("UPDATE {db}.layout SET version = ?")))
                        .bind(LAYOUT_VERSION)
                        .execute(&mut *conn)
                        .await
                        .map_err(err)?;
                }
                Ok(())
            }
            None => sqlx::query(AssertSqlSafe(format!("INSERT INTO {db}.layout (version) VALUES (?)")))
                .bind(LAYOUT_VERSION)
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(err),
        }
    }
    .await;
    let _ = sqlx::query("SELECT RELEASE_LOCK(?)").bind(&lock).execute(&mut *conn).await;
    result
}

/// Commits one batch in one transaction, a few multi-row statements each.
pub async fn commit(wh: &MysqlWarehouse, scope: &StateScope, sync: &str, plan: &CommitPlan<'_>) -> Result<(), WarehouseError> {
    let [s, p, l] = ["snapshot", "pending", "log"].map(|t| wh.table(t, scope));
    let now = now_ms();
    let err = |e| wh.state_err("committed", e);
    let mut tx = super::state_tx::StateTx::begin(&wh.pool).await.map_err(err)?;
    for chunk in plan.upsert_snapshot.chunks(CHUNK) {
        let mut q = QueryBuilder::<MySql>::new(format!("INSERT INTO {s} (k, h, delivered_at) "));
        q.push_values(chunk, |mut b, (k, h)| {
            b.push_bind(*k).push_bind(*h).push_bind(now);
        });
        q.push(" ON DUPLICATE KEY UPDATE h = VALUES(h), delivered_at = VALUES(delivered_at)");
        q.build().execute(&mut *tx).await.map_err(err)?;
    }
    let i = wh.table("inflight", scope);
    for (table, keys) in [(&s, &plan.delete_snapshot), (&p, &plan.clear_pending), (&i, &plan.keys)] {
        for chunk in keys.chunks(CHUNK) {
            let mut q = QueryBuilder::<MySql>::new(format!("DELETE FROM {table} WHERE k IN ("));
            let mut list = q.separated(", ");
            for k in chunk {
                list.push_bind(*k);
            }
            q.push(")");
            q.build().execute(&mut *tx).await.map_err(err)?;
        }
    }
    for chunk in plan.upsert_pending.chunks(CHUNK) {
        let mut q =
            QueryBuilder::<MySql>::new(format!("INSERT INTO {p} (k, first_failed_at, last_failed_at, attempts, last_code, last_error) "));
        q.push_values(chunk, |mut b, (k, code, message)| {
            b.push_bind(*k).push_bind(now).push_bind(now).push_bind(1).push_bind(*code).push_bind(*message);
        });
        q.push(
            " ON DUPLICATE KEY UPDATE last_failed_at = VALUES(last_failed_at), attempts = attempts + 1,
              last_code = VALUES(last_code), last_error = VALUES(last_error)",
        );
        q.build().execute(&mut *tx).await.map_err(err)?;
    }
    for chunk in plan.log.chunks(CHUNK) {
        let mut q = QueryBuilder::<MySql>::new(format!("INSERT INTO {l} (sync, k, op, outcome, code, error, payload, at) "));
        q.push_values(chunk, |mut b, e| {
            b.push_bind(sync)
                .push_bind(e.key)
                .push_bind(e.op)
                .push_bind(e.outcome)
                .push_bind(e.code)
                .push_bind(e.error)
                .push_bind(e.payload)
                .push_bind(now);
        });
        q.build().execute(&mut *tx).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

/// The hash of a snapshot entry whose record may or may not have reached the
/// destination (a recovered in-flight key): MD5 in hex is never empty, so
/// the record counts as changed.
const UNKNOWN_HASH: &str = "''";

pub async fn mark_in_flight(wh: &MysqlWarehouse, scope: &StateScope, sync: &str, keys: &[&str]) -> Result<(), WarehouseError> {
    let now = now_ms();
    for chunk in keys.chunks(CHUNK) {
        let mut q = QueryBuilder::<MySql>::new(format!("INSERT INTO {} (k, sync, at) ", wh.table("inflight", scope)));
        q.push_values(chunk, |mut b, k| {
            b.push_bind(*k).push_bind(sync).push_bind(now);
        });
        q.push(" ON DUPLICATE KEY UPDATE sync = VALUES(sync), at = VALUES(at)");
        q.build().execute(&wh.pool).await.map_err(|e| wh.state_err("updated", e))?;
    }
    Ok(())
}

pub async fn recover_in_flight(wh: &MysqlWarehouse, scope: &StateScope) -> Result<u64, WarehouseError> {
    let err = |e| wh.state_err("updated", e);
    let (s, i) = (wh.table("snapshot", scope), wh.table("inflight", scope));
    let mut tx = super::state_tx::StateTx::begin(&wh.pool).await.map_err(err)?;
    // A key the snapshot already holds keeps its entry: that record was an
    // update or a delete, which the next diff finds anyway.
    let moved = sqlx::query(AssertSqlSafe(format!("INSERT IGNORE INTO {s} (k, h, delivered_at) SELECT k, {UNKNOWN_HASH}, ? FROM {i}")))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
    tx.execute(AssertSqlSafe(format!("DELETE FROM {i}"))).await.map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(moved)
}

pub async fn save_run(wh: &MysqlWarehouse, run: &SyncRun) -> Result<(), WarehouseError> {
    let sql = format!(
        "INSERT INTO {} (namespace, sync, mapping, mapping_uid, model, destination, trigger_kind, phase, started_ms,
         completed_ms, status_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON DUPLICATE KEY UPDATE mapping = VALUES(mapping), mapping_uid = VALUES(mapping_uid), model = VALUES(model),
         destination = VALUES(destination), trigger_kind = VALUES(trigger_kind), phase = VALUES(phase),
         started_ms = VALUES(started_ms), completed_ms = VALUES(completed_ms), status_json = VALUES(status_json)",
        wh.runs_table()
    );
    super::runs::bind(sqlx::query(AssertSqlSafe(sql)), run).execute(&wh.pool).await.map(|_| ()).map_err(|e| wh.state_err("saved", e))
}

pub async fn runs(wh: &MysqlWarehouse, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
    if filter.mapping_uids.is_empty() {
        return Ok(Vec::new());
    }
    let err = |e| wh.state_err("read", e);
    let exists: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'sync_runs'")
            .bind(&wh.db_name)
            .fetch_one(&wh.pool)
            .await
            .map_err(err)?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::<MySql>::new(format!(
        "SELECT namespace, sync, mapping, mapping_uid, model, destination, trigger_kind, phase, started_ms, completed_ms,
         status_json FROM {} WHERE mapping_uid IN (",
        wh.runs_table()
    ));
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
    let rows = q.build().fetch_all(&wh.pool).await.map_err(err)?;
    rows.iter().map(|r| super::runs::read(r).map_err(err)).collect()
}

/// One sync per Mapping at a time: a named lock (`GET_LOCK`) on a connection
/// of its own (outside the pool, so no statement timeout cuts the wait and
/// the connection is never handed back). The server releases it when that
/// connection closes, which the death of the process holding it does too.
pub async fn lock_sync(
    wh: &MysqlWarehouse,
    scope: &StateScope,
    options: &MySqlConnectOptions,
    wait: std::time::Duration,
) -> Result<Option<SyncLock>, WarehouseError> {
    let err = |e| wh.state_err("locked", e);
    let mut conn = MySqlConnection::connect_with(options).await.map_err(err)?;
    // Lock names are at most 64 characters: a hash of the database and the
    // Mapping's scope stands for both.
    let id = format!("{}/{}", wh.db_name, scope.id);
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
