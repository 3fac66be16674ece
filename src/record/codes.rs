//! Error codes of rejected records, and the action we recommend for each.
//! The codes show in Sync status, `retl run` output and the record log.

/// The row's primary key is null.
pub const NULL_PRIMARY_KEY: &str = "NULL_PRIMARY_KEY";
/// Several rows share one primary key.
pub const DUPLICATE_PRIMARY_KEY: &str = "DUPLICATE_PRIMARY_KEY";
/// A value of the row cannot be carried as JSON.
pub const UNSUPPORTED_VALUE: &str = "UNSUPPORTED_VALUE";
/// A required destination field has no value.
pub const MISSING_REQUIRED_FIELD: &str = "MISSING_REQUIRED_FIELD";
/// A value does not have the destination field's type.
pub const TYPE_MISMATCH: &str = "TYPE_MISMATCH";
/// An object (or array element) has a property the destination field does not accept.
pub const PROPERTY_NOT_ACCEPTED: &str = "PROPERTY_NOT_ACCEPTED";
/// A Liquid template failed for this row.
pub const TEMPLATE_ERROR: &str = "TEMPLATE_ERROR";
/// A column or JSON value the mapping reads has the wrong shape for this row.
pub const INVALID_VALUE: &str = "INVALID_VALUE";
/// The record has none of the identities the destination's action needs
/// (a segment message without userId and anonymousId).
pub const MISSING_IDENTITY: &str = "MISSING_IDENTITY";
/// The record encodes to more than the destination takes in one message.
pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
/// The destination could not be reached, or kept answering 429/5xx, for the whole batch.
pub const DESTINATION_UNAVAILABLE: &str = "DESTINATION_UNAVAILABLE";
/// The destination's reply did not say what happened to the record.
pub const NO_RESULT: &str = "NO_RESULT";
/// The destination rejected the record without a code of its own.
pub const REJECTED: &str = "REJECTED";
/// A table destination's row broke a constraint of the table (CHECK, NOT NULL, unique, foreign key).
pub const CONSTRAINT_VIOLATION: &str = "CONSTRAINT_VIOLATION";
/// A table destination's table does not fit the action (a column or the table missing, no unique key, no privilege).
pub const TABLE_MISMATCH: &str = "TABLE_MISMATCH";
/// Rejections whose codes did not fit in the Sync's error summary.
pub const OTHER_ERRORS: &str = "OTHER_ERRORS";

/// The message of the [`OTHER_ERRORS`] summary.
pub fn other_errors_message(listed: usize) -> String {
    format!(
        "rejected with further error codes: a Sync summarises at most {listed} codes; the record log in the warehouse has each record's own code and message"
    )
}

/// What a person should do about records rejected with `code`.
pub fn recommended_action(code: &str) -> String {
    let text = match code {
        NULL_PRIMARY_KEY => {
            "Make the Model's primary key column non-null for every row (filter such rows out in the query, or choose another key)."
        }
        DUPLICATE_PRIMARY_KEY => {
            "Make the Model's primary key unique: de-duplicate the query (e.g. GROUP BY or DISTINCT ON) or choose a unique key."
        }
        UNSUPPORTED_VALUE => "Cast the column in the Model's query to a type JSON can carry (text, number, boolean).",
        MISSING_REQUIRED_FIELD => {
            "Give the field a value: fix the data in the warehouse, filter such rows out in the Model, or map a fallback with a template (`{{ row.x | default: \"...\" }}`)."
        }
        TYPE_MISMATCH | INVALID_VALUE => {
            "Cast the column in the Model's query to the type the destination field expects, or change the mapping."
        }
        PROPERTY_NOT_ACCEPTED => {
            "Use \"customize object\" (fields[].object) or \"customize array\" (fields[].array) to send only the properties the destination accepts."
        }
        TEMPLATE_ERROR => "Fix the Liquid template in the Mapping; every variable it uses must exist in the row (`row.<column>`).",
        MISSING_IDENTITY => {
            "Map userId or anonymousId (every segment action but alias needs one), or filter rows without either out in the Model."
        }
        MESSAGE_TOO_LARGE => {
            "Send less with this record: map fewer or shorter traits or properties (a segment message takes at most 32,000 bytes)."
        }
        DESTINATION_UNAVAILABLE => {
            "Check that the destination is up and reachable and that its credentials are valid; the records are retried on the next syncs."
        }
        NO_RESULT => "Check the destination's reply format; the record is retried on the next syncs.",
        CONSTRAINT_VIOLATION => {
            "The destination table refused the row (see the constraint in the message): fix the data in the warehouse or filter such rows out in the Model, or change the constraint; the record is retried on the next syncs with fresh data."
        }
        TABLE_MISMATCH => {
            "Make the destination table fit the Destination as the message says (the key column with a unique index, a column per action field, INSERT, UPDATE and DELETE granted to retl's user), or set createTable: true; the records are retried on the next syncs."
        }
        OTHER_ERRORS => {
            "Fix the errors summarised first; then look up the remaining records' codes in the record log (or the next sync's summary)."
        }
        c if c.starts_with("HTTP_4") => {
            "The destination refused the record: check its error message, then fix the data or the mapping; it is retried on the next syncs with fresh data."
        }
        _ => "Check the error message and fix the data or the destination; the record is retried on the next syncs with fresh data.",
    };
    text.to_string()
}
