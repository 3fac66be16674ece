//! Reading values out of rows and JSON columns, and checking them against a
//! destination field's type.

use serde_json::{Map, Value};

use crate::api::FieldType;
use crate::record::Row;

/// Where a value comes from: a column, maybe followed by a path into the
/// JSON held in that column (`attrs.address.city`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValuePath {
    pub column: String,
    pub rest: Vec<String>,
}

impl ValuePath {
    /// Resolves `from` against the model's columns: the whole text if it is a
    /// column, else its first dotted segment. `None` if neither is a column.
    pub fn parse(from: &str, columns: &[String]) -> Option<ValuePath> {
        if columns.iter().any(|c| c == from) {
            return Some(ValuePath { column: from.to_string(), rest: Vec::new() });
        }
        let mut parts = from.split('.');
        let column = parts.next()?;
        columns.iter().any(|c| c == column).then(|| ValuePath { column: column.to_string(), rest: parts.map(str::to_string).collect() })
    }

    /// A path inside an array element (no column to check).
    pub fn within_element(from: &str) -> ValuePath {
        let mut parts = from.split('.').map(str::to_string);
        ValuePath { column: parts.next().unwrap_or_default(), rest: parts.collect() }
    }

    /// The value at this path in a row; `None` when a property on the way
    /// is missing. `Err` when the path reaches into text that is not JSON:
    /// that is a bad value, not a missing one, and must not be sent as null.
    pub fn get_in_row(&self, row: &Row) -> Result<Option<Value>, String> {
        let Some(root) = row.get(&self.column) else { return Ok(None) };
        self.descend(root)
    }

    /// The value at this path in an object (an array element).
    pub fn get_in_object(&self, obj: &Map<String, Value>) -> Result<Option<Value>, String> {
        let Some(root) = obj.get(&self.column) else { return Ok(None) };
        self.descend(root)
    }

    fn descend(&self, root: &Value) -> Result<Option<Value>, String> {
        if self.rest.is_empty() {
            return Ok(Some(root.clone()));
        }
        let parsed;
        let mut current = match root {
            Value::String(s) => {
                parsed = serde_json::from_str::<Value>(s).map_err(|_| {
                    format!("{:?} reads into the column {:?}, whose value is not valid JSON ({})", self.text(), self.column, preview(s))
                })?;
                &parsed
            }
            other => other,
        };
        for key in &self.rest {
            let next = match current {
                Value::Object(o) => o.get(key),
                Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            };
            let Some(next) = next else { return Ok(None) };
            current = next;
        }
        Ok(Some(current.clone()))
    }

    /// The path as written in the Mapping.
    fn text(&self) -> String {
        std::iter::once(self.column.as_str()).chain(self.rest.iter().map(String::as_str)).collect::<Vec<_>>().join(".")
    }
}

fn preview(s: &str) -> String {
    if s.chars().count() > 40 { format!("{}…", s.chars().take(40).collect::<String>()) } else { s.to_string() }
}

/// JSON text in a string column becomes the object or array it holds
/// (SQLite and MySQL often carry JSON as text).
pub fn json_container(v: Value) -> Value {
    if let Value::String(s) = &v {
        let t = s.trim_start();
        if (t.starts_with('{') || t.starts_with('['))
            && let Ok(parsed) = serde_json::from_str::<Value>(s)
        {
            return parsed;
        }
    }
    v
}

