//! PostgreSQL: models run in the server, rows are hashed and diffed there,
//! and only changed rows are read out, page by page.
//!
//! State lives in the schema `stateSchema` (tables named by the Mapping's
//! UID; created and upgraded by `postgres_state`). A sync's stage is one
//! UNLOGGED table (no WAL: scratch data, dropped at the end of the sync),
//! written in one pass over the model by `postgres_stage`: every key with its
//! hash, numbered for paging, with the row's JSON only where it differs from
//! the snapshot, and a partial index over the changes to send. Rows become
//! JSON with `row_to_json`; each is hashed with `hashtextextended` (64 bits,
//! the cheapest stable hash the server has; see docs/warehouses.md). This
//! file connects, describes models and commits what the destination answered.

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor};

use super::rows::{describe_columns, query_err, quote_ident, stage_suffix};
use super::server::{CommitPlan, Failure, ServerTarget, classify, connect_message, now_ms};
use super::{Column, DiffCounts, DiffRequest, HistoryFilter, RecordOutcome, StagedChange, StateScope, SyncRun, Warehouse, WarehouseError};
use crate::api::SourceSpec;

pub struct PostgresWarehouse {
    pool: PgPool,
    options: PgConnectOptions,
    target: ServerTarget,
    source_name: String,
    /// `stateSchema`, as given (for messages) and quoted (for SQL).
    schema_name: String,
    schema: String,
}

impl PostgresWarehouse {
    pub async fn connect(source_name: &str, spec: &SourceSpec, secrets: &super::SecretValues) -> Result<Self, WarehouseError> {
        let target = ServerTarget::resolve(source_name, "postgres", spec.postgres.as_ref(), secrets)?;
        let options = options(&target).map_err(|message| WarehouseError::Config { source_name: source_name.to_string(), message })?;
        let wh = PostgresWarehouse {
            pool: PgPoolOptions::new().max_connections(4).acquire_timeout(target.connect_timeout).connect_lazy_with(options.clone()),
            options,
            target,
            source_name: source_name.to_string(),
            schema_name: spec.state_schema.clone(),
            schema: quote_ident(&spec.state_schema),
        };
        wh.probe().await?;
        Ok(wh)
    }

