//! Errors of field mapping: configuration errors fail the sync before it
//! reads anything; record errors reject one record.

use thiserror::Error;

/// A Mapping's fields do not fit the model or the action.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MappingError {
    #[error("field {field:?} is not a field of action {action:?} (its fields: {known}); fix spec.fields[].to")]
    UnknownField { field: String, action: String, known: String },

    #[error(
        "field {field:?} reads column {column:?}, which the model does not return (columns: {columns}); fix the mapping or add the column to the model's query"
    )]
    UnknownColumn { field: String, column: String, columns: String },

    #[error("the required field {field:?} of action {action:?} is not mapped; add it to spec.fields")]
    RequiredNotMapped { field: String, action: String },

    #[error("field {field:?} maps the property {property:?}, which the destination does not accept (it accepts: {accepted})")]
    PropertyNotAccepted { field: String, property: String, accepted: String },

    #[error("field {field:?} has an invalid Liquid template: {message}")]
    Template { field: String, message: String },

    #[error("field {field:?} {message}")]
    Invalid { field: String, message: String },
}

/// Why one record cannot be sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{code}: {message}")]
pub struct RecordError {
    pub code: String,
    pub message: String,
}

impl RecordError {
    pub fn new(code: &str, message: impl Into<String>) -> RecordError {
        RecordError { code: code.to_string(), message: message.into() }
    }
}
