//! MySQL and MariaDB: an upsert is an `UPDATE … JOIN` of the rows that
//! exist and an `INSERT … SELECT … WHERE NOT EXISTS` of the rest, both over
//! the batch's rows as a derived table; a delete is `DELETE … WHERE key IN`.
//!
//! Not `INSERT … ON DUPLICATE KEY UPDATE`: it fires on a conflict with *any*
//! unique index, so a record whose email belongs to another row would
//! silently overwrite that other row. Here such a record fails alone with
//! the server's "Duplicate entry" message. Sessions run in strict mode, so a
//! value that does not fit its column fails its row instead of being cut
//! or zeroed.

use async_trait::async_trait;
use futures::FutureExt;
use serde_json::Value;
use sqlx::mysql::{MySql, MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Connection, Executor, Transaction};

use super::schema::{Class, Dialect, TableInfo, Target, Tx, transport_class, utc_datetime};
use crate::api::{FieldType, TableKeyType};
use crate::record::codes;
use crate::warehouse::server::{Failure, ServerTarget, classify, connect_message};

/// Most placeholders in one statement (the protocol counts them in 16 bits).
const MAX_PLACEHOLDERS: usize = 65_535;
/// Most rows in one statement, whatever their width.
const MAX_ROWS: usize = 1000;

pub struct Mysql {
    pool: MySqlPool,
    options: MySqlConnectOptions,
    server: ServerTarget,
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl Mysql {
    pub fn new(server: ServerTarget, connections: usize) -> Result<Mysql, String> {
        let options = crate::warehouse::server_options::mysql(&server)?;
        let timeout = server.statement_timeout;
        let pool = MySqlPoolOptions::new()
            .max_connections(connections as u32)
            .acquire_timeout(server.connect_timeout)
            .after_connect(move |conn, _| {
                async move {
                    // Strict mode: a value that does not fit its column fails its row.
                    conn.execute(
                        "SET SESSION sql_mode = IF(@@SESSION.sql_mode = '', 'STRICT_TRANS_TABLES', \
                         CONCAT(@@SESSION.sql_mode, ',STRICT_TRANS_TABLES'))",
                    )
                    .await?;
                    if let Some(secs) = timeout {
                        crate::warehouse::server::mysql_statement_timeout(conn, secs).await?;
                    }
                    Ok(())
                }
                .boxed()
            })
            .connect_lazy_with(options.clone());
        Ok(Mysql { pool, options, server })
    }
}

fn qualified(t: &Target) -> String {
    match &t.schema {
        Some(s) => format!("{}.{}", quote(s), quote(&t.table)),
        None => quote(&t.table),
    }
}

fn sql_type(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "LONGTEXT",
        FieldType::Number => "DOUBLE",
        FieldType::Integer => "BIGINT",
        FieldType::Boolean => "BOOLEAN",
        FieldType::Object | FieldType::Array | FieldType::Any => "JSON",
        FieldType::Datetime => "DATETIME(6)",
    }
}

