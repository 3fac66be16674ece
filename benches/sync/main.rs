//! `cargo bench --bench sync`: retl against its floors and against dlt, on
//! PostgreSQL, MariaDB and SQLite, every figure measured in one run.
//!
//! A `users` model (id, email, name, plan, mrr decimal, created_at
//! timestamp, attrs JSON) is synced to a local HTTP sink (batches of 1,000, 4
//! in flight). For each warehouse and each of `--runs` runs: the end-to-end
//! floor (the warehouse builds the batches' JSON, a minimal client posts
//! them: e2e.rs), the hashing floor (floors.rs), a full sync from an empty
//! state, 1% of rows changed, the incremental sync; then the peak RSS of a
//! full sync at two model sizes; dlt with two backends on PostgreSQL. It
//! prints one markdown table and writes it, with the raw figures, as JSON.
//! Options: see options.rs (`--help`).
//!
//! Each sync, floor client and dlt pipeline runs in a child process, so that
//! its peak RSS is its own; the sink runs in another.
//!
//! Files: options.rs (the command line), wh.rs (the three warehouses: where
//! the model is, resetting the state, changing 1% of rows), seed.rs (the
//! model), e2e.rs (the end-to-end floor's queries and client), floors.rs (the
//! hashing floors, the sink's ceiling), syncer.rs (one retl sync), dlt.rs (dlt's runs),
//! sink.rs (the sink), proc.rs (child processes, the sink's counters),
//! measure.rs (one run's measures), report.rs (the table and the JSON).
//! docs/benchmark.md says what each measure is.

mod dlt;
mod e2e;
mod floors;
mod measure;
mod options;
mod proc;
mod report;
mod seed;
mod sink;
mod syncer;
mod wh;

use measure::Figures;
use wh::{Kind, Target};

/// The allocator `retl` itself runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Batches in flight at once, for retl (`maxInFlight`) and the floor client.
pub const IN_FLIGHT: usize = 4;

/// The sink's allocator purge delay (milliseconds); see `main`.
const SINK_PURGE_DELAY_MS: i64 = 0;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    retl::tune_memory(); // as `retl` itself does
    if args.get(1).map(String::as_str) == Some("--child-sink") {
        // The sink is the harness, not retl: it keeps the allocator setting
        // every reported run measured it with (freed memory returned at
        // once), so that floors and ratios stay comparable from run to run
        // whatever retl's own setting becomes. docs/benchmark.md, "The sink".
        retl::set_purge_delay(SINK_PURGE_DELAY_MS);
    }
    retl::install_crypto_provider(); // reqwest needs one, even for plain HTTP
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.get(1).map(String::as_str) {
        Some("--child-sink") => runtime.block_on(sink::serve()).map_err(Into::into),
        Some("--child-sync") => runtime.block_on(syncer::child(&args[2..])),
        Some("--child-floor") => runtime.block_on(e2e::child(&args[2..])),
        _ => runtime.block_on(parent(&args[1..])),
    }
}

async fn parent(args: &[String]) -> Result<(), Error> {
    let o = options::parse(args)?;
    let targets: Vec<Target> = o.warehouses.iter().map(|k| Target::new(*k)).collect();
    for t in &targets {
        for n in std::iter::once(o.rows).chain(o.rss_rows.iter().copied()) {
            seed::seed(t, n).await?;
        }
    }
    let sink = proc::SinkProcess::start()?;
    println!(
        "retl benchmark: {} rows, batches of {}, {IN_FLIGHT} in flight, {} run(s), on {}; sink {}",
        o.rows,
        o.batch,
        o.runs,
        o.warehouses.iter().map(|k| k.label()).collect::<Vec<_>>().join(", "),
        sink.url
    );
    let mut figures: Vec<Figures> = targets.iter().map(|t| Figures::new(t.kind)).collect();
    let pg = targets.iter().find(|t| t.kind == Kind::Postgres);
    let mut dlt_runs: Vec<(&str, Vec<dlt::DltRun>, Vec<String>)> = Vec::new();
    if o.dlt && pg.is_some() {
        dlt_runs = dlt::BACKENDS.iter().map(|b| (*b, Vec::new(), Vec::new())).collect();
    }
    let mut ceiling = Vec::new();
    // Runs outermost, so that a noisy minute of the machine falls on every
    // measure alike rather than on one warehouse's.
    for run in 0..o.runs {
        let c = floors::sink_ceiling(&sink.url, o.rows, o.batch).await?;
        println!("  run {}: the sink's own ceiling {c:.2}s", run + 1);
        ceiling.push(c);
        // A failure is reported in the table and ends that warehouse's
        // (or that dlt backend's) measures, not the others'.
        for (t, f) in targets.iter().zip(figures.iter_mut()) {
            if f.errors.is_empty()
                && let Err(e) = measure::run(t, &o, &sink, run, f).await
            {
                println!("  {}: FAILED: {e}", t.kind.label());
                f.errors.push(e.to_string());
            }
        }
        if let Some(pg) = pg {
            for (backend, runs, errors) in dlt_runs.iter_mut() {
                if errors.is_empty()
                    && let Err(e) = dlt_run(pg, &o, &sink, backend, run, runs).await
                {
                    println!("  dlt ({backend}): FAILED: {e}");
                    errors.push(e.to_string());
                }
            }
        }
    }
    for (t, f) in targets.iter().zip(figures.iter_mut()) {
        if f.errors.is_empty()
            && let Err(e) = measure::rss(t, &o, &sink, f).await
        {
            println!("  {}: FAILED: {e}", t.kind.label());
            f.errors.push(e.to_string());
        }
        if let Err(e) = t.clean_up(&[&[o.rows][..], &o.rss_rows].concat()).await {
            println!("  {}: could not clean up the sync state: {e}", t.kind.label());
        }
    }
    for f in &figures {
        println!("\n{}: a record as the floor sent it:\n  {}\nand as retl sent it:\n  {}", f.kind.label(), f.samples.0, f.samples.1);
        if f.shapes.0 != f.shapes.1 {
            println!("  the shapes differ:\n  floor: {}\n  retl:  {}", f.shapes.0, f.shapes.1);
        }
    }
    let (table, doc) = report::build(&o, &figures, &ceiling, &dlt_runs);
    println!("\n{}\n\n{table}", o.command);
    if let Some(dir) = o.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&o.out, serde_json::to_string_pretty(&doc)?)?;
    println!("(the table and the raw figures: {})", o.out.display());
    Ok(())
}

/// One dlt run, checked against what the sink took.
async fn dlt_run(
    pg: &Target,
    o: &options::Options,
    sink: &proc::SinkProcess,
    backend: &str,
    run: usize,
    runs: &mut Vec<dlt::DltRun>,
) -> Result<(), Error> {
    let before = sink.taken().await?;
    let d = dlt::run(&pg.url, &pg.table(o.rows), &sink.url, backend, o.batch)?;
    let took = sink.taken().await?.since(before);
    if d.rows != o.rows || took.records != o.rows {
        return Err(format!("dlt ({backend}) sent {} records and the sink took {}, not {}", d.rows, took.records, o.rows).into());
    }
    println!("  run {}: dlt {} ({backend}) {:.2}s, peak RSS {} MB", run + 1, d.version, d.secs, proc::mb(d.rss_kb));
    runs.push(d);
    Ok(())
}
