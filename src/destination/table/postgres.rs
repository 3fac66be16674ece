//! PostgreSQL: `INSERT … ON CONFLICT (key) DO UPDATE` and `DELETE`, each
//! statement carrying its rows as one `jsonb` parameter that
//! `jsonb_populate_recordset` turns into rows of the table's own type. So
//! the server converts every value to its column's type (text to integer,
//! JSON arrays to arrays, objects to json/jsonb), a batch needs no more
//! parameters than one, whatever its size, and a value that does not fit
//! fails with the server's own message. A conflict on another unique index
//! than the key's is an error (the row fails), never an update of another row.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions, Postgres as Pg};
use sqlx::{AssertSqlSafe, Connection, Transaction};

use super::schema::{Class, Dialect, TableInfo, Target, Tx, transport_class, utc_datetime};
use crate::api::{FieldType, TableKeyType};
use crate::record::codes;
use crate::warehouse::server::{Failure, ServerTarget, classify, connect_message};

pub struct Postgres {
    pool: PgPool,
    options: PgConnectOptions,
    server: ServerTarget,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Postgres {
    pub fn new(server: ServerTarget, connections: usize) -> Result<Postgres, String> {
        // Unlike a warehouse's, commits wait for the server's disk: a batch
        // retl counts as delivered must survive a crash of the server.
        let options = crate::warehouse::server_options::postgres(&server, vec![])?;
        let pool = PgPoolOptions::new()
            .max_connections(connections as u32)
            .acquire_timeout(server.connect_timeout)
            .connect_lazy_with(options.clone());
        Ok(Postgres { pool, options, server })
    }
}

/// `"schema"."table"`, or the bare table (the current schema) without a schema.
fn qualified(t: &Target) -> String {
    match &t.schema {
        Some(s) => format!("{}.{}", quote(s), quote(&t.table)),
        None => quote(&t.table),
    }
}

fn sql_type(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "text",
        FieldType::Number => "numeric",
        FieldType::Integer => "bigint",
        FieldType::Boolean => "boolean",
        FieldType::Object | FieldType::Array | FieldType::Any => "jsonb",
        FieldType::Datetime => "timestamptz",
    }
}

