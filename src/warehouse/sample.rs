//! One row of a model, for a test record
//! ([`Warehouse::sample_row`](super::Warehouse::sample_row)): the row a
//! sync would carry for a key (or the model's first row), built by each
//! dialect's own row-JSON builder, the one its stage uses, so that the
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

/// The sample's SQL: key and row JSON (as `doc`) of the model's rows with
/// the key (`equals` compares `y.k` with the bound key), else of its first
/// row with one.
fn select(model: &str, row: &str, equals: &str, key: Option<&str>) -> String {
    let (filter, limit) = match key {
        Some(_) => (equals, 2),
        None => ("y.k IS NOT NULL", 1),
    };
    format!("SELECT y.k, y.{row} AS doc FROM ({model}) AS y WHERE {filter} LIMIT {limit}")
}

/// Runs the sample's SQL on any dialect's pool and reads each row with
/// `read` (a failure to read it is the dialect's `err`).
async fn sample<DB, R>(
    pool: &sqlx::Pool<DB>,
    sql: String,
    key: Option<&str>,
    read: R,
    err: impl Fn(sqlx::Error) -> WarehouseError,
) -> Result<Vec<SampledRow>, WarehouseError>
where
    DB: sqlx::Database,
    R: Fn(&DB::Row) -> Result<SampledRow, sqlx::Error>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut q = sqlx::query::<DB>(AssertSqlSafe(sql));
    if let Some(k) = key {
        q = q.bind(k);
    }
    let rows = q.fetch_all(pool).await.map_err(query_err)?;
    rows.iter().map(|r| read(r).map_err(&err)).collect()
}

pub async fn postgres(wh: &PostgresWarehouse, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let sql = select(&super::postgres_stage::model_rows(req), "row", "y.k = $1", key);
    let read = |r: &sqlx::postgres::PgRow| {
        let doc: String = r.try_get("doc")?;
        Ok(SampledRow { key: r.try_get("k")?, row: decode_row(&RowDecoder, &doc) })
    };
    sample(wh.pool(), sql, key, read, |e| wh.error("read", e)).await
}

pub async fn mysql(wh: &MysqlWarehouse, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let sql = select(&super::mysql_json::model_rows(req), "doc", "CAST(y.k AS BINARY) = CAST(? AS BINARY)", key);
    // Bytes, as the stage keeps them: a key or row in a binary collation is still read.
    let read = |r: &sqlx::mysql::MySqlRow| {
        let doc: Vec<u8> = r.try_get("doc")?;
        let row = match std::str::from_utf8(&doc) {
            Ok(text) => decode_row(&RowDecoder, text),
            Err(_) => RowDecoder.decode_bytes(&doc),
        };
        Ok(SampledRow { key: key_text(Some(r.try_get("k")?)).unwrap_or_default(), row })
    };
    sample(&wh.pool, sql, key, read, |e| wh.state_err("read", e)).await
}

pub async fn sqlite(wh: &SqliteWarehouse, req: &DiffRequest, key: Option<&str>) -> Result<Vec<SampledRow>, WarehouseError> {
    let sql = select(&super::sqlite::model_rows(req), "row", "y.k = ?", key);
    // Bytes: SQLite keeps any bytes as TEXT, and text that is not UTF-8
    // fails the record, as in a sync.
    let read = |r: &sqlx::sqlite::SqliteRow| {
        let doc: Vec<u8> = r.try_get("doc")?;
        Ok(SampledRow { key: key_text(Some(r.try_get("k")?)).unwrap_or_default(), row: RowDecoder.decode_bytes(&doc) })
    };
    sample(&wh.pool, sql, key, read, |e| super::sqlite::state_err("read", e)).await
}
