//! Field mapping: turns a model row into the payload a destination action
//! expects.
//!
//! A Mapping's fields are compiled once per sync against the model's columns
//! and the action's fields ([`FieldMapper::new`]); configuration mistakes are
//! caught there and fail the sync before anything is read. Each row is then
//! mapped by [`FieldMapper::map`]; a row that cannot be mapped becomes a
//! rejected record with a code, and the payload as far as it was built.

mod copy;
mod error;
mod liquid_bounds;
mod liquid_for;
pub mod template;
pub mod value;

pub use error::{MappingError, RecordError};

use serde_json::{Map, Value};

use crate::api::{Action, ActionField, FieldMapping, FieldType, PropertyMapping};
use crate::record::Row;
use crate::record::{Payload, codes};
use template::Template;
use value::{ValuePath, coerce, fits, json_container};

/// A compiled Mapping, ready to map rows.
#[derive(Debug)]
pub struct FieldMapper {
    fields: Vec<CompiledField>,
    skip_nulls: bool,
    /// Every field reads a whole column that no other field reads.
    columns_moved: bool,
    /// Every field copies a whole column or a constant: rows can be mapped
    /// from their text ([`FieldMapper::map_text`]).
    copy: Option<copy::CopyPlan>,
}

#[derive(Debug)]
struct CompiledField {
    to: String,
    source: FieldSource,
    declared: Option<ActionField>,
}

#[derive(Debug)]
enum FieldSource {
    Path(ValuePath),
    Value(Value),
    Template(Template),
    Object(Vec<CompiledProperty>),
    Array { from: ValuePath, properties: Vec<CompiledProperty> },
}

#[derive(Debug)]
struct CompiledProperty {
    to: String,
    source: PropertySource,
}

#[derive(Debug)]
enum PropertySource {
    Path(ValuePath),
    Value(Value),
    Template(Template),
}

impl FieldMapper {
    /// Compiles `fields` for `action` against the model's `columns`.
    pub fn new(fields: &[FieldMapping], action: &Action, skip_nulls: bool, columns: &[String]) -> Result<FieldMapper, MappingError> {
        let declared = |name: &str| action.fields.iter().find(|f| f.name == name).cloned();
        let mut compiled = Vec::with_capacity(fields.len());
        for f in fields {
            let decl = declared(&f.to);
            if decl.is_none() && !action.fields.is_empty() {
                return Err(MappingError::UnknownField {
                    field: f.to.clone(),
                    action: action.name.clone(),
                    known: action.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
                });
            }
            if compiled.iter().any(|c: &CompiledField| c.to == f.to) {
                return Err(MappingError::Invalid { field: f.to.clone(), message: "is mapped twice".into() });
            }
            let source = compile_field(f, columns)?;
            if let (Some(d), FieldSource::Object(props) | FieldSource::Array { properties: props, .. }) = (&decl, &source)
                && let Some(allowed) = &d.properties
                && let Some(p) = props.iter().find(|p| !allowed.contains(&p.to))
            {
                return Err(MappingError::PropertyNotAccepted {
                    field: f.to.clone(),
                    property: p.to.clone(),
                    accepted: allowed.join(", "),
                });
            }
            compiled.push(CompiledField { to: f.to.clone(), source, declared: decl });
        }
        if let Some(missing) = action.fields.iter().find(|a| a.required && !fields.iter().any(|f| f.to == a.name)) {
            return Err(MappingError::RequiredNotMapped { field: missing.name.clone(), action: action.name.clone() });
        }
        // Each field a whole column no other field reads: a row's values can
        // move into the payload instead of being copied.
        let columns_moved = compiled.iter().all(|f| match &f.source {
            FieldSource::Path(p) => {
                p.rest.is_empty()
                    && compiled.iter().filter(|g| matches!(&g.source, FieldSource::Path(q) if q.column == p.column)).count() == 1
            }
            FieldSource::Value(_) => true,
            _ => false,
        });
        let copy = copy::CopyPlan::new(
            compiled.iter().map(|f| {
                let source = match &f.source {
                    FieldSource::Path(p) => copy::Source::Path(p),
                    FieldSource::Value(v) => copy::Source::Constant(v),
                    _ => copy::Source::Other,
                };
                (f.to.as_str(), source, f.declared.as_ref())
            }),
            columns,
            skip_nulls,
        );
        Ok(FieldMapper { fields: compiled, skip_nulls, columns_moved, copy })
    }

    /// The payload of a row given as its JSON text (in the model's column
    /// order), when the Mapping only copies whole columns and constants and
    /// every value of this row already has its field's type; `None` when
    /// the row needs [`FieldMapper::map`] (which then gives the same
    /// payload, or the row's error).
    pub fn map_text(&self, row: &str) -> Option<Payload> {
        self.copy.as_ref()?.payload(row)
    }

