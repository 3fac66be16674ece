//! One fixture per warehouse dialect. Every case in `cases.rs` runs against
//! each of them (see `main.rs`), so the engine's behaviour is proven once
//! for all warehouses rather than copied per dialect.

use retl::api::{SourceSpec, SourceType, SqliteSource};
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
