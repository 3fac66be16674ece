//! MySQL/MariaDB: a sync's stage. The model's rows as JSON, hashed with
//! `MD5` and joined with the snapshot, go into a model table; the duplicate
//! keys into a second; the changes, numbered for paging, into a third, read
//! out a page at a time.

use sqlx::{AssertSqlSafe, Executor, Row};

use super::json::model_rows;
use super::state::{Store, items, quote, text};
use crate::record::ChangeKind;
use crate::warehouse::rows::{RowDecoder, key_text, model_subquery, query_err, stage_suffix};
use crate::warehouse::sample::{self, SampledRow};
use crate::warehouse::server::decode_row;
use crate::warehouse::stream;
use crate::warehouse::{ChangeStream, DiffCounts, DiffMode, DiffRequest, StagedChange, StateScope, WarehouseError, parse_flag};

/// The stage's tables: model rows, duplicate keys, changes.
fn stage_tables(wh: &Store, scope: &StateScope, stage: &str) -> [String; 3] {
    let suffix = stage_suffix(stage);
    ["model", "dups", "stage"].map(|n| format!("{}.{}", wh.db, quote(&format!("{n}_{}_{suffix}", scope.id))))
}

pub async fn stage(wh: &Store, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
    crate::warehouse::check_columns(req)?;
    drop(wh, scope, &req.stage).await?;
    let [m, d, st] = stage_tables(wh, scope, &req.stage);
    let [s, p, r, a] = ["snapshot", "pending", "records", "acks"].map(|t| wh.table(t, scope));
    let replay = match &req.mode {
        DiffMode::Normal => None,
        DiffMode::Replay { sync } => Some(sync),
    };
    if replay.is_none() && !req.dry_run && first_sync(wh, scope).await? {
        return stage_streamed(wh, scope, req).await;
    }
    if replay.is_none() {
        let (rows, keys, dups) = key_counts(wh, req).await?;
        if dups == 0 {
            return stage_changes_only(wh, scope, req, rows, keys).await;
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
        model = model_rows(req)
    );
    wh.pool.execute(AssertSqlSafe(create_model)).await.map_err(query_err)?;
    wh.run(
        "staged",
        format!("CREATE TABLE {d} (k {key} PRIMARY KEY) SELECT k FROM {m} WHERE k IS NOT NULL GROUP BY k HAVING COUNT(*) > 1"),
    )
    .await?;
    wh.run("staged", stage_table_ddl(&st)).await?;
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
                wh.run("staged", sql).await?;
            }
        }
        Some(sync) => {
            let sql = format!(
                "{cols} SELECT l.k, m.h, m.doc,
                   CASE WHEN m.k IS NULL THEN 'deleted' WHEN m.sh IS NULL THEN 'added' ELSE 'updated' END,
                   p.k IS NOT NULL, IF(d.k IS NOT NULL, 'duplicate_key', NULL)
                 FROM (SELECT DISTINCT k FROM (SELECT k FROM {r} WHERE sync = ? AND k IS NOT NULL
                                    UNION ALL SELECT CAST(j.k AS BINARY) FROM {a} a, {logged} WHERE a.sync = ?) AS x) l
                 LEFT JOIN {m} m ON m.k = l.k LEFT JOIN {d} d ON d.k = l.k LEFT JOIN {p} p ON p.k = l.k
                 ORDER BY l.k",
                logged = items("a.items", true)
            );
            sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(sync).execute(&wh.pool).await.map_err(|e| wh.error("staged", e))?;
        }
    }
    let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {m}")))
        .fetch_one(&wh.pool)
        .await
        .map_err(|e| wh.error("read", e))?;
    finish(wh, scope, req, &st, rows.max(0) as u64).await
}

