//! The report: one markdown table with every figure, its floor or peer, the
//! ratio (of medians), the target and whether it is met; and the same with
//! the raw figures as JSON.

use serde_json::json;

use super::dlt::DltRun;
use super::measure::Figures;
use super::options::Options;
use super::wh::Kind;

/// The median and the range of a measure over the runs.
#[derive(Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(v: &[f64]) -> Spread {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    let median = match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    };
    Spread { median, min: s.first().copied().unwrap_or(f64::NAN), max: s.last().copied().unwrap_or(f64::NAN) }
}

/// `20.99 s (18.30–21.00)`: the median, then the range when there are several runs.
fn secs(v: &[f64]) -> String {
    let s = spread(v);
    if v.len() > 1 { format!("{:.2} s ({:.2}–{:.2})", s.median, s.min, s.max) } else { format!("{:.2} s", s.median) }
}

fn mb(kb: u64) -> String {
    format!("{} MB", super::proc::mb(kb))
}

struct Row {
    what: String,
    result: String,
    against: String,
    ratio: String,
    target: String,
    /// None: no target, shown for what it tells.
    met: Option<bool>,
}

/// The table and the JSON document.
pub fn build(o: &Options, figures: &[Figures], ceiling: &[f64], dlt: &[(&str, Vec<DltRun>, Vec<String>)]) -> (String, serde_json::Value) {
    let mut rows: Vec<Row> = Vec::new();
    let n = o.rows;
    let pg = figures.iter().find(|f| f.kind == Kind::Postgres);
    let median = |v: &[f64]| spread(v).median;
    for f in figures {
        let l = f.kind.label();
        for e in &f.errors {
            rows.push(Row {
                what: format!("{l}: FAILED"),
                result: e.replace('|', "/").replace('\n', " "),
                against: String::new(),
                ratio: String::new(),
                target: "every measure taken".into(),
                met: Some(false),
            });
        }
        if f.full.is_empty() || f.incremental.is_empty() {
            continue;
        }
        let (full, floor) = (median(&f.full), median(&f.floor));
        rows.push(Row {
            what: format!("{l}: full sync, {n} rows"),
            result: format!(
                "{} ({:.0} rows/s), peak RSS {}",
                secs(&f.full),
                n as f64 / full,
                mb(f.full_rss_kb.iter().copied().max().unwrap_or(0))
            ),
            against: format!(
                "end-to-end floor {} (its client's peak RSS {})",
                secs(&f.floor),
                mb(f.floor_rss_kb.iter().copied().max().unwrap_or(0))
            ),
            ratio: format!("{:.2} × floor", full / floor),
            target: "≤ 1.5 × floor".into(),
            met: Some(full <= 1.5 * floor),
        });
        let (inc, hash) = (median(&f.incremental), median(&f.hash));
        let parallel = if f.hash_parallel.is_empty() {
            String::new()
        } else {
            format!("; {} with parallel workers: {:.2} ×", secs(&f.hash_parallel), inc / median(&f.hash_parallel))
        };
        rows.push(Row {
            what: format!("{l}: incremental sync, {} rows changed (1%)", f.changed.first().copied().unwrap_or(0)),
            result: format!("{} ({:.0}% of full)", secs(&f.incremental), 100.0 * inc / full),
            against: format!("hashing floor {}{}", secs(&f.hash), if f.hash_parallel.is_empty() { "" } else { " on one core" }),
            ratio: format!("{:.2} × floor{parallel}", inc / hash),
            target: "≤ 1.5 × hashing floor".into(),
            met: Some(inc <= 1.5 * hash),
        });
        if let (Some(pg), Kind::Mysql) = (pg.filter(|p| !p.full.is_empty() && !p.incremental.is_empty()), f.kind) {
            for (what, mine, theirs) in [("full sync", &f.full, &pg.full), ("incremental sync", &f.incremental, &pg.incremental)] {
                let ratio = median(mine) / median(theirs);
                rows.push(Row {
                    what: format!("{l}: {what} vs PostgreSQL's"),
                    result: secs(mine),
                    against: format!("PostgreSQL {}", secs(theirs)),
                    ratio: format!("{ratio:.2} × PostgreSQL"),
                    target: "≤ 1.5 × PostgreSQL".into(),
                    met: Some(ratio <= 1.5),
                });
            }
        }
        if let [(a, _, ka), .., (b, _, kb)] = f.rss.as_slice() {
            let apart = (*kb as f64 - *ka as f64).abs() / (*ka).max(1) as f64 * 100.0;
            rows.push(Row {
                what: format!("{l}: peak RSS, full sync of {a} / {b} rows"),
                result: format!("{} / {}", mb(*ka), mb(*kb)),
                against: String::new(),
                ratio: format!("{apart:.0}% apart"),
                target: "≤ 100 MB, within 20%".into(),
                met: Some(*ka <= 100 * 1024 && *kb <= 100 * 1024 && apart <= 20.0),
            });
        }
        rows.push(Row {
            what: format!("{l}: what reached the sink"),
            result: format!("retl {:.0} bytes/record", f.bytes_per_record.1),
            against: format!("floor {:.0} bytes/record", f.bytes_per_record.0),
            ratio: format!("{:.2} ×", f.bytes_per_record.1 / f.bytes_per_record.0),
            target: "the same fields and value types".into(),
            met: Some(f.shapes.0 == f.shapes.1),
        });
    }
    if let Some(pg) = pg.filter(|p| !p.full.is_empty()) {
        let full = median(&pg.full);
        for (backend, runs, errors) in dlt {
            for e in errors {
                rows.push(Row {
                    what: format!("dlt ({backend}): FAILED"),
                    result: e.replace('|', "/").replace('\n', " "),
                    against: String::new(),
                    ratio: String::new(),
                    target: String::new(),
                    met: None,
                });
            }
            if runs.is_empty() {
                continue;
            }
            let times: Vec<f64> = runs.iter().map(|r| r.secs).collect();
            let ratio = median(&times) / full;
            let rss = runs.iter().map(|r| r.rss_kb).max().unwrap_or(0);
            rows.push(Row {
                what: format!("PostgreSQL: full sync vs dlt {} ({backend})", runs.first().map(|r| r.version.as_str()).unwrap_or("")),
                result: format!("retl {}", secs(&pg.full)),
                against: format!("dlt {} (peak RSS {})", secs(&times), mb(rss)),
                ratio: format!("retl {ratio:.2} × faster"),
                target: if *backend == "connectorx" { "≥ 3 × faster".into() } else { String::new() },
                met: (*backend == "connectorx").then_some(ratio >= 3.0),
            });
        }
    }
    if !ceiling.is_empty() {
        rows.push(Row {
            what: format!("the sink's own ceiling, {n} prebuilt records"),
            result: secs(ceiling),
            against: String::new(),
            ratio: String::new(),
            target: String::new(),
            met: None,
        });
    }

    let mut table = format!(
        "{} rows, batches of {}, {} in flight, {} run{} (median, min–max; ratios of medians)\n\n",
        n,
        o.batch,
        super::IN_FLIGHT,
        o.runs,
        if o.runs == 1 { "" } else { "s" }
    );
    table.push_str("| measure | result | against | ratio | target | met |\n| --- | --- | --- | --- | --- | --- |\n");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        table.push_str(&format!("| {} | {} | {} | {} | {} | {met} |\n", r.what, r.result, r.against, r.ratio, r.target));
    }
    let doc = json!({
        "command": o.command,
        "date": jiff::Timestamp::now().to_string(),
        "rows": n, "batch": o.batch, "in_flight": super::IN_FLIGHT, "runs": o.runs, "rss_rows": o.rss_rows,
        "table": table,
        "warehouses": figures.iter().map(Figures::to_json).collect::<Vec<_>>(),
        "sink_ceiling_secs": ceiling,
        "dlt": dlt.iter().map(|(backend, runs, errors)| json!({
            "backend": backend,
            "version": runs.first().map(|r| r.version.clone()),
            "secs": runs.iter().map(|r| r.secs).collect::<Vec<_>>(),
            "rows": runs.iter().map(|r| r.rows).collect::<Vec<_>>(),
            "peak_rss_kb": runs.iter().map(|r| r.rss_kb).collect::<Vec<_>>(),
            "errors": errors,
        })).collect::<Vec<_>>(),
    });
    (table, doc)
}
