//! MySQL and MariaDB: models run in the server, rows are hashed and diffed
//! there, and only changed rows are read out, page by page.
//!
//! MySQL has no schemas, so `stateSchema` is a database of its own. Each row
//! is turned into JSON text column by column (MariaDB and MySQL differ in
//! what their JSON functions accept, and neither keeps exact decimals or
//! writes RFC 3339 timestamps), and hashed with `MD5` (the only 128-bit
//! hash both have, and cheap in C; see docs/warehouses.md).

use async_trait::async_trait;
use futures::FutureExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use super::rows::{RowDecoder, describe_columns, query_err, stage_suffix};
use super::server::{CommitPlan, Failure, ServerTarget, classify, connect_message, decode_row, parse_flag, parse_kind};
use super::{
    Column, DiffCounts, DiffMode, DiffRequest, HistoryFilter, RecordOutcome, StageCounts, StagedChange, StateScope, SyncRun, Warehouse,
    WarehouseError,
};
use crate::api::SourceSpec;

pub struct MysqlWarehouse {
    pub(super) pool: MySqlPool,
    options: MySqlConnectOptions,
    target: ServerTarget,
    source_name: String,
    /// `stateSchema` (a database), as given and quoted.
    pub(super) db_name: String,
    pub(super) db: String,
}

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

impl MysqlWarehouse {
    pub async fn connect(source_name: &str, spec: &SourceSpec, secrets: &super::SecretValues) -> Result<Self, WarehouseError> {
        let target = ServerTarget::resolve(source_name, "mysql", spec.mysql.as_ref(), secrets)?;
        let options = super::server_options::mysql(&target)
            .map_err(|message| WarehouseError::Config { source_name: source_name.to_string(), message })?;
        let timeout = target.statement_timeout;
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(target.connect_timeout)
            .after_connect(move |conn, _| {
                async move {
                    if let Some(secs) = timeout {
                        // MariaDB and MySQL name (and scale) this setting differently.
                        let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&mut *conn).await?;
                        let sql = if version.contains("MariaDB") {
                            format!("SET SESSION max_statement_time = {secs}")
                        } else {
                            format!("SET SESSION max_execution_time = {}", u64::from(secs) * 1000)
                        };
                        conn.execute(AssertSqlSafe(sql)).await?;
                    }
                    Ok(())
                }
                .boxed()
            })
            .connect_lazy_with(options.clone());
        let wh = MysqlWarehouse {
            pool,
            options,
            target,
            source_name: source_name.to_string(),
            db_name: spec.state_schema.clone(),
            db: quote(&spec.state_schema),
        };
        wh.probe().await?;
        Ok(wh)
    }

    /// Opens one connection outside the pool, so that a failure says why.
    async fn probe(&self) -> Result<(), WarehouseError> {
        let attempt = MySqlConnection::connect_with(&self.options);
        let failure = match tokio::time::timeout(self.target.connect_timeout, attempt).await {
            Err(_) => Failure::TimedOut,
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) => match &e {
                sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>().map(|m| m.number()) {
                    Some(1045 | 1698) => Failure::AuthRefused(db.message().to_string()),
                    Some(1049 | 1044) => Failure::NoDatabase(db.message().to_string()),
                    _ => classify(&e),
                },
                _ => classify(&e),
            },
        };
        let at = format!("{}:{}", self.options.get_host(), self.options.get_port());
        Err(WarehouseError::Connect {
            source_name: self.source_name.clone(),
            message: connect_message(&self.target, &at, self.options.get_username(), "mysql", failure),
        })
    }

    pub(super) fn table(&self, name: &str, scope: &StateScope) -> String {
        format!("{}.{}", self.db, quote(&format!("{name}_{}", scope.id)))
    }

    /// The stage's tables: model rows, duplicate keys, changes.
    fn stage_tables(&self, scope: &StateScope, stage: &str) -> [String; 3] {
        let suffix = stage_suffix(stage);
        ["model", "dups", "stage"].map(|n| format!("{}.{}", self.db, quote(&format!("{n}_{}_{suffix}", scope.id))))
    }

    pub(super) fn runs_table(&self) -> String {
        format!("{}.sync_runs", self.db)
    }

    pub(super) fn state_err(&self, action: &'static str, e: sqlx::Error) -> WarehouseError {
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

    async fn run(&self, action: &'static str, sql: String) -> Result<u64, WarehouseError> {
        self.pool.execute(AssertSqlSafe(sql)).await.map(|r| r.rows_affected()).map_err(|e| self.state_err(action, e))
    }
}

#[async_trait]
impl Warehouse for MysqlWarehouse {
    async fn check(&self) -> Result<(), WarehouseError> {
        self.probe().await
    }

    async fn describe(&self, query: &str) -> Result<Vec<Column>, WarehouseError> {
        describe_columns(&self.pool, query).await
    }

    async fn prepare_state(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        super::mysql_state::prepare(self, scope).await
    }

