//! sqlx connection options from a server's settings, the same for a Source
//! (a warehouse) and a `postgres`/`mysql` Destination (a table): a whole
//! URL from a Secret, or host, port, database, user and password; TLS; UTC.
//! Each caller adds what only it needs (session settings).

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::server::ServerTarget;
use crate::api::TlsMode;

/// PostgreSQL, with the session settings `settings` (`TimeZone` UTC is
/// always one; `statement_timeout` when the settings name one).
pub(crate) fn postgres(t: &ServerTarget, mut settings: Vec<(String, String)>) -> Result<PgConnectOptions, String> {
    let mut o = match &t.url {
        Some(url) => PgConnectOptions::from_str(url)
            .map_err(|e| format!("the connection URL in spec.postgres.urlSecretRef is not valid ({})", t.redact(&e.to_string())))?,
        None => {
            let mut o = PgConnectOptions::new_without_pgpass().port(t.port.unwrap_or(5432));
            if let Some(h) = &t.host {
                o = o.host(h);
            }
            if let Some(d) = &t.database {
                o = o.database(d);
            }
            if let Some(u) = &t.user {
                o = o.username(u);
            }
            if let Some(p) = &t.password {
                o = o.password(p);
            }
            o
        }
    };
    if let Some(mode) = t.tls {
        o = o.ssl_mode(match mode {
            TlsMode::Disable => PgSslMode::Disable,
            TlsMode::Prefer => PgSslMode::Prefer,
            TlsMode::Require => PgSslMode::Require,
            TlsMode::VerifyCa => PgSslMode::VerifyCa,
            TlsMode::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    // UTC: a timestamp means the same whatever the server's zone.
    settings.insert(0, ("TimeZone".to_string(), "UTC".to_string()));
    if let Some(s) = t.statement_timeout {
        settings.push(("statement_timeout".to_string(), format!("{s}s")));
    }
    Ok(o.application_name("retl").options(settings))
}

/// MySQL/MariaDB: no PIPES_AS_CONCAT (SQL means what it means in the
/// user's own client), UTC (DATETIME and TIMESTAMP values read and write
/// the same everywhere), utf8mb4.
pub(crate) fn mysql(t: &ServerTarget) -> Result<MySqlConnectOptions, String> {
    let mut o = match &t.url {
        Some(url) => MySqlConnectOptions::from_str(url)
            .map_err(|e| format!("the connection URL in spec.mysql.urlSecretRef is not valid ({})", t.redact(&e.to_string())))?,
        None => {
            let mut o = MySqlConnectOptions::new().port(t.port.unwrap_or(3306));
            if let Some(h) = &t.host {
                o = o.host(h);
            }
            if let Some(d) = &t.database {
                o = o.database(d);
            }
            if let Some(u) = &t.user {
                o = o.username(u);
            }
            if let Some(p) = &t.password {
                o = o.password(p);
            }
            o
        }
    };
    if let Some(mode) = t.tls {
        o = o.ssl_mode(match mode {
            TlsMode::Disable => MySqlSslMode::Disabled,
            TlsMode::Prefer => MySqlSslMode::Preferred,
            TlsMode::Require => MySqlSslMode::Required,
            TlsMode::VerifyCa => MySqlSslMode::VerifyCa,
            TlsMode::VerifyFull => MySqlSslMode::VerifyIdentity,
        });
    }
    Ok(o.pipes_as_concat(false).timezone(Some("+00:00".to_string())).charset("utf8mb4"))
}
