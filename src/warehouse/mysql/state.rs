//! MySQL/MariaDB: retl's state database (created on first use, upgraded in
//! place), what a sync writes as it goes (in-flight marks, commits) and the
//! merge of its acknowledged records into the snapshot.
//!
//! State layout 2 (docs/warehouses.md): acknowledged records are committed
//! as one `acks` row per batch and operation, their keys and hashes in a
//! JSON array read back with `JSON_TABLE`; only rejected records get a row
//! each (`records`, and `pending`). The snapshot moves forward set-based
//! when the sync ends, or, after a crash, when the next sync starts. The
//! per-record log users query is the view `log_<uid>` over both.

use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool};
use sqlx::{AssertSqlSafe, Executor, MySql, QueryBuilder};

use crate::warehouse::batch_plan::BatchPlan;
use crate::warehouse::server::{ServerTarget, now_ms};
use crate::warehouse::state_tx::StateTx;
use crate::warehouse::{RecordOutcome, StateScope, WarehouseError};

/// Version of the state layout this build writes: 2 keeps acknowledged
/// records as arrays (layout 1 had a row per record and per in-flight key).
const LAYOUT_VERSION: i32 = 2;

/// Rows per multi-row statement (well under MySQL's 65535 placeholders).
pub(super) const CHUNK: usize = 1000;

/// Quotes a MySQL identifier with backticks (works whatever the sql_mode).
pub(super) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal that means the same under every sql_mode (with or
/// without NO_BACKSLASH_ESCAPES): plain when it is harmless, hex otherwise.
pub(super) fn text(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || " _-.:,$@{}\"".contains(c)) && !s.contains('\\') {
        format!("'{s}'")
    } else {
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        format!("_utf8mb4 X'{hex}'")
    }
}

/// The rows of a JSON array of `[key, hash]` pairs (an ack's `items`) or of
/// keys (an in-flight mark's), as a `JSON_TABLE`.
pub(super) fn items(column: &str, pairs: bool) -> String {
    let (k, h) = if pairs { ("$[0]", ", h CHAR(32) CHARACTER SET ascii PATH '$[1]'") } else { ("$", "") };
    format!("JSON_TABLE({column}, '$[*]' COLUMNS (k VARCHAR(1024) CHARACTER SET utf8mb4 PATH '{k}'{h})) AS j")
}

/// Where a Source's state lives, and how its errors read.
pub(super) struct Store {
    pub pool: MySqlPool,
    pub options: MySqlConnectOptions,
    pub target: ServerTarget,
    /// `stateSchema` (a database), as given and quoted.
    pub db_name: String,
    pub db: String,
}

impl Store {
    /// A per-Mapping state table: `snapshot`, `pending`, `records`, `acks`,
    /// `flight`, or the view `log`.
    pub fn table(&self, name: &str, scope: &StateScope) -> String {
        format!("{}.{}", self.db, quote(&format!("{name}_{}", scope.id)))
    }

    pub fn runs_table(&self) -> String {
        format!("{}.sync_runs", self.db)
    }

    pub fn error(&self, action: &'static str, e: sqlx::Error) -> WarehouseError {
        if let sqlx::Error::Database(db) = &e
            && let Some(1044 | 1142 | 1227 | 1045) = db.try_downcast_ref::<MySqlDatabaseError>().map(|m| m.number())
        {
            let user = self.options.get_username();
            return WarehouseError::State {
                action,
                message: format!(
                    "{}. retl keeps its state in the database {db} and creates and drops tables there; as an \
                     administrator run `CREATE DATABASE IF NOT EXISTS {db}; GRANT ALL PRIVILEGES ON {db}.* TO '{user}'@'%';` \
                     (use the user's real host instead of %)",
                    db.message(),
                    db = self.db
                ),
            };
        }
        WarehouseError::State { action, message: self.target.redact(&e.to_string()) }
    }

    pub async fn run(&self, action: &'static str, sql: String) -> Result<u64, WarehouseError> {
        self.pool.execute(AssertSqlSafe(sql)).await.map(|r| r.rows_affected()).map_err(|e| self.error(action, e))
    }
}

