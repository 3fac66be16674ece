//! `Source`: a warehouse connection.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, SecretKeyRef};

/// A warehouse connection that Models query. Credentials come only from
/// Secret references.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "retl.dev",
    version = "v1alpha1",
    kind = "Source",
    namespaced,
    status = "SourceStatus",
    shortname = "src",
    category = "retl",
    doc = "A warehouse connection (PostgreSQL, MySQL/MariaDB or SQLite) that Models query.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// Kind of warehouse: `postgres`, `mysql` (MySQL or MariaDB) or `sqlite`.
    /// The settings go in the field of the same name.
    #[serde(rename = "type")]
    pub type_: SourceType,
    /// Settings of a `sqlite` Source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSource>,
    /// Settings of a `postgres` Source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<ServerSource>,
    /// Settings of a `mysql` Source (MySQL or MariaDB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<ServerSource>,
    /// Where retl keeps its sync state inside this warehouse: a schema in
    /// PostgreSQL, a database in MySQL, a table-name prefix in SQLite (which
    /// has no schemas). Created on first use.
    #[serde(default = "default_state_schema")]
    pub state_schema: String,
}

fn default_state_schema() -> String {
    "retl".to_string()
}

/// Kind of warehouse.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Postgres,
    Mysql,
    Sqlite,
}

/// An SQLite database file: the embedded warehouse for local runs and tests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqliteSource {
    /// Path of the database file. In a local run a relative path is relative
    /// to the directory of the manifest.
    pub path: String,
    /// SQL file run once when the database file does not exist yet, to seed
    /// a demo or test warehouse. Relative like `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_file: Option<String>,
}

/// A PostgreSQL or MySQL/MariaDB server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSource {
    /// Host name or address of the server. Not needed with `urlSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TCP port; 5432 for PostgreSQL and 3306 for MySQL when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Database to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// User name to log in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding a whole connection URL
    /// (`postgres://user:pass@host:5432/db`, `mysql://...`); when set it
    /// replaces host, port, database, user and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// TLS: `disable`, `prefer` (default), `require`, `verify-ca` or `verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_mode: Option<TlsMode>,
    /// Seconds to wait for a connection before giving up (default 10; 1 to 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub connect_timeout_seconds: Option<u32>,
    /// Seconds one statement may run before the server cancels it (default:
    /// no limit; 1 to 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86_400))]
    pub statement_timeout_seconds: Option<u32>,
}

/// TLS mode of a server connection.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Observed state of a Source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `Ready` says whether retl can connect; its message says why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
