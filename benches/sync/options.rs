//! The benchmark's command line (after `cargo bench --bench sync --`).

use std::path::PathBuf;

use super::Error;
use super::wh::Kind;

pub const USAGE: &str = "options: --rows N (default 1000000) --rss-rows A,B (default 100000,5000000) --runs K (default 3) \
--batch N (default 1000) --warehouses postgres,mysql,sqlite (default all three) --no-dlt --out FILE (default target/bench-sync.json)";

pub struct Options {
    /// The main model size: floors, full and incremental syncs, dlt.
    pub rows: u64,
    /// Model sizes whose full sync's peak RSS is compared (one run each).
    pub rss_rows: Vec<u64>,
    /// How many times every timed measure is taken.
    pub runs: usize,
    /// Records per batch, for retl, the floor client and dlt alike.
    pub batch: u32,
    pub warehouses: Vec<Kind>,
    /// Run dlt (both backends) against the PostgreSQL table.
    pub dlt: bool,
    /// Where the table and the raw figures go, as JSON.
    pub out: PathBuf,
    /// The arguments as given, for the report.
    pub command: String,
}

pub fn parse(args: &[String]) -> Result<Options, Error> {
    let mut o = Options {
        rows: 1_000_000,
        rss_rows: vec![100_000, 5_000_000],
        runs: 3,
        batch: 1000,
        warehouses: vec![Kind::Postgres, Kind::Mysql, Kind::Sqlite],
        dlt: true,
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-sync.json"),
        command: String::new(),
    };
    let mut shown = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| -> Result<String, Error> {
            let v = it.next().ok_or_else(|| format!("{a} needs {what}; {USAGE}"))?;
            shown.push(format!("{a} {v}"));
            Ok(v.clone())
        };
        match a.as_str() {
            "--rows" => o.rows = number(&value("a number of rows")?)?,
            "--rss-rows" => o.rss_rows = value("A,B")?.split(',').map(number).collect::<Result<_, _>>()?,
            "--runs" => o.runs = number(&value("a number of runs")?)? as usize,
            "--batch" => o.batch = u32::try_from(number(&value("a batch size")?)?)?,
            "--warehouses" => {
                o.warehouses = value("a list such as postgres,mysql,sqlite")?.split(',').map(Kind::parse).collect::<Result<_, _>>()?
            }
            "--out" => o.out = PathBuf::from(value("a file")?),
            "--no-dlt" => {
                o.dlt = false;
                shown.push(a.clone());
            }
            // The default since dlt's two backends joined the table; kept so
            // older commands still work.
            "--dlt" => {}
            "--help" | "-h" => return Err(USAGE.into()),
            // `--bench` and friends, from cargo.
            s if s.starts_with("--bench") => {}
            other => return Err(format!("unknown option {other:?}; {USAGE}").into()),
        }
    }
    if o.rows < 100 || o.runs == 0 || o.batch == 0 || o.warehouses.is_empty() {
        return Err(format!("--rows must be at least 100, --runs and --batch at least 1, and --warehouses not empty; {USAGE}").into());
    }
    o.command = format!("cargo bench --bench sync -- {}", shown.join(" ")).trim_end().to_string();
    Ok(o)
}

/// A count, with `_` allowed as a separator (`10_000_000`).
fn number(s: &str) -> Result<u64, Error> {
    s.replace('_', "").parse().map_err(|e| format!("{s:?} is not a whole number ({e}); {USAGE}").into())
}
