//! One row of a model, for a test record
//! ([`Warehouse::sample_row`](super::Warehouse::sample_row)): the row a
//! sync would carry for a key (or the model's first row), built by each
//! dialect's own row-JSON builder, the one its stage uses (each dialect's
//! `stage` room runs what is here), so that the
//! values are exactly those a sync sends. Only the model is read: no state
//! table, no stage.
//!
//! A key is matched as a sync tells keys apart: by the primary key's text
//! (byte for byte on MySQL, whatever the collation). Up to two rows come
//! back for a key, so that a key the model returns twice shows.

use sqlx::AssertSqlSafe;

use super::rows::query_err;
use super::{Row, WarehouseError};

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
pub(super) fn select(model: &str, row: &str, equals: &str, key: Option<&str>) -> String {
    let (filter, limit) = match key {
        Some(_) => (equals, 2),
        None => ("y.k IS NOT NULL", 1),
    };
    format!("SELECT y.k, y.{row} AS doc FROM ({model}) AS y WHERE {filter} LIMIT {limit}")
}

/// Runs the sample's SQL on any dialect's pool and reads each row with
/// `read` (a failure to read it is the dialect's `err`).
pub(super) async fn sample<DB, R>(
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
