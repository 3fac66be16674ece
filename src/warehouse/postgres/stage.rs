//! PostgreSQL: a sync's stage. One pass over the model writes it: each row
//! as JSON, hashed, joined with the snapshot and numbered for paging; the
//! changes are then read out a page at a time.

use sqlx::{AssertSqlSafe, Executor, Postgres, Row};

use super::columns::column_json;
use super::state::Store;
use crate::record::ChangeKind;
use crate::warehouse::rows::{RowDecoder, model_subquery, query_err, quote_ident};
use crate::warehouse::sample::{self, SampledRow};
use crate::warehouse::server::{decode_row, literal};
use crate::warehouse::state_tx::StateTx;
use crate::warehouse::stream;
use crate::warehouse::{
    ChangeStream, DiffCounts, DiffMode, DiffRequest, StageCounts, StagedChange, StateScope, WarehouseError, parse_flag,
};

/// Memory the server may use for the diff's hash joins, per stage.
const STAGE_WORK_MEM: &str = "128MB";

/// `SELECT k, row` of the model: the key as text and the row as JSON text.
pub(super) fn model_rows(req: &DiffRequest) -> String {
    let cols: Vec<String> = req.columns.iter().map(column_json).collect();
    format!(
        "SELECT (q.{pk})::text AS k, row_to_json(r)::text AS row FROM ({query}) AS q CROSS JOIN LATERAL (SELECT {cols}) AS r",
        pk = quote_ident(&req.primary_key),
        query = model_subquery(&req.query),
        cols = cols.join(", ")
    )
}

