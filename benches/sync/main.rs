//! `cargo bench --bench sync`: retl against its floors on PostgreSQL.
//!
//! A `users` model (id, email, name, plan, mrr numeric, created_at
//! timestamptz, attrs jsonb) is synced to a local HTTP sink in batches of 500.
//! One run prints: full-sync time, incremental time after 1% of rows changed,
//! peak RSS of a full sync at two model sizes, and the floors measured in the
//! same run (COPY of the rows as JSON, the warehouse hashing every row, the
//! sink's own ceiling), and, with `--dlt`, the same sync by a dlt pipeline.
//!
//! Options (after `--`): `--rows N` (default 1000000), `--rss-rows A,B`
//! (default 100000,5000000), `--dlt` (run benches/dlt/run.sh too).
//! The server: `RETL_BENCH_POSTGRES_URL`, else `RETL_TEST_POSTGRES_URL`, else
//! postgres://postgres@127.0.0.1:5432/test.
//!
//! Each sync runs in a child process of this binary, so that its peak RSS is
//! its own; the sink runs in another.

mod floors;
mod sink;
mod syncer;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use sqlx::{AssertSqlSafe, Executor};

/// The allocator `retl` itself runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

pub const BATCH: u32 = 500;
pub const IN_FLIGHT: u32 = 4;

fn main() -> Result<(), Error> {
    retl::tune_memory(); // as `retl` itself does
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.get(1).map(String::as_str) {
        Some("--child-sink") => runtime.block_on(sink::serve()).map_err(Into::into),
        Some("--child-sync") => runtime.block_on(syncer::child(&args[2..])),
        _ => runtime.block_on(parent(&args[1..])),
    }
}

struct Options {
    rows: u64,
    rss_rows: Vec<u64>,
    dlt: bool,
}

fn options(args: &[String]) -> Result<Options, Error> {
    let mut o = Options { rows: 1_000_000, rss_rows: vec![100_000, 5_000_000], dlt: false };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rows" => o.rows = it.next().ok_or("--rows needs a number")?.parse()?,
            "--rss-rows" => o.rss_rows = it.next().ok_or("--rss-rows needs A,B")?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--dlt" => o.dlt = true,
            _ => {} // `--bench` and friends from cargo
        }
    }
    Ok(o)
}

