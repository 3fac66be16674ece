//! The benchmark's report: one row per tick and one over all ticks, then
//! the CPU of every process per minute, and the operator's requests by
//! verb and resource.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::Options;
use crate::audit::{Audit, percentiles};
use crate::sample::{self, Sample};

pub struct Context<'a> {
    pub options: &'a Options,
    pub retl: &'a Path,
    /// Time to apply the Mappings, and until all were Ready and scheduled.
    pub setup: (Duration, Duration),
    /// The API server's floor (floor.rs): p50, p99 and max seconds to create N ConfigMaps at once.
    pub floor: crate::floor::Percentiles,
    /// The same for N Syncs, created before the operator ran.
    pub sync_floor: crate::floor::Percentiles,
    /// /proc/loadavg before and after.
    pub load: (String, String),
    pub ticks: &'a [Timestamp],
    pub names: &'a [String],
    pub samples: &'a [Sample],
    pub audit: &'a Audit,
    pub operator_logs: &'a str,
}

fn secs(d: SignedDuration) -> f64 {
    d.as_secs_f64()
}

fn fmt3(v: Option<(f64, f64, f64)>) -> [String; 3] {
    match v {
        Some((a, b, c)) => [format!("{a:.3}"), format!("{b:.3}"), format!("{c:.3}")],
        None => ["-".into(), "-".into(), "-".into()],
    }
}

/// One row: the Syncs of the ticks in `ticks`, and the minutes that follow them.
struct Row {
    label: String,
    created: usize,
    lag: Option<(f64, f64, f64)>,
    finished: usize,
    done: Option<(f64, f64, f64)>,
    cpu_per_min: Option<f64>,
    rss_max: Option<f64>,
    requests_per_min: f64,
}

fn row(c: &Context<'_>, label: String, ticks: &[Timestamp]) -> Row {
    let minute = SignedDuration::from_mins(1);
    let created: Vec<_> = c.audit.created.iter().filter(|s| ticks.contains(&s.tick)).collect();
    let lags: Vec<f64> = created.iter().map(|s| secs(s.at.duration_since(s.tick))).collect();
    let done: Vec<f64> = created.iter().filter_map(|s| c.audit.finished.get(&s.name).map(|t| secs(t.duration_since(s.tick)))).collect();
    let minutes = ticks.len() as f64;
    let cpu: Option<f64> = ticks.iter().map(|t| sample::cpu_between(c.samples, 0, *t, *t + minute, |r| r.cpu_seconds)).sum();
    let rss = ticks.iter().filter_map(|t| sample::max_rss_between(c.samples, 0, *t, *t + minute)).reduce(f64::max);
    let requests = c.audit.requests.iter().filter(|r| ticks.iter().any(|t| r.received >= *t && r.received < *t + minute)).count();
    Row {
        label,
        created: created.len(),
        lag: percentiles(&lags),
        finished: done.len(),
        done: percentiles(&done),
        cpu_per_min: cpu.map(|s| s / minutes),
        rss_max: rss,
        requests_per_min: requests as f64 / minutes,
    }
}

pub fn print(c: &Context<'_>) {
    let o = c.options;
    println!("\n## retl operator at scale: {} Mappings on \"* * * * *\", {} ticks", o.mappings, c.ticks.len());
    println!(
        "operator: {} (job TTL {} s); workers finish at once (benches/operator/worker.rs); kube-controller-manager --kube-api-qps {}",
        c.retl.display(),
        o.job_ttl,
        o.kcm_qps
    );
    println!(
        "setup: Mappings applied in {:.1} s, all Ready and scheduled {:.1} s after the apply began",
        c.setup.0.as_secs_f64(),
        c.setup.1.as_secs_f64()
    );
    println!(
        "API server floor (quiet operator, before the Mappings): {} ConfigMaps created at once, {} in flight, answered after p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        o.mappings,
        crate::floor::IN_FLIGHT,
        c.floor.0,
        c.floor.1,
        c.floor.2
    );
    println!(
        "API server floor for the Syncs themselves (before the operator ran): {} Syncs created at once, {} in flight, answered after p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        o.mappings,
        crate::floor::IN_FLIGHT,
        c.sync_floor.0,
        c.sync_floor.1,
        c.sync_floor.2
    );
    println!("load average before: {}; after: {}\n", c.load.0, c.load.1);

    let mut rows: Vec<Row> = c.ticks.iter().map(|t| row(c, t.strftime("%H:%M:%S").to_string(), std::slice::from_ref(t))).collect();
    rows.push(row(c, "all".into(), c.ticks));
    println!(
        "| tick (UTC) | Syncs created | lag p50 s | lag p99 s | lag max s | Syncs finished | to end p50 s | to end p99 s | operator CPU s/min | operator RSS max MiB | operator API requests/min |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let [l50, l99, lmax] = fmt3(r.lag);
        let [d50, d99, _] = fmt3(r.done);
        println!(
            "| {} | {} | {l50} | {l99} | {lmax} | {} | {d50} | {d99} | {} | {} | {:.0} |",
            r.label,
            r.created,
            r.finished,
            r.cpu_per_min.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            r.rss_max.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
            r.requests_per_min,
        );
    }
    if let Some(peak) = sample::peak_rss(c.samples, 0) {
        println!("\noperator peak RSS (VmHWM, since it started, setup included): {peak:.1} MiB");
    }

    // Every sampled process's CPU per measured minute: how the two cores were shared.
    let (from, to) = (c.ticks[0], c.ticks[c.ticks.len() - 1] + SignedDuration::from_mins(1));
    let minutes = c.ticks.len() as f64;
    println!("\nCPU s/min over the measured minutes (2 cores = 120 CPU s/min):");
    for (i, name) in c.names.iter().enumerate() {
        if let Some(s) = sample::cpu_between(c.samples, i, from, to, |r| r.cpu_seconds) {
            println!("  {name:<24} {:>7.2}", s / minutes);
        }
        if name == "bench"
            && let Some(s) = sample::cpu_between(c.samples, i, from, to, |r| r.children_cpu_seconds)
        {
            println!("  {:<24} {:>7.2}", "workers (bench children)", s / minutes);
        }
    }
    println!("  (bench = this process: the test kubelet runs in it)");

    let in_window: Vec<_> = c.audit.requests.iter().filter(|r| r.received >= from && r.received < to).collect();
    let mut by_kind: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    for r in &in_window {
        *by_kind.entry((r.verb.clone(), r.resource.clone())).or_default() += 1;
        *by_code.entry(r.code.map(|c| c.to_string()).unwrap_or_else(|| "open".into())).or_default() += 1;
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    println!("\noperator API requests per minute by verb and resource (audit log):");
    for ((verb, resource), n) in kinds {
        println!("  {verb:<8} {resource:<28} {:>8.1}", n as f64 / minutes);
    }
    println!("  by response code: {by_code:?}");

    let warnings: Vec<&str> = c.operator_logs.lines().filter(|l| l.contains("WARN")).collect();
    println!("\noperator log: {} lines, {} warnings", c.operator_logs.lines().count(), warnings.len());
    for w in warnings.iter().take(5) {
        println!("  {}", w.chars().take(300).collect::<String>());
    }
}
