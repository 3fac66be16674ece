//! What the dialects share about the table: where it is and how it is
//! keyed ([`Target`]), what the server says it holds ([`TableInfo`]), whether
//! it fits an action, which columns a created table gets, and the two
//! traits a dialect implements.

use async_trait::async_trait;
use serde_json::Value;

use crate::api::{Action, ActionField, FieldType, TableDestination as Settings, TableKeyType};

/// The key column when `keyColumn` is not set.
pub const DEFAULT_KEY_COLUMN: &str = "id";

/// Where the table is and how it is keyed: the settings, checked.
pub struct Target {
    /// `postgres` or `mysql`: the spec field, for messages.
    pub field: &'static str,
    pub schema: Option<String>,
    pub table: String,
    pub key: String,
    pub key_type: TableKeyType,
    pub create: bool,
}

/// The table as the server has it.
pub struct TableInfo {
    /// Qualified and quoted, for SQL.
    pub sql: String,
    /// `schema.table`, for messages.
    pub shown: String,
    pub columns: Vec<String>,
    /// Whether the key column has a unique index of its own.
    pub key_unique: bool,
    /// Whether the key column holds integers (MySQL compares an integer
    /// column with text as floating point, so keys are sent as integers).
    pub key_integer: bool,
    /// Column names match whatever their case (MySQL).
    pub fold_case: bool,
}

impl TableInfo {
    fn has(&self, name: &str) -> bool {
        self.columns.iter().any(|c| if self.fold_case { c.eq_ignore_ascii_case(name) } else { c == name })
    }
}

/// How a failed statement counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A row's data (a constraint, a value that does not fit its column, a
    /// trigger's refusal): that row fails alone, with this code.
    Row(&'static str),
    /// The table does not fit the statement (a column or the table is
    /// missing, no privilege): the batch fails with `TABLE_MISMATCH`.
    Table,
    /// Passing: a lost connection, a deadlock, a serialization failure. The
    /// batch is tried again in a new transaction.
    Transient,
    /// Anything else: the batch fails, and the next sync retries it.
    Other,
}

/// Errors that are not the server's answer: the connection is the trouble.
pub fn transport_class(e: &sqlx::Error) -> Class {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => {
            Class::Transient
        }
        _ => Class::Other,
    }
}

/// One dialect: connecting, reading and creating the table, starting a
/// transaction and telling what a failed statement means.
#[async_trait]
pub trait Dialect: Send + Sync {
    /// Opens one connection outside the pool; `Err` says why it failed and
    /// what to check, without a secret.
    async fn probe(&self) -> Result<(), String>;
    /// The table, or `None` when it does not exist.
    async fn describe(&self, t: &Target) -> Result<Option<TableInfo>, sqlx::Error>;
    /// Creates the table (if it still does not exist) with the key column as
    /// its primary key and these columns.
    async fn create(&self, t: &Target, columns: &[(String, FieldType)]) -> Result<(), sqlx::Error>;
    async fn begin(&self) -> Result<Box<dyn Tx>, sqlx::Error>;
    fn class(&self, e: &sqlx::Error) -> Class;
    /// What the server said, with its detail, for a person (masked by the caller).
    fn message(&self, e: &sqlx::Error) -> String;
    /// A field's value as this dialect writes it.
    fn encode(&self, type_: FieldType, value: Value) -> Value;
}

/// One transaction of one batch.
#[async_trait]
pub trait Tx: Send {
    /// Runs a statement without parameters (SAVEPOINT and the like).
    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error>;
    /// Upserts rows: `columns[0]` is the key column, each row has one value per column.
    async fn upsert(&mut self, t: &TableInfo, columns: &[String], rows: &[&[Value]]) -> Result<(), sqlx::Error>;
    /// Deletes the rows of these keys (each row holds just its key).
    async fn delete(&mut self, t: &TableInfo, key: &str, rows: &[&[Value]]) -> Result<(), sqlx::Error>;
    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error>;
}

impl Target {
    pub fn new(field: &'static str, s: &Settings) -> Result<Target, String> {
        let key = s.key_column.clone().unwrap_or_else(|| DEFAULT_KEY_COLUMN.to_string());
        // PostgreSQL cuts longer names short (so the table would never be
        // found again); MySQL refuses them.
        let max = if field == "postgres" { 63 } else { 64 };
        for (what, name) in [("table", Some(&s.table)), ("schema", s.schema.as_ref()), ("keyColumn", Some(&key))] {
            match name {
                Some(n) if n.is_empty() || n.len() > max => {
                    return Err(format!("spec.{field}.{what} {n:?} must be 1 to {max} bytes long, as the server's names are"));
                }
                _ => {}
            }
        }
        if s.schema.is_none() && s.table.contains('.') {
            return Err(format!(
                "spec.{field}.table {:?} has a dot; put the schema in spec.{field}.schema and the bare table name in table",
                s.table
            ));
        }
        Ok(Target {
            field,
            schema: s.schema.clone(),
            table: s.table.clone(),
            key,
            key_type: s.key_type.unwrap_or_default(),
            create: s.create_table,
        })
    }

