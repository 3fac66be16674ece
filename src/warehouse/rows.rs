//! Helpers every dialect shares: identifier quoting, stage names, the
//! decoding of staged rows into JSON, and describing a model's columns.

use base64::Engine as _;
use serde_json::Value;

use sqlx::{AssertSqlSafe, Column as _, Executor, TypeInfo as _};

use super::{Column, Row, WarehouseError};

/// Key of the object a dialect wraps binary values in, as
/// `{"$retl_blob": "<hex>"}`; the decoder turns it into base64 text.
pub const BLOB_MARKER: &str = "$retl_blob";

/// Quotes an SQL identifier the standard way (`"a""b"`). MySQL dialects run
/// with `ANSI_QUOTES` or use their own quoting.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A short, identifier-safe suffix for a stage's tables, derived from the
/// stage's name (a sync name, which is user text).
pub fn stage_suffix(stage: &str) -> String {
    format!("{:012x}", xxhash_rust::xxh3::xxh3_64(stage.as_bytes()) & 0xffff_ffff_ffff)
}

/// The model's SQL as a subquery: trailing semicolons and blanks removed,
/// nothing else touched.
pub fn model_subquery(query: &str) -> String {
    query.trim().trim_end_matches(';').trim_end().to_string()
}

/// A failure of the model's query, with the server's own message.
pub fn query_err(e: sqlx::Error) -> WarehouseError {
    match e {
        sqlx::Error::Database(db) => WarehouseError::Query { message: db.message().to_string() },
        other => WarehouseError::Query { message: other.to_string() },
    }
}

/// The columns the model's query returns, with the server's type names,
/// learned by preparing the query (it is not run).
pub async fn describe_columns<DB>(pool: &sqlx::Pool<DB>, query: &str) -> Result<Vec<Column>, WarehouseError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    Ok(columns_of(&prepare_model(pool, query).await?))
}

/// The model's query prepared (not run), for what the server says of its columns.
pub async fn prepare_model<DB>(pool: &sqlx::Pool<DB>, query: &str) -> Result<DB::Statement, WarehouseError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let sql = format!("SELECT * FROM ({}) AS q", model_subquery(query));
    pool.prepare(sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(sql))).await.map_err(query_err)
}

/// A prepared statement's columns, with the server's type names.
pub fn columns_of<S: sqlx::Statement>(stmt: &S) -> Vec<Column> {
    stmt.columns().iter().map(|c| Column { name: c.name().to_string(), type_name: Some(c.type_info().name().to_string()) }).collect()
}

/// Turns a staged row's JSON text into a [`Row`].
#[derive(Default)]
pub struct RowDecoder;

impl RowDecoder {
    pub fn decode(&self, text: &str) -> Result<Row, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("the row has a value JSON cannot carry ({e}); cast it in the model's query"))?;
        let Value::Object(mut row) = value else {
            return Err("the row is not a JSON object".to_string());
        };
        for v in row.values_mut() {
            if let Some(blob) = blob_hex(v) {
                *v = Value::String(hex_to_base64(blob)?);
            }
        }
        Ok(row)
    }
}

impl RowDecoder {
    /// Like [`RowDecoder::decode`], for a row whose text may not be UTF-8
    /// (SQLite stores whatever bytes it is given as TEXT): such a row is
    /// an error naming the columns that hold the bad text, so that one
    /// record fails, not the sync.
    pub fn decode_bytes(&self, bytes: &[u8]) -> Result<Row, String> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return self.decode(text);
        }
        let lossy = String::from_utf8_lossy(bytes);
        let columns: Vec<String> = match serde_json::from_str::<Value>(&lossy) {
            Ok(Value::Object(row)) => {
                row.iter().filter(|(_, v)| v.to_string().contains('\u{FFFD}')).map(|(k, _)| format!("{k:?}")).collect()
            }
            _ => Vec::new(),
        };
        Err(match columns.as_slice() {
            [] => "the row holds text that is not valid UTF-8; cast or clean it in the model's query".to_string(),
            [one] => format!("the column {one} holds text that is not valid UTF-8; cast or clean it in the model's query"),
            many => format!("the columns {} hold text that is not valid UTF-8; cast or clean them in the model's query", many.join(", ")),
        })
    }
}

/// A key as text, whatever bytes it has: a key that is not UTF-8 is shown
/// with replacement characters, and its row fails as not UTF-8.
pub fn key_text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.map(|b| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn blob_hex(v: &Value) -> Option<&str> {
    match v {
        Value::Object(o) if o.len() == 1 => o.get(BLOB_MARKER).and_then(Value::as_str),
        _ => None,
    }
}

fn hex_to_base64(hex: &str) -> Result<String, String> {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| "a binary value could not be decoded".to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_become_base64_and_bad_numbers_are_errors() {
        let row = RowDecoder.decode(r#"{"id":1,"b":{"$retl_blob":"68690a"}}"#).unwrap();
        assert_eq!(row["b"], Value::String("aGkK".into()));
        let err = RowDecoder.decode(r#"{"id":1,"x":9e999}"#).unwrap_err();
        assert!(err.contains("JSON cannot carry"), "{err}");
    }

    #[test]
    fn text_that_is_not_utf8_names_its_column() {
        let err = RowDecoder.decode_bytes(b"{\"id\":1,\"name\":\"a\xff\"}").unwrap_err();
        assert!(err.contains("column \"name\"") && err.contains("UTF-8"), "{err}");
        assert_eq!(RowDecoder.decode_bytes(b"{\"id\":1}").unwrap()["id"], 1);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