    /// Maps one row it may take apart: the same payload as [`FieldMapper::map`],
    /// without copying values where every field reads a column of its own.
    pub fn map_owned(&self, mut row: Row) -> Result<Value, (RecordError, Value)> {
        if !self.columns_moved {
            return self.map(&row);
        }
        self.build(|f| match &f.source {
            FieldSource::Path(p) => Ok(row.swap_remove(&p.column).unwrap_or(Value::Null)),
            _ => self.raw_value(f, &row),
        })
    }

    /// Maps one row. On error the partial payload comes back with it, so the
    /// failed record can show what would have been sent.
    pub fn map(&self, row: &Row) -> Result<Value, (RecordError, Value)> {
        self.build(|f| self.raw_value(f, row))
    }

    /// Builds the payload from each field's raw value.
    fn build(&self, mut raw: impl FnMut(&CompiledField) -> Result<Value, RecordError>) -> Result<Value, (RecordError, Value)> {
        let mut payload = Map::with_capacity(self.fields.len());
        let mut first_error: Option<RecordError> = None;
        for f in &self.fields {
            let value = raw(f).map_err(|e| (e, None));
            match value.and_then(|v| self.field_value(f, v)) {
                Ok(Some(v)) => {
                    payload.insert(f.to.clone(), v);
                }
                Ok(None) => {}
                Err((e, shown)) => {
                    if let Some(v) = shown {
                        payload.insert(f.to.clone(), v);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(Value::Object(payload)),
            Some(e) => Err((e, Value::Object(payload))),
        }
    }

    /// The value of one field: `None` to leave it out. A refused value comes
    /// back with the error, to show in the failed record's payload.
    fn field_value(&self, f: &CompiledField, value: Value) -> Result<Option<Value>, (RecordError, Option<Value>)> {
        if value.is_null() {
            if f.declared.as_ref().is_some_and(|d| d.required) {
                let e = RecordError::new(codes::MISSING_REQUIRED_FIELD, format!("the required field {:?} has no value in this row", f.to));
                return Err((e, None));
            }
            return Ok((!self.skip_nulls).then_some(Value::Null));
        }
        let Some(decl) = &f.declared else { return Ok(Some(value)) };
        // Most values already have their field's type: no copy for them.
        let value = if fits(&value, decl.type_) {
            value
        } else {
            match coerce(value.clone(), decl.type_) {
                Ok(v) => v,
                Err(e) => {
                    return Err((RecordError::new(codes::TYPE_MISMATCH, format!("field {:?}: {e}", f.to)), Some(value)));
                }
            }
        };
        match check_properties(decl, &value) {
            Ok(()) => Ok(Some(value)),
            Err(e) => Err((e, Some(value))),
        }
    }

    /// The value a field's source gives for a row (null when absent).
    fn raw_value(&self, f: &CompiledField, row: &Row) -> Result<Value, RecordError> {
        let raw = match &f.source {
            FieldSource::Path(p) => p.get_in_row(row).map_err(|e| invalid(&f.to, e))?,
            FieldSource::Value(v) => Some(v.clone()),
            FieldSource::Template(t) => Some(Value::String(
                t.render(row, None).map_err(|e| RecordError::new(codes::TEMPLATE_ERROR, format!("field {:?}: {e}", f.to)))?,
            )),
            FieldSource::Object(props) => Some(Value::Object(self.build_object(props, row, None, &f.to)?)),
            FieldSource::Array { from, properties } => match from.get_in_row(row).map_err(|e| invalid(&f.to, e))?.map(json_container) {
                None | Some(Value::Null) => Some(Value::Null),
                Some(Value::Array(items)) => {
                    let mut out = Vec::with_capacity(items.len());
                    for item in &items {
                        out.push(Value::Object(self.build_object(properties, row, Some(item), &f.to)?));
                    }
                    Some(Value::Array(out))
                }
                Some(other) => {
                    return Err(RecordError::new(
                        codes::INVALID_VALUE,
                        format!("field {:?}: expected an array of objects, got {}", f.to, short(&other)),
                    ));
                }
            },
        };
        Ok(raw.unwrap_or(Value::Null))
    }

    /// Builds a customized object (or array element): a property the input
    /// lacks is left out, not sent as null.
    fn build_object(
        &self,
        props: &[CompiledProperty],
        row: &Row,
        item: Option<&Value>,
        field: &str,
    ) -> Result<Map<String, Value>, RecordError> {
        let mut out = Map::new();
        for p in props {
            let v = match &p.source {
                PropertySource::Path(path) => match item {
                    Some(Value::Object(o)) => path.get_in_object(o),
                    Some(_) => Ok(None),
                    None => path.get_in_row(row),
                }
                .map_err(|e| invalid(&format!("{field}.{}", p.to), e))?,
                PropertySource::Value(v) => Some(v.clone()),
                PropertySource::Template(t) => Some(Value::String(
                    t.render(row, item)
                        .map_err(|e| RecordError::new(codes::TEMPLATE_ERROR, format!("field {field:?}, property {:?}: {e}", p.to)))?,
                )),
            };
            match v {
                None => {}
                Some(Value::Null) if self.skip_nulls => {}
                Some(v) => {
                    out.insert(p.to.clone(), v);
                }
            }
        }
        Ok(out)
    }
}

/// Refuses properties outside a field's fixed list, naming the first one.
fn check_properties(decl: &ActionField, value: &Value) -> Result<(), RecordError> {
    let Some(allowed) = &decl.properties else { return Ok(()) };
    let objects: Vec<&Map<String, Value>> = match (decl.type_, value) {
        (_, Value::Object(o)) => vec![o],
        (_, Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    };
    for o in objects {
        if let Some(bad) = o.keys().find(|k| !allowed.contains(k)) {
            return Err(RecordError::new(
                codes::PROPERTY_NOT_ACCEPTED,
                format!("field {:?} does not accept the property {bad:?} (it accepts: {})", decl.name, allowed.join(", ")),
            ));
        }
    }
    if decl.type_ == FieldType::Array
        && let Value::Array(items) = value
        && let Some(bad) = items.iter().find(|i| !i.is_object())
    {
        return Err(RecordError::new(
            codes::TYPE_MISMATCH,
            format!("field {:?} expects an array of objects, but an element is {}", decl.name, short(bad)),
        ));
    }
    Ok(())
}

fn compile_field(f: &FieldMapping, columns: &[String]) -> Result<FieldSource, MappingError> {
    let set =
        [f.from.is_some(), f.value.is_some(), f.template.is_some(), f.object.is_some(), f.array.is_some()].iter().filter(|b| **b).count();
    if set != 1 {
        return Err(MappingError::Invalid {
            field: f.to.clone(),
            message: "needs exactly one of from, value, template, object or array".into(),
        });
    }
    let column = |from: &str| {
        ValuePath::parse(from, columns).ok_or_else(|| MappingError::UnknownColumn {
            field: f.to.clone(),
            column: from.to_string(),
            columns: columns.join(", "),
        })
    };
    let template = |t: &str| template::parse(t).map_err(|message| MappingError::Template { field: f.to.clone(), message });
    Ok(if let Some(from) = &f.from {
        FieldSource::Path(column(from)?)
    } else if let Some(v) = &f.value {
        FieldSource::Value(v.clone())
    } else if let Some(t) = &f.template {
        FieldSource::Template(template(t)?)
    } else if let Some(props) = &f.object {
        FieldSource::Object(compile_properties(&f.to, props, Some(columns))?)
    } else if let Some(a) = &f.array {
        FieldSource::Array { from: column(&a.from)?, properties: compile_properties(&f.to, &a.properties, None)? }
    } else {
        return Err(MappingError::Invalid { field: f.to.clone(), message: "has no source".into() });
    })
}

/// `columns` is `Some` for object properties (paths start at a column) and
/// `None` for array element properties (paths start inside the element).
fn compile_properties(field: &str, props: &[PropertyMapping], columns: Option<&[String]>) -> Result<Vec<CompiledProperty>, MappingError> {
    props
        .iter()
        .map(|p| {
            let set = [p.from.is_some(), p.value.is_some(), p.template.is_some()].iter().filter(|b| **b).count();
            if set != 1 {
                return Err(MappingError::Invalid {
                    field: format!("{field}.{}", p.to),
                    message: "needs exactly one of from, value or template".into(),
                });
            }
            let source = if let Some(from) = &p.from {
                PropertySource::Path(match columns {
                    Some(cols) => ValuePath::parse(from, cols).ok_or_else(|| MappingError::UnknownColumn {
                        field: format!("{field}.{}", p.to),
                        column: from.clone(),
                        columns: cols.join(", "),
                    })?,
                    None => ValuePath::within_element(from),
                })
            } else if let Some(v) = &p.value {
                PropertySource::Value(v.clone())
            } else {
                let t = p.template.as_deref().unwrap_or_default();
                PropertySource::Template(
                    template::parse(t).map_err(|message| MappingError::Template { field: format!("{field}.{}", p.to), message })?,
                )
            };
            Ok(CompiledProperty { to: p.to.clone(), source })
        })
        .collect()
}

/// A value the mapping cannot read for this row, naming the field and the column.
fn invalid(field: &str, message: String) -> RecordError {
    RecordError::new(codes::INVALID_VALUE, format!("field {field:?}: {message}"))
}

fn short(v: &Value) -> String {
    let t = v.to_string();
    if t.chars().count() > 60 { format!("{}…", t.chars().take(60).collect::<String>()) } else { t }
}

#[cfg(test)]
mod tests;
