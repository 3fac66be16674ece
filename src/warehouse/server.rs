//! What the PostgreSQL and MySQL/MariaDB warehouses share: reading a
//! Source's server settings and Secrets, explaining a failed connection
//! without leaking a secret, and reading staged rows back.

use std::time::Duration;

use serde_json::Value;

use super::rows::RowDecoder;
use super::{Row, SecretValues, WarehouseError, secret_value};
use crate::api::{ServerSource, TlsMode};

/// Key of the object a dialect puts in place of a value it cannot carry as
/// JSON, as `{"$retl_unsupported": "<type>"}`; the record fails with
/// `UNSUPPORTED_VALUE` and a message naming the column and its type.
pub const UNSUPPORTED_MARKER: &str = "$retl_unsupported";

/// Default seconds to wait for a connection.
pub const DEFAULT_CONNECT_TIMEOUT: u32 = 10;

/// A Source's server settings with its Secrets resolved. `Debug` is not
/// derived so that a password can never be printed by accident.
pub struct ServerTarget {
    /// A whole connection URL from `urlSecretRef`, when set.
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// `None`: the URL's own setting, or `prefer`.
    pub tls: Option<TlsMode>,
    pub connect_timeout: Duration,
    pub statement_timeout: Option<u32>,
    /// Every secret value in play, to scrub from error messages.
    secrets: Vec<String>,
}

impl ServerTarget {
    /// Resolves the settings of `spec.<dialect>`; `field` is `postgres` or `mysql`.
    pub fn resolve(
        source_name: &str,
        field: &str,
        settings: Option<&ServerSource>,
        secrets: &SecretValues,
    ) -> Result<ServerTarget, WarehouseError> {
        let s = settings.ok_or_else(|| WarehouseError::Config {
            source_name: source_name.to_string(),
            message: format!("type is {field} but spec.{field} is missing; add spec.{field} with host, database and user"),
        })?;
        let url = s.url_secret_ref.as_ref().map(|r| secret_value(secrets, r).map(str::to_string)).transpose()?;
        let password = s.password_secret_ref.as_ref().map(|r| secret_value(secrets, r).map(str::to_string)).transpose()?;
        if url.is_none() && s.host.is_none() {
            return Err(WarehouseError::Config {
                source_name: source_name.to_string(),
                message: format!("spec.{field}.host is not set; set it, or give a whole URL with spec.{field}.urlSecretRef"),
            });
        }
        let mut scrub: Vec<String> = url.iter().chain(password.iter()).filter(|v| !v.is_empty()).cloned().collect();
        if let Some(u) = &url {
            // The password inside the URL, percent-encoded or not.
            if let Some(pw) = url_password(u) {
                scrub.push(pw);
            }
        }
        Ok(ServerTarget {
            url,
            host: s.host.clone(),
            port: s.port,
            database: s.database.clone(),
            user: s.user.clone(),
            password,
            tls: s.tls_mode,
            connect_timeout: Duration::from_secs(u64::from(s.connect_timeout_seconds.unwrap_or(DEFAULT_CONNECT_TIMEOUT).max(1))),
            statement_timeout: s.statement_timeout_seconds.filter(|n| *n > 0),
            secrets: scrub,
        })
    }

    /// Removes every secret value from a message.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// The password part of `scheme://user:password@host/...`, if any.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let auth = rest.split('@').next().filter(|_| rest.contains('@'))?;
    let pw = auth.split_once(':')?.1;
    (!pw.is_empty()).then(|| pw.to_string())
}

/// Why a connection failed, for the message a person reads.
pub enum Failure {
    Unreachable(String),
    TimedOut,
    AuthRefused(String),
    NoDatabase(String),
    Tls(String),
    Other(String),
}

/// Classifies what all dialects share; a dialect maps its own server error
/// codes to [`Failure::AuthRefused`] and [`Failure::NoDatabase`] first.
pub fn classify(e: &sqlx::Error) -> Failure {
    match e {
        // rustls reports a refused certificate as an I/O error of the handshake.
        sqlx::Error::Io(io) if is_tls(&io.to_string()) => Failure::Tls(io.to_string()),
        sqlx::Error::Io(io) => Failure::Unreachable(io.to_string()),
        sqlx::Error::Tls(t) => Failure::Tls(t.to_string()),
        sqlx::Error::PoolTimedOut => Failure::TimedOut,
        sqlx::Error::Database(db) => Failure::Other(db.message().to_string()),
        other => Failure::Other(other.to_string()),
    }
}