pub async fn stage(wh: &Store, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
    crate::warehouse::check_columns(req)?;
    drop(wh, scope, &req.stage).await?;
    let m = wh.stage_table(scope, &req.stage);
    let (s, p, r, a) = (wh.table("snapshot", scope), wh.table("pending", scope), wh.table("records", scope), wh.table("acks", scope));
    let replay = match &req.mode {
        DiffMode::Normal => None,
        DiffMode::Replay { sync } => Some(sync),
    };
    if replay.is_none() && !req.dry_run && first_sync(wh, scope).await? {
        return stage_streamed(wh, scope, req).await;
    }
    let mut tx = StateTx::begin(&wh.pool).await.map_err(|e| wh.error("staged", e))?;
    let run = |sql: String| sqlx::raw_sql(AssertSqlSafe(sql));
    // The planner prices building a row's JSON like any other function
    // call and keeps it on one core; priced at what moving a row between
    // processes really costs, the JSON is built by parallel workers
    // (where the model's query allows it).
    // Repeatable read: an incremental stage reads the model twice (its keys,
    // then its rows), and both passes must see the same rows.
    tx.execute(run(format!(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET LOCAL work_mem = '{STAGE_WORK_MEM}'; SET LOCAL parallel_tuple_cost = 0.001"
    )))
    .await
    .map_err(|e| wh.error("staged", e))?;
    let snapshot_empty: bool = sqlx::query_scalar(AssertSqlSafe(format!("SELECT NOT EXISTS (SELECT 1 FROM {s})")))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| wh.error("read", e))?;
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
    // Against a snapshot, most rows are unchanged: one pass over the keys
    // finds the duplicates and counts the rows, so that the stage holds only
    // the changes (and every copy of a duplicated key) instead of a row per
    // model row.
    let keys = keys_table(wh, scope, &req.stage);
    let incremental = replay.is_none() && !snapshot_empty;
    let model_rows = if incremental { Some(key_pass(&mut tx, req, &keys).await?) } else { None };
    let create = match replay {
        None if incremental => format!(
            "CREATE UNLOGGED TABLE {m} AS
             SELECT row_number() OVER () AS pos, j.*, p.k IS NOT NULL AS retried,
                    COALESCE(p.first_failed_at < {expire}, false) AS expired
             FROM (SELECT COALESCE(x.k, s.k) AS k, x.h, x.row, s.h AS sh, x.h IS NOT NULL AS present,
                          s.h IS DISTINCT FROM x.h AS changed, d.k IS NOT NULL AS dup
                   FROM ({hashed}) AS x FULL JOIN {s} s ON s.k = x.k LEFT JOIN {keys} d ON d.k = x.k AND NOT d.total
                   WHERE s.h IS DISTINCT FROM x.h OR d.k IS NOT NULL) AS j
             LEFT JOIN {p} p ON p.k = j.k"
        ),
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
             FROM (SELECT DISTINCT k FROM (SELECT k FROM {r} WHERE sync = $1 AND k IS NOT NULL
                                    UNION ALL SELECT unnest(keys) FROM {a} WHERE sync = $1) AS logged) l
             LEFT JOIN ({hashed}) AS x ON x.k = l.k LEFT JOIN {s} s ON s.k = l.k LEFT JOIN {p} p ON p.k = l.k"
        ),
    };
    let mut q = sqlx::query(AssertSqlSafe(create));
    if let Some(sync) = replay {
        q = q.bind(sync);
    }
    q.execute(&mut *tx).await.map_err(query_err)?;
    // Keys the model returns more than once: none of their copies is
    // sent. Found none (the usual case), the UPDATE has nothing to join
    // with. A copy that kept no JSON shows its key as the payload.
    let dups = format!("SELECT k FROM {m} WHERE present AND k IS NOT NULL GROUP BY k HAVING count(*) > 1");
    let pk = literal(&req.primary_key);
    let mark_dups = if incremental {
        // Every copy of a duplicated key is in the stage already; they are
        // changes only where one of them changed.
        format!(
            "UPDATE {m} SET changed = true WHERE dup AND NOT changed AND k IN (SELECT k FROM {m} WHERE dup AND changed);
             DROP TABLE {keys}"
        )
    } else {
        format!(
            "UPDATE {m} m SET dup = true, changed = true, row = COALESCE(m.row, json_build_object({pk}, m.k)::text)
             FROM ({dups}) d WHERE m.present AND m.k = d.k"
        )
    };
    tx.execute(run(mark_dups)).await.map_err(|e| wh.error("staged", e))?;
    tx.execute(run(format!("CREATE INDEX ON {m} (pos) WHERE changed"))).await.map_err(|e| wh.error("staged", e))?;
    if !req.dry_run && replay.is_none() {
        // A pending failure that is no longer a change has nothing left to retry.
        tx.execute(run(format!("DELETE FROM {p} WHERE NOT EXISTS (SELECT 1 FROM {m} m WHERE m.changed AND m.k = {p}.k)")))
            .await
            .map_err(|e| wh.error("updated", e))?;
    }
    let present = match model_rows {
        Some(n) => format!("{n}::bigint"),
        None => "count(*) FILTER (WHERE present)".to_string(),
    };
    let counts: StageCounts = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT count(*) FILTER (WHERE changed AND present AND sh IS NULL),
                count(*) FILTER (WHERE changed AND present AND sh IS NOT NULL),
                count(*) FILTER (WHERE changed AND NOT present), count(*) FILTER (WHERE changed AND retried),
                {present}, (SELECT count(*) FROM {s}) FROM {m}"
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| wh.error("read", e))?;
    tx.commit().await.map_err(|e| wh.error("staged", e))?;
    Ok(DiffCounts::from_stage(counts, &req.mode))
}

/// Nothing delivered and nothing pending: every model row is added.
async fn first_sync(wh: &Store, scope: &StateScope) -> Result<bool, WarehouseError> {
    let (s, p) = (wh.table("snapshot", scope), wh.table("pending", scope));
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT NOT EXISTS (SELECT 1 FROM {s}) AND NOT EXISTS (SELECT 1 FROM {p})")))
        .fetch_one(&wh.pool)
        .await
        .map_err(|e| wh.error("read", e))
}

