//! SQLite: the embedded warehouse of local runs and tests.
//!
//! SQLite has no schemas, so the state tables live in the same database file
//! with `stateSchema` as a table-name prefix. Rows are hashed inside SQLite by
//! a deterministic SQL function (`retl_hash`, xxh3-128 of the row's JSON
//! text, in `hash`) registered on every connection, so the diff is one
//! set-based join and only changed rows leave the database.
//!
//! Rooms: this file opens the database and answers the [`Warehouse`] trait;
//! `stage` diffs; `state` keeps the state tables and what syncs commit into
//! them; `history` reads the record log and keeps the sync-run table;
//! `lock` is the per-Mapping lock file.

mod hash;

pub use hash::register_hash_function;
mod history;
mod lock;
mod stage;
mod state;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Executor};

use super::rows::{describe_columns, query_err};
use super::{
    Column, DiffCounts, DiffRequest, HistoryFilter, LogCount, LoggedFailure, RecordOutcome, StagedChange, StateScope, SyncLock, SyncRun,
    Warehouse, WarehouseError,
};
use crate::api::SourceSpec;
use state::{Store, state_err};

pub struct SqliteWarehouse {
    st: Store,
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
                    // SAFETY: sqlx locked the handle for us for this call.
                    unsafe { hash::register_hash_function(handle.as_raw_handle().as_ptr()) }
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
        Ok(SqliteWarehouse { st: Store { pool, prefix: sanitize_prefix(&spec.state_schema), path } })
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

#[async_trait]
impl Warehouse for SqliteWarehouse {
    async fn check(&self) -> Result<(), WarehouseError> {
        self.st.count("SELECT 1".to_string()).await.map(|_| ())
    }

    async fn describe(&self, query: &str) -> Result<Vec<Column>, WarehouseError> {
        // SQLite names the type of an expression column NULL: no type known.
        let mut columns = describe_columns(&self.st.pool, query).await?;
        for c in &mut columns {
            c.type_name = c.type_name.take().filter(|t| t != "NULL");
        }
        Ok(columns)
    }

    async fn prepare_state(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        state::prepare(&self.st, scope).await
    }

    async fn reset(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        let tables = [self.st.table("snapshot", scope), self.st.table("pending", scope)];
        super::state_tx::StateTx::execute_all(&self.st.pool, tables.map(|t| format!("DELETE FROM {t}")))
            .await
            .map_err(|e| state_err("reset", e))
    }

    async fn stage(&self, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
        stage::stage(&self.st, scope, req).await
    }

    async fn read_stage(&self, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
        stage::read(&self.st, scope, stage, after, limit).await
    }

    async fn drop_stage(&self, scope: &StateScope, stage: &str) -> Result<(), WarehouseError> {
        stage::drop(&self.st, scope, stage).await
    }

    async fn mark_in_flight(&self, scope: &StateScope, sync: &str, batch: i64, keys: &[&str]) -> Result<(), WarehouseError> {
        state::mark_in_flight(&self.st, scope, sync, batch, keys).await
    }

    async fn recover_in_flight(&self, scope: &StateScope) -> Result<u64, WarehouseError> {
        state::recover_in_flight(&self.st, scope).await
    }

    async fn commit(&self, scope: &StateScope, sync: &str, batches: &[i64], outcomes: &[RecordOutcome]) -> Result<(), WarehouseError> {
        state::commit(&self.st, scope, sync, batches, outcomes).await
    }

    async fn merge(&self, scope: &StateScope) -> Result<u64, WarehouseError> {
        state::merge(&self.st, scope).await
    }

    async fn log_counts(&self, scope: &StateScope, sync: &str) -> Result<Vec<LogCount>, WarehouseError> {
        history::log_counts(&self.st, scope, sync).await
    }

    async fn failed_records(&self, scope: &StateScope, sync: &str, offset: u64, limit: u64) -> Result<Vec<LoggedFailure>, WarehouseError> {
        history::failed_records(&self.st, scope, sync, offset, limit).await
    }

    async fn save_run(&self, run: &SyncRun) -> Result<(), WarehouseError> {
        history::save_run(&self.st, run).await
    }

    async fn runs(&self, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
        history::runs(&self.st, filter).await
    }

    async fn has_run(&self, scope: &StateScope, sync: &str) -> Result<bool, WarehouseError> {
        history::has_run(&self.st, scope, sync).await
    }

    async fn prune(&self, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError> {
        history::prune(&self.st, scope, older_than_ms).await
    }

    async fn lock_sync(&self, scope: &StateScope, wait: Duration) -> Result<Option<SyncLock>, WarehouseError> {
        history::lock_sync(&self.st, scope, wait).await
    }

    async fn sample_row(&self, req: &DiffRequest, key: Option<&str>) -> Result<Vec<super::SampledRow>, WarehouseError> {
        stage::sample(&self.st, req, key).await
    }

    async fn execute(&self, sql: &str) -> Result<u64, WarehouseError> {
        self.st.pool.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string()))).await.map(|r| r.rows_affected()).map_err(query_err)
    }
}
