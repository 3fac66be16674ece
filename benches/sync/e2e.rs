//! The end-to-end floor: the warehouse builds each batch's JSON body itself
//! (`json_agg` on PostgreSQL, `JSON_ARRAYAGG` on MariaDB, `json_group_array`
//! on SQLite) in retl's batch format with the payload the benchmark's
//! Mapping produces, one row per batch of N records, streamed; a minimal
//! HTTP client posts each body to the same sink, with the same batch size
//! and as many in flight as retl, reading the next batch while earlier ones
//! are in flight. No diff, no state, no mapping in the client.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::wh::Kind;
use super::{Error, IN_FLIGHT};

/// The query that returns one JSON body per batch of `n` rows of `table`
/// (whose ids run from 1 to `max`, as the seed makes them): each batch is
/// one primary-key range, so the server streams batches as it builds them.
/// On MariaDB, the query of one batch, run once per batch.
pub fn batches_sql(kind: Kind, table: &str, n: u64, max: u64) -> String {
    match kind {
        // row_to_json writes compact JSON (json_build_object puts spaces in).
        Kind::Postgres => format!(
            "SELECT b.body FROM generate_series(0, {max} - 1, {n}) AS lo CROSS JOIN LATERAL (
               SELECT json_build_object('action', 'identify', 'records', json_agg(row_to_json(r)))::text AS body
               FROM (SELECT u.id::text AS key, 'upsert' AS operation, row_to_json(p) AS payload
                     FROM {table} u CROSS JOIN LATERAL (SELECT u.id::text AS \"userId\", u.email, u.name, u.plan, u.mrr,
                                                             u.created_at AS \"createdAt\", u.attrs) AS p
                     WHERE u.id > lo AND u.id <= lo + {n}) AS r) AS b"
        ),
        // One query per batch, its bounds bound: MariaDB runs a correlated
        // subquery (one per batch in one statement) as a scan of the whole
        // index each time. JSON_COMPACT: MariaDB's JSON_OBJECT puts spaces
        // in, which would make the floor's bodies longer than retl's.
        Kind::Mysql => format!(
            "SELECT JSON_COMPACT(JSON_OBJECT('action', 'identify', 'records', JSON_ARRAYAGG(JSON_OBJECT(
               'key', CAST(u.id AS CHAR), 'operation', 'upsert', 'payload', JSON_OBJECT(
                 'userId', CAST(u.id AS CHAR), 'email', u.email, 'name', u.name, 'plan', u.plan, 'mrr', u.mrr,
                 'createdAt', DATE_FORMAT(u.created_at, '%Y-%m-%dT%H:%i:%sZ'), 'attrs', JSON_COMPACT(u.attrs))))))
             FROM {table} u WHERE u.id > ? AND u.id <= ?"
        ),
        // `datetime()` text is taken as UTC by retl and sent as RFC 3339.
        Kind::Sqlite => format!(
            "WITH RECURSIVE b(lo) AS (SELECT 0 UNION ALL SELECT lo + {n} FROM b WHERE lo + {n} < {max})
             SELECT (SELECT json_object('action', 'identify', 'records', json_group_array(json_object(
                       'key', CAST(u.id AS TEXT), 'operation', 'upsert', 'payload', json_object(
                         'userId', CAST(u.id AS TEXT), 'email', u.email, 'name', u.name, 'plan', u.plan, 'mrr', u.mrr,
                         'createdAt', strftime('%Y-%m-%dT%H:%M:%SZ', u.created_at), 'attrs', json(u.attrs)))))
                     FROM {table} u WHERE u.id > b.lo AND u.id <= b.lo + {n}) AS body
             FROM b"
        ),
    }
}

/// The child: `--child-floor LOCATION TABLE SINK BATCH`. Connects, then
/// times the query's start to the last reply; prints `RESULT {json}`.
pub async fn child(args: &[String]) -> Result<(), Error> {
    let [location, table, sink, batch] = args else { return Err("usage: --child-floor LOCATION TABLE SINK BATCH".into()) };
    let n: u64 = batch.parse()?;
    let kind = Kind::of_url(location);
    let max_sql = format!("SELECT MAX(id) FROM {table}");
    let (tx, mut rx) = mpsc::channel::<Bytes>(2);
    // Each arm connects (untimed), then hands the reader to a task: it reads
    // the next batches while the posts are in flight.
    let (started, reader) = match kind {
        Kind::Postgres => {
            let mut c = sqlx::PgConnection::connect(location).await?;
            c.execute("SET TimeZone = 'UTC'").await?;
            let max: i64 = sqlx::query_scalar(AssertSqlSafe(max_sql)).fetch_one(&mut c).await?;
            let sql = batches_sql(kind, table, n, max as u64);
            let started = Instant::now();
            let reader = tokio::spawn(async move {
                let mut rows = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).fetch(&mut c);
                while let Some(body) = rows.next().await {
                    if tx.send(Bytes::from(body?)).await.is_err() {
                        break;
                    }
                }
                Ok::<_, Error>(())
            });
            (started, reader)
        }
        Kind::Mysql => {
            let mut c = sqlx::MySqlConnection::connect(location).await?;
            // JSON_ARRAYAGG is GROUP_CONCAT underneath, cut at this length.
            c.execute("SET time_zone = '+00:00', group_concat_max_len = 1073741824").await?;
            let max: i64 = sqlx::query_scalar(AssertSqlSafe(max_sql)).fetch_one(&mut c).await?;
            let sql = batches_sql(kind, table, n, max as u64);
            let started = Instant::now();
            let reader = tokio::spawn(async move {
                for lo in (0..max).step_by(n as usize) {
                    let q = sqlx::query_scalar::<_, Vec<u8>>(AssertSqlSafe(sql.as_str())).bind(lo).bind(lo + n as i64);
                    if tx.send(Bytes::from(q.fetch_one(&mut c).await?)).await.is_err() {
                        break;
                    }
                }
                Ok::<_, Error>(())
            });
            (started, reader)
        }
        Kind::Sqlite => {
            let mut c = super::wh::sqlite(location, false).await?;
            let max: i64 = sqlx::query_scalar(AssertSqlSafe(max_sql)).fetch_one(&mut c).await?;
            let sql = batches_sql(kind, table, n, max as u64);
            let started = Instant::now();
            let reader = tokio::spawn(async move {
                let mut rows = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).fetch(&mut c);
                while let Some(body) = rows.next().await {
                    if tx.send(Bytes::from(body?)).await.is_err() {
                        break;
                    }
                }
                Ok::<_, Error>(())
            });
            (started, reader)
        }
    };
    let client = reqwest::Client::builder().build()?;
    let mut in_flight = JoinSet::new();
    let (mut batches, mut bytes) = (0u64, 0u64);
    while let Some(body) = rx.recv().await {
        if in_flight.len() >= IN_FLIGHT {
            in_flight.join_next().await.ok_or("no batch in flight")???;
        }
        batches += 1;
        bytes += body.len() as u64;
        let request = client.post(sink.as_str()).header("content-type", "application/json").body(body);
        in_flight.spawn(async move {
            let reply = request.send().await?;
            let status = reply.status();
            let text = reply.bytes().await?;
            if !status.is_success() {
                return Err(format!("the sink answered {status}: {}", String::from_utf8_lossy(&text)).into());
            }
            Ok::<_, Error>(())
        });
    }
    reader.await??;
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT {}", json!({"secs": secs, "batches": batches, "bytes": bytes, "rss_kb": super::proc::peak_rss_kb()}));
    Ok(())
}