fn is_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["certificate", "tls", "ssl", "handshake"].iter().any(|w| t.contains(w))
}

/// The message of a [`WarehouseError::Connect`]: what happened and what to
/// do, never a secret.
pub fn connect_message(target: &ServerTarget, at: &str, user: &str, field: &str, failure: Failure) -> String {
    let at = target.redact(at);
    let text = match failure {
        Failure::Unreachable(why) => format!(
            "cannot reach the server at {at} ({why}); check spec.{field}.host and port, that the server is running \
             and that the network (firewall, NetworkPolicy) lets retl through"
        ),
        Failure::TimedOut => format!(
            "no answer from {at} within {}s; check spec.{field}.host and port and the network, or raise \
             spec.{field}.connectTimeoutSeconds",
            target.connect_timeout.as_secs()
        ),
        Failure::AuthRefused(why) => format!(
            "the server at {at} refused the login of user {user} ({why}); check spec.{field}.user and the password \
             in the Secret of spec.{field}.passwordSecretRef (or the URL in urlSecretRef)"
        ),
        Failure::NoDatabase(why) => {
            format!("the server at {at} does not have that database ({why}); check spec.{field}.database or create it")
        }
        Failure::Tls(why) => format!(
            "TLS with {at} failed ({why}); check spec.{field}.tlsMode (disable, prefer, require, verify-ca, \
             verify-full) and that the server's certificate is valid for its host name"
        ),
        Failure::Other(why) => format!("connecting to {at} failed: {why}"),
    };
    target.redact(&text)
}

/// Decodes a staged row's JSON text; a value the dialect marked as not
/// carriable fails the record with a message naming the column.
pub fn decode_row(decoder: &RowDecoder, text: &str) -> Result<Row, String> {
    let row = decoder.decode(text)?;
    for (column, value) in &row {
        if let Value::Object(o) = value
            && o.len() == 1
            && let Some(Value::String(type_name)) = o.get(UNSUPPORTED_MARKER)
        {
            return Err(format!(
                "column {column:?} has type {type_name}, which JSON cannot carry; cast it in the model's query \
                 (for example to text)"
            ));
        }
    }
    Ok(row)
}

/// A string literal in standard SQL (quotes doubled). Only used for names
/// retl derives itself or for column names, never for the model's SQL.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Sets a MySQL or MariaDB session's statement timeout, for a Source's
/// connections and a `mysql` Destination's alike: the two servers name (and
/// scale) the setting differently.
pub async fn mysql_statement_timeout(conn: &mut sqlx::MySqlConnection, secs: u32) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&mut *conn).await?;
    let sql = if version.contains("MariaDB") {
        format!("SET SESSION max_statement_time = {secs}")
    } else {
        format!("SET SESSION max_execution_time = {}", u64::from(secs) * 1000)
    };
    conn.execute(sqlx::AssertSqlSafe(sql)).await.map(|_| ())
}

pub(crate) use super::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_messages() {
        let mut secrets = SecretValues::new();
        secrets.insert(("db".into(), "url".into()), "postgres://app:s%40cret@db.internal:5432/x".into());
        let settings =
            ServerSource { url_secret_ref: Some(crate::api::SecretKeyRef { name: "db".into(), key: "url".into() }), ..Default::default() };
        let t = ServerTarget::resolve("wh", "postgres", Some(&settings), &secrets).unwrap();
        let msg = connect_message(
            &t,
            "db.internal:5432",
            "app",
            "postgres",
            Failure::Other("bad postgres://app:s%40cret@db.internal:5432/x".into()),
        );
        assert!(!msg.contains("s%40cret") && !msg.contains("postgres://"), "{msg}");
    }

    #[test]
    fn unsupported_values_name_the_column() {
        let err = decode_row(&RowDecoder, r#"{"id":1,"g":{"$retl_unsupported":"GEOMETRY"}}"#).unwrap_err();
        assert!(err.contains("\"g\"") && err.contains("GEOMETRY") && err.contains("cast it in the model"), "{err}");
    }
}