#[async_trait]
impl Dialect for Mysql {
    async fn probe(&self) -> Result<(), String> {
        let failure = match tokio::time::timeout(self.server.connect_timeout, MySqlConnection::connect_with(&self.options)).await {
            Err(_) => Failure::TimedOut,
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) => match &e {
                sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>().map(|m| m.number()) {
                    Some(1045 | 1698) => Failure::AuthRefused(db.message().to_string()),
                    Some(1049 | 1044) => Failure::NoDatabase(db.message().to_string()),
                    _ => classify(&e),
                },
                _ => classify(&e),
            },
        };
        let at = format!("{}:{}", self.options.get_host(), self.options.get_port());
        Err(connect_message(&self.server, &at, self.options.get_username(), "mysql", failure))
    }

    async fn describe(&self, t: &Target) -> Result<Option<TableInfo>, sqlx::Error> {
        let db: Option<String> =
            sqlx::query_scalar("SELECT CAST(COALESCE(?, DATABASE()) AS CHAR)").bind(&t.schema).fetch_one(&self.pool).await?;
        let Some(db) = db else {
            return Err(sqlx::Error::Configuration(
                "the connection names no database; set spec.mysql.database, or the table's database in spec.mysql.schema".into(),
            ));
        };
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        )
        .bind(&db)
        .bind(&t.table)
        .fetch_all(&self.pool)
        .await?;
        if columns.is_empty() {
            return Ok(None);
        }
        // A unique index of the key column alone and whole (not a prefix of it).
        let unique: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT INDEX_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 GROUP BY INDEX_NAME \
             HAVING COUNT(*) = 1 AND MAX(COLUMN_NAME) = ? AND MAX(SUB_PART) IS NULL) u",
        )
        .bind(&db)
        .bind(&t.table)
        .bind(&t.key)
        .fetch_one(&self.pool)
        .await?;
        let key_integer = columns.iter().any(|(name, type_)| {
            name.eq_ignore_ascii_case(&t.key)
                && ["tinyint", "smallint", "mediumint", "int", "bigint"].contains(&type_.to_ascii_lowercase().as_str())
        });
        Ok(Some(TableInfo {
            sql: format!("{}.{}", quote(&db), quote(&t.table)),
            shown: format!("{db}.{}", t.table),
            columns: columns.into_iter().map(|(name, _)| name).collect(),
            key_unique: unique > 0,
            key_integer,
            fold_case: true,
        }))
    }

    async fn create(&self, t: &Target, columns: &[(String, FieldType)]) -> Result<(), sqlx::Error> {
        let key_type = match t.key_type {
            TableKeyType::String => "VARCHAR(255)",
            TableKeyType::Integer => "BIGINT",
        };
        let mut defs = vec![format!("{} {key_type} NOT NULL PRIMARY KEY", quote(&t.key))];
        defs.extend(columns.iter().map(|(name, type_)| format!("{} {}", quote(name), sql_type(*type_))));
        let sql = format!("CREATE TABLE IF NOT EXISTS {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4", qualified(t), defs.join(", "));
        self.pool.execute(AssertSqlSafe(sql)).await.map(|_| ())
    }

    async fn begin(&self) -> Result<Box<dyn Tx>, sqlx::Error> {
        Ok(Box::new(MyTx(self.pool.begin().await?)))
    }

    fn class(&self, e: &sqlx::Error) -> Class {
        let sqlx::Error::Database(db) = e else { return transport_class(e) };
        let number = db.try_downcast_ref::<MySqlDatabaseError>().map(|m| m.number()).unwrap_or_default();
        let state = db.code().unwrap_or_default().to_string();
        match number {
            // Deadlock, lock wait timeout, connection gone or killed, too many connections, shutdown.
            1213 | 1205 | 2006 | 2013 | 1927 | 1040 | 1053 => Class::Transient,
            // No such table, column or database; no privilege; a view that cannot take the write.
            1146 | 1054 | 1049 | 1044 | 1142 | 1143 | 1109 | 1356 | 1288 | 1471 => Class::Table,
            // Duplicate entry, NULL into NOT NULL, foreign keys, CHECK (MySQL 3819, MariaDB 4025),
            // a NOT NULL column left out without a default.
            1062 | 1048 | 1451 | 1452 | 1216 | 1217 | 1557 | 1586 | 3819 | 4025 | 1364 => Class::Row(codes::CONSTRAINT_VIOLATION),
            // Incorrect value, truncated, out of range, too long, invalid JSON.
            1366 | 1292 | 1265 | 1264 | 1406 | 1367 | 1690 | 1411 | 3140 => Class::Row(codes::INVALID_VALUE),
            // SIGNAL in a trigger: the table's own rule refused the row.
            1644 => Class::Row(codes::REJECTED),
            _ => match state.get(..2).unwrap_or_default() {
                "23" => Class::Row(codes::CONSTRAINT_VIOLATION),
                "22" => Class::Row(codes::INVALID_VALUE),
                "42" => Class::Table,
                "40" | "08" => Class::Transient,
                _ => Class::Other,
            },
        }
    }

    fn message(&self, e: &sqlx::Error) -> String {
        let text = match e {
            sqlx::Error::Database(db) => db.message().to_string(),
            sqlx::Error::Configuration(why) => why.to_string(),
            other => other.to_string(),
        };
        self.server.redact(&text)
    }

    fn encode(&self, type_: FieldType, value: Value) -> Value {
        match (type_, value) {
            (_, Value::Null) => Value::Null,
            (FieldType::Datetime, v) => utc_datetime(&v).map_or(v, Value::String),
            // JSON text, for JSON columns (and as text in any other).
            (FieldType::Object | FieldType::Array | FieldType::Any, v) => Value::String(v.to_string()),
            (_, v) => v,
        }
    }
}

