//! `postgres` and `mysql` destinations through the `retl` binary, against
//! the real servers (`RETL_TEST_POSTGRES_URL`, `RETL_TEST_MYSQL_URL`): upserts
//! and deletes land, a created table gets its columns' types, a row the
//! table refuses fails alone and is retried, a killed load loses nothing,
//! and bad settings say what to fix. The warehouse is SQLite; each test's
//! tables live in a schema (database, in MySQL) of their own. `land.rs`:
//! what lands and what fails alone; `bad.rs`: bad settings and the check;
//! `test_record.rs`: one test record (`retl test`).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sqlx::AssertSqlSafe;

use super::text;

mod bad;
mod land;
mod test_record;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Postgres,
    Mysql,
}

enum Pool {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

/// A schema of its own on the test server, and a connection to look into it.
struct Db {
    kind: Kind,
    url: String,
    schema: String,
    pool: Pool,
}

impl Db {
    async fn new(kind: Kind) -> Db {
        let var = if kind == Kind::Postgres { "RETL_TEST_POSTGRES_URL" } else { "RETL_TEST_MYSQL_URL" };
        let url = std::env::var(var)
            .unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test (or `. scripts/test-databases.sh` first)"));
        let schema = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let pool = match kind {
            Kind::Postgres => Pool::Pg(sqlx::PgPool::connect(&url).await.expect("connect to the test PostgreSQL")),
            Kind::Mysql => Pool::My(sqlx::MySqlPool::connect(&url).await.expect("connect to the test MariaDB")),
        };
        let db = Db { kind, url, schema, pool };
        db.exec(&format!("CREATE {} {}", if kind == Kind::Postgres { "SCHEMA" } else { "DATABASE" }, db.schema)).await;
        db
    }

    /// The spec field and destination type: `postgres` or `mysql`.
    fn field(&self) -> &'static str {
        if self.kind == Kind::Postgres { "postgres" } else { "mysql" }
    }

    /// A table of the test's schema, qualified.
    fn t(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    async fn exec(&self, sql: &str) {
        let r = match &self.pool {
            Pool::Pg(p) => sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(p).await.map(|_| ()),
            Pool::My(p) => sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(p).await.map(|_| ()),
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// `expr` as text.
    fn text(&self, expr: &str) -> String {
        if self.kind == Kind::Postgres { format!("({expr})::text") } else { format!("CAST({expr} AS CHAR)") }
    }

    /// The first column of each row (which must be text).
    async fn texts(&self, sql: &str) -> Vec<String> {
        let r = match &self.pool {
            Pool::Pg(p) => sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(p).await,
            Pool::My(p) => sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(p).await,
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Each row of `table`, ordered by id, as its expressions' text joined by `|` (NULL as `-`).
    async fn rows(&self, table: &str, exprs: &[&str]) -> Vec<String> {
        let parts: Vec<String> = exprs.iter().map(|e| format!("COALESCE({}, '-')", self.text(e))).collect();
        let row = self.text(&format!("CONCAT_WS('|', {})", parts.join(", ")));
        self.texts(&format!("SELECT {row} FROM {} ORDER BY id", self.t(table))).await
    }

    async fn count(&self, table: &str) -> usize {
        self.texts(&format!("SELECT {} FROM {}", self.text("COUNT(*)"), self.t(table))).await[0].parse().unwrap()
    }

    async fn count_tables(&self) -> usize {
        let sql = format!("SELECT {} FROM information_schema.tables WHERE table_schema = '{}'", self.text("COUNT(*)"), self.schema);
        self.texts(&sql).await[0].parse().unwrap()
    }

    async fn drop(self) {
        self.exec(&format!(
            "DROP {} {}{}",
            if self.kind == Kind::Postgres { "SCHEMA" } else { "DATABASE" },
            self.schema,
            if self.kind == Kind::Postgres { " CASCADE" } else { "" }
        ))
        .await;
    }
}

/// Writes a SQLite warehouse with `users`, a Destination of `db`'s kind with
/// `settings` under spec.<field>, and a Mapping of every column.
fn setup(dir: &Path, db: &Db, users: &[&str], settings: &str, mapping_extra: &str) {
    let seed = format!(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, age INTEGER, score REAL, active INTEGER, attrs TEXT, created_at TEXT);\n\
         INSERT INTO users VALUES {};\n",
        users.join(",\n")
    );
    std::fs::write(dir.join("seed.sql"), seed).unwrap();
    let (field, schema) = (db.field(), &db.schema);
    std::fs::write(
        dir.join("all.yaml"),
        format!(
            r#"apiVersion: retl.dev/v1alpha1
kind: Source
metadata: {{name: wh}}
spec: {{type: sqlite, sqlite: {{path: wh.db, seedFile: seed.sql}}}}
---
apiVersion: retl.dev/v1alpha1
kind: Destination
metadata: {{name: db}}
spec:
  type: {field}
  {field}:
    schema: {schema}
    table: contacts
{settings}
  actions:
    - name: upsert
      fields:
        - {{name: email, type: string}}
        - {{name: age, type: integer}}
        - {{name: score, type: number}}
        - {{name: active, type: boolean}}
        - {{name: traits, type: object}}
        - {{name: seen, type: datetime}}
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: users}}
spec: {{sourceRef: {{name: wh}}, primaryKey: id, query: "SELECT * FROM users"}}
---
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {{name: users-db}}
spec:
  modelRef: {{name: users}}
  destinationRef: {{name: db}}
  action: upsert
  send: [added, updated, deleted]
{mapping_extra}
  fields:
    - {{to: email, from: email}}
    - {{to: age, from: age}}
    - {{to: score, from: score}}
    - {{to: active, from: active}}
    - {{to: traits, from: attrs}}
    - {{to: seen, from: created_at}}
"#
        ),
    )
    .unwrap();
}

/// The connection as a Source's: a whole URL from a Secret (here from the
/// environment, as a local run reads Secrets).
const URL_FROM_SECRET: &str = "    urlSecretRef: {name: db, key: url}";

fn retl(dir: &Path, db: &Db, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("RETL_SECRET_DB_URL", &db.url)
        .output()
        .expect("run retl")
}

/// `retl run -f . -o json`: the status of the one Sync it ran.
fn run(dir: &Path, db: &Db) -> Value {
    let out = retl(dir, db, &["run", "-f", ".", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    list["items"][0]["status"].clone()
}

fn sql(dir: &Path, db: &Db, statement: &str) {
    let out = retl(dir, db, &["sql", "-f", ".", "--source", "wh", statement]);
    assert!(out.status.success(), "{statement}: {}", text(&out));
}

fn loaded(s: &Value) -> [u64; 5] {
    let l = &s["loaded"];
    ["succeeded", "failed", "new", "updated", "deleted"].map(|k| l[k].as_u64().unwrap_or(0))
}

/// Each case once per server: `<case>::postgres` and `<case>::mysql`.
macro_rules! both {
    ($($file:ident::$case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$file::$case(super::Kind::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() {
                    super::$file::$case(super::Kind::Mysql).await
                }
            }
        )*
    };
}

both!(
    land::upserts_and_deletes_land_in_a_table_retl_creates,
    land::a_row_the_table_refuses_fails_alone_and_is_retried,
    land::a_killed_load_loses_nothing,
    bad::bad_settings_say_what_to_fix,
    bad::the_destination_check_says_whether_the_table_fits,
    bad::the_tables_example_runs,
    test_record::a_test_record_shows_the_rows_statement_and_the_servers_answer,
);
