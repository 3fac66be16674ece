//! One fixture per warehouse dialect. Every case in `cases.rs` runs against
//! each of them (see `main.rs`), so the engine's behaviour is proven once
//! for all warehouses rather than copied per dialect.

use std::path::Path;

use retl::api::{SecretKeyRef, ServerSource, SourceSpec, SourceType, SqliteSource};
use retl::warehouse::SecretValues;

/// A warehouse for one test: isolated from every other test.
pub struct Fixture {
    pub name: &'static str,
    pub source: SourceSpec,
    pub secrets: SecretValues,
    /// Prefix that qualifies the test's tables (`"t_abc".` or empty).
    pub table_prefix: String,
    /// A SQL expression whose value JSON cannot carry, where the dialect has one.
    pub unsupported_value: Option<&'static str>,
    /// Keeps temporary files alive for the test's duration.
    pub _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// Qualified name of a test table.
    pub fn table(&self, name: &str) -> String {
        format!("{}{}", self.table_prefix, name)
    }
}

/// A fresh SQLite database file in a temporary directory.
pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("warehouse.db");
    std::fs::File::create(&path).expect("create database file");
    Fixture {
        name: "sqlite",
        source: SourceSpec {
            type_: SourceType::Sqlite,
            sqlite: Some(SqliteSource { path: path.display().to_string(), seed_file: None }),
            postgres: None,
            mysql: None,
            state_schema: "retl".into(),
        },
        secrets: SecretValues::new(),
        table_prefix: String::new(),
        // An infinite REAL: SQLite writes it into JSON as 9e999, which no
        // JSON parser accepts as a number.
        unsupported_value: Some("1e999"),
        _dir: Some(dir),
    }
}

/// A fresh schema for the test's tables and a fresh state schema, on the
/// PostgreSQL server named by `RETL_TEST_POSTGRES_URL`.
pub async fn postgres() -> Fixture {
    let id = unique();
    let fx = server_fixture("postgres", "RETL_TEST_POSTGRES_URL", SourceType::Postgres, &format!("retl_{id}")).await;
    create(&fx, &format!("CREATE SCHEMA t_{id}")).await;
    Fixture {
        table_prefix: format!("\"t_{id}\"."),
        // Every PostgreSQL value has a JSON form (text at worst).
        unsupported_value: None,
        ..fx
    }
}

/// A fresh database for the test's tables and a fresh state database (MySQL
/// has no schemas), on the MySQL/MariaDB server named by `RETL_TEST_MYSQL_URL`.
pub async fn mysql() -> Fixture {
    let id = unique();
    let fx = server_fixture("mysql", "RETL_TEST_MYSQL_URL", SourceType::Mysql, &format!("retl_{id}")).await;
    create(&fx, &format!("CREATE DATABASE t_{id}")).await;
    Fixture {
        table_prefix: format!("`t_{id}`."),
        // A geometry: neither MySQL nor MariaDB has a JSON form for it.
        unsupported_value: Some("ST_GeomFromText('POINT(1 1)')"),
        ..fx
    }
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A Source that reads its whole URL from a Secret, as users can.
async fn server_fixture(name: &'static str, var: &str, type_: SourceType, state_schema: &str) -> Fixture {
    let url = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with scripts/test (or `. scripts/test-databases.sh` first), which finds or starts the test servers and sets it")
    });
    let mut secrets = SecretValues::new();
    secrets.insert(("warehouse".into(), "url".into()), url);
    let settings = ServerSource {
        url_secret_ref: Some(SecretKeyRef { name: "warehouse".into(), key: "url".into() }),
        connect_timeout_seconds: Some(10),
        ..Default::default()
    };
    let source = SourceSpec {
        type_,
        sqlite: None,
        postgres: (type_ == SourceType::Postgres).then(|| settings.clone()),
        mysql: (type_ == SourceType::Mysql).then_some(settings),
        state_schema: state_schema.to_string(),
    };
    Fixture { name, source, secrets, table_prefix: String::new(), unsupported_value: None, _dir: None }
}

async fn create(fx: &Fixture, sql: &str) {
    let wh = retl::warehouse::connect(fx.name, &fx.source, &fx.secrets, Path::new("."))
        .await
        .unwrap_or_else(|e| panic!("{}: cannot connect to the test server: {e}", fx.name));
    wh.execute(sql).await.unwrap_or_else(|e| panic!("{}: {sql}: {e}", fx.name));
}
