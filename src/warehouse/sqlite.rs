//! SQLite: the embedded warehouse of local runs and tests.
//!
//! SQLite has no schemas, so the state tables live in the same database file
//! with `stateSchema` as a table-name prefix. Rows are hashed inside SQLite by
//! a deterministic SQL function (`retl_hash`, xxh3-128 of the row's JSON
//! text) registered on every connection, so the diff is one set-based join
//! and only changed rows leave the database.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Executor, Row};

use super::{
    Column, DiffCounts, DiffMode, DiffRequest, HistoryFilter, RecordOutcome, StageCounts, StageFlag, StagedChange, StateScope, SyncRun,
    Warehouse, WarehouseError,
};
use crate::api::{ChangeKind, SourceSpec};
use crate::warehouse::rows::{RowDecoder, describe_columns, key_text, model_subquery, query_err, quote_ident, stage_suffix};

pub struct SqliteWarehouse {
    pub(super) pool: SqlitePool,
    prefix: String,
    /// The database file: lock files go beside it.
    path: PathBuf,
}

impl SqliteWarehouse {
    pub async fn connect(source_name: &str, spec: &SourceSpec, base_dir: &Path) -> Result<Self, WarehouseError> {
        let settings = spec.sqlite.as_ref().ok_or_else(|| WarehouseError::Config {
            source_name: source_name.to_string(),
            message: "type is sqlite but spec.sqlite is missing; add spec.sqlite.path".into(),
        })?;
        let path = resolve(base_dir, &settings.path);
        let seed = settings.seed_file.as_ref().map(|f| resolve(base_dir, f));
        let exists = path.exists();
        if !exists && seed.is_none() {
            return Err(WarehouseError::Connect {
                source_name: source_name.to_string(),
                message: format!(
                    "the database file {} does not exist; check spec.sqlite.path, or set spec.sqlite.seedFile to create it",
                    path.display()
                ),
            });
        }
        let connect_err =
            |e: sqlx::Error| WarehouseError::Connect { source_name: source_name.to_string(), message: format!("{} ({e})", path.display()) };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(connect_err)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        // One connection: SQLite serializes writers anyway, and one connection
        // keeps the stage, the reads and the commits strictly ordered.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _| {
                async move {
                    let mut handle = conn.lock_handle().await?;
                    super::sqlite_hash::register_hash_function(handle.as_raw_handle().as_ptr())
                        .map_err(|e| sqlx::Error::Configuration(e.into()))
                }
                .boxed()
            })
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        if !exists && let Some(seed) = seed {
            let sql = std::fs::read_to_string(&seed).map_err(|e| WarehouseError::Config {
                source_name: source_name.to_string(),
                message: format!("cannot read seed file {}: {e}", seed.display()),
            })?;
            if let Err(e) = pool.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await {
                pool.close().await;
                let _ = std::fs::remove_file(&path);
                return Err(WarehouseError::Config {
                    source_name: source_name.to_string(),
                    message: format!("the seed file {} failed: {e}", seed.display()),
                });
            }
        }
        Ok(SqliteWarehouse { pool, prefix: sanitize_prefix(&spec.state_schema), path })
    }

    pub(super) fn table(&self, name: &str, scope: &StateScope) -> String {
        quote_ident(&format!("{}_{}_{}", self.prefix, name, scope.id))
    }

    fn stage_tables(&self, scope: &StateScope, stage: &str) -> (String, String) {
        let suffix = stage_suffix(stage);
        (
            quote_ident(&format!("{}_model_{}_{}", self.prefix, scope.id, suffix)),
            quote_ident(&format!("{}_stage_{}_{}", self.prefix, scope.id, suffix)),
        )
    }

    pub(super) fn runs_table(&self) -> String {
        quote_ident(&format!("{}_sync_runs", self.prefix))
    }

    async fn exec(&self, action: &'static str, sql: String) -> Result<u64, WarehouseError> {
        self.pool.execute(AssertSqlSafe(sql)).await.map(|r| r.rows_affected()).map_err(|e| state_err(action, e))
    }

    pub(super) async fn count(&self, sql: String) -> Result<u64, WarehouseError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&self.pool).await.map_err(|e| state_err("read", e))?;
        Ok(n.max(0) as u64)
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

fn sanitize_prefix(schema: &str) -> String {
    let s: String = schema.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if s.is_empty() { "retl".to_string() } else { s }
}

