//! PostgreSQL: models run in the server, rows are hashed and diffed there,
//! and only changed rows are read out.
//!
//! Rooms: this file connects and answers the [`Warehouse`] trait; `stage`
//! runs the model and diffs it against the snapshot (one pass: each row as
//! JSON with `row_to_json`, hashed with `hashtextextended`, 64 bits, the
//! cheapest stable hash the server has; see docs/warehouses.md); `state`
//! keeps the state schema and what syncs commit into it; `merge` moves the
//! snapshot forward with what they committed; `history` reads
//! the record log and keeps the sync-run table and the per-Mapping lock.

mod columns;
mod history;
mod merge;
mod stage;
mod state;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor};

use super::rows::query_err;
use super::server::{Failure, ServerTarget, classify, connect_message};
use super::{
    Column, DiffCounts, DiffRequest, HistoryFilter, LogCount, LoggedFailure, RecordOutcome, StagedChange, StateScope, SyncLock, SyncRun,
    Warehouse, WarehouseError,
};
use crate::api::SourceSpec;
use state::Store;

pub struct PostgresWarehouse {
    st: Store,
    source_name: String,
}

impl PostgresWarehouse {
    pub async fn connect(source_name: &str, spec: &SourceSpec, secrets: &super::SecretValues) -> Result<Self, WarehouseError> {
        let target = ServerTarget::resolve(source_name, "postgres", spec.postgres.as_ref(), secrets)?;
        let options = options(&target).map_err(|message| WarehouseError::Config { source_name: source_name.to_string(), message })?;
        let pool = PgPoolOptions::new().max_connections(4).acquire_timeout(target.connect_timeout).connect_lazy_with(options.clone());
        let st =
            Store { pool, options, target, schema_name: spec.state_schema.clone(), schema: super::rows::quote_ident(&spec.state_schema) };
        let wh = PostgresWarehouse { st, source_name: source_name.to_string() };
        wh.probe().await?;
        Ok(wh)
    }

    /// Opens one connection outside the pool, so that a failure says why
    /// (the pool would retry a refused connection until its timeout).
    async fn probe(&self) -> Result<(), WarehouseError> {
        let (options, target) = (&self.st.options, &self.st.target);
        let failure = match tokio::time::timeout(target.connect_timeout, PgConnection::connect_with(options)).await {
            Err(_) => Failure::TimedOut,
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) => match &e {
                sqlx::Error::Database(db) => match db.code().as_deref() {
                    Some("28P01" | "28000") => Failure::AuthRefused(db.message().to_string()),
                    Some("3D000") => Failure::NoDatabase(db.message().to_string()),
                    _ => classify(&e),
                },
                _ => classify(&e),
            },
        };
        let at = format!("{}:{}", options.get_host(), options.get_port());
        Err(WarehouseError::Connect {
            source_name: self.source_name.clone(),
            message: connect_message(target, &at, options.get_username(), "postgres", failure),
        })
    }
}

/// Connection options from the Source's settings. Not waiting for the WAL
/// flush saves a disk sync per committed batch. A retl crash loses nothing
/// (the server has the commit); a crash of the server itself may forget its
/// last fraction of a second of commits, which the next sync then sends
/// again (at least once, never lost).
fn options(t: &ServerTarget) -> Result<PgConnectOptions, String> {
    super::server_options::postgres(t, vec![("synchronous_commit".to_string(), "off".to_string())])
}

#[async_trait]
impl Warehouse for PostgresWarehouse {
    async fn check(&self) -> Result<(), WarehouseError> {
        self.probe().await
    }

    async fn describe(&self, query: &str) -> Result<Vec<Column>, WarehouseError> {
        columns::describe(&self.st.pool, query).await
    }

    async fn prepare_state(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        state::prepare(&self.st, scope).await
    }

    async fn reset(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        let tables = [self.st.table("snapshot", scope), self.st.table("pending", scope)];
        super::state_tx::StateTx::execute_all(&self.st.pool, tables.map(|t| format!("DELETE FROM {t}")))
            .await
            .map_err(|e| self.st.error("reset", e))
    }

    async fn stage(&self, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
        stage::stage(&self.st, scope, req).await
    }

    async fn read_stage(&self, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
        stage::read(&self.st, scope, stage, after, limit).await
    }

    fn changes<'a>(&'a self, scope: &'a StateScope, req: &'a DiffRequest, streamed: bool, page: usize) -> super::ChangeStream<'a> {
        stage::changes(&self.st, scope, req, streamed, page)
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
        merge::merge(&self.st, scope).await
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

    async fn lock_sync(&self, scope: &StateScope, wait: std::time::Duration) -> Result<Option<SyncLock>, WarehouseError> {
        history::lock_sync(&self.st, scope, wait).await
    }

    async fn sample_row(&self, req: &DiffRequest, key: Option<&str>) -> Result<Vec<super::SampledRow>, WarehouseError> {
        stage::sample(&self.st, req, key).await
    }

    async fn execute(&self, sql: &str) -> Result<u64, WarehouseError> {
        self.st.pool.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string()))).await.map(|r| r.rows_affected()).map_err(query_err)
    }
}
