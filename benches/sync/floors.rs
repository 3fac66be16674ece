//! The floors an incremental sync is measured against, taken in the same
//! run: each warehouse hashing every row of the model the way retl's stage
//! does (src/warehouse/{postgres/stage,mysql/json,sqlite/stage}.rs), with no diff
//! and nothing written; and the sink's own ceiling.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use retl::api::{ChangeKind, DestinationSpec};
use retl::destination::OutRecord;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};
use tokio::task::JoinSet;

use super::wh::{Kind, Target};
use super::{Error, IN_FLIGHT};

/// Seconds for the warehouse to build every row's JSON and hash it:
/// `(as measured against, with parallel workers where the server has them)`.
pub async fn hash_rows(t: &Target, n: u64) -> Result<(f64, Option<f64>), Error> {
    match t.kind {
        Kind::Postgres => postgres(&t.url, &t.table(n)).await.map(|(a, b)| (a, Some(b))),
        Kind::Mysql => mysql(&t.url, &t.table(n)).await.map(|a| (a, None)),
        Kind::Sqlite => sqlite(&t.location(n, false)).await.map(|a| (a, None)),
    }
}

/// PostgreSQL: `hashtextextended` of the row's JSON text. Returns (serial,
/// as the server plans it). The sync lets parallel workers build the rows'
/// JSON but joins them with the snapshot on one core (PostgreSQL 15 has no
/// parallel FULL JOIN; 16 does), so both are shown; the table's target is
/// checked against the serial one.
async fn postgres(url: &str, table: &str) -> Result<(f64, f64), Error> {
    let sql = format!("SELECT count(hashtextextended(row_to_json(u)::text, 0)) FROM {table} u");
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut time = async |serial: bool| -> Result<f64, Error> {
        let workers = if serial { "0" } else { "DEFAULT" };
        sqlx::query(AssertSqlSafe(format!("SET max_parallel_workers_per_gather = {workers}"))).execute(&mut conn).await?;
        let started = Instant::now();
        let _: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone())).fetch_one(&mut conn).await?;
        Ok(started.elapsed().as_secs_f64())
    };
    let serial = time(true).await?;
    let parallel = time(false).await?;
    Ok((serial, parallel))
}

/// MariaDB: the MD5 of each row's JSON text, the text built column by
/// column exactly as retl's MySQL stage builds it for this model's column
/// types (BIGINT, VARCHAR, DECIMAL, TIMESTAMP, and JSON, which clients see as
/// LONGBLOB): see `column_json` in src/warehouse/mysql/json.rs.
async fn mysql(url: &str, table: &str) -> Result<f64, Error> {
    let text = |c: &str| format!("JSON_QUOTE(CAST(q.{c} AS CHAR))");
    let iso = "IF(MICROSECOND(q.created_at) = 0, '%Y-%m-%dT%H:%i:%sZ', '%Y-%m-%dT%H:%i:%s.%fZ')";
    let columns = [
        ("id", "CAST(q.id AS CHAR)".to_string()),
        ("email", text("email")),
        ("name", text("name")),
        ("plan", text("plan")),
        ("mrr", "IF(LENGTH(CAST(ABS(q.mrr) AS CHAR)) <= 16, CAST(q.mrr AS CHAR), JSON_QUOTE(CAST(q.mrr AS CHAR)))".to_string()),
        ("created_at", format!("JSON_QUOTE(DATE_FORMAT(q.created_at, {iso}))")),
        (
            "attrs",
            "IF(CHARSET(q.attrs) = 'binary', JSON_QUOTE(REPLACE(TO_BASE64(q.attrs), CHAR(10 USING ascii), '')),
                IF(LEFT(q.attrs, 1) IN ('{', '[') AND JSON_VALID(q.attrs), JSON_COMPACT(q.attrs), JSON_QUOTE(q.attrs)))"
                .to_string(),
        ),
    ];
    let parts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, expr))| format!("'{}\"{name}\":', COALESCE({expr}, 'null')", if i == 0 { "{" } else { "," }))
        .collect();
    // MAX, not COUNT: every hash is read, so none can be skipped.
    let sql = format!(
        "SELECT MAX(CONVERT(MD5(y.doc) USING ascii)) FROM (SELECT CONCAT({}, '}}') AS doc
         FROM (SELECT id, email, name, plan, mrr, created_at, attrs FROM {table}) AS q) AS y",
        parts.join(", ")
    );
    let mut conn = sqlx::MySqlConnection::connect(url).await?;
    let started = Instant::now();
    let _: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut conn).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// SQLite: `json_object` of the row, as retl's stage builds it, hashed by
/// the same function retl registers (xxh3-128 of the text as 32 hex digits;
/// `retl::warehouse::register_sqlite_hash`, the very function).
async fn sqlite(location: &str) -> Result<f64, Error> {
    let pairs: Vec<String> = ["id", "email", "name", "plan", "mrr", "created_at", "attrs"]
        .iter()
        .map(|c| format!("'{c}', CASE WHEN typeof(q.{c}) = 'blob' THEN json_object('$retl_blob', hex(q.{c})) ELSE q.{c} END"))
        .collect();
    let sql = format!(
        "SELECT max(retl_hash(json_object({}))) FROM (SELECT id, email, name, plan, mrr, created_at, attrs FROM users) AS q",
        pairs.join(", ")
    );
    let mut conn = super::wh::sqlite(location, false).await?;
    {
        let mut handle = conn.lock_handle().await?;
        // SAFETY: the handle is locked for us while `handle` lives.
        unsafe { retl::warehouse::register_sqlite_hash(handle.as_raw_handle().as_ptr())? };
    }
    let started = Instant::now();
    let _: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut conn).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds for the sink to take `rows` records in batches of `batch`,
/// [`IN_FLIGHT`] at a time, through retl's HTTP client, with the payloads
/// built beforehand: no warehouse at all.
pub async fn sink_ceiling(url: &str, rows: u64, batch: u32) -> Result<f64, Error> {
    let spec: DestinationSpec = serde_json::from_value(json!({
        "type": "http",
        "http": {"url": url, "batchSize": batch, "maxInFlight": IN_FLIGHT, "timeoutSeconds": 60},
        "actions": [{"name": "identify", "fields": [{"name": "userId", "type": "string"}]}],
    }))?;
    let destination = retl::destination::build("sink", &spec, &Default::default(), Path::new("."))?;
    let records: Arc<Vec<OutRecord>> = Arc::new(
        (0..batch)
            .map(|i| OutRecord {
                key: i.to_string(),
                kind: ChangeKind::Added,
                payload: retl::destination::Payload::from(json!({"userId": i.to_string(), "email": format!("user{i}@example.com"),
                    "name": format!("User Number {i}"), "plan": "pro", "mrr": 123.45,
                    "createdAt": "2020-01-01T00:00:01+00:00",
                    "attrs": {"tags": ["a", "b"], "seats": 1, "company": "Company 1"}})),
                id: retl::destination::record_id("bench", &i.to_string(), ChangeKind::Added, "h"),
            })
            .collect(),
    );
    let batches = rows.div_ceil(u64::from(batch));
    let started = Instant::now();
    let mut in_flight = JoinSet::new();
    for _ in 0..batches {
        if in_flight.len() >= IN_FLIGHT {
            in_flight.join_next().await.ok_or("no batch in flight")???;
        }
        let (d, b) = (destination.clone(), records.clone());
        in_flight.spawn(async move { d.send("identify", &b).await.map(|_| ()) });
    }
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    Ok(started.elapsed().as_secs_f64())
}
