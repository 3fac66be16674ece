//! PostgreSQL: retl's state schema — created on first use, upgraded in
//! place — and the sync-run table.

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::postgres::PostgresWarehouse;
use super::rows::quote_ident;
use super::{HistoryFilter, LOCK_POLL, StateScope, SyncLock, SyncRun, WarehouseError};

/// Version of the state layout this build writes. Each entry of
/// [`UPGRADES`] takes a schema from the version before it to its own.
const LAYOUT_VERSION: i32 = 1;

/// In-place upgrades of the shared tables, by target version (none yet:
/// version 1 is the first layout). Per-Mapping tables are upgraded by the
/// `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` lines of [`mapping_tables`].
const UPGRADES: &[(i32, &str)] = &[];

/// Creates (or upgrades) the state schema and the tables of one Mapping.
/// Runs under an advisory lock so that syncs starting together do not race
/// on `CREATE TABLE IF NOT EXISTS`.
pub async fn prepare(wh: &PostgresWarehouse, scope: &StateScope) -> Result<(), WarehouseError> {
    let (name, schema) = wh.schema_parts();
    let err = |e| wh.error("created", e);
    let mut tx = super::state_tx::StateTx::begin(wh.pool()).await.map_err(err)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("retl state {name}"))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    // CREATE SCHEMA IF NOT EXISTS needs the CREATE right on the database even
    // when the schema exists, so look first.
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
    if !exists {
        tx.execute(sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))).await.map_err(err)?;
    }
    let shared = format!(
        "CREATE TABLE IF NOT EXISTS {schema}.layout (version integer NOT NULL);
         CREATE TABLE IF NOT EXISTS {schema}.sync_runs (namespace text NOT NULL, sync text NOT NULL, mapping text NOT NULL,
             mapping_uid text NOT NULL, model text NOT NULL, destination text NOT NULL, trigger_kind text NOT NULL,
             phase text NOT NULL, started_ms bigint NOT NULL, completed_ms bigint, status_json text NOT NULL,
             PRIMARY KEY (namespace, sync));
         CREATE INDEX IF NOT EXISTS sync_runs_mapping ON {schema}.sync_runs (mapping_uid, started_ms);"
    );
    tx.execute(sqlx::raw_sql(AssertSqlSafe(shared))).await.map_err(err)?;
    let version: Option<i32> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(version) FROM {schema}.layout"))).fetch_one(&mut *tx).await.map_err(err)?;
    match version {
        Some(v) if v > LAYOUT_VERSION => {
            return Err(WarehouseError::State {
                action: "used",
                message: format!(
                    "the state schema {schema} was written by a newer retl (layout {v}, this build knows {LAYOUT_VERSION}); \
                     upgrade retl, or point stateSchema at another schema"
                ),
            });
        }
        Some(v) => {
            for (_, sql) in UPGRADES.iter().filter(|(to, _)| *to > v) {
                tx.execute(sqlx::raw_sql(AssertSqlSafe(sql.replace("{schema}", schema)))).await.map_err(err)?;
            }
            if v < LAYOUT_VERSION {
                sqlx::query(AssertSqlSafe(format!("UPDATE {schema}.layout SET version = $1")))
                    .bind(LAYOUT_VERSION)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
        }
        None => {
            sqlx::query(AssertSqlSafe(format!("INSERT INTO {schema}.layout (version) VALUES ($1)")))
                .bind(LAYOUT_VERSION)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
    }
    tx.execute(sqlx::raw_sql(AssertSqlSafe(mapping_tables(wh, scope)))).await.map_err(err)?;
    tx.commit().await.map_err(err)
}

fn mapping_tables(wh: &PostgresWarehouse, scope: &StateScope) -> String {
    let [s, p, l, _] = wh.tables(scope);
    let li = quote_ident(&format!("log_{}_sync", scope.id));
    // The log is appended in time order, so a BRIN index finds old rows to
    // prune for a fraction of what a B-tree costs on every insert (layout 1
    // had a B-tree, dropped here).
    let la = quote_ident(&format!("log_{}_at", scope.id));
    let lb = quote_ident(&format!("log_{}_at_brin", scope.id));
    let (_, schema) = wh.schema_parts();
    format!(
        "CREATE TABLE IF NOT EXISTS {s} (k text PRIMARY KEY, h bigint NOT NULL, delivered_at bigint NOT NULL);
         CREATE TABLE IF NOT EXISTS {p} (k text PRIMARY KEY, first_failed_at bigint NOT NULL, last_failed_at bigint NOT NULL,
             attempts integer NOT NULL, last_code text, last_error text);
         CREATE TABLE IF NOT EXISTS {l} (sync text NOT NULL, k text, op text NOT NULL, outcome text NOT NULL,
             code text, error text, payload text, at bigint NOT NULL);
         CREATE INDEX IF NOT EXISTS {li} ON {l} (sync);
         DROP INDEX IF EXISTS {schema}.{la};
         CREATE INDEX IF NOT EXISTS {lb} ON {l} USING brin (at);
         CREATE TABLE IF NOT EXISTS {i} (k text PRIMARY KEY, sync text NOT NULL, at bigint NOT NULL);",
        i = wh.table("inflight", scope)
    )
}

/// The hash of a snapshot entry whose record may or may not have reached the
/// destination (a recovered in-flight key): one no row hashes to (the
/// chance is 2^-64), so the record counts as changed.
const UNKNOWN_HASH: i64 = 0;

pub async fn mark_in_flight(wh: &PostgresWarehouse, scope: &StateScope, sync: &str, keys: &[&str]) -> Result<(), WarehouseError> {
    let sql = format!(
        "INSERT INTO {} (k, sync, at) SELECT k, $2, $3 FROM unnest($1::text[]) AS u(k)
         ON CONFLICT (k) DO UPDATE SET sync = excluded.sync, at = excluded.at",
        wh.table("inflight", scope)
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(keys)
        .bind(sync)
        .bind(super::server::now_ms())
        .execute(wh.pool())
        .await
        .map(|_| ())
        .map_err(|e| wh.error("updated", e))
}

pub async fn recover_in_flight(wh: &PostgresWarehouse, scope: &StateScope) -> Result<u64, WarehouseError> {
    // One statement, so the keys leave the in-flight table and enter the
    // snapshot together. A key the snapshot already holds keeps its entry:
    // that record was an update or a delete, which the next diff finds anyway.
    let sql = format!(
        "WITH moved AS (DELETE FROM {i} RETURNING k)
         INSERT INTO {s} (k, h, delivered_at) SELECT k, {UNKNOWN_HASH}, $1 FROM moved ON CONFLICT (k) DO NOTHING",
        i = wh.table("inflight", scope),
        s = wh.table("snapshot", scope)
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(super::server::now_ms())
        .execute(wh.pool())
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| wh.error("updated", e))
}

pub async fn save_run(wh: &PostgresWarehouse, run: &SyncRun) -> Result<(), WarehouseError> {
    let (_, schema) = wh.schema_parts();
    let sql = format!(
        "INSERT INTO {schema}.sync_runs ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (namespace, sync) DO UPDATE SET mapping = excluded.mapping, mapping_uid = excluded.mapping_uid,
         model = excluded.model, destination = excluded.destination, trigger_kind = excluded.trigger_kind,
         phase = excluded.phase, started_ms = excluded.started_ms, completed_ms = excluded.completed_ms,
         status_json = excluded.status_json",
        super::runs::COLUMNS
    );
    super::runs::bind(sqlx::query(AssertSqlSafe(sql)), run).execute(wh.pool()).await.map(|_| ()).map_err(|e| wh.error("saved", e))
}

pub async fn runs(wh: &PostgresWarehouse, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
    if filter.mapping_uids.is_empty() {
        return Ok(Vec::new());
    }
    let (_, schema) = wh.schema_parts();
    let table = format!("{schema}.sync_runs");
    let err = |e| wh.error("read", e);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&table).fetch_one(wh.pool()).await.map_err(err)?;
    if !exists {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT namespace, sync, mapping, mapping_uid, model, destination, trigger_kind, phase, started_ms, completed_ms,
         status_json FROM {table} WHERE mapping_uid = ANY($1) AND ($2::text IS NULL OR phase = $2)
         AND ($3::bigint IS NULL OR started_ms >= $3) AND ($4::bigint IS NULL OR started_ms <= $4)
         ORDER BY started_ms DESC, sync DESC"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(&filter.mapping_uids)
        .bind(&filter.phase)
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .fetch_all(wh.pool())
        .await
        .map_err(err)?;
    rows.iter().map(|r| super::runs::read(r).map_err(err)).collect()
}

/// One sync per Mapping at a time: a session-level advisory lock on a
/// connection of its own (outside the pool, so no other statement ever runs
/// on it and it is never handed back). The server releases it when that
/// connection closes, which the death of the process holding it does too.
pub async fn lock_sync(wh: &PostgresWarehouse, scope: &StateScope, wait: std::time::Duration) -> Result<Option<SyncLock>, WarehouseError> {
    let err = |e| wh.error("locked", e);
    let mut conn = PgConnection::connect_with(wh.connect_options()).await.map_err(err)?;
    let (name, _) = wh.schema_parts();
    let key = format!("retl sync {name} {}", scope.id);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .fetch_one(&mut conn)
            .await
            .map_err(err)?;
        if got {
            return Ok(Some(SyncLock::new(conn)));
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = conn.close().await;
            return Ok(None);
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}