/// Creates (or upgrades) the state database and the tables of one Mapping,
/// under a named lock so that syncs starting together do not race.
pub async fn prepare(st: &Store, scope: &StateScope) -> Result<(), WarehouseError> {
    let err = |e| st.error("created", e);
    let db = &st.db;
    let mut conn = st.pool.acquire().await.map_err(err)?;
    let lock = format!("retl state {}", st.db_name);
    sqlx::query("SELECT GET_LOCK(?, 60)").bind(&lock).execute(&mut *conn).await.map_err(err)?;
    let result = async {
        // CREATE DATABASE IF NOT EXISTS needs a global right even when the
        // database exists, so look first.
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(&st.db_name)
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
        if exists == 0 {
            conn.execute(AssertSqlSafe(format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"))).await.map_err(err)?;
        }
        conn.execute(AssertSqlSafe(format!("CREATE TABLE IF NOT EXISTS {db}.layout (version INT NOT NULL) ENGINE=InnoDB")))
            .await
            .map_err(err)?;
        let version: Option<i32> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT MAX(version) FROM {db}.layout"))).fetch_one(&mut *conn).await.map_err(err)?;
        if let Some(v) = version
            && v > LAYOUT_VERSION
        {
            return Err(WarehouseError::State {
                action: "used",
                message: format!(
                    "the state database {db} was written by a newer retl (layout {v}, this build knows {LAYOUT_VERSION}); \
                     upgrade retl, or point stateSchema at another database"
                ),
            });
        }
        let is_table = async |conn: &mut sqlx::MySqlConnection, name: &str| -> Result<bool, WarehouseError> {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE'",
            )
            .bind(&st.db_name)
            .bind(format!("{name}_{}", scope.id))
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
            Ok(n > 0)
        };
        let t = |name: &str| st.table(name, scope);
        let (s, p, r, a, f, l) = (t("snapshot"), t("pending"), t("records"), t("acks"), t("flight"), t("log"));
        // Layout 1 kept a row per record in `log`: it becomes `records`.
        if is_table(&mut conn, "log").await? {
            conn.execute(AssertSqlSafe(format!("RENAME TABLE {l} TO {r}"))).await.map_err(err)?;
        }
        let id = &scope.id;
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {} (namespace VARCHAR(253) NOT NULL, sync VARCHAR(253) NOT NULL,
                 mapping VARCHAR(253) NOT NULL, mapping_uid VARCHAR(64) NOT NULL, model VARCHAR(253) NOT NULL,
                 destination VARCHAR(253) NOT NULL, trigger_kind VARCHAR(32) NOT NULL, phase VARCHAR(32) NOT NULL,
                 started_ms BIGINT NOT NULL, completed_ms BIGINT NULL, status_json LONGTEXT NOT NULL,
                 PRIMARY KEY (namespace, sync), INDEX (mapping_uid, started_ms)) ENGINE=InnoDB CHARACTER SET utf8mb4",
                st.runs_table()
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
                "CREATE TABLE IF NOT EXISTS {r} (sync VARCHAR(253) NOT NULL, k VARBINARY(1024) NULL, op VARCHAR(8) NOT NULL,
                 outcome VARCHAR(16) NOT NULL, code VARCHAR(255) NULL, error TEXT NULL, payload LONGTEXT NULL,
                 at BIGINT NOT NULL, INDEX {} (sync), INDEX {} (at)) ENGINE=InnoDB CHARACTER SET utf8mb4",
                quote(&format!("log_{id}_sync")),
                quote(&format!("log_{id}_at"))
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {a} (id BIGINT AUTO_INCREMENT PRIMARY KEY, sync VARCHAR(253) NOT NULL,
                 at BIGINT NOT NULL, op VARCHAR(8) NOT NULL, outcome VARCHAR(16) NOT NULL, code VARCHAR(255) NULL,
                 n INT NOT NULL, items LONGTEXT NOT NULL, merged TINYINT NOT NULL DEFAULT 0, INDEX (sync), INDEX (merged, id))
                 ENGINE=InnoDB CHARACTER SET utf8mb4"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {f} (sync VARCHAR(253) NOT NULL, batch BIGINT NOT NULL, items LONGTEXT NOT NULL,
                 at BIGINT NOT NULL, PRIMARY KEY (sync, batch)) ENGINE=InnoDB CHARACTER SET utf8mb4"
            ),
            format!(
                "CREATE OR REPLACE VIEW {l} AS
                 SELECT sync, k, op, outcome, code, error, payload, at FROM {r}
                 UNION ALL
                 SELECT a.sync, CAST(j.k AS BINARY), a.op, a.outcome, a.code, NULL, NULL, a.at FROM {a} a, {}",
                items("a.items", true)
            ),
        ];
        for sql in statements {
            conn.execute(AssertSqlSafe(sql)).await.map_err(err)?;
        }
        // Layout 1 marked each key in flight: one mark per sync now.
        if is_table(&mut conn, "inflight").await? {
            let old = t("inflight");
            conn.execute(AssertSqlSafe(format!(
                "INSERT IGNORE INTO {f} (sync, batch, items, at)
                 SELECT sync, -1, JSON_ARRAYAGG(CONVERT(k USING utf8mb4)), MAX(at) FROM {old} GROUP BY sync"
            )))
            .await
            .map_err(err)?;
            conn.execute(AssertSqlSafe(format!("DROP TABLE {old}"))).await.map_err(err)?;
        }
        let set = match version {
            None => format!("INSERT INTO {db}.layout (version) VALUES ({LAYOUT_VERSION})"),
            Some(_) => format!("UPDATE {db}.layout SET version = {LAYOUT_VERSION}"),
        };
        conn.execute(AssertSqlSafe(set)).await.map(|_| ()).map_err(err)
    }
    .await;
    let _ = sqlx::query("SELECT RELEASE_LOCK(?)").bind(&lock).execute(&mut *conn).await;
    result
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
    retried(st, "committed", || commit_once(st, scope, sync, batches, &plan)).await
}