struct MyTx(Transaction<'static, MySql>);

/// `SELECT ? AS c0, ? AS c1 UNION ALL SELECT ?, ? …`: `rows` rows of `width` values.
fn derived(width: usize, rows: usize) -> String {
    let first = (0..width).map(|i| format!("? AS c{i}")).collect::<Vec<_>>().join(", ");
    let rest = vec!["?"; width].join(", ");
    let mut sql = format!("SELECT {first}");
    for _ in 1..rows {
        sql.push_str(&format!(" UNION ALL SELECT {rest}"));
    }
    sql
}

/// Binds one value: the key as an integer for an integer key column (MySQL
/// compares an integer with text as floating point, which confuses large
/// keys), numbers as integers or exact decimal text.
fn bind<'q>(q: Query<'q, MySql, MySqlArguments>, v: &Value, integer_key: bool) -> Query<'q, MySql, MySqlArguments> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => q.bind(i),
            (_, Some(u)) => q.bind(u),
            _ => q.bind(n.to_string()),
        },
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) if integer_key => q.bind(i),
            _ => q.bind(s.clone()),
        },
        other => q.bind(other.to_string()),
    }
}

fn bind_rows<'q>(mut q: Query<'q, MySql, MySqlArguments>, t: &TableInfo, rows: &[&[Value]]) -> Query<'q, MySql, MySqlArguments> {
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            q = bind(q, v, i == 0 && t.key_integer);
        }
    }
    q
}

#[async_trait]
impl Tx for MyTx {
    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        (&mut *self.0).execute(AssertSqlSafe(sql.to_string())).await.map(|_| ())
    }

    async fn upsert(&mut self, t: &TableInfo, columns: &[String], rows: &[&[Value]]) -> Result<(), sqlx::Error> {
        let key = quote(&columns[0]);
        let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let picked = (0..columns.len()).map(|i| format!("v.c{i}")).collect::<Vec<_>>().join(", ");
        let set: Vec<String> = columns.iter().enumerate().skip(1).map(|(i, c)| format!("d.{} = v.c{i}", quote(c))).collect();
        for chunk in rows.chunks((MAX_PLACEHOLDERS / columns.len()).clamp(1, MAX_ROWS)) {
            let v = derived(columns.len(), chunk.len());
            if !set.is_empty() {
                let sql = format!("UPDATE {} AS d JOIN ({v}) AS v ON d.{key} = v.c0 SET {}", t.sql, set.join(", "));
                bind_rows(sqlx::query(AssertSqlSafe(sql)), t, chunk).execute(&mut *self.0).await?;
            }
            let sql = format!(
                "INSERT INTO {t} ({list}) SELECT {picked} FROM ({v}) AS v WHERE NOT EXISTS (SELECT 1 FROM {t} AS x WHERE x.{key} = v.c0)",
                t = t.sql
            );
            bind_rows(sqlx::query(AssertSqlSafe(sql)), t, chunk).execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn delete(&mut self, t: &TableInfo, key: &str, rows: &[&[Value]]) -> Result<(), sqlx::Error> {
        for chunk in rows.chunks(MAX_ROWS) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("DELETE FROM {} WHERE {} IN ({marks})", t.sql, quote(key));
            bind_rows(sqlx::query(AssertSqlSafe(sql)), t, chunk).execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error> {
        self.0.commit().await
    }
}