/// The table of a stage's changes, numbered for paging.
fn stage_table_ddl(st: &str) -> String {
    format!(
        "CREATE TABLE {st} (pos BIGINT AUTO_INCREMENT PRIMARY KEY, k VARBINARY(1024) NULL, h CHAR(32) CHARACTER SET ascii NULL,
         doc LONGTEXT CHARACTER SET utf8mb4 NULL, op VARCHAR(8) NOT NULL, retried TINYINT NOT NULL,
         flag VARCHAR(16) NULL, INDEX (k)) ENGINE=InnoDB"
    )
}

/// Ends a stage: pending failures that are no longer changes are dropped
/// (a sync's, not a plan's), and the changes counted; `rows` the model's.
async fn finish(wh: &Store, scope: &StateScope, req: &DiffRequest, st: &str, rows: u64) -> Result<DiffCounts, WarehouseError> {
    let [s, p] = ["snapshot", "pending"].map(|t| wh.table(t, scope));
    if !req.dry_run && req.mode == DiffMode::Normal {
        // A pending failure that is no longer a change has nothing left to retry.
        wh.run("updated", format!("DELETE FROM {p} WHERE NOT EXISTS (SELECT 1 FROM {st} st WHERE st.k = {p}.k)")).await?;
    }
    let (added, updated, deleted, retried, snapshot_rows): (i64, i64, i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT CAST(COALESCE(SUM(op = 'added'), 0) AS SIGNED), CAST(COALESCE(SUM(op = 'updated'), 0) AS SIGNED),
                CAST(COALESCE(SUM(op = 'deleted'), 0) AS SIGNED), CAST(COALESCE(SUM(retried), 0) AS SIGNED),
                (SELECT COUNT(*) FROM {s}) FROM {st}"
    )))
    .fetch_one(&wh.pool)
    .await
    .map_err(|e| wh.error("read", e))?;
    Ok(DiffCounts::from_stage((added, updated, deleted, retried, rows as i64, snapshot_rows), &req.mode))
}

/// Nothing delivered and nothing pending: every model row is added.
async fn first_sync(wh: &Store, scope: &StateScope) -> Result<bool, WarehouseError> {
    let (s, p) = (wh.table("snapshot", scope), wh.table("pending", scope));
    let none: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT NOT EXISTS (SELECT 1 FROM {s}) AND NOT EXISTS (SELECT 1 FROM {p})")))
        .fetch_one(&wh.pool)
        .await
        .map_err(|e| wh.error("read", e))?;
    Ok(none != 0)
}

/// How keys are told apart when looking for duplicates: an integer key as
/// it is (the grouping can follow an index), any other by its text's bytes,
/// as retl tells keys apart (a case-insensitive collation would take `a`
/// and `A` for one key).
fn grouped_key(req: &DiffRequest) -> String {
    let q = format!("q.{}", quote(&req.primary_key));
    let ty = req.columns.iter().find(|c| c.name == req.primary_key).and_then(|c| c.type_name.as_deref()).unwrap_or("");
    match ty.split_whitespace().next() {
        Some("TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT") => q,
        _ => format!("CAST(CAST({q} AS CHAR) AS BINARY)"),
    }
}

/// A first sync's stage: the model's rows counted, and the keys it returns
/// more than once (none of their copies is sent) in the dups table, looked
/// for only when the count of distinct keys says there are some; the rows
/// themselves are read from the model as they are sent ([`changes`]).
async fn stage_streamed(wh: &Store, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
    let [_, d, _] = stage_tables(wh, scope, &req.stage);
    let (rows, _, dups) = key_counts(wh, req).await?;
    let fill = match dups {
        0 => String::new(),
        _ => format!(
            "SELECT CAST(CAST(g AS CHAR) AS BINARY) AS k FROM ({}) AS x WHERE g IS NOT NULL GROUP BY g HAVING COUNT(*) > 1",
            grouped_keys(req)
        ),
    };
    wh.pool
        .execute(AssertSqlSafe(format!("CREATE TABLE {d} (k VARBINARY(1024) PRIMARY KEY) ENGINE=InnoDB {fill}")))
        .await
        .map_err(query_err)?;
    Ok(DiffCounts { model_rows: rows, added: rows, streamed: true, ..Default::default() })
}