#[async_trait]
impl Dialect for Postgres {
    async fn probe(&self) -> Result<(), String> {
        let failure = match tokio::time::timeout(self.server.connect_timeout, PgConnection::connect_with(&self.options)).await {
            Err(_) => Failure::TimedOut,
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) => match &e {
                sqlx::Error::Database(db) => match db.code().as_deref() {
                    Some("28P01" | "28000") => Failure::AuthRefused(db.message().to_string()),
                    Some("3D000") => Failure::NoDatabase(db.message().to_string()),
                    _ => classify(&e),
                },
                _ => classify(&e),
            },
        };
        let at = format!("{}:{}", self.options.get_host(), self.options.get_port());
        Err(connect_message(&self.server, &at, self.options.get_username(), "postgres", failure))
    }

    async fn describe(&self, t: &Target) -> Result<Option<TableInfo>, sqlx::Error> {
        let schema: Option<String> =
            sqlx::query_scalar("SELECT COALESCE($1::text, current_schema()::text)").bind(&t.schema).fetch_one(&self.pool).await?;
        let Some(schema) = schema else { return Ok(None) };
        // A unique index of the key column alone, without a predicate or an
        // expression, checked at once: what ON CONFLICT (key) can use.
        let columns: Vec<(String, bool)> = sqlx::query_as(
            "SELECT a.attname::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique \
               AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'f', 'v', 'm') ORDER BY a.attnum",
        )
        .bind(&schema)
        .bind(&t.table)
        .fetch_all(&self.pool)
        .await?;
        if columns.is_empty() {
            return Ok(None);
        }
        Ok(Some(TableInfo {
            sql: format!("{}.{}", quote(&schema), quote(&t.table)),
            shown: format!("{schema}.{}", t.table),
            key_unique: columns.iter().any(|(name, unique)| *name == t.key && *unique),
            columns: columns.into_iter().map(|(name, _)| name).collect(),
            key_integer: false,
            fold_case: false,
        }))
    }

    async fn create(&self, t: &Target, columns: &[(String, FieldType)]) -> Result<(), sqlx::Error> {
        let key_type = match t.key_type {
            TableKeyType::String => "text",
            TableKeyType::Integer => "bigint",
        };
        let mut defs = vec![format!("{} {key_type} PRIMARY KEY", quote(&t.key))];
        defs.extend(columns.iter().map(|(name, type_)| format!("{} {}", quote(name), sql_type(*type_))));
        let sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", qualified(t), defs.join(", "));
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.pool).await.map(|_| ())
    }

    async fn begin(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        Ok(Box::new(PgTx(self.pool.begin().await?)))
    }

    fn class(&self, e: &sqlx::Error) -> Class {
        let sqlx::Error::Database(db) = e else { return transport_class(e) };
        let code = db.code().unwrap_or_default().to_string();
        match (code.get(..2).unwrap_or_default(), code.as_str()) {
            // 21000: two records of one statement hit one row (keys equal once cast to
            // the column's type); split up, each lands in turn.
            ("23" | "21", _) => Class::Row(codes::CONSTRAINT_VIOLATION),
            ("22", _) => Class::Row(codes::INVALID_VALUE),
            // RAISE in a trigger: the table's own rule refused the row.
            ("P0", _) => Class::Row(codes::REJECTED),
            // Undefined table or column, no privilege, no unique index for
            // ON CONFLICT, no such schema, a feature the table lacks.
            ("42" | "3F" | "0A", _) => Class::Table,
            // Serialization failure, deadlock, connection trouble, the
            // server short of resources or shutting down, a lock not granted.
            ("40" | "08" | "53", _) | (_, "57P01" | "57P02" | "57P03" | "55P03") => Class::Transient,
            _ => Class::Other,
        }
    }

    fn message(&self, e: &sqlx::Error) -> String {
        let text = match e {
            sqlx::Error::Database(db) => match db.try_downcast_ref::<PgDatabaseError>() {
                Some(pg) => match pg.detail() {
                    Some(detail) => format!("{} ({detail})", pg.message()),
                    None => pg.message().to_string(),
                },
                None => db.message().to_string(),
            },
            other => other.to_string(),
        };
        self.server.redact(&text)
    }

    fn encode(&self, type_: FieldType, value: Value) -> Value {
        // `+00:00` makes a timestamptz column read UTC; a timestamp column
        // drops the offset and keeps the UTC wall time.
        match (type_, utc_datetime(&value)) {
            (FieldType::Datetime, Some(utc)) => Value::String(format!("{utc}+00:00")),
            _ => value,
        }
    }
}

struct PgTx(Transaction<'static, Pg>);

/// The rows as the JSON array `jsonb_populate_recordset` reads.
fn rows_json(columns: &[String], rows: &[&[Value]]) -> sqlx::types::Json<Value> {
    let objects = rows.iter().map(|r| Value::Object(columns.iter().cloned().zip(r.iter().cloned()).collect())).collect();
    sqlx::types::Json(Value::Array(objects))
}

#[async_trait]
impl Tx for PgTx {
    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut *self.0).await.map(|_| ())
    }

    async fn upsert(&mut self, t: &TableInfo, columns: &[String], rows: &[&[Value]]) -> Result<(), sqlx::Error> {
        let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let set: Vec<String> = columns[1..].iter().map(|c| format!("{q} = EXCLUDED.{q}", q = quote(c))).collect();
        let on_conflict = if set.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}", set.join(", ")) };
        let sql = format!(
            "INSERT INTO {t} ({list}) SELECT {list} FROM jsonb_populate_recordset(NULL::{t}, $1) ON CONFLICT ({key}) {on_conflict}",
            t = t.sql,
            key = quote(&columns[0]),
        );
        sqlx::query(AssertSqlSafe(sql)).bind(rows_json(columns, rows)).execute(&mut *self.0).await.map(|_| ())
    }

    async fn delete(&mut self, t: &TableInfo, key: &str, rows: &[&[Value]]) -> Result<(), sqlx::Error> {
        let sql = format!(
            "DELETE FROM {t} WHERE {k} IN (SELECT r.{k} FROM jsonb_populate_recordset(NULL::{t}, $1) r)",
            t = t.sql,
            k = quote(key)
        );
        sqlx::query(AssertSqlSafe(sql)).bind(rows_json(&[key.to_string()], rows)).execute(&mut *self.0).await.map(|_| ())
    }

    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error> {
        self.0.commit().await
    }
}
