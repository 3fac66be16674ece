//! `cargo bench --bench operator`: the operator at scale. The real `retl
//! operator` on the real control plane (testcluster) with N Mappings on
//! `* * * * *` (default 1000), watched for M ticks (default 3). It prints,
//! per tick and over all of them:
//!
//! - scheduling lag: the API server's time of each scheduled Sync's
//!   creation minus its tick (the minute boundary, UTC), p50/p99/max, and
//!   how many Mappings got their Sync for that tick;
//! - the time to each Sync's end (its worker's last status write), to show
//!   the rest of the pipeline (Sync → Job → pod → worker) keeps up;
//! - the operator's CPU seconds per minute and resident memory (peak and
//!   per minute) from /proc, and the same CPU figures for the control plane;
//! - the API server's own floor: N Syncs created at once before the
//!   operator runs, and N ConfigMaps once it runs, quiet (floor.rs);
//! - the operator's API requests per minute, by verb and resource, counted
//!   exactly from the API server's audit log (every request of the
//!   operator's ServiceAccount, one audit ID each).
//!
//! Workers finish at once (see worker.rs). Options (after `--`):
//! `--mappings N`, `--minutes M`, `--job-ttl S` (the operator's
//! `--job-ttl-seconds`, default 60), `--kcm-qps Q` (kube-controller-manager's
//! `--kube-api-qps`, default 200: at its own default of 20 the Job
//! controller makes a few hundred Jobs a minute, not a thousand),
//! `--audit-out PATH` and `--log-out PATH` (keep a copy of the audit log
//! and of the operator's log), `--retl PATH` (the operator binary;
//! default: the `retl` cargo built with this benchmark, in the bench
//! profile, i.e. an optimized build). `RETL_CONTROL_PLANE_BIN` as for the
//! tests (`scripts/control-plane build` prints it).

mod audit;
mod floor;
mod report;
mod sample;
mod setup;
mod state;
mod worker;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

type Error = Box<dyn std::error::Error + Send + Sync>;

pub struct Options {
    pub mappings: usize,
    pub minutes: u32,
    pub job_ttl: u32,
    /// kube-controller-manager's client rate (requests per second).
    pub kcm_qps: u32,
    pub retl: Option<String>,
    /// Where to copy the API server's audit log and the operator's log (for a closer look).
    pub audit_out: Option<String>,
    pub log_out: Option<String>,
}

fn options(args: &[String]) -> Result<Options, Error> {
    let mut o = Options { mappings: 1000, minutes: 3, job_ttl: 60, kcm_qps: 200, retl: None, audit_out: None, log_out: None };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--mappings" => o.mappings = value()?.parse()?,
            "--minutes" => o.minutes = value()?.parse()?,
            "--job-ttl" => o.job_ttl = value()?.parse()?,
            "--kcm-qps" => o.kcm_qps = value()?.parse()?,
            "--retl" => o.retl = Some(value()?.clone()),
            "--audit-out" => o.audit_out = Some(value()?.clone()),
            "--log-out" => o.log_out = Some(value()?.clone()),
            _ => {} // `--bench` and friends from cargo
        }
    }
    if o.mappings == 0 || o.minutes == 0 {
        return Err("--mappings and --minutes must be at least 1".into());
    }
    Ok(o)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    // The test kubelet runs this binary as the workers' image.
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker::main(&args[2..]);
    }
    let o = options(&args[1..])?;
    // SAFETY: no other thread runs yet (the runtime and the control plane start below).
    unsafe { std::env::set_var(testcluster::KCM_QPS_ENV, o.kcm_qps.to_string()) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(o))
}

/// The next minute boundary at least `margin` from now.
fn next_minute(margin: Duration) -> Result<Timestamp, Error> {
    let earliest = Timestamp::now().checked_add(SignedDuration::try_from(margin)?)?;
    let s = earliest.as_second() + i64::from(earliest.subsec_nanosecond() > 0);
    Ok(Timestamp::from_second((s + 59).div_euclid(60) * 60)?)
}

