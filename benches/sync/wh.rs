//! The three warehouses the benchmark runs on: where each one's model lives,
//! and the few statements the parent runs on it between measures.

use std::path::PathBuf;

use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};

use super::Error;

/// The schema (a database on MariaDB, a table prefix on SQLite) that holds
/// the sync state: dropped whole before every full sync, so that each one
/// starts from an empty state whatever the state's layout, and at the end.
/// Its own name, so that it clobbers no state kept by hand-run syncs
/// (`--child-sync` used to take `retl_bench_state`).
pub const STATE_SCHEMA: &str = "retl_bench_sync_state";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mysql,
    Sqlite,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, Error> {
        match s.trim() {
            "postgres" | "postgresql" => Ok(Kind::Postgres),
            "mysql" | "mariadb" => Ok(Kind::Mysql),
            "sqlite" => Ok(Kind::Sqlite),
            other => Err(format!("unknown warehouse {other:?}: use postgres, mysql or sqlite").into()),
        }
    }

    /// The name in options and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
            Kind::Sqlite => "sqlite",
        }
    }

    /// The name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Postgres => "PostgreSQL",
            Kind::Mysql => "MariaDB",
            Kind::Sqlite => "SQLite",
        }
    }

    /// The kind a connection string is for.
    pub fn of_url(url: &str) -> Kind {
        if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            Kind::Mysql
        } else if url.starts_with("sqlite:") {
            Kind::Sqlite
        } else {
            Kind::Postgres
        }
    }
}

/// One warehouse of the run.
pub struct Target {
    pub kind: Kind,
    /// A server's URL; for SQLite, the folder of the database files.
    pub url: String,
}

impl Target {
    pub fn new(kind: Kind) -> Target {
        let env = |names: &[&str], default: &str| names.iter().find_map(|n| std::env::var(n).ok()).unwrap_or_else(|| default.to_string());
        let url = match kind {
            Kind::Postgres => plain(
                &env(&["RETL_BENCH_POSTGRES_URL", "RETL_TEST_POSTGRES_URL"], "postgres://postgres@127.0.0.1:5432/test"),
                "sslmode=disable",
            ),
            Kind::Mysql => {
                plain(&env(&["RETL_BENCH_MYSQL_URL", "RETL_TEST_MYSQL_URL"], "mysql://root@127.0.0.1:3306/test"), "ssl-mode=DISABLED")
            }
            Kind::Sqlite => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/retl-bench/sqlite").to_string_lossy().into_owned(),
        };
        Target { kind, url }
    }

    /// The model's table of `n` rows, as the model's query names it.
    pub fn table(&self, n: u64) -> String {
        match self.kind {
            Kind::Sqlite => "users".to_string(),
            _ => format!("retl_bench.users_{n}"),
        }
    }

    /// The seeded SQLite file of `n` rows (kept between runs, never synced).
    pub fn sqlite_seeded(&self, n: u64) -> PathBuf {
        PathBuf::from(&self.url).join(format!("users_{n}.db"))
    }

    /// What a child connects to for the model of `n` rows. On SQLite the
    /// syncs run on a copy (state and all), made anew by [`Self::reset_state`].
    pub fn location(&self, n: u64, for_sync: bool) -> String {
        match self.kind {
            Kind::Sqlite if for_sync => format!("sqlite:{}", PathBuf::from(&self.url).join(format!("run_{n}.db")).display()),
            Kind::Sqlite => format!("sqlite:{}", self.sqlite_seeded(n).display()),
            _ => self.url.clone(),
        }
    }

    /// Empties the sync state, so that the next sync is a first sync.
    pub async fn reset_state(&self, n: u64) -> Result<(), Error> {
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                c.execute(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {STATE_SCHEMA} CASCADE"))).await?;
            }
            Kind::Mysql => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await?;
                c.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {STATE_SCHEMA}"))).await?;
            }
            Kind::Sqlite => {
                let run = PathBuf::from(self.location(n, true).trim_start_matches("sqlite:"));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", run.display()));
                }
                std::fs::copy(self.sqlite_seeded(n), &run)?;
            }
        }
        Ok(())
    }

    /// Frees the disk the syncs took: the state, and SQLite's copies.
    pub async fn clean_up(&self, sizes: &[u64]) -> Result<(), Error> {
        match self.kind {
            Kind::Sqlite => {
                for n in sizes {
                    let run = self.location(*n, true);
                    let run = run.trim_start_matches("sqlite:");
                    for entry in std::fs::read_dir(&self.url)?.flatten() {
                        if entry.path().to_string_lossy().starts_with(run) {
                            let _ = std::fs::remove_file(entry.path());
                        }
                    }
                }
                Ok(())
            }
            _ => self.reset_state(0).await,
        }
    }

    /// Changes 1% of the rows (`mrr = mrr + 1` where `id % 100 = 0`), so
    /// that each run's incremental sync has 1% of rows really changed.
    pub async fn change_rows(&self, n: u64) -> Result<u64, Error> {
        let sql = format!("UPDATE {} SET mrr = mrr + 1 WHERE id % 100 = 0", self.table(n));
        let changed = match self.kind {
            Kind::Postgres => sqlx::PgConnection::connect(&self.url).await?.execute(AssertSqlSafe(sql)).await?.rows_affected(),
            Kind::Mysql => sqlx::MySqlConnection::connect(&self.url).await?.execute(AssertSqlSafe(sql)).await?.rows_affected(),
            Kind::Sqlite => sqlite(&self.location(n, true), false).await?.execute(AssertSqlSafe(sql)).await?.rows_affected(),
        };
        Ok(changed)
    }
}

/// A connection to a SQLite file (`sqlite:PATH`).
pub async fn sqlite(location: &str, create: bool) -> Result<sqlx::SqliteConnection, Error> {
    let path = location.trim_start_matches("sqlite:");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(create);
    Ok(options.connect().await?)
}

/// Adds `setting` unless the URL says something about TLS already: on
/// localhost the benchmark measures syncs, not TLS (and sqlx 0.9.0 does not
/// set TCP_NODELAY, which costs a delayed ACK per statement under TLS; see
/// docs/benchmark.md).
fn plain(url: &str, setting: &str) -> String {
    let key = setting.split('=').next().unwrap_or_default();
    if url.contains(key) || url.contains("ssl") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&{setting}")
    } else {
        format!("{url}?{setting}")
    }
}