pub fn postgres_url() -> String {
    std::env::var("RETL_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("RETL_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The sink, in its own process; killed on drop.
struct SinkProcess {
    child: Child,
    url: String,
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sink() -> Result<SinkProcess, Error> {
    let mut child = Command::new(std::env::current_exe()?).arg("--child-sink").stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("sink has no stdout")?).read_line(&mut line)?;
    Ok(SinkProcess { child, url: line.trim().to_string() })
}

async fn parent(args: &[String]) -> Result<(), Error> {
    let o = options(args)?;
    let url = postgres_url();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await?;
    pool.execute("DROP SCHEMA IF EXISTS retl_bench_state CASCADE").await?;
    for n in std::iter::once(o.rows).chain(o.rss_rows.iter().copied()) {
        seed(&pool, n).await?;
    }
    let sink = start_sink()?;
    let table = format!("retl_bench.users_{}", o.rows);
    println!("retl benchmark: {} rows of {table}, batches of {BATCH}, {IN_FLIGHT} in flight, sink {}", o.rows, sink.url);

    let copy = floors::copy_json(&url, &table).await?;
    println!("  floor: COPY (SELECT row_to_json(u) FROM users u) TO STDOUT  {copy:.2}s");
    let (hash, hash_parallel) = floors::hash_rows(&pool, &table).await?;
    println!(
        "  floor: hashing every row in the warehouse                   {hash:.2}s on one core ({hash_parallel:.2}s with parallel workers)"
    );
    let ceiling = floors::sink_ceiling(&sink.url, o.rows).await?;
    println!("  floor: the sink's own ceiling ({} records)            {ceiling:.2}s", o.rows);

    let full = syncer::spawn(&url, &table, "bench-main", &sink.url)?;
    println!(
        "  retl full sync                                              {:.2}s  ({} sent, peak RSS {} MB)",
        full.secs, full.sent, full.rss_mb
    );
    let started = Instant::now();
    let changed = pool.execute(AssertSqlSafe(format!("UPDATE {table} SET mrr = mrr + 1 WHERE id % 100 = 0"))).await?.rows_affected();
    println!("  (changed {changed} rows in {:.2}s)", started.elapsed().as_secs_f64());
    let incremental = syncer::spawn(&url, &table, "bench-main", &sink.url)?;
    println!("  retl incremental sync (1% changed)                          {:.2}s  ({} sent)", incremental.secs, incremental.sent);

    let mut rss = Vec::new();
    for n in &o.rss_rows {
        let r = syncer::spawn(&url, &format!("retl_bench.users_{n}"), &format!("bench-rss-{n}"), &sink.url)?;
        println!("  retl full sync of {n} rows                             {:.2}s  peak RSS {} MB", r.secs, r.rss_mb);
        rss.push((*n, r));
    }

    let dlt = if o.dlt { Some(floors::dlt(&url, &table, &sink.url)?) } else { None };

    let floor = copy.max(ceiling);
    println!();
    println!("| measure | result | target | met |");
    println!("| --- | --- | --- | --- |");
    let row = |what: String, result: String, target: String, met: bool| {
        println!("| {what} | {result} | {target} | {} |", if met { "yes" } else { "**no**" });
    };
    row(
        format!("full sync, {} rows", o.rows),
        format!("{:.2} s ({:.0} rows/s)", full.secs, o.rows as f64 / full.secs),
        format!("≤ 1.5 × floor ({:.2} s = max(COPY {copy:.2} s, sink {ceiling:.2} s)) = {:.2} s", floor, 1.5 * floor),
        full.secs <= 1.5 * floor,
    );
    row(
        "incremental sync, 1% changed".into(),
        format!(
            "{:.2} s ({:.0}% of full; {:.2} × hashing floor {hash:.2} s on one core, {:.2} × {hash_parallel:.2} s parallel)",
            incremental.secs,
            100.0 * incremental.secs / full.secs,
            incremental.secs / hash,
            incremental.secs / hash_parallel
        ),
        "≤ 50% of full and ≤ 1.5 × hashing floor".into(),
        incremental.secs <= 0.5 * full.secs && incremental.secs <= 1.5 * hash,
    );
    if let [(a, ra), .., (b, rb)] = rss.as_slice() {
        let spread = (rb.rss_mb as f64 - ra.rss_mb as f64).abs() / ra.rss_mb.max(1) as f64 * 100.0;
        row(
            format!("peak RSS, full sync of {a} / {b} rows"),
            format!("{} MB / {} MB ({spread:.0}% apart)", ra.rss_mb, rb.rss_mb),
            "≤ 100 MB, within 20%".into(),
            ra.rss_mb <= 100 && rb.rss_mb <= 100 && spread <= 20.0,
        );
    }
    if let Some(d) = dlt {
        let ratio = (o.rows as f64 / full.secs) / d.rows_per_sec;
        row(
            format!("throughput vs dlt ({} rows)", d.rows),
            format!("retl {:.0} rows/s, dlt {:.0} rows/s ({:.2} s): {ratio:.1}×", o.rows as f64 / full.secs, d.rows_per_sec, d.secs),
            "≥ 3×".into(),
            ratio >= 3.0,
        );
    }
    Ok(())
}

/// Creates `retl_bench.users_N` with N rows unless it is already there.
async fn seed(pool: &sqlx::PgPool, n: u64) -> Result<(), Error> {
    let table = format!("retl_bench.users_{n}");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&table).fetch_one(pool).await?;
    if exists {
        return Ok(());
    }
    let started = Instant::now();
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
    pool.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await?;
    println!("(seeded {table} in {:.1}s)", started.elapsed().as_secs_f64());
    Ok(())
}