    fn shown(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.table),
            None => self.table.clone(),
        }
    }

    pub fn missing_message(&self) -> String {
        let f = self.field;
        format!(
            "table {} does not exist; create it (with the key column {:?} under a unique index and a column per action field), \
             or set spec.{f}.createTable: true to let retl create it",
            self.shown(),
            self.key
        )
    }

    /// Whether the table can take the upserts and deletes of `action`; `Err` says what to change.
    pub fn fits(&self, t: &TableInfo, action: &str, fields: &[ActionField]) -> Result<(), String> {
        let f = self.field;
        if !t.has(&self.key) {
            return Err(format!(
                "table {} has no column {:?} (spec.{f}.keyColumn, the column that holds the Model's primary key); \
                 set keyColumn to the table's key column, or add the column with a unique index",
                t.shown, self.key
            ));
        }
        if !t.key_unique {
            return Err(format!(
                "column {:?} of table {} has no unique index, so a record's row cannot be found by it; \
                 add one (CREATE UNIQUE INDEX ... ON {} ({:?}), or make it the PRIMARY KEY)",
                self.key, t.shown, t.shown, self.key
            ));
        }
        let missing: Vec<&str> = fields.iter().map(|x| x.name.as_str()).filter(|n| !t.has(n)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "table {} has no column {} for the field(s) of the same name of action {action:?}; add the column(s), \
                 or remove the field(s) from the action",
                t.shown,
                missing.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }
}

/// The columns of a table retl creates: each field of each action once, in
/// the order they first appear. A field named like the key column, or one
/// name with two types, is refused (whether or not retl creates the table:
/// the key column always holds the record's key).
pub fn columns_to_create(t: &Target, actions: &[Action]) -> Result<Vec<(String, FieldType)>, String> {
    let f = t.field;
    let mut out: Vec<(String, FieldType, &str)> = Vec::new();
    for a in actions {
        for field in &a.fields {
            if field.name == t.key || (t.field == "mysql" && field.name.eq_ignore_ascii_case(&t.key)) {
                return Err(format!(
                    "action {:?} has a field {:?}, which is the key column (spec.{f}.keyColumn); the key column always \
                     holds the Model's primary key, so remove the field (spec.{f}.keyType sets its type when retl creates the table)",
                    a.name, field.name
                ));
            }
            match out.iter().find(|(n, ..)| *n == field.name) {
                Some((_, other, in_action)) if t.create && *other != field.type_ => {
                    return Err(format!(
                        "field {:?} is {} in action {in_action:?} but {} in action {:?}; a table retl creates has one type per \
                         column, so give both the same type (or create the table yourself)",
                        field.name,
                        type_name(*other),
                        type_name(field.type_),
                        a.name
                    ));
                }
                Some(_) => {}
                None => out.push((field.name.clone(), field.type_, &a.name)),
            }
        }
    }
    Ok(out.into_iter().map(|(n, t, _)| (n, t)).collect())
}

fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "string",
        FieldType::Number => "number",
        FieldType::Integer => "integer",
        FieldType::Boolean => "boolean",
        FieldType::Object => "object",
        FieldType::Array => "array",
        FieldType::Datetime => "datetime",
        FieldType::Any => "any",
    }
}

/// A datetime field's text as UTC `YYYY-MM-DD HH:MM:SS.ffffff`, which both
/// servers read (MariaDB refuses RFC 3339's `T…Z`); `None` when it is not an
/// RFC 3339 timestamp (then the text goes as it is, for the server to judge).
pub fn utc_datetime(value: &Value) -> Option<String> {
    let ts: jiff::Timestamp = value.as_str()?.parse().ok()?;
    Some(ts.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, type_: FieldType) -> ActionField {
        ActionField { name: name.into(), type_, required: false, properties: None, description: None }
    }

    fn target(create: bool) -> Target {
        Target { field: "postgres", schema: None, table: "t".into(), key: "id".into(), key_type: TableKeyType::String, create }
    }

    #[test]
    fn created_columns_come_once_and_refuse_the_key_and_two_types() {
        let a = Action { name: "a".into(), description: None, fields: vec![field("x", FieldType::String), field("y", FieldType::Integer)] };
        let b = Action { name: "b".into(), description: None, fields: vec![field("y", FieldType::Integer), field("z", FieldType::Object)] };
        let cols = columns_to_create(&target(true), &[a.clone(), b]).unwrap();
        assert_eq!(cols.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["x", "y", "z"]);
        let clash = Action { name: "c".into(), description: None, fields: vec![field("y", FieldType::String)] };
        let err = columns_to_create(&target(true), &[a.clone(), clash.clone()]).unwrap_err();
        assert!(err.contains("\"y\" is integer in action \"a\" but string in action \"c\""), "{err}");
        assert!(columns_to_create(&target(false), &[a, clash]).is_ok(), "an existing table decides the types");
        let key = Action { name: "k".into(), description: None, fields: vec![field("id", FieldType::String)] };
        assert!(columns_to_create(&target(false), &[key]).unwrap_err().contains("is the key column"));
    }

    #[test]
    fn datetimes_become_utc_text_both_servers_read() {
        assert_eq!(utc_datetime(&Value::from("2024-03-01T10:00:00+02:00")).as_deref(), Some("2024-03-01 08:00:00.000000"));
        assert_eq!(utc_datetime(&Value::from("2024-03-01T10:00:00.5Z")).as_deref(), Some("2024-03-01 10:00:00.500000"));
        assert_eq!(utc_datetime(&Value::from("yesterday")), None);
    }
}
