//! The floors a sync is measured against, taken in the same run.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use retl::api::{ChangeKind, DestinationSpec};
use retl::destination::OutRecord;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};
use tokio::task::JoinSet;

use super::{BATCH, Error, IN_FLIGHT};

/// Seconds to stream every row out as JSON with COPY: no diff, no HTTP.
pub async fn copy_json(url: &str, table: &str) -> Result<f64, Error> {
    let mut conn = sqlx::postgres::PgConnection::connect(url).await?;
    let started = Instant::now();
    let mut stream = conn.copy_out_raw(&format!("COPY (SELECT row_to_json(u) FROM {table} u) TO STDOUT")).await?;
    let mut bytes = 0usize;
    while let Some(chunk) = stream.next().await {
        bytes += chunk?.len();
    }
    let secs = started.elapsed().as_secs_f64();
    drop(stream);
    conn.close().await?;
    if bytes == 0 {
        return Err("COPY returned nothing".into());
    }
    Ok(secs)
}

/// Seconds for the warehouse to hash every row of the model (the hash the
/// PostgreSQL warehouse uses): the floor of any snapshot diff.
/// Returns (serial, as the server plans it). The sync lets parallel workers
/// build the rows' JSON but joins them with the snapshot on one core
/// (PostgreSQL 15 has no parallel FULL JOIN; 16 does), so both are shown;
/// the table's target is checked against the serial one.
pub async fn hash_rows(pool: &sqlx::PgPool, table: &str) -> Result<(f64, f64), Error> {
    let sql = format!("SELECT count(hashtextextended(row_to_json(u)::text, 0)) FROM {table} u");
    let mut conn = pool.acquire().await?;
    let mut time = async |serial: bool| -> Result<f64, Error> {
        let workers = if serial { "0" } else { "DEFAULT" };
        sqlx::query(AssertSqlSafe(format!("SET max_parallel_workers_per_gather = {workers}"))).execute(&mut *conn).await?;
        let started = Instant::now();
        let _: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone())).fetch_one(&mut *conn).await?;
        Ok(started.elapsed().as_secs_f64())
    };
    let serial = time(true).await?;
    let parallel = time(false).await?;
    Ok((serial, parallel))
}

/// Seconds for the sink to take `rows` records in batches of [`BATCH`],
/// [`IN_FLIGHT`] at a time, through retl's HTTP client, with the payloads
/// built beforehand: no warehouse at all.
pub async fn sink_ceiling(url: &str, rows: u64) -> Result<f64, Error> {
    let spec: DestinationSpec = serde_json::from_value(json!({
        "type": "http",
        "http": {"url": url, "batchSize": BATCH, "maxInFlight": IN_FLIGHT, "timeoutSeconds": 60},
        "actions": [{"name": "identify", "fields": [{"name": "userId", "type": "string"}]}],
    }))?;
    let destination = retl::destination::build("sink", &spec, &Default::default(), Path::new("."))?;
    let batch: Arc<Vec<OutRecord>> = Arc::new(
        (0..BATCH)
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
    let batches = rows.div_ceil(u64::from(BATCH));
    let started = Instant::now();
    let mut in_flight = JoinSet::new();
    for _ in 0..batches {
        if in_flight.len() >= IN_FLIGHT as usize {
            in_flight.join_next().await.ok_or("no batch in flight")???;
        }
        let (d, b) = (destination.clone(), batch.clone());
        in_flight.spawn(async move { d.send("identify", &b).await.map(|_| ()) });
    }
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The dlt pipeline's result.
pub struct Dlt {
    pub rows: u64,
    pub secs: f64,
    pub rows_per_sec: f64,
}

/// Runs benches/dlt/run.sh (which installs dlt into a virtual environment)
/// against the same table and sink.
pub fn dlt(url: &str, table: &str, sink: &str) -> Result<Dlt, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dlt/run.sh");
    let out = Command::new("bash").arg(script).args([url, table, sink]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("DLT_RESULT "))
        .ok_or_else(|| format!("the dlt run failed: {}", String::from_utf8_lossy(&out.stderr)))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let rows = v["rows"].as_u64().unwrap_or_default();
    let secs = v["secs"].as_f64().unwrap_or(f64::INFINITY);
    Ok(Dlt { rows, secs, rows_per_sec: rows as f64 / secs })
}