/// A first sync's stage: only the keys the model returns more than once
/// (none of their copies is sent), found in one grouping pass over the
/// model's keys that also counts its rows; the rows themselves are read
/// from the model as they are sent ([`changes`]).
async fn stage_streamed(wh: &Store, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
    let m = wh.stage_table(scope, &req.stage);
    let mut tx = StateTx::begin(&wh.pool).await.map_err(|e| wh.error("staged", e))?;
    tx.execute(sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL work_mem = '{STAGE_WORK_MEM}'"))))
        .await
        .map_err(|e| wh.error("staged", e))?;
    let rows = key_pass(&mut tx, req, &m).await?;
    // Its commits fill the empty snapshot as they go (merge.rs).
    super::merge::start(&mut tx, &wh.table("snapshot", scope)).await.map_err(|e| wh.error("staged", e))?;
    tx.commit().await.map_err(|e| wh.error("staged", e))?;
    Ok(DiffCounts { model_rows: rows, added: rows, streamed: true, ..Default::default() })
}

/// One pass over the model's keys counts its rows and tells whether any key
/// repeats; only then a second, grouping pass lists the keys it returns
/// more than once. Writes them into `table` (`k`, `n`, and a row `total`
/// with the row count) and returns how many rows the model has.
async fn key_pass(tx: &mut StateTx<Postgres>, req: &DiffRequest, table: &str) -> Result<u64, WarehouseError> {
    // Keys are compared as they are where their text tells them apart no
    // better (an index may serve the sort), else by their text.
    let pk = format!("q.{}", quote_ident(&req.primary_key));
    // Text is compared bytewise ("C"): equal keys are equal bytes under any
    // deterministic collation, and the sorts below are several times faster.
    let key = match req.columns.iter().find(|c| c.name == req.primary_key).and_then(|c| c.type_name.as_deref()) {
        Some("INT2" | "INT4" | "INT8" | "UUID") => pk,
        Some("TEXT" | "VARCHAR") => format!("{pk} COLLATE \"C\""),
        _ => format!("({pk})::text COLLATE \"C\""),
    };
    let keys = format!("SELECT {key} AS g FROM ({}) AS q", model_subquery(&req.query));
    // Counting the distinct keys (a sort, or an index's order) costs the
    // server half of grouping them (0.1 s against 0.2 s per million keys).
    let (rows, repeats): (i64, i64) =
        sqlx::query_as(AssertSqlSafe(format!("SELECT count(*), count(g) - count(DISTINCT g) FROM ({keys}) AS x")))
            .fetch_one(&mut **tx)
            .await
            .map_err(query_err)?;
    // Grouped by sorting, not hashing: a hash table of every key costs
    // PostgreSQL three times a sort of them (0.65 s against 0.2 s per
    // million keys).
    let repeated = if repeats > 0 {
        format!(
            "SELECT g::text COLLATE \"default\" AS k, count(*) AS n, false AS total FROM ({keys}) AS x WHERE g IS NOT NULL GROUP BY g HAVING count(*) > 1"
        )
    } else {
        "SELECT NULL::text AS k, 0::bigint AS n, false AS total WHERE false".to_string()
    };
    let sql = format!(
        "SET LOCAL enable_hashagg = off;
         CREATE UNLOGGED TABLE {table} AS {repeated} UNION ALL SELECT NULL::text, {rows}::bigint, true;
         SET LOCAL enable_hashagg = on"
    );
    tx.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await.map_err(query_err)?;
    Ok(rows.max(0) as u64)
}

/// The changes of a stage: its table page by page, or a first sync's model
/// as the server returns it, each row's JSON and hash built as it is read.
pub fn changes<'a>(wh: &'a Store, scope: &'a StateScope, req: &'a DiffRequest, streamed: bool, page: usize) -> ChangeStream<'a> {
    if !streamed {
        return Box::pin(futures::stream::try_unfold(0i64, move |after| async move {
            let changes = read(wh, scope, &req.stage, after, page).await?;
            Ok(changes.last().map(|last| last.position).map(|next| (changes, next)))
        }));
    }
    let m = wh.stage_table(scope, &req.stage);
    let sql = format!(
        "SELECT x.k, x.row, hashtextextended(x.row, 0)::text AS h, d.k IS NOT NULL AS dup
         FROM ({} OFFSET 0) AS x LEFT JOIN {m} d ON d.k = x.k AND NOT d.total",
        model_rows(req)
    );
    let read = |r: &sqlx::postgres::PgRow, position: i64| {
        // By position and unchecked: the statement above fixes each column's
        // type, and a name or a type check per value costs 3% of a sync's CPU.
        Ok(stream::added(position, r.try_get_unchecked(0)?, r.try_get_unchecked(3)?, r.try_get_unchecked(2)?, r.try_get_unchecked(1)?))
    };
    stream::changes(
        &wh.pool,
        stream::Streamed {
            // One backend, no parallel workers: it builds rows faster than
            // a sync sends them (300,000 a second), and workers would only
            // add the copying of every row through a queue to the leader
            // (on the benchmark's two cores, 5% slower with them).
            setup: vec![format!("SET LOCAL work_mem = '{STAGE_WORK_MEM}'"), "SET LOCAL max_parallel_workers_per_gather = 0".to_string()],
            sql,
            read,
            error: Box::new(|action, e| WarehouseError::State { action, message: e.to_string() }),
        },
        page,
    )
}