async fn sleep_until(t: Timestamp) {
    let left = t.duration_since(Timestamp::now());
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
}

async fn run(o: Options) -> Result<(), Error> {
    retl::install_crypto_provider();
    let retl_bin = setup::retl_binary(o.retl.as_deref());
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cluster = setup::cluster()?;
    let ns = setup::namespace(cluster)?;
    let client = cluster.client();
    let sync_floor = floor::syncs(&client, ns.name(), o.mappings).await?;
    let sink = testkit::sink::Sink::start().await?;
    let operator = setup::operator(&ns, &retl_bin, o.job_ttl).await;
    setup::apply(&ns, &setup::shared_manifests(&ns.dir().join("manifests"), &sink.url())?)?;
    setup::wait_model(&client, ns.name(), Duration::from_secs(60)).await?;

    let floor = floor::configmaps(&client, ns.name(), o.mappings).await?;
    for (what, f) in [("Syncs", sync_floor), ("ConfigMaps", floor)] {
        eprintln!(
            "API server floor: {} {what} created at once, answered after p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            o.mappings, f.0, f.1, f.2
        );
    }

    let started = std::time::Instant::now();
    setup::apply(&ns, &setup::mappings(o.mappings)?)?;
    let applied = started.elapsed();
    let scheduled = setup::wait_mappings(&client, ns.name(), o.mappings, Duration::from_secs(600)).await?;
    let settled = started.elapsed();
    eprintln!(
        "{} Mappings applied in {:.1} s; {scheduled} Ready and scheduled after {:.1} s",
        o.mappings,
        applied.as_secs_f64(),
        settled.as_secs_f64()
    );
    if scheduled < o.mappings {
        return Err(format!("only {scheduled} of {} Mappings became Ready within 10 minutes:\n{}", o.mappings, operator.logs()).into());
    }

    let mut processes = vec![("operator".to_string(), operator.pid())];
    processes.extend(cluster.control_plane().pids().into_iter().map(|(n, p)| (n.to_string(), p)));
    processes.push(("bench".to_string(), std::process::id()));
    let sampler = sample::Sampler::start(processes);

    // The ticks measured: the first minute boundary that leaves the
    // operator a few seconds of quiet after setup, and the next ones.
    let first = next_minute(Duration::from_secs(10))?;
    let ticks: Vec<Timestamp> = (0..o.minutes).map(|i| first + SignedDuration::from_mins(i64::from(i))).collect::<Vec<_>>();
    let end = ticks[ticks.len() - 1] + SignedDuration::from_mins(1);
    for t in &ticks {
        eprintln!("waiting for the tick of {t}");
        sleep_until(*t).await;
    }
    sleep_until(end).await;
    let (names, samples) = sampler.finish();
    let state = state::summary(&client, ns.name(), cluster.kubelet()).await?;

    let operator_user = "system:serviceaccount:retl-system:retl-operator";
    let worker_user = format!("system:serviceaccount:{}:retl-worker", ns.name());
    let audit_log = cluster.control_plane().audit_log();
    if let Some(out) = &o.audit_out {
        std::fs::copy(&audit_log, out)?;
    }
    let audit = audit::read(&audit_log, operator_user, &worker_user)?;
    let logs = operator.logs();
    if let Some(out) = &o.log_out {
        std::fs::write(out, &logs)?;
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let context = report::Context {
        options: &o,
        retl: &retl_bin,
        setup: (applied, settled),
        floor,
        sync_floor,
        load: (load_before.trim().to_string(), load_after.trim().to_string()),
        ticks: &ticks,
        names: &names,
        samples: &samples,
        audit: &audit,
        operator_logs: &logs,
    };
    report::print(&context);
    println!("\nat the end: {state}");
    drop(sink);
    Ok(())
}
