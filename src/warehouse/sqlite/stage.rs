//! SQLite: a sync's stage. The model's rows as JSON, hashed by `retl_hash`
//! and counted per key, go into a model table; the changes against the
//! snapshot, numbered for paging, into a stage table, read out a page at a
//! time.

use sqlx::{AssertSqlSafe, Executor, Row};

use super::state::{ACKED, ACKED_KEY, Store, state_err};
use crate::record::ChangeKind;
use crate::warehouse::rows::{RowDecoder, key_text, model_subquery, query_err, quote_ident, stage_suffix};
use crate::warehouse::sample::{self, SampledRow};
use crate::warehouse::{DiffCounts, DiffMode, DiffRequest, StageCounts, StagedChange, StateScope, WarehouseError, parse_flag};

/// The stage's tables: model rows, changes.
fn stage_tables(wh: &Store, scope: &StateScope, stage: &str) -> (String, String) {
    let suffix = stage_suffix(stage);
    (
        quote_ident(&format!("{}_model_{}_{}", wh.prefix, scope.id, suffix)),
        quote_ident(&format!("{}_stage_{}_{}", wh.prefix, scope.id, suffix)),
    )
}

pub async fn stage(wh: &Store, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
    crate::warehouse::check_columns(req)?;
    let (m, st) = stage_tables(wh, scope, &req.stage);
    let [s, p, r, a] = ["snapshot", "pending", "records", "acks"].map(|t| wh.table(t, scope));
    drop(wh, scope, &req.stage).await?;

    let create_model =
        format!("CREATE TABLE {m} AS SELECT k, row, retl_hash(row) AS h, COUNT(*) OVER (PARTITION BY k) AS n FROM ({})", model_rows(req));
    wh.pool.execute(AssertSqlSafe(create_model)).await.map_err(query_err)?;
    wh.exec("staged", format!("CREATE INDEX {} ON {m} (k)", quote_ident(&format!("{}_i", m.trim_matches('"'))))).await?;
    wh.exec(
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
                wh.exec("staged", sql).await?;
            }
        }
        DiffMode::Replay { sync } => {
            let sql = format!(
                "INSERT INTO {st} (k, h, row, op, retried, flag)
                 SELECT l.k, COALESCE(m.h, ''), m.row,
                        CASE WHEN m.k IS NULL THEN 'deleted' WHEN s.k IS NULL THEN 'added' ELSE 'updated' END,
                        p.k IS NOT NULL, CASE WHEN m.n > 1 THEN 'duplicate_key' END
                 FROM (SELECT DISTINCT k FROM (SELECT k FROM {r} WHERE sync = ? AND k IS NOT NULL
                                           UNION ALL SELECT {ACKED_KEY} FROM {a} a, {ACKED} WHERE a.sync = ?)) l
                 LEFT JOIN {m} m ON m.k = l.k LEFT JOIN {s} s ON s.k = l.k LEFT JOIN {p} p ON p.k = l.k
                 ORDER BY l.k"
            );
            sqlx::query(AssertSqlSafe(sql)).bind(sync).bind(sync).execute(&wh.pool).await.map_err(|e| state_err("staged", e))?;
        }
    }
    if !req.dry_run && req.mode == DiffMode::Normal {
        // A pending failure whose record is no longer a change (it went back
        // to its delivered values, or left the model before it was ever
        // delivered) has nothing left to retry.
        wh.exec("updated", format!("DELETE FROM {p} WHERE k NOT IN (SELECT k FROM {st} WHERE k IS NOT NULL)")).await?;
    }
    // Every count in one pass over the stage.
    let counts = format!(
        "SELECT COALESCE(SUM(op = 'added'), 0), COALESCE(SUM(op = 'updated'), 0), COALESCE(SUM(op = 'deleted'), 0),
                COALESCE(SUM(retried = 1), 0), (SELECT COUNT(*) FROM {m}), (SELECT COUNT(*) FROM {s})
         FROM {st}"
    );
    let counts: StageCounts = sqlx::query_as(AssertSqlSafe(counts)).fetch_one(&wh.pool).await.map_err(|e| state_err("read", e))?;
    Ok(DiffCounts::from_stage(counts, &req.mode))
}

pub async fn read(wh: &Store, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
    let (_, st) = stage_tables(wh, scope, stage);
    let sql = format!("SELECT pos, k, h, row, op, retried, flag FROM {st} WHERE pos > ? ORDER BY pos LIMIT ?");
    let rows =
        sqlx::query(AssertSqlSafe(sql)).bind(after).bind(limit as i64).fetch_all(&wh.pool).await.map_err(|e| state_err("read", e))?;
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
                row: row.map(utf8_text),
                kind: ChangeKind::parse(&op),
                retried: r.try_get::<i64, _>("retried").map_err(|e| state_err("read", e))? != 0,
                flag: flag.as_deref().and_then(parse_flag),
            })
        })
        .collect()
}

/// Drops a stage; idempotent.
pub async fn drop(wh: &Store, scope: &StateScope, stage: &str) -> Result<(), WarehouseError> {
    let (m, st) = stage_tables(wh, scope, stage);
    wh.pool
        .execute(sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {m}; DROP TABLE IF EXISTS {st};"))))
        .await
        .map(|_| ())
        .map_err(|e| state_err("cleaned up", e))
}

/// `SELECT k, row` of the model: the key as text and the row as JSON
/// text. Each column is carried as JSON; BLOBs (which JSON cannot hold) are
/// wrapped so the decoder turns them into base64 text.
fn model_rows(req: &DiffRequest) -> String {
    let pairs: Vec<String> = req
        .columns
        .iter()
        .map(|c| {
            let q = format!("q.{}", quote_ident(&c.name));
            format!(
                "'{}', CASE WHEN typeof({q}) = 'blob' THEN json_object('{}', hex({q})) ELSE {q} END",
                c.name.replace('\'', "''"),
                crate::warehouse::rows::BLOB_MARKER
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

/// The model's row with a key, or its first row ([`crate::warehouse::Warehouse::sample_row`]).
pub async fn sample(wh: &Store, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let sql = sample::select(&model_rows(req), "row", "y.k = ?", key);
    // Bytes: SQLite keeps any bytes as TEXT, and text that is not UTF-8
    // fails the record, as in a sync.
    let read = |r: &sqlx::sqlite::SqliteRow| {
        let doc: Vec<u8> = r.try_get("doc")?;
        Ok(SampledRow { key: key_text(Some(r.try_get("k")?)).unwrap_or_default(), row: RowDecoder.decode_bytes(&doc) })
    };
    sample::sample(&wh.pool, sql, key, read, |e| state_err("read", e)).await
}

/// A row's text: SQLite keeps whatever bytes it is given as TEXT, and a row
/// that is not UTF-8 fails its record (naming the columns), not the sync.
fn utf8_text(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| match RowDecoder.decode_bytes(e.as_bytes()) {
        Err(why) => why,
        Ok(_) => "the row holds text that is not valid UTF-8".to_string(),
    })
}
