//! MySQL/MariaDB: a sync's stage. The model's rows as JSON, hashed with
//! `MD5` and joined with the snapshot, go into a model table; the duplicate
//! keys into a second; the changes, numbered for paging, into a third, read
//! out a page at a time.

use sqlx::{AssertSqlSafe, Executor, Row};

use super::json::model_rows;
use super::state::{Store, items, quote, text};
use crate::record::ChangeKind;
use crate::warehouse::rows::{RowDecoder, key_text, query_err, stage_suffix};
use crate::warehouse::sample::{self, SampledRow};
use crate::warehouse::server::decode_row;
use crate::warehouse::{DiffCounts, DiffMode, DiffRequest, StageCounts, StagedChange, StateScope, WarehouseError, parse_flag};

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
    if let Some(sync) = replay {
        let known: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {} WHERE sync = ? AND mapping_uid = ?", wh.runs_table())))
                .bind(sync)
                .bind(&scope.id)
                .fetch_one(&wh.pool)
                .await
                .map_err(|e| wh.error("read", e))?;
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
        model = model_rows(req)
    );
    wh.pool.execute(AssertSqlSafe(create_model)).await.map_err(query_err)?;
    wh.run(
        "staged",
        format!("CREATE TABLE {d} (k {key} PRIMARY KEY) SELECT k FROM {m} WHERE k IS NOT NULL GROUP BY k HAVING COUNT(*) > 1"),
    )
    .await?;
    wh.run(
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
    if !req.dry_run && replay.is_none() {
        // A pending failure that is no longer a change has nothing left to retry.
        wh.run("updated", format!("DELETE FROM {p} WHERE NOT EXISTS (SELECT 1 FROM {st} st WHERE st.k = {p}.k)")).await?;
    }
    let counts: StageCounts = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT CAST(COALESCE(SUM(op = 'added'), 0) AS SIGNED), CAST(COALESCE(SUM(op = 'updated'), 0) AS SIGNED),
                CAST(COALESCE(SUM(op = 'deleted'), 0) AS SIGNED), CAST(COALESCE(SUM(retried), 0) AS SIGNED),
                (SELECT COUNT(*) FROM {m}), (SELECT COUNT(*) FROM {s}) FROM {st}"
    )))
    .fetch_one(&wh.pool)
    .await
    .map_err(|e| wh.error("read", e))?;
    Ok(DiffCounts::from_stage(counts, &req.mode))
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
