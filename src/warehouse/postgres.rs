//! PostgreSQL: models run in the server, rows are hashed and diffed there,
//! and only changed rows are read out, page by page.
//!
//! State lives in the schema `stateSchema` (tables named by the Mapping's
//! UID). A sync's stage is one UNLOGGED table (no WAL: scratch data,
//! dropped at the end of the sync), written in one pass over the model: every
//! key with its hash, numbered for paging, with the row's JSON only where it
//! differs from the snapshot, and a partial index over the changes to send.
//! Rows become JSON with `row_to_json`; each is
//! hashed with `hashtextextended` (64 bits, the cheapest stable hash the
//! server has; see docs/warehouses.md).

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Column as _, Connection, Executor, Row, Statement as _, TypeInfo as _};

use super::rows::{RowDecoder, quote_ident, stage_suffix};
use super::server::{
    CommitPlan, Failure, ServerTarget, classify, connect_message, decode_row, literal, model_subquery, now_ms,
    parse_flag, parse_kind,
};
use super::{
    Column, DiffCounts, DiffMode, DiffRequest, HistoryFilter, RecordOutcome, StagedChange, StateScope, SyncRun,
    Warehouse, WarehouseError,
};
use crate::api::{SourceSpec, TlsMode};

/// Memory the server may use for the diff's hash joins, per stage.
const STAGE_WORK_MEM: &str = "128MB";

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
        let options = options(&target).map_err(|message| WarehouseError::Config {
            source_name: source_name.to_string(),
            message,
        })?;
        let wh = PostgresWarehouse {
            pool: PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(target.connect_timeout)
                .connect_lazy_with(options.clone()),
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
        let failure = match tokio::time::timeout(self.target.connect_timeout, PgConnection::connect_with(&self.options)).await
        {
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

    fn table(&self, name: &str, scope: &StateScope) -> String {
        format!("{}.{}", self.schema, quote_ident(&format!("{name}_{}", scope.id)))
    }

    /// A sync's stage: one UNLOGGED table (no WAL: scratch data, dropped at
    /// the end of the sync).
    fn stage_table(&self, scope: &StateScope, stage: &str) -> String {
        format!("{}.{}", self.schema, quote_ident(&format!("stage_{}_{}", scope.id, stage_suffix(stage))))
    }

    fn runs_table(&self) -> String {
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

/// Connection options from the Source's settings.
fn options(t: &ServerTarget) -> Result<PgConnectOptions, String> {
    let mut o = match &t.url {
        Some(url) => PgConnectOptions::from_str(url).map_err(|e| {
            format!("the connection URL in spec.postgres.urlSecretRef is not valid ({})", t.redact(&e.to_string()))
        })?,
        None => {
            let mut o = PgConnectOptions::new_without_pgpass();
            if let Some(h) = &t.host {
                o = o.host(h);
            }
            o = o.port(t.port.unwrap_or(5432));
            if let Some(d) = &t.database {
                o = o.database(d);
            }
            if let Some(u) = &t.user {
                o = o.username(u);
            }
            if let Some(p) = &t.password {
                o = o.password(p);
            }
            o
        }
    };
    if let Some(mode) = t.tls {
        o = o.ssl_mode(match mode {
            TlsMode::Disable => PgSslMode::Disable,
            TlsMode::Prefer => PgSslMode::Prefer,
            TlsMode::Require => PgSslMode::Require,
            TlsMode::VerifyCa => PgSslMode::VerifyCa,
            TlsMode::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    // UTC makes timestamps come out the same whatever the server's zone.
    // Not waiting for the WAL flush saves a disk sync per committed batch. A
    // retl crash loses nothing (the server has the commit); a crash of the
    // server itself may forget its last fraction of a second of commits,
    // which the next sync then sends again (at least once, never lost).
    let mut settings = vec![
        ("TimeZone".to_string(), "UTC".to_string()),
        ("synchronous_commit".to_string(), "off".to_string()),
    ];
    if let Some(s) = t.statement_timeout {
        settings.push(("statement_timeout".to_string(), format!("{s}s")));
    }
    Ok(o.application_name("retl").options(settings))
}

fn query_err(e: sqlx::Error) -> WarehouseError {
    match e {
        sqlx::Error::Database(db) => WarehouseError::Query { message: db.message().to_string() },
        other => WarehouseError::Query { message: other.to_string() },
    }
}

/// The JSON form of one model column, by its PostgreSQL type. Everything
/// not listed here goes as `row_to_json` writes it (text for types JSON has
/// no form for), so no PostgreSQL value is refused.
fn column_json(c: &Column) -> String {
    let q = format!("q.{}", quote_ident(&c.name));
    let expr = match c.type_name.as_deref().unwrap_or("") {
        // Exact: a number while it has at most 15 digits (every such decimal
        // survives a double), otherwise a string with every digit.
        "NUMERIC" => format!("CASE WHEN length(abs({q})::text) <= 16 THEN to_json({q}) ELSE to_json({q}::text) END"),
        // No zone: taken as UTC, so it comes out as RFC 3339 with an offset.
        "TIMESTAMP" => format!("{q} AT TIME ZONE 'UTC'"),
        "BYTEA" => format!("translate(encode({q}, 'base64'), chr(10), '')"),
        _ => q,
    };
    format!("{expr} AS {}", quote_ident(&c.name))
}

/// `SELECT k, row` of the model: the key as text and the row as JSON text.
fn model_rows(req: &DiffRequest) -> String {
    let cols: Vec<String> = req.columns.iter().map(column_json).collect();
    format!(
        "SELECT (q.{pk})::text AS k, row_to_json(r)::text AS row FROM ({query}) AS q CROSS JOIN LATERAL (SELECT {cols}) AS r",
        pk = quote_ident(&req.primary_key),
        query = model_subquery(&req.query),
        cols = cols.join(", ")
    )
}

#[async_trait]
impl Warehouse for PostgresWarehouse {
    async fn check(&self) -> Result<(), WarehouseError> {
        self.probe().await
    }

    async fn describe(&self, query: &str) -> Result<Vec<Column>, WarehouseError> {
        let sql = format!("SELECT * FROM ({}) AS q", model_subquery(query));
        let stmt = self.pool.prepare(sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(sql))).await.map_err(query_err)?;
        Ok(stmt
            .columns()
            .iter()
            .map(|c| Column { name: c.name().to_string(), type_name: Some(c.type_info().name().to_string()) })
            .collect())
    }

    async fn prepare_state(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        super::postgres_state::prepare(self, scope).await
    }

    async fn reset(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        let sql = format!(
            "BEGIN; DELETE FROM {}; DELETE FROM {}; COMMIT;",
            self.table("snapshot", scope),
            self.table("pending", scope)
        );
        self.pool.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await.map(|_| ()).map_err(|e| self.state_err("reset", e))
    }

    async fn stage(&self, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
        super::check_columns(req)?;
        self.drop_stage(scope, &req.stage).await?;
        let m = self.stage_table(scope, &req.stage);
        let (s, p, l) = (self.table("snapshot", scope), self.table("pending", scope), self.table("log", scope));
        let replay = match &req.mode {
            DiffMode::Normal => None,
            DiffMode::Replay { sync } => Some(sync),
        };
        if let Some(sync) = replay {
            let known: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM {} WHERE sync = $1 AND mapping_uid = $2",
                self.runs_table()
            )))
            .bind(sync)
            .bind(&scope.id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.state_err("read", e))?;
            if known == 0 {
                return Err(WarehouseError::NothingToReplay { sync: sync.clone() });
            }
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.state_err("staged", e))?;
        let run = |sql: String| sqlx::raw_sql(AssertSqlSafe(sql));
        // The planner prices building a row's JSON like any other function
        // call and keeps it on one core; priced at what moving a row between
        // processes really costs, the JSON is built by parallel workers
        // (where the model's query allows it).
        tx.execute(run(format!("SET LOCAL work_mem = '{STAGE_WORK_MEM}'; SET LOCAL parallel_tuple_cost = 0.001")))
            .await
            .map_err(|e| self.state_err("staged", e))?;
        let snapshot_empty: bool = sqlx::query_scalar(AssertSqlSafe(format!("SELECT NOT EXISTS (SELECT 1 FROM {s})")))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.state_err("read", e))?;
        // One pass over the model builds the whole stage: each row as JSON,
        // hashed, joined with the snapshot and numbered for paging. A row
        // keeps its JSON only where it may be sent (a change, or any row in a
        // replay); a snapshot key the model no longer returns comes out of the
        // FULL JOIN as `present = false`: a delete. What the pending failures
        // say of a key is read now, as it stands when the sync starts. OFFSET
        // 0 keeps the JSON from being built twice (once for the hash, once kept).
        let model = model_rows(req);
        let hashed = format!("SELECT k, row, hashtextextended(row, 0) AS h FROM ({model} OFFSET 0) AS y");
        let expire = req.expire_before_ms;
        let create = match replay {
            None => format!(
                "CREATE UNLOGGED TABLE {m} AS
                 SELECT row_number() OVER () AS pos, j.*, p.k IS NOT NULL AS retried,
                        COALESCE(p.first_failed_at < {expire}, false) AS expired, false AS dup
                 FROM (SELECT COALESCE(x.k, s.k) AS k, x.h, CASE WHEN s.h IS DISTINCT FROM x.h THEN x.row END AS row,
                              s.h AS sh, x.h IS NOT NULL AS present, s.h IS DISTINCT FROM x.h AS changed
                       FROM ({hashed}) AS x FULL JOIN {s} s ON s.k = x.k) AS j
                 LEFT JOIN {p} p ON p.k = j.k"
            ),
            // Every key the replayed sync logged, with the row the model
            // returns now; a key the model no longer returns is a delete.
            Some(_) => format!(
                "CREATE UNLOGGED TABLE {m} AS
                 SELECT row_number() OVER (ORDER BY l.k) AS pos, l.k, x.h, x.row, s.h AS sh, x.k IS NOT NULL AS present,
                        true AS changed, p.k IS NOT NULL AS retried, false AS expired, false AS dup
                 FROM (SELECT DISTINCT k FROM {l} WHERE sync = $1 AND k IS NOT NULL) l
                 LEFT JOIN ({hashed}) AS x ON x.k = l.k LEFT JOIN {s} s ON s.k = l.k LEFT JOIN {p} p ON p.k = l.k"
            ),
        };
        let mut q = sqlx::query(AssertSqlSafe(create));
        if let Some(sync) = replay {
            q = q.bind(sync);
        }
        q.execute(&mut *tx).await.map_err(query_err)?;
        // Keys the model returns more than once: none of their copies is
        // sent. Only a key with a changed copy can be sent, so only those
        // count: when little changed, a semi-join on the changed keys is
        // cheap; when everything is new, one grouping pass is. A copy equal
        // to what was delivered kept no JSON and shows its key as the payload.
        // Found none (the usual case), the UPDATE has nothing to join with.
        let dups = match (replay, snapshot_empty) {
            (None, false) => format!(
                "SELECT k FROM {m} WHERE present AND k IN
                   (SELECT k FROM {m} WHERE present AND k IS NOT NULL AND changed)
                 GROUP BY k HAVING count(*) > 1"
            ),
            _ => format!("SELECT k FROM {m} WHERE present AND k IS NOT NULL GROUP BY k HAVING count(*) > 1"),
        };
        let pk = literal(&req.primary_key);
        tx.execute(run(format!(
            "UPDATE {m} m SET dup = true, changed = true, row = COALESCE(m.row, json_build_object({pk}, m.k)::text)
             FROM ({dups}) d WHERE m.present AND m.k = d.k"
        )))
        .await
        .map_err(|e| self.state_err("staged", e))?;
        tx.execute(run(format!("CREATE INDEX ON {m} (pos) WHERE changed")))
            .await
            .map_err(|e| self.state_err("staged", e))?;
        if !req.dry_run && replay.is_none() {
            // A pending failure that is no longer a change has nothing left to retry.
            tx.execute(run(format!(
                "DELETE FROM {p} WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.changed AND m.k = {p}.k)"
            )))
            .await
            .map_err(|e| self.state_err("updated", e))?;
        }
        let counts = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE changed AND present AND sh IS NULL),
                    count(*) FILTER (WHERE changed AND present AND sh IS NOT NULL),
                    count(*) FILTER (WHERE changed AND NOT present), count(*) FILTER (WHERE changed AND retried),
                    count(*) FILTER (WHERE present), (SELECT count(*) FROM {s}) FROM {m}"
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.state_err("read", e))?;
        tx.commit().await.map_err(|e| self.state_err("staged", e))?;
        let n = |i: usize| -> Result<u64, WarehouseError> {
            counts.try_get::<i64, _>(i).map(|v| v.max(0) as u64).map_err(|e| self.state_err("read", e))
        };
        let (added, updated, deleted, retried, model_rows, snapshot_rows) = (n(0)?, n(1)?, n(2)?, n(3)?, n(4)?, n(5)?);
        let unchanged = if replay.is_some() { 0 } else { model_rows.saturating_sub(added + updated) };
        Ok(DiffCounts { model_rows, snapshot_rows, added, updated, deleted, unchanged, retried })
    }

    async fn read_stage(
        &self,
        scope: &StateScope,
        stage: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StagedChange>, WarehouseError> {
        let m = self.stage_table(scope, stage);
        let sql = format!(
            "SELECT pos, k, COALESCE(h::text, '') AS h, CASE WHEN present THEN row END AS row,
                    CASE WHEN NOT present THEN 'deleted' WHEN sh IS NULL THEN 'added' ELSE 'updated' END AS op, retried,
                    CASE WHEN present AND k IS NULL THEN 'null_key' WHEN dup THEN 'duplicate_key'
                         WHEN expired THEN 'expired' END AS flag
             FROM {m} WHERE changed AND pos > $1 ORDER BY pos LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.state_err("read", e))?;
        let decoder = RowDecoder;
        rows.iter()
            .map(|r| {
                let get_err = |e| self.state_err("read", e);
                let op: String = r.try_get("op").map_err(get_err)?;
                let flag: Option<String> = r.try_get("flag").map_err(get_err)?;
                let row: Option<String> = r.try_get("row").map_err(get_err)?;
                Ok(StagedChange {
                    position: r.try_get("pos").map_err(get_err)?,
                    key: r.try_get("k").map_err(get_err)?,
                    hash: r.try_get("h").map_err(get_err)?,
                    row: row.map(|t| decode_row(&decoder, &t)),
                    kind: parse_kind(&op),
                    retried: r.try_get("retried").map_err(get_err)?,
                    flag: flag.as_deref().and_then(parse_flag),
                })
            })
            .collect()
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
        let plan = CommitPlan::new(outcomes);
        // One statement, so one round trip and one implicit transaction: its
        // parts touch disjoint keys (each key counts once per batch).
        let sql = format!(
            "WITH upsert_snapshot AS (
               INSERT INTO {s} (k, h, delivered_at) SELECT k, h::bigint, $10 FROM unnest($1::text[], $2::text[]) AS u(k, h)
               ON CONFLICT (k) DO UPDATE SET h = excluded.h, delivered_at = excluded.delivered_at),
             delete_snapshot AS (DELETE FROM {s} WHERE k = ANY($3::text[])),
             clear_pending AS (DELETE FROM {p} WHERE k = ANY($4::text[])),
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
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| self.state_err("committed", e))
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

    async fn execute(&self, sql: &str) -> Result<u64, WarehouseError> {
        self.pool
            .execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string())))
            .await
            .map(|r| r.rows_affected())
            .map_err(query_err)
    }
}

/// What the state module needs from the warehouse.
impl PostgresWarehouse {
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
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