pub(super) fn state_err(action: &'static str, e: sqlx::Error) -> WarehouseError {
    WarehouseError::State { action, message: e.to_string() }
}

#[async_trait]
impl Warehouse for SqliteWarehouse {
    async fn check(&self) -> Result<(), WarehouseError> {
        self.count("SELECT 1".to_string()).await.map(|_| ())
    }

    async fn describe(&self, query: &str) -> Result<Vec<Column>, WarehouseError> {
        // SQLite names the type of an expression column NULL: no type known.
        let mut columns = describe_columns(&self.pool, query).await?;
        for c in &mut columns {
            c.type_name = c.type_name.take().filter(|t| t != "NULL");
        }
        Ok(columns)
    }

    async fn prepare_state(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        let (s, p, l, r) = (self.table("snapshot", scope), self.table("pending", scope), self.table("log", scope), self.runs_table());
        let li = quote_ident(&format!("{}_log_{}_sync", self.prefix, scope.id));
        let i = self.table("inflight", scope);
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {s} (k TEXT PRIMARY KEY, h TEXT NOT NULL, delivered_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS {p} (k TEXT PRIMARY KEY, first_failed_at INTEGER NOT NULL, last_failed_at INTEGER NOT NULL,
                 attempts INTEGER NOT NULL, last_code TEXT, last_error TEXT);
             CREATE TABLE IF NOT EXISTS {l} (sync TEXT NOT NULL, k TEXT, op TEXT NOT NULL, outcome TEXT NOT NULL,
                 code TEXT, error TEXT, payload TEXT, at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS {li} ON {l} (sync);
             CREATE TABLE IF NOT EXISTS {i} (k TEXT PRIMARY KEY, sync TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS {r} (namespace TEXT NOT NULL, sync TEXT NOT NULL, mapping TEXT NOT NULL,
                 mapping_uid TEXT NOT NULL, model TEXT NOT NULL, destination TEXT NOT NULL, trigger_kind TEXT NOT NULL,
                 phase TEXT NOT NULL, started_ms INTEGER NOT NULL, completed_ms INTEGER, status_json TEXT NOT NULL,
                 PRIMARY KEY (namespace, sync));"
        );
        self.pool.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await.map(|_| ()).map_err(|e| state_err("created", e))
    }

    async fn reset(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        let tables = [self.table("snapshot", scope), self.table("pending", scope)];
        super::state_tx::StateTx::execute_all(&self.pool, tables.map(|t| format!("DELETE FROM {t}")))
            .await
            .map_err(|e| state_err("reset", e))
    }

    async fn stage(&self, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
        super::check_columns(req)?;
        let (m, st) = self.stage_tables(scope, &req.stage);
        let (s, p, l) = (self.table("snapshot", scope), self.table("pending", scope), self.table("log", scope));
        self.drop_stage(scope, &req.stage).await?;

        let create_model = format!(
            "CREATE TABLE {m} AS SELECT k, row, retl_hash(row) AS h, COUNT(*) OVER (PARTITION BY k) AS n FROM ({})",
            model_rows(req)
        );
        self.pool.execute(AssertSqlSafe(create_model)).await.map_err(query_err)?;
        self.exec("staged", format!("CREATE INDEX {} ON {m} (k)", quote_ident(&format!("{}_i", m.trim_matches('"'))))).await?;
        self.exec(
            "staged",
            format!(
                "CREATE TABLE {st} (pos INTEGER PRIMARY KEY, k TEXT, h TEXT NOT NULL, row TEXT, op TEXT NOT NULL,
                 retried INTEGER NOT NULL DEFAULT 0, flag TEXT)"
            ),
        )
        .await?;
        let expire = req.expire_before_ms;
        let expired = format!("CASE WHEN p.first_failed_at < {expire} THEN 'expired' END");
        match &req.mode {
            DiffMode::Normal => {
                let inserts = [
                    format!("INSERT INTO {st} (k, h, row, op, flag) SELECT NULL, h, row, 'added', 'null_key' FROM {m} WHERE k IS NULL"),
                    format!(
                        "INSERT INTO {st} (k, h, row, op, retried, flag)
                         SELECT m.k, m.h, m.row, CASE WHEN s.k IS NULL THEN 'added' ELSE 'updated' END, p.k IS NOT NULL,
                                CASE WHEN m.n > 1 THEN 'duplicate_key' ELSE {expired} END
                         FROM {m} m LEFT JOIN {s} s ON s.k = m.k LEFT JOIN {p} p ON p.k = m.k
                         WHERE m.k IS NOT NULL AND (m.n > 1 OR s.k IS NULL OR s.h <> m.h)
                         ORDER BY m.k"
                    ),
                    format!(
                        "INSERT INTO {st} (k, h, row, op, retried, flag)
                         SELECT s.k, '', NULL, 'deleted', p.k IS NOT NULL, {expired}
                         FROM {s} s LEFT JOIN {p} p ON p.k = s.k
                         WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.k = s.k) ORDER BY s.k"
                    ),
                ];
                for sql in inserts {
                    self.exec("staged", sql).await?;
                }
            }
            DiffMode::Replay { sync } => {
                let known = self
                    .count(format!(
                        "SELECT COUNT(*) FROM {} WHERE sync = '{}' AND mapping_uid = '{}'",
                        self.runs_table(),
                        sync.replace('\'', "''"),
                        scope.id
                    ))
                    .await?;
                if known == 0 {
                    return Err(WarehouseError::NothingToReplay { sync: sync.clone() });
                }
                let sql = format!(
                    "INSERT INTO {st} (k, h, row, op, retried, flag)
                     SELECT l.k, COALESCE(m.h, ''), m.row,
                            CASE WHEN m.k IS NULL THEN 'deleted' WHEN s.k IS NULL THEN 'added' ELSE 'updated' END,
                            p.k IS NOT NULL, CASE WHEN m.n > 1 THEN 'duplicate_key' END
                     FROM (SELECT DISTINCT k FROM {l} WHERE sync = ? AND k IS NOT NULL) l
                     LEFT JOIN {m} m ON m.k = l.k LEFT JOIN {s} s ON s.k = l.k LEFT JOIN {p} p ON p.k = l.k
                     ORDER BY l.k"
                );
                sqlx::query(AssertSqlSafe(sql)).bind(sync).execute(&self.pool).await.map_err(|e| state_err("staged", e))?;
            }
        }
        if !req.dry_run && req.mode == DiffMode::Normal {
            // A pending failure whose record is no longer a change (it went back
            // to its delivered values, or left the model before it was ever
            // delivered) has nothing left to retry.
            self.exec("updated", format!("DELETE FROM {p} WHERE k NOT IN (SELECT k FROM {st} WHERE k IS NOT NULL)")).await?;
        }
        // Every count in one pass over the stage.
        let counts = format!(
            "SELECT COALESCE(SUM(op = 'added'), 0), COALESCE(SUM(op = 'updated'), 0), COALESCE(SUM(op = 'deleted'), 0),
                    COALESCE(SUM(retried = 1), 0), (SELECT COUNT(*) FROM {m}), (SELECT COUNT(*) FROM {s})
             FROM {st}"
        );
        let counts: StageCounts = sqlx::query_as(AssertSqlSafe(counts)).fetch_one(&self.pool).await.map_err(|e| state_err("read", e))?;
        Ok(DiffCounts::from_stage(counts, &req.mode))
    }

