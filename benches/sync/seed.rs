//! The benchmark's model, `users`, seeded once per size and warehouse and
//! kept between runs: `id, email, name, plan, mrr (decimal), created_at
//! (timestamp), attrs (JSON)`, the same values on every warehouse.

use std::time::Instant;

use sqlx::{AssertSqlSafe, Connection, Executor};

use super::Error;
use super::wh::{Kind, Target, sqlite};

/// Creates the model of `n` rows unless it is there already.
pub async fn seed(t: &Target, n: u64) -> Result<(), Error> {
    let started = Instant::now();
    let table = t.table(n);
    let made = match t.kind {
        Kind::Postgres => postgres(&t.url, &table, n).await?,
        Kind::Mysql => mysql(&t.url, &table, n).await?,
        Kind::Sqlite => sqlite_file(t, n).await?,
    };
    if made {
        let name = if t.kind == Kind::Sqlite { t.sqlite_seeded(n).display().to_string() } else { table };
        println!("(seeded {name} of {n} rows on {} in {:.1}s)", t.kind.label(), started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// One statement over `generate_series`: 10M rows take a minute or two.
async fn postgres(url: &str, table: &str, n: u64) -> Result<bool, Error> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(&mut c).await?;
    if exists {
        return Ok(false);
    }
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS retl_bench;
         CREATE TABLE {table} AS SELECT i::bigint AS id, 'user' || i || '@example.com' AS email, 'User Number ' || i AS name,
           (ARRAY['free', 'pro', 'team', 'enterprise'])[1 + i % 4] AS plan, round((i % 1000) * 1.37, 2)::numeric(12, 2) AS mrr,
           timestamptz '2020-01-01' + i * interval '1 second' AS created_at,
           jsonb_build_object('company', 'Company ' || (i % 5000), 'seats', i % 50, 'tags', jsonb_build_array('a', 'b')) AS attrs
         FROM generate_series(1, {n}) AS i;
         ALTER TABLE {table} ADD PRIMARY KEY (id);
         ANALYZE {table};"
    );
    c.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await?;
    Ok(true)
}

/// MariaDB's `seq_1_to_N` (the Sequence engine) gives the rows; the table is
/// built under another name and renamed, so that a seed cut short is not
/// taken for a finished one.
async fn mysql(url: &str, table: &str, n: u64) -> Result<bool, Error> {
    let mut c = sqlx::MySqlConnection::connect(url).await?;
    let (db, name) = table.split_once('.').ok_or("the table has no database")?;
    let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?")
        .bind(db)
        .bind(name)
        .fetch_one(&mut c)
        .await?;
    if exists > 0 {
        return Ok(false);
    }
    let building = format!("{db}.{name}_seeding");
    for sql in [
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!("DROP TABLE IF EXISTS {building}"),
        format!(
            "CREATE TABLE {building} (id bigint PRIMARY KEY, email varchar(255), name varchar(255), plan varchar(32),
               mrr decimal(12,2), created_at timestamp NULL, attrs JSON)
             SELECT seq AS id, CONCAT('user', seq, '@example.com') AS email, CONCAT('User Number ', seq) AS name,
               ELT(1 + seq % 4, 'free', 'pro', 'team', 'enterprise') AS plan, ROUND((seq % 1000) * 1.37, 2) AS mrr,
               TIMESTAMP('2020-01-01') + INTERVAL seq SECOND AS created_at,
               JSON_OBJECT('company', CONCAT('Company ', seq % 5000), 'seats', seq % 50, 'tags', JSON_ARRAY('a', 'b')) AS attrs
             FROM seq_1_to_{n}"
        ),
        format!("ANALYZE TABLE {building}"),
        format!("RENAME TABLE {building} TO {table}"),
    ] {
        // The session is UTC, as retl's: the timestamps mean the same to both.
        c.execute("SET time_zone = '+00:00'").await?;
        c.execute(AssertSqlSafe(sql)).await?;
    }
    Ok(true)
}

/// A file per size, written under another name and renamed when done.
async fn sqlite_file(t: &Target, n: u64) -> Result<bool, Error> {
    let path = t.sqlite_seeded(n);
    if path.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(&t.url)?;
    let building = path.with_extension("seeding");
    let _ = std::fs::remove_file(&building);
    let mut c = sqlite(&format!("sqlite:{}", building.display()), true).await?;
    let sql = format!(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, name TEXT, plan TEXT, mrr REAL, created_at TEXT, attrs TEXT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
         INSERT INTO users SELECT i, 'user' || i || '@example.com', 'User Number ' || i,
           CASE i % 4 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' WHEN 2 THEN 'team' ELSE 'enterprise' END,
           round((i % 1000) * 1.37, 2), datetime('2020-01-01', '+' || i || ' seconds'),
           json_object('company', 'Company ' || (i % 5000), 'seats', i % 50, 'tags', json_array('a', 'b'))
         FROM s;
         ANALYZE;"
    );
    c.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await?;
    c.close().await?;
    std::fs::rename(&building, &path)?;
    Ok(true)
}