/// The model's keys, as [`grouped_key`] tells them apart.
fn grouped_keys(req: &DiffRequest) -> String {
    format!("SELECT {} AS g FROM ({}) AS q", grouped_key(req), model_subquery(&req.query))
}

/// How many rows the model returns, how many distinct non-null keys, and
/// how many rows more than keys (duplicates), from its keys alone.
async fn key_counts(wh: &Store, req: &DiffRequest) -> Result<(u64, u64, u64), WarehouseError> {
    let mut conn = wh.pool.acquire().await.map_err(|e| wh.error("staged", e))?;
    // Grouping a large model's keys in memory, not in a temporary table on disk.
    conn.execute("SET SESSION tmp_table_size = 1073741824, max_heap_table_size = 1073741824").await.map_err(|e| wh.error("staged", e))?;
    let sql = format!(
        "SELECT CAST(COUNT(*) AS SIGNED), CAST(COUNT(DISTINCT g) AS SIGNED), CAST(COUNT(g) - COUNT(DISTINCT g) AS SIGNED) FROM ({}) AS x",
        grouped_keys(req)
    );
    let (rows, keys, dups): (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(sql)).fetch_one(&mut *conn).await.map_err(query_err)?;
    Ok((rows.max(0) as u64, keys.max(0) as u64, dups.max(0) as u64))
}

/// An incremental sync's stage when the model's keys are all distinct (the
/// usual case): every row is hashed and compared with the snapshot, but
/// only the changed ones are written; deletes are looked for only when the
/// counts say there are some (the snapshot holds keys the model's rows did
/// not match). Unlike the general stage, no table of all the model's rows
/// is written.
async fn stage_changes_only(wh: &Store, scope: &StateScope, req: &DiffRequest, rows: u64, keys: u64) -> Result<DiffCounts, WarehouseError> {
    let [_, _, st] = stage_tables(wh, scope, &req.stage);
    let [s, p] = ["snapshot", "pending"].map(|t| wh.table(t, scope));
    wh.run("staged", stage_table_ddl(&st)).await?;
    let expired = format!("IF(p.first_failed_at < {}, 'expired', NULL)", req.expire_before_ms);
    let cols = format!("INSERT INTO {st} (k, h, doc, op, retried, flag)");
    let changed = format!(
        "{cols} SELECT CAST(x.k AS BINARY), x.h, x.doc, IF(s.k IS NULL, 'added', 'updated'), p.k IS NOT NULL,
                IF(x.k IS NULL, 'null_key', {expired})
         FROM (SELECT y.k, y.doc, CONVERT(MD5(y.doc) USING ascii) AS h FROM ({model}) AS y) AS x
         LEFT JOIN {s} s ON s.k = CAST(x.k AS BINARY) LEFT JOIN {p} p ON p.k = CAST(x.k AS BINARY)
         WHERE NOT (s.h <=> x.h)",
        model = model_rows(req)
    );
    wh.pool.execute(AssertSqlSafe(changed)).await.map_err(query_err)?;
    let (new_keys, snapshot_rows): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT CAST(COUNT(*) AS SIGNED), (SELECT COUNT(*) FROM {s}) FROM {st} WHERE op = 'added' AND k IS NOT NULL"
    )))
    .fetch_one(&wh.pool)
    .await
    .map_err(|e| wh.error("read", e))?;
    // Snapshot keys matched by a model row: the model's keys less the new ones.
    let matched = keys.saturating_sub(new_keys.max(0) as u64);
    if (snapshot_rows.max(0) as u64) > matched {
        let model_keys =
            format!("SELECT CAST(CAST(q.{} AS CHAR) AS BINARY) AS k FROM ({}) AS q", quote(&req.primary_key), model_subquery(&req.query));
        wh.run(
            "staged",
            format!(
                "{cols} SELECT s.k, NULL, NULL, 'deleted', p.k IS NOT NULL, {expired}
                 FROM {s} s LEFT JOIN {p} p ON p.k = s.k WHERE NOT EXISTS (SELECT 1 FROM ({model_keys}) AS m WHERE m.k = s.k)"
            ),
        )
        .await?;
    }
    finish(wh, scope, req, &st, rows).await
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
    let [_, d, _] = stage_tables(wh, scope, &req.stage);
    let sql = format!(
        "SELECT x.k, x.doc, CONVERT(MD5(x.doc) USING ascii) AS h, d.k IS NOT NULL AS dup
         FROM ({}) AS x LEFT JOIN {d} d ON d.k = CAST(x.k AS BINARY)",
        model_rows(req)
    );
    let read = |r: &sqlx::mysql::MySqlRow, position: i64| {
        Ok(stream::added(position, key_text(r.try_get("k")?), r.try_get::<i64, _>("dup")? != 0, r.try_get("h")?, r.try_get("doc")?))
    };
    stream::changes(
        &wh.pool,
        stream::Streamed {
            setup: Vec::new(),
            sql,
            read,
            error: Box::new(|action, e| WarehouseError::State { action, message: e.to_string() }),
        },
        page,
    )
}