    async fn read_stage(&self, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
        let (_, st) = self.stage_tables(scope, stage);
        let sql = format!("SELECT pos, k, h, row, op, retried, flag FROM {st} WHERE pos > ? ORDER BY pos LIMIT ?");
        let rows =
            sqlx::query(AssertSqlSafe(sql)).bind(after).bind(limit as i64).fetch_all(&self.pool).await.map_err(|e| state_err("read", e))?;
        let decoder = RowDecoder;
        rows.iter()
            .map(|r| {
                let op: String = r.try_get("op").map_err(|e| state_err("read", e))?;
                let flag: Option<String> = r.try_get("flag").map_err(|e| state_err("read", e))?;
                // Read as bytes: SQLite keeps any bytes as TEXT, and text that
                // is not UTF-8 fails its record, not the whole read.
                let row: Option<Vec<u8>> = r.try_get("row").map_err(|e| state_err("read", e))?;
                Ok(StagedChange {
                    position: r.try_get("pos").map_err(|e| state_err("read", e))?,
                    key: key_text(r.try_get("k").map_err(|e| state_err("read", e))?),
                    hash: r.try_get("h").map_err(|e| state_err("read", e))?,
                    row: row.map(|t| decoder.decode_bytes(&t)),
                    kind: parse_kind(&op),
                    retried: r.try_get::<i64, _>("retried").map_err(|e| state_err("read", e))? != 0,
                    flag: flag.as_deref().and_then(parse_flag),
                })
            })
            .collect()
    }