/// Converts a non-null value to a field's type, where that is lossless;
/// `Err` says why not.
/// Whether a value already has the field's type as it is (coercing it
/// would give it back unchanged).
pub fn fits(v: &Value, ty: FieldType) -> bool {
    match (ty, v) {
        (FieldType::Any, _)
        | (FieldType::String, Value::String(_))
        | (FieldType::Number, Value::Number(_))
        | (FieldType::Boolean, Value::Bool(_))
        | (FieldType::Object, Value::Object(_))
        | (FieldType::Array, Value::Array(_)) => true,
        (FieldType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

pub fn coerce(v: Value, ty: FieldType) -> Result<Value, String> {
    let mismatch = |v: &Value| Err(format!("expected {}, got {}", type_name(ty), describe(v)));
    match ty {
        FieldType::Any => Ok(v),
        FieldType::String => match v {
            Value::String(_) => Ok(v),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            other => mismatch(&other),
        },
        FieldType::Number => match &v {
            Value::Number(_) => Ok(v),
            Value::String(s) => s.trim().parse::<serde_json::Number>().map(Value::Number).or_else(|_| mismatch(&v)),
            _ => mismatch(&v),
        },
        FieldType::Integer => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                _ => mismatch(&v),
            },
            Value::String(s) => s.trim().parse::<i64>().map(Value::from).or_else(|_| mismatch(&v)),
            _ => mismatch(&v),
        },
        FieldType::Boolean => match &v {
            Value::Bool(_) => Ok(v),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => Ok(Value::Bool(n.as_i64() == Some(1))),
            Value::String(s) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
            _ => mismatch(&v),
        },
        FieldType::Object => match json_container(v) {
            v @ Value::Object(_) => Ok(v),
            other => mismatch(&other),
        },
        FieldType::Array => match json_container(v) {
            v @ Value::Array(_) => Ok(v),
            other => mismatch(&other),
        },
        FieldType::Datetime => match &v {
            Value::String(s) => normalize_datetime(s)
                .map(Value::String)
                .ok_or_else(|| format!("expected a date-time (RFC 3339, or `YYYY-MM-DD HH:MM:SS` taken as UTC), got {:?}", s)),
            _ => mismatch(&v),
        },
    }
}

/// RFC 3339 text stays as it is; `YYYY-MM-DD[ T]HH:MM:SS[.fff]` without a
/// zone is taken as UTC and written as RFC 3339.
fn normalize_datetime(s: &str) -> Option<String> {
    if s.parse::<jiff::Timestamp>().is_ok() {
        return Some(s.to_string());
    }
    let civil: jiff::civil::DateTime = s.trim().replace(' ', "T").parse().ok()?;
    civil.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp().to_string())
}

pub fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => "a string",
        FieldType::Number => "a number",
        FieldType::Integer => "an integer",
        FieldType::Boolean => "a boolean",
        FieldType::Object => "an object",
        FieldType::Array => "an array",
        FieldType::Datetime => "a date-time",
        FieldType::Any => "any value",
    }
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    let short = if text.chars().count() > 60 { format!("{}…", text.chars().take(60).collect::<String>()) } else { text };
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("{kind} ({short})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_into_json_text_columns() {
        let cols = vec!["id".to_string(), "attrs".to_string(), "a.b".to_string()];
        let row = json!({"id": 1, "attrs": "{\"address\":{\"city\":\"Oslo\"}}", "a.b": 5}).as_object().unwrap().clone();
        assert_eq!(ValuePath::parse("attrs.address.city", &cols).unwrap().get_in_row(&row), Ok(Some(json!("Oslo"))));
        assert_eq!(ValuePath::parse("attrs.address.zip", &cols).unwrap().get_in_row(&row), Ok(None));
        assert_eq!(ValuePath::parse("a.b", &cols).unwrap().get_in_row(&row), Ok(Some(json!(5))));
        let bad = json!({"id": 1, "attrs": "not json"}).as_object().unwrap().clone();
        let err = ValuePath::parse("attrs.address", &cols).unwrap().get_in_row(&bad).unwrap_err();
        assert!(err.contains("\"attrs\"") && err.contains("not valid JSON"), "{err}");
        assert!(ValuePath::parse("nope.x", &cols).is_none());
    }

    #[test]
    fn coercion_is_lossless_or_an_error() {
        assert_eq!(coerce(json!("42"), FieldType::Integer).unwrap(), json!(42));
        assert_eq!(coerce(json!(1), FieldType::Boolean).unwrap(), json!(true));
        assert_eq!(coerce(json!(7), FieldType::String).unwrap(), json!("7"));
        assert!(coerce(json!("abc"), FieldType::Number).is_err());
        assert!(coerce(json!(1.5), FieldType::Integer).is_err());
        assert_eq!(coerce(json!("[1]"), FieldType::Array).unwrap(), json!([1]));
        assert!(coerce(json!({"a": 1}), FieldType::String).is_err());
        assert_eq!(coerce(json!("2024-01-02 03:04:05"), FieldType::Datetime).unwrap(), json!("2024-01-02T03:04:05Z"));
        assert!(coerce(json!("yesterday"), FieldType::Datetime).is_err());
        for (v, ty) in [(json!("a"), FieldType::String), (json!(1), FieldType::Integer), (json!({}), FieldType::Object)] {
            assert!(fits(&v, ty));
            assert_eq!(coerce(v.clone(), ty).unwrap(), v);
        }
        assert!(!fits(&json!(1.5), FieldType::Integer));
        assert!(!fits(&json!("2024-01-02T03:04:05Z"), FieldType::Datetime));
    }
}
