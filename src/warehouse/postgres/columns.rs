//! PostgreSQL: the model's columns, and the JSON form of each.
//!
//! A column read straight from a table keeps its declared type, so a
//! `numeric(12,2)` column is known to fit a JSON number exactly and is
//! written as it is, without the per-row check an unconstrained `numeric`
//! needs (0.16 s of the server's time per million rows).

use sqlx::Statement;
use sqlx::postgres::PgPool;

use crate::warehouse::rows::{columns_of, prepare_model, query_err, quote_ident};
use crate::warehouse::{Column, WarehouseError};

/// The most significant digits every decimal survives a double with (and
/// so a JSON number, however its reader parses it).
const EXACT_DIGITS: u32 = 15;

/// The columns the model's query returns (it is prepared, not run), with
/// the server's type names; a `NUMERIC` read from a table column also
/// carries its declared precision and scale (`NUMERIC(12,2)`).
pub async fn describe(pool: &PgPool, query: &str) -> Result<Vec<Column>, WarehouseError> {
    let stmt = prepare_model(pool, query).await?;
    let mut columns = columns_of(&stmt);
    // Where each NUMERIC column comes from, when it is a table's column.
    let (mut at, mut tables, mut numbers) = (Vec::new(), Vec::new(), Vec::new());
    for (i, c) in stmt.columns().iter().enumerate() {
        if let (true, Some(table), Some(number)) =
            (columns[i].type_name.as_deref() == Some("NUMERIC"), c.relation_id(), c.relation_attribute_no())
        {
            at.push(i);
            tables.push(i64::from(table.0));
            numbers.push(number);
        }
    }
    if at.is_empty() {
        return Ok(columns);
    }
    let declared: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT u.i, upper(format_type(a.atttypid, a.atttypmod))
         FROM unnest($1::int8[], $2::int2[]) WITH ORDINALITY AS u(rel, num, i)
         LEFT JOIN pg_attribute a ON a.attrelid = u.rel::oid AND a.attnum = u.num AND a.atttypmod >= 0",
    )
    .bind(&tables)
    .bind(&numbers)
    .fetch_all(pool)
    .await
    .map_err(query_err)?;
    for (i, name) in declared {
        if let (Some(name), Some(&column)) = (name, usize::try_from(i - 1).ok().and_then(|i| at.get(i))) {
            columns[column].type_name = Some(name);
        }
    }
    Ok(columns)
}

/// The declared precision of a `NUMERIC(p,s)` type name.
fn numeric_precision(type_name: &str) -> Option<u32> {
    let args = type_name.strip_prefix("NUMERIC(")?.strip_suffix(')')?;
    args.split(',').next()?.trim().parse().ok()
}

/// The JSON form of one model column, by its PostgreSQL type. Everything
/// not listed here goes as `row_to_json` writes it (text for types JSON has
/// no form for), so no PostgreSQL value is refused.
pub fn column_json(c: &Column) -> String {
    let q = format!("q.{}", quote_ident(&c.name));
    let type_name = c.type_name.as_deref().unwrap_or("");
    let expr = match type_name {
        // Declared with at most 15 digits: every value is a number as it is.
        t if numeric_precision(t).is_some_and(|p| p <= EXACT_DIGITS) => q,
        // Exact: a number while it has at most 15 digits (every such decimal
        // survives a double), otherwise a string with every digit.
        t if t.starts_with("NUMERIC") => {
            format!("CASE WHEN length(replace(abs({q})::text, '.', '')) <= {EXACT_DIGITS} THEN to_json({q}) ELSE to_json({q}::text) END")
        }
        // No zone: taken as UTC, so it comes out as RFC 3339 with an offset.
        "TIMESTAMP" => format!("{q} AT TIME ZONE 'UTC'"),
        "BYTEA" => format!("translate(encode({q}, 'base64'), chr(10), '')"),
        _ => q,
    };
    format!("{expr} AS {}", quote_ident(&c.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(type_name: &str) -> String {
        column_json(&Column { name: "n".into(), type_name: Some(type_name.into()) })
    }

    #[test]
    fn a_numeric_is_checked_unless_its_declared_digits_fit_a_double() {
        assert_eq!(json_of("NUMERIC(12,2)"), "q.\"n\" AS \"n\"");
        assert_eq!(json_of("NUMERIC(15,0)"), "q.\"n\" AS \"n\"");
        assert!(json_of("NUMERIC(16,0)").starts_with("CASE WHEN"), "{}", json_of("NUMERIC(16,0)"));
        assert!(json_of("NUMERIC").starts_with("CASE WHEN"), "{}", json_of("NUMERIC"));
        assert_eq!(json_of("INT8"), "q.\"n\" AS \"n\"");
    }
}