    /// Opens one connection outside the pool, so that a failure says why
    /// (the pool would retry a refused connection until its timeout).
    async fn probe(&self) -> Result<(), WarehouseError> {
        let failure = match tokio::time::timeout(self.target.connect_timeout, PgConnection::connect_with(&self.options)).await {
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
        let at = format!("{}:{}", self.options.get_host(), self.options.get_port());
        Err(WarehouseError::Connect {
            source_name: self.source_name.clone(),
            message: connect_message(&self.target, &at, self.options.get_username(), "postgres", failure),
        })
    }

    pub(super) fn table(&self, name: &str, scope: &StateScope) -> String {
        format!("{}.{}", self.schema, quote_ident(&format!("{name}_{}", scope.id)))
    }

    /// A sync's stage: one UNLOGGED table (no WAL: scratch data, dropped at
    /// the end of the sync).
    pub(super) fn stage_table(&self, scope: &StateScope, stage: &str) -> String {
        format!("{}.{}", self.schema, quote_ident(&format!("stage_{}_{}", scope.id, stage_suffix(stage))))
    }

    pub(super) fn runs_table(&self) -> String {
        format!("{}.sync_runs", self.schema)
    }

    fn state_err(&self, action: &'static str, e: sqlx::Error) -> WarehouseError {
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("42501")
        {
            return WarehouseError::State { action, message: self.grant_hint(db.message()) };
        }
        WarehouseError::State { action, message: self.target.redact(&e.to_string()) }
    }

    /// What an administrator runs so that retl may keep its state.
    fn grant_hint(&self, why: &str) -> String {
        let user = quote_ident(self.options.get_username());
        let db = quote_ident(self.options.get_database().unwrap_or("postgres"));
        format!(
            "{why}. retl keeps its state in the schema {s} and needs to create tables there; as an administrator run \
             `CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {user};` (or `GRANT USAGE, CREATE ON SCHEMA {s} TO {user};` \
             if the schema exists, or `GRANT CREATE ON DATABASE {db} TO {user};` to let retl create it)",
            s = self.schema
        )
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
        describe_columns(&self.pool, query).await
    }

    async fn prepare_state(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        super::postgres_state::prepare(self, scope).await
    }

    async fn reset(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        let tables = [self.table("snapshot", scope), self.table("pending", scope)];
        super::state_tx::StateTx::execute_all(&self.pool, tables.map(|t| format!("DELETE FROM {t}")))
            .await
            .map_err(|e| self.state_err("reset", e))
    }

    async fn stage(&self, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
        super::postgres_stage::stage(self, scope, req).await
    }

    async fn read_stage(&self, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
        super::postgres_stage::read(self, scope, stage, after, limit).await
    }

    async fn drop_stage(&self, scope: &StateScope, stage: &str) -> Result<(), WarehouseError> {
        let m = self.stage_table(scope, stage);
        self.pool
            .execute(sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {m}"))))
            .await
            .map(|_| ())
            .map_err(|e| self.state_err("cleaned up", e))
    }

    async fn commit(&self, scope: &StateScope, sync: &str, outcomes: &[RecordOutcome]) -> Result<(), WarehouseError> {
        let (s, p, l) = (self.table("snapshot", scope), self.table("pending", scope), self.table("log", scope));
        let i = self.table("inflight", scope);
        let plan = CommitPlan::new(outcomes);
        // One statement, so one round trip and one implicit transaction: its
        // parts touch disjoint keys (each key counts once per batch).
        let sql = format!(
            "WITH upsert_snapshot AS (
               INSERT INTO {s} (k, h, delivered_at) SELECT k, h::bigint, $10 FROM unnest($1::text[], $2::text[]) AS u(k, h)
               ON CONFLICT (k) DO UPDATE SET h = excluded.h, delivered_at = excluded.delivered_at),
             delete_snapshot AS (DELETE FROM {s} WHERE k = ANY($3::text[])),
             clear_pending AS (DELETE FROM {p} WHERE k = ANY($4::text[])),
             clear_in_flight AS (DELETE FROM {i} WHERE k = ANY($16::text[])),
             upsert_pending AS (
               INSERT INTO {p} (k, first_failed_at, last_failed_at, attempts, last_code, last_error)
               SELECT k, $10, $10, 1, c, m FROM unnest($5::text[], $6::text[], $7::text[]) AS u(k, c, m)
               ON CONFLICT (k) DO UPDATE SET last_failed_at = excluded.last_failed_at, attempts = {p}.attempts + 1,
               last_code = excluded.last_code, last_error = excluded.last_error)
             INSERT INTO {l} (sync, k, op, outcome, code, error, payload, at)
             SELECT $8, k, op, outcome, code, error, payload, $10
             FROM unnest($9::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])
               AS u(k, op, outcome, code, error, payload)"
        );
        let log = &plan.log;
        let (keys, hashes): (Vec<&str>, Vec<&str>) = plan.upsert_snapshot.iter().copied().unzip();
        sqlx::query(AssertSqlSafe(sql))
            .bind(keys)
            .bind(hashes)
            .bind(&plan.delete_snapshot)
            .bind(&plan.clear_pending)
            .bind(plan.upsert_pending.iter().map(|x| x.0).collect::<Vec<&str>>())
            .bind(plan.upsert_pending.iter().map(|x| x.1).collect::<Vec<&str>>())
            .bind(plan.upsert_pending.iter().map(|x| x.2).collect::<Vec<&str>>())
            .bind(sync)
            .bind(log.iter().map(|e| e.key).collect::<Vec<Option<&str>>>())
            .bind(now_ms())
            .bind(log.iter().map(|e| e.op).collect::<Vec<&str>>())
            .bind(log.iter().map(|e| e.outcome).collect::<Vec<&str>>())
            .bind(log.iter().map(|e| e.code).collect::<Vec<Option<&str>>>())
            .bind(log.iter().map(|e| e.error).collect::<Vec<Option<&str>>>())
            .bind(log.iter().map(|e| e.payload).collect::<Vec<Option<&str>>>())
            .bind(&plan.keys)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| self.state_err("committed", e))
    }

    async fn mark_in_flight(&self, scope: &StateScope, sync: &str, keys: &[&str]) -> Result<(), WarehouseError> {
        super::postgres_state::mark_in_flight(self, scope, sync, keys).await
    }

    async fn recover_in_flight(&self, scope: &StateScope) -> Result<u64, WarehouseError> {
        super::postgres_state::recover_in_flight(self, scope).await
    }

    async fn log_counts(&self, scope: &StateScope, sync: &str) -> Result<Vec<super::LogCount>, WarehouseError> {
        let sql = super::log_counts_sql(&self.table("log", scope), "$1");
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
        let sql = super::failed_records_sql(&self.table("log", scope), "k", ["$1", "$2", "$3"]);
        let (limit, offset) = super::record_log::page_bounds(offset, limit);
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(limit).bind(offset).fetch_all(&self.pool).await;
        super::read_failed_records(&rows.map_err(|e| self.state_err("read", e))?).map_err(|e| self.state_err("read", e))
    }

    async fn save_run(&self, run: &SyncRun) -> Result<(), WarehouseError> {
        super::postgres_state::save_run(self, run).await
    }

    async fn runs(&self, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
        super::postgres_state::runs(self, filter).await
    }

    async fn prune(&self, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError> {
        let err = |e| self.state_err("pruned", e);
        // A sync saves its run before it logs a record, and runs are pruned
        // last, so no log row is older than the oldest run: without a run to
        // prune there is nothing to look for (the log's BRIN index would
        // still read the newest, unsummarized part of the table).
        let due: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE mapping_uid = $1 AND started_ms < $2)",
            self.runs_table()
        )))
        .bind(&scope.id)
        .bind(older_than_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        if !due {
            return Ok(());
        }
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {} WHERE at < $1", self.table("log", scope))))
            .bind(older_than_ms)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {} WHERE mapping_uid = $1 AND started_ms < $2", self.runs_table())))
            .bind(&scope.id)
            .bind(older_than_ms)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn lock_sync(&self, scope: &StateScope, wait: std::time::Duration) -> Result<Option<super::SyncLock>, WarehouseError> {
        super::postgres_state::lock_sync(self, scope, wait).await
    }

    async fn sample_row(&self, req: &DiffRequest, key: Option<&str>) -> Result<Vec<super::SampledRow>, WarehouseError> {
        super::sample::postgres(self, req, key).await
    }

    async fn execute(&self, sql: &str) -> Result<u64, WarehouseError> {
        self.pool.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string()))).await.map(|r| r.rows_affected()).map_err(query_err)
    }
}

/// What the state module needs from the warehouse.
impl PostgresWarehouse {
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) fn connect_options(&self) -> &PgConnectOptions {
        &self.options
    }

    pub(super) fn schema_parts(&self) -> (&str, &str) {
        (&self.schema_name, &self.schema)
    }

    pub(super) fn tables(&self, scope: &StateScope) -> [String; 4] {
        [self.table("snapshot", scope), self.table("pending", scope), self.table("log", scope), self.runs_table()]
    }

    pub(super) fn error(&self, action: &'static str, e: sqlx::Error) -> WarehouseError {
        self.state_err(action, e)
    }
}
