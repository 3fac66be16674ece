//! One row of a model, for a test record ([`Warehouse::sample_row`]): the
//! row a sync would carry for a key (or the model's first row), built by
//! each dialect's own row-JSON builder, the one its stage uses, so that the
//! values are exactly those a sync sends. Only the model is read: no state
//! table, no stage.
//!
//! A key is matched as a sync tells keys apart: by the primary key's text
//! (byte for byte on MySQL, whatever the collation). Up to two rows come
//! back for a key, so that a key the model returns twice shows.

use sqlx::{AssertSqlSafe, Row as _};

use super::mysql::MysqlWarehouse;
use super::postgres::PostgresWarehouse;
use super::rows::{RowDecoder, key_text, query_err};
use super::server::decode_row;
use super::sqlite::SqliteWarehouse;
use super::{DiffRequest, Row, WarehouseError};

/// A model row, as a sync would stage it.
#[derive(Clone, Debug, PartialEq)]
pub struct SampledRow {
    /// The primary key as text (never null: a row with a null key cannot be sent).
    pub key: String,
    /// The row's values by column, or why the row cannot be carried as JSON.
    pub row: Result<Row, String>,
}

/// `WHERE` and `LIMIT` of the sample, and whether the key is bound.
fn filter(key: Option<&str>, equals: &str) -> (String, u32) {
    match key {
        Some(_) => (equals.to_string(), 2),
        None => ("y.k IS NOT NULL".to_string(), 1),
    }
}

pub async fn postgres(wh: &PostgresWarehouse, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let (filter, limit) = filter(key, "y.k = $1");
    let model = super::postgres_stage::model_rows(req);
    let mut q = sqlx::query(AssertSqlSafe(format!("SELECT y.k, y.row FROM ({model}) AS y WHERE {filter} LIMIT {limit}")));
    if let Some(k) = key {
        q = q.bind(k);
    }
    let rows = q.fetch_all(wh.pool()).await.map_err(query_err)?;
    let decoder = RowDecoder;
    rows.iter()
        .map(|r| {
            let k: String = r.try_get("k").map_err(|e| wh.error("read", e))?;
            let row: String = r.try_get("row").map_err(|e| wh.error("read", e))?;
            Ok(SampledRow { key: k, row: decode_row(&decoder, &row) })
        })
        .collect()
}

pub async fn mysql(wh: &MysqlWarehouse, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let (filter, limit) = filter(key, "CAST(y.k AS BINARY) = CAST(? AS BINARY)");
    let model = super::mysql_json::model_rows(req);
    let mut q = sqlx::query(AssertSqlSafe(format!("SELECT y.k, y.doc FROM ({model}) AS y WHERE {filter} LIMIT {limit}")));
    if let Some(k) = key {
        q = q.bind(k);
    }
    let rows = q.fetch_all(&wh.pool).await.map_err(query_err)?;
    rows.iter()
        .map(|r| {
            // Bytes, as the stage keeps them: a key or row in a binary
            // collation is still read.
            let k: Vec<u8> = r.try_get("k").map_err(|e| wh.state_err("read", e))?;
            let doc: Vec<u8> = r.try_get("doc").map_err(|e| wh.state_err("read", e))?;
            let row = match std::str::from_utf8(&doc) {
                Ok(text) => decode_row(&RowDecoder, text),
                Err(_) => RowDecoder.decode_bytes(&doc),
            };
            Ok(SampledRow { key: key_text(Some(k)).unwrap_or_default(), row })
        })
        .collect()
}

pub async fn sqlite(wh: &SqliteWarehouse, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let (filter, limit) = filter(key, "y.k = ?");
    let model = super::sqlite::model_rows(req);
    let mut q = sqlx::query(AssertSqlSafe(format!("SELECT y.k, y.row FROM ({model}) AS y WHERE {filter} LIMIT {limit}")));
    if let Some(k) = key {
        q = q.bind(k);
    }
    let rows = q.fetch_all(&wh.pool).await.map_err(query_err)?;
    rows.iter()
        .map(|r| {
            let state_err = |e| super::sqlite::state_err("read", e);
            // Bytes: SQLite keeps any bytes as TEXT, and text that is not
            // UTF-8 fails the record, as in a sync.
            let k: Vec<u8> = r.try_get("k").map_err(state_err)?;
            let row: Vec<u8> = r.try_get("row").map_err(state_err)?;
            Ok(SampledRow { key: key_text(Some(k)).unwrap_or_default(), row: RowDecoder.decode_bytes(&row) })
        })
        .collect()
}