pub async fn read(wh: &Store, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
    let m = wh.stage_table(scope, stage);
    let sql = format!(
        "SELECT pos, k, COALESCE(h::text, '') AS h, CASE WHEN present THEN row END AS row,
                CASE WHEN NOT present THEN 'deleted' WHEN sh IS NULL THEN 'added' ELSE 'updated' END AS op, retried,
                CASE WHEN present AND k IS NULL THEN 'null_key' WHEN dup THEN 'duplicate_key'
                     WHEN expired THEN 'expired' END AS flag
         FROM {m} WHERE changed AND pos > $1 ORDER BY pos LIMIT $2"
    );
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(after).bind(limit as i64).fetch_all(&wh.pool).await.map_err(|e| wh.error("read", e))?;
    rows.iter()
        .map(|r| {
            let get_err = |e| wh.error("read", e);
            let op: String = r.try_get("op").map_err(get_err)?;
            let flag: Option<String> = r.try_get("flag").map_err(get_err)?;
            let row: Option<String> = r.try_get("row").map_err(get_err)?;
            Ok(StagedChange {
                position: r.try_get("pos").map_err(get_err)?,
                key: r.try_get("k").map_err(get_err)?,
                hash: r.try_get("h").map_err(get_err)?,
                row: row.map(Ok),
                kind: ChangeKind::parse(&op),
                retried: r.try_get("retried").map_err(get_err)?,
                flag: flag.as_deref().and_then(parse_flag),
            })
        })
        .collect()
}

/// The table of an incremental stage's duplicate keys ([`key_pass`]).
fn keys_table(wh: &Store, scope: &StateScope, stage: &str) -> String {
    wh.stage_table(scope, &format!("{stage}:keys"))
}

/// Drops a stage; idempotent.
pub async fn drop(wh: &Store, scope: &StateScope, stage: &str) -> Result<(), WarehouseError> {
    let (m, keys) = (wh.stage_table(scope, stage), keys_table(wh, scope, stage));
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {m}, {keys}")))
        .execute(&wh.pool)
        .await
        .map(|_| ())
        .map_err(|e| wh.error("cleaned up", e))
}

/// The model's row with a key, or its first row ([`crate::warehouse::Warehouse::sample_row`]).
pub async fn sample(wh: &Store, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let sql = sample::select(&model_rows(req), "row", "y.k = $1", key);
    let read = |r: &sqlx::postgres::PgRow| {
        let doc: String = r.try_get("doc")?;
        Ok(SampledRow { key: r.try_get("k")?, row: decode_row(&RowDecoder, &doc) })
    };
    sample::sample(&wh.pool, sql, key, read, |e| wh.error("read", e)).await
}
