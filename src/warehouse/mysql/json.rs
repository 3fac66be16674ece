//! MySQL/MariaDB: a model row as JSON text, built column by column (MariaDB
//! and MySQL differ in what their JSON functions accept, and neither keeps
//! exact decimals or writes RFC 3339 timestamps).

use super::state::{quote, text};
use crate::warehouse::rows::model_subquery;
use crate::warehouse::server::UNSUPPORTED_MARKER;
use crate::warehouse::{Column, DiffRequest};

/// The JSON text of one model column (SQL NULL for a NULL value).
fn column_json(c: &Column) -> String {
    let q = format!("q.{}", quote(&c.name));
    let ty = c.type_name.as_deref().unwrap_or("NULL");
    let iso = "IF(MICROSECOND({q}) = 0, '%Y-%m-%dT%H:%i:%sZ', '%Y-%m-%dT%H:%i:%s.%fZ')";
    match ty {
        "BOOLEAN" => format!("IF({q} IS NULL, NULL, IF({q} <> 0, 'true', 'false'))"),
        t if t.contains("INT") || t == "YEAR" || t == "FLOAT" || t == "DOUBLE" => format!("CAST({q} AS CHAR)"),
        "BIT" => format!("CAST({q} + 0 AS CHAR)"),
        // Exact: a number while it has at most 15 digits, else a string.
        // (Digits, not characters: a 16-digit integer has no point to
        // discount, and a double does not hold every one of them.)
        "DECIMAL" => {
            format!("IF(LENGTH(REPLACE(CAST(ABS({q}) AS CHAR), '.', '')) <= 15, CAST({q} AS CHAR), JSON_QUOTE(CAST({q} AS CHAR)))")
        }
        // TIMESTAMP comes in the session's zone (UTC); DATETIME is taken as UTC.
        "TIMESTAMP" | "DATETIME" => format!("JSON_QUOTE(DATE_FORMAT({q}, {}))", iso.replace("{q}", &q)),
        "DATE" => format!("JSON_QUOTE(DATE_FORMAT({q}, '%Y-%m-%d'))"),
        "JSON" => format!("CAST({q} AS CHAR)"),
        "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" => longtext(&q),
        "CHAR" | "VARCHAR" | "ENUM" | "SET" | "TIME" => {
            format!("JSON_QUOTE(CAST({q} AS CHAR))")
        }
        // Clients see a binary collation (`utf8mb4_bin`, MariaDB's JSON) as
        // binary too; the column's character set tells bytes from text.
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            let text = if ty.ends_with("BLOB") { longtext(&q) } else { format!("JSON_QUOTE({q})") };
            format!("IF(CHARSET({q}) = 'binary', JSON_QUOTE(REPLACE(TO_BASE64({q}), CHAR(10 USING ascii), '')), {text})")
        }
        "NULL" => "NULL".to_string(),
        other => format!(
            "IF({q} IS NULL, NULL, {})",
            text(&format!("{{\"{UNSUPPORTED_MARKER}\":{}}}", serde_json::Value::String(other.to_string())))
        ),
    }
}

/// MariaDB's JSON is a LONGTEXT alias that clients cannot tell apart from
/// other TEXT columns (the protocol sends one type for all of them): a
/// TEXT-family value holding a JSON object or array is carried as one.
fn longtext(q: &str) -> String {
    format!("IF(LEFT({q}, 1) IN ('{{', '[') AND JSON_VALID({q}), JSON_COMPACT({q}), JSON_QUOTE({q}))")
}

/// `SELECT k, doc` of the model: the key as text and the row as JSON text
/// (`doc`, not `row`: ROW is a reserved word in MySQL 8),
/// in the query's column order.
pub(super) fn model_rows(req: &DiffRequest) -> String {
    let mut parts = Vec::with_capacity(req.columns.len() * 2 + 1);
    for (i, c) in req.columns.iter().enumerate() {
        let name = serde_json::Value::String(c.name.clone()).to_string();
        let sep = if i == 0 { "{" } else { "," };
        parts.push(text(&format!("{sep}{name}:")));
        parts.push(format!("COALESCE({}, 'null')", column_json(c)));
    }
    parts.push("'}'".to_string());
    format!(
        "SELECT CAST(q.{pk} AS CHAR) AS k, CONCAT({parts}) AS doc FROM ({query}) AS q",
        pk = quote(&req.primary_key),
        parts = parts.join(", "),
        query = model_subquery(&req.query)
    )
}
