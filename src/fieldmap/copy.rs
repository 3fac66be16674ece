//! The copy path: a payload written straight from the row's JSON text.
//!
//! Most Mappings only copy whole columns into fields (and perhaps add
//! constants). For those, building a tree of JSON values for every row and
//! writing it out again is most of a sync's own CPU. A [`CopyPlan`] instead
//! finds each column's value in the row's text and copies its bytes into
//! the payload when the value already has its field's type. A row with any
//! value the plan cannot vouch for (a null in a required field, a value to
//! convert, a dialect's marker object, a column it does not find) is left to
//! the full mapping, which then gives the same payload or the same error as
//! always: the plan only ever says "this row needs nothing but copying".
//!
//! Numbers are copied as the warehouse wrote them (`12.50` stays `12.50`,
//! where the full mapping would write `12.5`): the same JSON number.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::value::ValuePath;
use crate::api::{ActionField, FieldType};
use crate::record::Payload;

/// How to copy each field of a Mapping whose fields are all whole columns
/// or constants.
#[derive(Debug)]
pub struct CopyPlan {
    fields: Vec<CopyField>,
    /// The model's columns, in the order the row's text has them.
    columns: Vec<String>,
    skip_nulls: bool,
}

#[derive(Debug)]
struct CopyField {
    /// `"name":`, ready to write.
    label: String,
    source: CopySource,
    /// The destination field's type, when declared.
    type_: Option<FieldType>,
    required: bool,
}

#[derive(Debug)]
enum CopySource {
    /// The column at this position of the row.
    Column(usize),
    /// A constant's JSON text.
    Constant(String),
}

/// One field of a Mapping as the copy path sees it.
pub enum Source<'a> {
    Path(&'a ValuePath),
    Constant(&'a serde_json::Value),
    /// A template, an object or an array: needs the full mapping.
    Other,
}

impl CopyPlan {
    /// A plan for `fields` (name, source, declared field), or `None` when
    /// some field needs more than a copy.
    pub fn new<'a>(
        fields: impl IntoIterator<Item = (&'a str, Source<'a>, Option<&'a ActionField>)>,
        columns: &[String],
        skip_nulls: bool,
    ) -> Option<CopyPlan> {
        let mut plan = CopyPlan { fields: Vec::new(), columns: columns.to_vec(), skip_nulls };
        for (name, source, declared) in fields {
            // Fixed property lists and arrays need each element looked at.
            if declared.is_some_and(|d| d.properties.is_some() || d.type_ == FieldType::Array) {
                return None;
            }
            let source = match source {
                Source::Path(p) if p.rest.is_empty() => CopySource::Column(columns.iter().position(|c| *c == p.column)?),
                Source::Constant(v) => CopySource::Constant(v.to_string()),
                _ => return None,
            };
            let label = format!("{}:", serde_json::Value::String(name.to_string()));
            plan.fields.push(CopyField { label, source, type_: declared.map(|d| d.type_), required: declared.is_some_and(|d| d.required) });
        }
        Some(plan)
    }

    /// The payload of one row (its JSON text as the warehouse wrote it), or
    /// `None` when the row needs the full mapping.
    pub fn payload(&self, row: &str) -> Option<Payload> {
        let values = RawRow::read(row, self.columns.len())?;
        if values.len() != self.columns.len() || values.iter().zip(&self.columns).any(|((name, _), column)| name != column) {
            return None;
        }
        let mut out = String::with_capacity(row.len() + 16 * self.fields.len());
        out.push('{');
        let mut first = true;
        for f in &self.fields {
            let raw = match &f.source {
                CopySource::Column(i) => values[*i].1,
                CopySource::Constant(text) => text.as_str(),
            };
            if raw == "null" {
                if f.required {
                    return None;
                }
                if self.skip_nulls {
                    continue;
                }
            } else if !copies_as(raw, f.type_)? {
                // Quoted to be a string: an integer's digits.
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&f.label);
                out.push('"');
                out.push_str(raw);
                out.push('"');
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&f.label);
            out.push_str(raw);
        }
        out.push('}');
        Some(Payload::from_json_text(out))
    }
}

/// Whether a non-null value's text can go as it is into a field of type
/// `type_`: `Some(true)` as it is, `Some(false)` quoted (an integer into a
/// string field), `None` not by copying.
fn copies_as(raw: &str, type_: Option<FieldType>) -> Option<bool> {
    let first = raw.as_bytes().first().copied()?;
    // A dialect's marker (a value JSON cannot carry, a binary value) is
    // turned into its error or its text by the full mapping.
    if first == b'{' && raw.starts_with("{\"$retl_") {
        return None;
    }
    let number = first == b'-' || first.is_ascii_digit();
    let integer = number && raw.bytes().skip(1).all(|b| b.is_ascii_digit());
    match type_ {
        None | Some(FieldType::Any) => Some(true),
        Some(FieldType::String) if first == b'"' => Some(true),
        Some(FieldType::String) if integer => Some(false),
        Some(FieldType::Number) if number => Some(true),
        Some(FieldType::Integer) if integer => Some(true),
        Some(FieldType::Boolean) if raw == "true" || raw == "false" => Some(true),
        Some(FieldType::Object) if first == b'{' => Some(true),
        // RFC 3339 as it is; anything else is normalised by the full mapping.
        Some(FieldType::Datetime) if first == b'"' && !raw.contains('\\') => {
            raw[1..raw.len() - 1].parse::<jiff::Timestamp>().is_ok().then_some(true)
        }
        _ => None,
    }
}

/// A row object's top-level values, each as its JSON text, in order.
struct RawRow<'a>(Vec<(&'a str, &'a str)>);

impl<'a> RawRow<'a> {
    fn read(text: &'a str, columns: usize) -> Option<Vec<(&'a str, &'a str)>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let row = de.deserialize_map(RowVisitor(columns)).ok()?;
        de.end().ok()?;
        Some(row.0)
    }
}

struct RowVisitor(usize);

impl<'de> Visitor<'de> for RowVisitor {
    type Value = RawRow<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRow<'de>, A::Error> {
        let mut out = Vec::with_capacity(self.0);
        // A key with escapes cannot be borrowed: the row then fails to read
        // here and goes to the full mapping.
        while let Some((key, value)) = map.next_entry::<&'de str, &'de RawValue>()? {
            out.push((key, value.get()));
        }
        Ok(RawRow(out))
    }
}

#[cfg(test)]
mod tests;
