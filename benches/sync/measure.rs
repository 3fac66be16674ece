//! One run's measures on one warehouse, each in its own child process:
//! the end-to-end floor, the hashing floor, a full sync from an empty state,
//! 1% of rows changed, the incremental sync; and the peak-RSS syncs.

use serde_json::json;

use super::options::Options;
use super::proc::{SinkProcess, Taken, mb, run_child, shape};
use super::wh::{Kind, Target};
use super::{Error, syncer};

/// Every figure taken on one warehouse, one entry per run.
pub struct Figures {
    pub kind: Kind,
    pub floor: Vec<f64>,
    pub floor_rss_kb: Vec<u64>,
    pub hash: Vec<f64>,
    /// PostgreSQL only: the hashing floor with parallel workers.
    pub hash_parallel: Vec<f64>,
    pub full: Vec<f64>,
    pub full_rss_kb: Vec<u64>,
    pub incremental: Vec<f64>,
    pub changed: Vec<u64>,
    /// What reached the sink per record, floor then retl's full sync.
    pub bytes_per_record: (f64, f64),
    /// The first record of a batch, its shape: floor then retl.
    pub shapes: (String, String),
    pub samples: (serde_json::Value, serde_json::Value),
    /// (rows, seconds, peak RSS in KiB) of the full syncs at `--rss-rows`.
    pub rss: Vec<(u64, f64, u64)>,
    /// What failed: the measures after it on this warehouse were not taken.
    pub errors: Vec<String>,
}

impl Figures {
    pub fn new(kind: Kind) -> Figures {
        Figures {
            kind,
            floor: vec![],
            floor_rss_kb: vec![],
            hash: vec![],
            hash_parallel: vec![],
            full: vec![],
            full_rss_kb: vec![],
            incremental: vec![],
            changed: vec![],
            bytes_per_record: (0.0, 0.0),
            shapes: Default::default(),
            samples: Default::default(),
            rss: vec![],
            errors: vec![],
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "warehouse": self.kind.name(),
            "end_to_end_floor_secs": self.floor, "end_to_end_floor_rss_kb": self.floor_rss_kb,
            "hash_floor_secs": self.hash, "hash_floor_parallel_secs": self.hash_parallel,
            "full_secs": self.full, "full_rss_kb": self.full_rss_kb,
            "incremental_secs": self.incremental, "changed_rows": self.changed,
            "bytes_per_record": {"floor": self.bytes_per_record.0, "retl": self.bytes_per_record.1},
            "record_shape": {"floor": self.shapes.0, "retl": self.shapes.1},
            "sample_record": {"floor": self.samples.0, "retl": self.samples.1},
            "rss": self.rss.iter().map(|(n, secs, kb)| json!({"rows": n, "secs": secs, "peak_rss_kb": kb})).collect::<Vec<_>>(),
            "errors": self.errors,
        })
    }
}

/// One run of the timed measures on `t`, appended to `f`.
pub async fn run(t: &Target, o: &Options, sink: &SinkProcess, run: usize, f: &mut Figures) -> Result<(), Error> {
    let n = o.rows;
    let label = t.kind.label();
    let batch = o.batch.to_string();

    let before = sink.taken().await?;
    let v = run_child(&["--child-floor", &t.location(n, false), &t.table(n), &sink.url, &batch])?;
    let took = sink.taken().await?.since(before);
    check(label, "the end-to-end floor", took, n)?;
    let floor = v["secs"].as_f64().unwrap_or_default();
    f.floor.push(floor);
    f.floor_rss_kb.push(v["rss_kb"].as_u64().unwrap_or_default());
    if run == 0 {
        f.bytes_per_record.0 = took.bytes_per_record();
        f.samples.0 = sink.sample().await?;
        f.shapes.0 = shape(&f.samples.0);
    }
    println!("  {label} run {}: end-to-end floor {floor:.2}s ({:.0} bytes/record)", run + 1, took.bytes_per_record());

    let (hash, parallel) = super::floors::hash_rows(t, n).await?;
    f.hash.push(hash);
    f.hash_parallel.extend(parallel);
    let with_workers = parallel.map(|p| format!(", {p:.2}s with parallel workers")).unwrap_or_default();
    println!("  {label} run {}: hashing floor {hash:.2}s{with_workers}", run + 1);

    t.reset_state(n).await?;
    let uid = format!("bench-{}-{run}", t.kind.name());
    let location = t.location(n, true);
    let before = sink.taken().await?;
    let full = syncer::spawn(&location, &t.table(n), &uid, &sink.url, o.batch)?;
    let took = sink.taken().await?.since(before);
    check(label, "the full sync", took, n)?;
    if full.sent != n {
        return Err(format!("{label}: the full sync says it sent {} records of {n}", full.sent).into());
    }
    f.full.push(full.secs);
    f.full_rss_kb.push(full.rss_kb);
    if run == 0 {
        f.bytes_per_record.1 = took.bytes_per_record();
        f.samples.1 = sink.sample().await?;
        f.shapes.1 = shape(&f.samples.1);
    }
    println!(
        "  {label} run {}: retl full sync {:.2}s, peak RSS {} MB ({:.0} bytes/record)",
        run + 1,
        full.secs,
        mb(full.rss_kb),
        took.bytes_per_record()
    );

    let changed = t.change_rows(n).await?;
    let before = sink.taken().await?;
    let incremental = syncer::spawn(&location, &t.table(n), &uid, &sink.url, o.batch)?;
    let took = sink.taken().await?.since(before);
    check(label, "the incremental sync", took, changed)?;
    f.incremental.push(incremental.secs);
    f.changed.push(changed);
    println!("  {label} run {}: retl incremental sync ({changed} rows changed) {:.2}s", run + 1, incremental.secs);
    Ok(())
}

/// The full syncs whose peak RSS is compared across model sizes.
pub async fn rss(t: &Target, o: &Options, sink: &SinkProcess, f: &mut Figures) -> Result<(), Error> {
    for &n in &o.rss_rows {
        t.reset_state(n).await?;
        let before = sink.taken().await?;
        let r = syncer::spawn(&t.location(n, true), &t.table(n), &format!("bench-rss-{n}"), &sink.url, o.batch)?;
        check(t.kind.label(), "the RSS sync", sink.taken().await?.since(before), n)?;
        println!("  {}: retl full sync of {n} rows {:.2}s, peak RSS {} MB", t.kind.label(), r.secs, mb(r.rss_kb));
        f.rss.push((n, r.secs, r.rss_kb));
    }
    Ok(())
}

/// Every record must have reached the sink, and no more.
fn check(label: &str, what: &str, took: Taken, want: u64) -> Result<(), Error> {
    if took.records != want {
        return Err(format!("{label}: the sink took {} records from {what}, not {want}", took.records).into());
    }
    Ok(())
}