/// Runs a state transaction again when InnoDB chose it as a deadlock's
/// victim (1213) or it waited too long for a lock (1205): the commit and a
/// mark in flight touch neighbouring rows of the same tables from two
/// connections, and InnoDB's next-key locks can make them wait on each
/// other. Each attempt is one whole transaction, rolled back on failure.
async fn retried<F, Fut>(st: &Store, action: &'static str, mut attempt: F) -> Result<(), WarehouseError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(sqlx::Error::Database(db))
                if tries < 5 && matches!(db.try_downcast_ref::<MySqlDatabaseError>().map(|m| m.number()), Some(1213 | 1205)) =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * tries)).await;
            }
            Err(e) => return Err(st.error(action, e)),
        }
    }
}

async fn commit_once(st: &Store, scope: &StateScope, sync: &str, batches: &[i64], plan: &BatchPlan<'_>) -> Result<(), sqlx::Error> {
    let [p, r, a, f] = ["pending", "records", "acks", "flight"].map(|t| st.table(t, scope));
    let now = now_ms();
    let mut tx = StateTx::begin(&st.pool).await?;
    if !plan.acks.is_empty() {
        let mut q = QueryBuilder::<MySql>::new(format!("INSERT INTO {a} (sync, at, op, outcome, code, n, items) "));
        q.push_values(&plan.acks, |mut b, g| {
            let pairs: Vec<(&str, &str)> = g.keys.iter().copied().zip(g.hashes.iter().copied()).collect();
            b.push_bind(sync).push_bind(now).push_bind(g.op).push_bind(g.outcome).push_bind(g.code).push_bind(g.keys.len() as i64);
            b.push_bind(json_array(&pairs));
        });
        q.build().execute(&mut *tx).await?;
    }
    for chunk in plan.pending.chunks(CHUNK) {
        let mut q =
            QueryBuilder::<MySql>::new(format!("INSERT INTO {p} (k, first_failed_at, last_failed_at, attempts, last_code, last_error) "));
        q.push_values(chunk, |mut b, (k, code, message)| {
            b.push_bind(*k).push_bind(now).push_bind(now).push_bind(1).push_bind(*code).push_bind(*message);
        });
        q.push(
            " ON DUPLICATE KEY UPDATE last_failed_at = VALUES(last_failed_at), attempts = attempts + 1,
              last_code = VALUES(last_code), last_error = VALUES(last_error)",
        );
        q.build().execute(&mut *tx).await?;
    }
    for chunk in plan.log_rows.chunks(CHUNK) {
        let mut q = QueryBuilder::<MySql>::new(format!("INSERT INTO {r} (sync, k, op, outcome, code, error, payload, at) "));
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
        q.build().execute(&mut *tx).await?;
    }
    if !batches.is_empty() {
        let mut q = QueryBuilder::<MySql>::new(format!("DELETE FROM {f} WHERE sync = "));
        q.push_bind(sync).push(" AND batch IN (");
        let mut list = q.separated(", ");
        for b in batches {
            list.push_bind(*b);
        }
        q.push(")");
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The hash of a snapshot entry whose record may or may not have reached the
/// destination (a recovered in-flight key): MD5 in hex is never empty, so
/// the record counts as changed.
const UNKNOWN_HASH: &str = "''";

/// Marks a batch's new keys as in flight before it is sent: one row.
pub async fn mark_in_flight(st: &Store, scope: &StateScope, sync: &str, batch: i64, keys: &[&str]) -> Result<(), WarehouseError> {
    let sql = format!(
        "INSERT INTO {} (sync, batch, items, at) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE items = VALUES(items)",
        st.table("flight", scope)
    );
    let items = json_array(keys);
    retried(st, "updated", || async {
        sqlx::query(AssertSqlSafe(sql.as_str())).bind(sync).bind(batch).bind(&items).bind(now_ms()).execute(&st.pool).await.map(|_| ())
    })
    .await
}

/// Moves keys still marked in flight into the snapshot with a hash no row
/// has (see [`crate::warehouse::Warehouse::recover_in_flight`]).
pub async fn recover_in_flight(st: &Store, scope: &StateScope) -> Result<u64, WarehouseError> {
    let err = |e| st.error("updated", e);
    let (s, f) = (st.table("snapshot", scope), st.table("flight", scope));
    let mut tx = StateTx::begin(&st.pool).await.map_err(err)?;
    // A key the snapshot already holds keeps its entry: that record was an
    // update or a delete, which the next diff finds anyway.
    let moved = sqlx::query(AssertSqlSafe(format!(
        "INSERT IGNORE INTO {s} (k, h, delivered_at) SELECT j.k, {UNKNOWN_HASH}, ? FROM {f} f, {}",
        items("f.items", false)
    )))
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(err)?
    .rows_affected();
    tx.execute(AssertSqlSafe(format!("DELETE FROM {f}"))).await.map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(moved)
}

/// Merges every sync's acknowledged records not merged yet into the
/// snapshot, one sync at a time in the order they were committed, each in
/// one transaction; returns how many records moved.
pub async fn merge(st: &Store, scope: &StateScope) -> Result<u64, WarehouseError> {
    let [s, p, a] = ["snapshot", "pending", "acks"].map(|t| st.table(t, scope));
    let syncs: Vec<String> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT sync FROM {a} WHERE merged = 0 GROUP BY sync ORDER BY MIN(id)")))
            .fetch_all(&st.pool)
            .await
            .map_err(|e| st.error("read", e))?;
    let acked = format!("{a} a, {} WHERE a.sync = ? AND a.merged = 0", items("a.items", true));
    let mut moved = 0;
    for sync in syncs {
        let err = |e| st.error("merged", e);
        let mut tx = StateTx::begin(&st.pool).await.map_err(err)?;
        let statements = [
            format!(
                "INSERT INTO {s} (k, h, delivered_at) SELECT j.k, j.h, a.at FROM {acked} AND a.op <> 'deleted'
                 ON DUPLICATE KEY UPDATE h = VALUES(h), delivered_at = VALUES(delivered_at)"
            ),
            format!("DELETE s FROM {s} s JOIN (SELECT CAST(j.k AS BINARY) AS k FROM {acked} AND a.op = 'deleted') d ON s.k = d.k"),
            format!("DELETE p FROM {p} p JOIN (SELECT CAST(j.k AS BINARY) AS k FROM {acked}) d ON p.k = d.k"),
        ];
        for (i, sql) in statements.into_iter().enumerate() {
            let n = sqlx::query(AssertSqlSafe(sql)).bind(&sync).execute(&mut *tx).await.map_err(err)?.rows_affected();
            if i < 2 {
                moved += n;
            }
        }
        sqlx::query(AssertSqlSafe(format!("UPDATE {a} SET merged = 1 WHERE sync = ? AND merged = 0")))
            .bind(&sync)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
    }
    Ok(moved)
}