pub async fn read(wh: &Store, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
    let [_, _, st] = stage_tables(wh, scope, stage);
    let sql = format!("SELECT pos, k, COALESCE(h, '') AS h, doc, op, retried, flag FROM {st} WHERE pos > ? ORDER BY pos LIMIT ?");
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(after).bind(limit as i64).fetch_all(&wh.pool).await.map_err(|e| wh.error("read", e))?;
    rows.iter()
        .map(|r| {
            let get_err = |e| wh.error("read", e);
            let op: String = r.try_get("op").map_err(get_err)?;
            let flag: Option<String> = r.try_get("flag").map_err(get_err)?;
            let row: Option<String> = r.try_get("doc").map_err(get_err)?;
            let key: Option<Vec<u8>> = r.try_get("k").map_err(get_err)?;
            Ok(StagedChange {
                position: r.try_get("pos").map_err(get_err)?,
                key: key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                hash: r.try_get("h").map_err(get_err)?,
                row: row.map(Ok),
                kind: ChangeKind::parse(&op),
                retried: r.try_get::<i8, _>("retried").map_err(get_err)? != 0,
                flag: flag.as_deref().and_then(parse_flag),
            })
        })
        .collect()
}

/// Drops a stage; idempotent.
pub async fn drop(wh: &Store, scope: &StateScope, stage: &str) -> Result<(), WarehouseError> {
    let [m, d, st] = stage_tables(wh, scope, stage);
    wh.run("cleaned up", format!("DROP TABLE IF EXISTS {m}, {d}, {st}")).await.map(|_| ())
}

/// The model's row with a key, or its first row ([`crate::warehouse::Warehouse::sample_row`]).
pub async fn sample(wh: &Store, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let sql = sample::select(&model_rows(req), "doc", "CAST(y.k AS BINARY) = CAST(? AS BINARY)", key);
    // Bytes, as the stage keeps them: a key or row in a binary collation is still read.
    let read = |r: &sqlx::mysql::MySqlRow| {
        let doc: Vec<u8> = r.try_get("doc")?;
        let row = match std::str::from_utf8(&doc) {
            Ok(text) => decode_row(&RowDecoder, text),
            Err(_) => RowDecoder.decode_bytes(&doc),
        };
        Ok(SampledRow { key: key_text(Some(r.try_get("k")?)).unwrap_or_default(), row })
    };
    sample::sample(&wh.pool, sql, key, read, |e| wh.error("read", e)).await
}