    async fn reset(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        let tables = [self.table("snapshot", scope), self.table("pending", scope)];
        super::state_tx::StateTx::execute_all(&self.pool, tables.map(|t| format!("DELETE FROM {t}")))
            .await
            .map_err(|e| self.state_err("reset", e))
    }

    async fn stage(&self, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
        super::check_columns(req)?;
        self.drop_stage(scope, &req.stage).await?;
        let [m, d, st] = self.stage_tables(scope, &req.stage);
        let (s, p, l) = (self.table("snapshot", scope), self.table("pending", scope), self.table("log", scope));
        let replay = match &req.mode {
            DiffMode::Normal => None,
            DiffMode::Replay { sync } => Some(sync),
        };
        if let Some(sync) = replay {
            let known: i64 =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {} WHERE sync = ? AND mapping_uid = ?", self.runs_table())))
                    .bind(sync)
                    .bind(&scope.id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.state_err("read", e))?;
            if known == 0 {
                return Err(WarehouseError::NothingToReplay { sync: sync.clone() });
            }
        }
        let keep_row = if replay.is_some() { "x.doc" } else { "IF(s.h <=> x.h, NULL, x.doc)" };
        let key = "VARBINARY(1024)";
        let hash = "CHAR(32) CHARACTER SET ascii";
        let create_model = format!(
            "CREATE TABLE {m} (k {key} NULL, h {hash} NULL, doc LONGTEXT CHARACTER SET utf8mb4 NULL, sh {hash} NULL, INDEX (k))
             ENGINE=InnoDB
             SELECT x.k, x.h, {keep_row} AS doc, s.h AS sh
             FROM (SELECT y.k, y.doc, CONVERT(MD5(y.doc) USING ascii) AS h FROM ({model}) AS y) AS x LEFT JOIN {s} s ON s.k = x.k",
            model = super::mysql_json::model_rows(req)
        );
        self.pool.execute(AssertSqlSafe(create_model)).await.map_err(query_err)?;
        self.run(
            "staged",
            format!("CREATE TABLE {d} (k {key} PRIMARY KEY) SELECT k FROM {m} WHERE k IS NOT NULL GROUP BY k HAVING COUNT(*) > 1"),
        )
        .await?;
        self.run(
            "staged",
            format!(
                "CREATE TABLE {st} (pos BIGINT AUTO_INCREMENT PRIMARY KEY, k {key} NULL, h {hash} NULL,
                 doc LONGTEXT CHARACTER SET utf8mb4 NULL, op VARCHAR(8) NOT NULL, retried TINYINT NOT NULL,
                 flag VARCHAR(16) NULL, INDEX (k)) ENGINE=InnoDB"
            ),
        )
        .await?;
        let expired = format!("IF(p.first_failed_at < {}, 'expired', NULL)", req.expire_before_ms);
        let pk_name = serde_json::Value::String(req.primary_key.clone()).to_string();
        let key_only = format!("CONCAT({}, JSON_QUOTE(CAST(m.k AS CHAR)), '}}')", text(&format!("{{{pk_name}:")));
        let cols = "INSERT INTO {st} (k, h, doc, op, retried, flag)".replace("{st}", &st);
        match replay {
            None => {
                let inserts = [
                    format!("{cols} SELECT NULL, m.h, m.doc, 'added', 0, 'null_key' FROM {m} m WHERE m.k IS NULL"),
                    format!(
                        "{cols} SELECT m.k, m.h, COALESCE(m.doc, {key_only}), IF(m.sh IS NULL, 'added', 'updated'),
                                p.k IS NOT NULL, IF(d.k IS NOT NULL, 'duplicate_key', {expired})
                         FROM {m} m LEFT JOIN {d} d ON d.k = m.k LEFT JOIN {p} p ON p.k = m.k
                         WHERE m.k IS NOT NULL AND (d.k IS NOT NULL OR NOT (m.sh <=> m.h))"
                    ),
                    format!(
                        "{cols} SELECT s.k, NULL, NULL, 'deleted', p.k IS NOT NULL, {expired}
                         FROM {s} s LEFT JOIN {p} p ON p.k = s.k WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.k = s.k)"
                    ),
                ];
                for sql in inserts {
                    self.run("staged", sql).await?;
                }
            }
            Some(sync) => {
                let sql = format!(
                    "{cols} SELECT l.k, m.h, m.doc,
                       CASE WHEN m.k IS NULL THEN 'deleted' WHEN m.sh IS NULL THEN 'added' ELSE 'updated' END,
                       p.k IS NOT NULL, IF(d.k IS NOT NULL, 'duplicate_key', NULL)
                     FROM (SELECT DISTINCT k FROM {l} WHERE sync = ? AND k IS NOT NULL) l
                     LEFT JOIN {m} m ON m.k = l.k LEFT JOIN {d} d ON d.k = l.k LEFT JOIN {p} p ON p.k = l.k
                     ORDER BY l.k"
                );
                sqlx::query(AssertSqlSafe(sql)).bind(sync).execute(&self.pool).await.map_err(|e| self.state_err("staged", e))?;
            }
        }
        if !req.dry_run && replay.is_none() {
            // A pending failure that is no longer a change has nothing left to retry.
            self.run("updated", format!("DELETE FROM {p} WHERE NOT EXISTS (SELECT 1 FROM {st} st WHERE st.k = {p}.k)")).await?;
        }
        let counts: StageCounts = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT CAST(COALESCE(SUM(op = 'added'), 0) AS SIGNED), CAST(COALESCE(SUM(op = 'updated'), 0) AS SIGNED),
                    CAST(COALESCE(SUM(op = 'deleted'), 0) AS SIGNED), CAST(COALESCE(SUM(retried), 0) AS SIGNED),
                    (SELECT COUNT(*) FROM {m}), (SELECT COUNT(*) FROM {s}) FROM {st}"
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.state_err("read", e))?;
        Ok(DiffCounts::from_stage(counts, &req.mode))
    }

    async fn read_stage(&self, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
        let [_, _, st] = self.stage_tables(scope, stage);
        let sql = format!("SELECT pos, k, COALESCE(h, '') AS h, doc, op, retried, flag FROM {st} WHERE pos > ? ORDER BY pos LIMIT ?");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.state_err("read", e))?;
        rows.iter()
            .map(|r| {
                let get_err = |e| self.state_err("read", e);
                let op: String = r.try_get("op").map_err(get_err)?;
                let flag: Option<String> = r.try_get("flag").map_err(get_err)?;
                let row: Option<String> = r.try_get("doc").map_err(get_err)?;
                let key: Option<Vec<u8>> = r.try_get("k").map_err(get_err)?;
                Ok(StagedChange {
                    position: r.try_get("pos").map_err(get_err)?,
                    key: key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                    hash: r.try_get("h").map_err(get_err)?,
                    row: row.map(|t| decode_row(&RowDecoder, &t)),
                    kind: parse_kind(&op),
                    retried: r.try_get::<i8, _>("retried").map_err(get_err)? != 0,
                    flag: flag.as_deref().and_then(parse_flag),
                })
            })
            .collect()
    }

    async fn drop_stage(&self, scope: &StateScope, stage: &str) -> Result<(), WarehouseError> {
        let [m, d, st] = self.stage_tables(scope, stage);
        self.run("cleaned up", format!("DROP TABLE IF EXISTS {m}, {d}, {st}")).await.map(|_| ())
    }

    async fn commit(&self, scope: &StateScope, sync: &str, outcomes: &[RecordOutcome]) -> Result<(), WarehouseError> {
        let plan = CommitPlan::new(outcomes);
        super::mysql_state::commit(self, scope, sync, &plan).await
    }

    async fn mark_in_flight(&self, scope: &StateScope, sync: &str, keys: &[&str]) -> Result<(), WarehouseError> {
        super::mysql_state::mark_in_flight(self, scope, sync, keys).await
    }

    async fn recover_in_flight(&self, scope: &StateScope) -> Result<u64, WarehouseError> {
        super::mysql_state::recover_in_flight(self, scope).await
    }

    async fn log_counts(&self, scope: &StateScope, sync: &str) -> Result<Vec<super::LogCount>, WarehouseError> {
        let sql = super::log_counts_sql(&self.table("log", scope), "?");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).fetch_all(&self.pool).await.map_err(|e| self.state_err("read", e))?;
        super::read_log_counts(&rows).map_err(|e| self.state_err("read", e))
    }

    async fn failed_records(
        &self,
        scope: &StateScope,
        sync: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<super::LoggedFailure>, WarehouseError> {
        let sql = super::failed_records_sql(&self.table("log", scope), "CONVERT(k USING utf8mb4)", ["?", "?", "?"]);
        let (limit, offset) = super::record_log::page_bounds(offset, limit);
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(limit).bind(offset).fetch_all(&self.pool).await;
        super::read_failed_records(&rows.map_err(|e| self.state_err("read", e))?).map_err(|e| self.state_err("read", e))
    }

    async fn save_run(&self, run: &SyncRun) -> Result<(), WarehouseError> {
        super::mysql_state::save_run(self, run).await
    }

    async fn runs(&self, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
        super::mysql_state::runs(self, filter).await
    }

    async fn prune(&self, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError> {
        let err = |e| self.state_err("pruned", e);
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {} WHERE at < ?", self.table("log", scope))))
            .bind(older_than_ms)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {} WHERE mapping_uid = ? AND started_ms < ?", self.runs_table())))
            .bind(&scope.id)
            .bind(older_than_ms)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn lock_sync(&self, scope: &StateScope, wait: std::time::Duration) -> Result<Option<super::SyncLock>, WarehouseError> {
        super::mysql_state::lock_sync(self, scope, &self.options, wait).await
    }

    async fn sample_row(&self, req: &DiffRequest, key: Option<&str>) -> Result<Vec<super::SampledRow>, WarehouseError> {
        super::sample::mysql(self, req, key).await
    }

    async fn execute(&self, sql: &str) -> Result<u64, WarehouseError> {
        self.pool.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string()))).await.map(|r| r.rows_affected()).map_err(query_err)
    }
}