    async fn drop_stage(&self, scope: &StateScope, stage: &str) -> Result<(), WarehouseError> {
        let (m, st) = self.stage_tables(scope, stage);
        self.pool
            .execute(sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {m}; DROP TABLE IF EXISTS {st};"))))
            .await
            .map(|_| ())
            .map_err(|e| state_err("cleaned up", e))
    }

    async fn commit(&self, scope: &StateScope, sync: &str, outcomes: &[RecordOutcome]) -> Result<(), WarehouseError> {
        super::sqlite_state::commit(self, scope, sync, outcomes).await
    }

    async fn mark_in_flight(&self, scope: &StateScope, sync: &str, keys: &[&str]) -> Result<(), WarehouseError> {
        super::sqlite_state::mark_in_flight(self, scope, sync, keys).await
    }

    async fn recover_in_flight(&self, scope: &StateScope) -> Result<u64, WarehouseError> {
        super::sqlite_state::recover_in_flight(self, scope).await
    }

    async fn log_counts(&self, scope: &StateScope, sync: &str) -> Result<Vec<super::LogCount>, WarehouseError> {
        super::sqlite_state::log_counts(self, scope, sync).await
    }

    async fn failed_records(
        &self,
        scope: &StateScope,
        sync: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<super::LoggedFailure>, WarehouseError> {
        super::sqlite_state::failed_records(self, scope, sync, offset, limit).await
    }

    async fn save_run(&self, run: &SyncRun) -> Result<(), WarehouseError> {
        super::sqlite_state::save_run(self, run).await
    }

    async fn runs(&self, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
        super::sqlite_state::runs(self, filter).await
    }

    async fn prune(&self, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError> {
        self.exec("pruned", format!("DELETE FROM {} WHERE at < {older_than_ms}", self.table("log", scope))).await?;
        self.exec(
            "pruned",
            format!("DELETE FROM {} WHERE mapping_uid = '{}' AND started_ms < {older_than_ms}", self.runs_table(), scope.id),
        )
        .await
        .map(|_| ())
    }

    async fn lock_sync(&self, scope: &StateScope, wait: Duration) -> Result<Option<super::SyncLock>, WarehouseError> {
        super::sqlite_lock::lock_sync(&super::sqlite_lock::lock_path(&self.path, &self.prefix, scope), wait).await
    }

    async fn sample_row(&self, req: &DiffRequest, key: Option<&str>) -> Result<Vec<super::SampledRow>, WarehouseError> {
        super::sample::sqlite(self, req, key).await
    }

    async fn execute(&self, sql: &str) -> Result<u64, WarehouseError> {
        self.pool.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string()))).await.map(|r| r.rows_affected()).map_err(query_err)
    }
}

/// `SELECT k, row` of the model: the key as text and the row as JSON
/// text. Each column is carried as JSON; BLOBs (which JSON cannot hold) are
/// wrapped so the decoder turns them into base64 text.
pub(super) fn model_rows(req: &DiffRequest) -> String {
    let pairs: Vec<String> = req
        .columns
        .iter()
        .map(|c| {
            let q = format!("q.{}", quote_ident(&c.name));
            format!(
                "'{}', CASE WHEN typeof({q}) = 'blob' THEN json_object('{}', hex({q})) ELSE {q} END",
                c.name.replace('\'', "''"),
                super::rows::BLOB_MARKER
            )
        })
        .collect();
    format!(
        "SELECT CAST(q.{} AS TEXT) AS k, json_object({}) AS row FROM ({}) AS q",
        quote_ident(&req.primary_key),
        pairs.join(", "),
        model_subquery(&req.query)
    )
}

pub(super) fn parse_kind(op: &str) -> ChangeKind {
    match op {
        "deleted" => ChangeKind::Deleted,
        "updated" => ChangeKind::Updated,
        _ => ChangeKind::Added,
    }
}

pub(super) fn parse_flag(flag: &str) -> Option<StageFlag> {
    match flag {
        "null_key" => Some(StageFlag::NullKey),
        "duplicate_key" => Some(StageFlag::DuplicateKey),
        "expired" => Some(StageFlag::Expired),
        _ => None,
    }
}

pub(super) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
