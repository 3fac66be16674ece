//! The embedded default: `retl run -f DIR` runs the same manifests the
//! operator would, once, in this process, with no cluster. Also `plan`,
//! `history` and `sql`, the local counterparts of what the operator and
//! `kubectl get syncs` offer.

mod alerts;
mod manifests;
pub mod output;
pub mod print;
pub mod records;
mod resolve;
mod strict;
pub mod test_record;

pub use manifests::{DEFAULT_NAMESPACE, Manifests};
pub use output::Format;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use jiff::Timestamp;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::api::{SyncPhase, SyncTrigger, conditions::reason};
use crate::destination::DestinationError;
use crate::engine::{self, Observer, SyncContext, SyncReport};
use crate::warehouse::{self, HistoryFilter, StateScope, Warehouse, WarehouseError};
use resolve::{Resolved, resolve};

#[derive(Debug, Error)]
pub enum LocalError {
    #[error("{file}: {message}")]
    Manifest { file: String, message: String },
    #[error("Mapping {mapping}: {message}")]
    Reference { mapping: String, message: String },
    #[error("Secret {name:?} key {key:?} {message}")]
    Secret { name: String, key: String, message: String },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("SyncAlert {name}: {message}")]
    Alert { name: String, message: String },
    #[error("{0}")]
    Usage(String),
}

impl LocalError {
    /// The reason a sync that could not start because of this error shows.
    pub fn reason(&self) -> &'static str {
        match self {
            LocalError::Reference { .. } => reason::REFERENCE_NOT_FOUND,
            LocalError::Secret { .. } => reason::SECRET_NOT_FOUND,
            LocalError::Warehouse(w) => w.reason(),
            _ => reason::INVALID_SPEC,
        }
    }
}

/// What `retl run` should do.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub dir: PathBuf,
    /// Only these Mappings (all enabled ones when empty).
    pub mappings: Vec<String>,
    /// Forget this Mapping's state first (a `Reset` sync).
    pub reset: Option<String>,
    /// Replay this past sync instead of running the Mappings.
    pub replay: Option<String>,
}

/// Hears a running sync's progress: the sync's name and where it stands.
pub type ProgressFn<'a> = &'a (dyn Fn(&str, &engine::Progress) + Send + Sync);

/// What `retl run` did.
pub struct RunOutcome {
    /// The syncs, in the order they ran.
    pub ran: Vec<Ran>,
    /// Mappings not synced because they are disabled (`spec.enabled: false`).
    pub disabled: Vec<String>,
    /// What the SyncAlerts said (their Events channel) and any delivery
    /// that failed, in order.
    pub alerts: Vec<String>,
}

/// One sync that ran (or could not start).
pub struct Ran {
    pub name: String,
    pub namespace: String,
    pub mapping: String,
    pub trigger: SyncTrigger,
    pub report: SyncReport,
}

/// What `retl plan` found for one Mapping.
pub struct Planned {
    pub namespace: String,
    pub mapping: String,
    pub outcome: PlanOutcome,
}

pub enum PlanOutcome {
    Plan(engine::PlanReport),
    /// `spec.enabled: false`: `run` would skip it, so there is nothing to plan.
    Disabled,
    /// Why it cannot be planned (and a sync would fail).
    CannotPlan(String),
}

/// Refuses a selection that selects nothing: no Mapping in the directory,
/// or a `--mapping` that names none of them (a typo must not look like a
/// run that had nothing to do).
fn check_selection(m: &Manifests, dir: &std::path::Path, only: &[String]) -> Result<(), LocalError> {
    let names: Vec<&str> = m.mappings.keys().map(|(_, n)| n.as_str()).collect();
    if names.is_empty() {
        return Err(LocalError::Usage(format!(
            "there is no Mapping in {}: pass the directory holding your Source, Destination, Model and Mapping manifests with -f",
            dir.display()
        )));
    }
    for wanted in only {
        if !names.contains(&wanted.as_str()) {
            return Err(LocalError::Usage(format!(
                "--mapping {wanted}: there is no Mapping {wanted:?} in {}; its Mappings: {}",
                dir.display(),
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Runs the selected Mappings once, one after the other.
pub async fn run(opts: &RunOptions, progress: ProgressFn<'_>, cancel: &CancellationToken) -> Result<RunOutcome, LocalError> {
    let m = Manifests::load(&opts.dir)?;
    let alerts = alerts::LocalAlerts::load(&m, &opts.dir)?;
    let started_run = Timestamp::now();
    let mut ran = Vec::new();
    let mut disabled = Vec::new();
    if let Some(sync) = &opts.replay {
        let (ns, mapping) = find_sync(&m, sync).await?;
        let target = &m.mappings[&(ns.clone(), mapping.clone())];
        let name = format!("{sync}-replay-{}", token_hash());
        let request = SyncRequest { name: name.clone(), trigger: SyncTrigger::Replay, replay_of: Some(sync.clone()) };
        let report = run_one(&m, &ns, target, &request, progress, cancel).await;
        let sync = alerts::LocalSync { namespace: &ns, name: &name, mapping: target, report: &report };
        alerts.after(&m, &opts.dir, &sync, started_run).await;
        ran.push(Ran { name, namespace: ns, mapping, trigger: SyncTrigger::Replay, report });
        return Ok(RunOutcome { ran, disabled, alerts: alerts.lines() });
    }
    check_selection(&m, &opts.dir, &opts.mappings)?;
    if let Some(r) = &opts.reset
        && !m.mappings.keys().any(|(_, n)| n == r)
    {
        return Err(LocalError::Usage(format!("--reset {r}: there is no Mapping {r:?} in {}", opts.dir.display())));
    }
    for ((ns, name), mapping) in &m.mappings {
        if !opts.mappings.is_empty() && !opts.mappings.contains(name) {
            continue;
        }
        if !mapping.object.spec.enabled {
            disabled.push(name.clone());
            continue;
        }
        if cancel.is_cancelled() {
            break;
        }
        let trigger = if opts.reset.as_ref() == Some(name) { SyncTrigger::Reset } else { SyncTrigger::Manual };
        let sync_name = format!("{name}-{}", token_hash());
        let request = SyncRequest { name: sync_name.clone(), trigger, replay_of: None };
        let report = run_one(&m, ns, mapping, &request, progress, cancel).await;
        let sync = alerts::LocalSync { namespace: ns, name: &sync_name, mapping, report: &report };
        alerts.after(&m, &opts.dir, &sync, started_run).await;
        ran.push(Ran { name: sync_name, namespace: ns.clone(), mapping: name.clone(), trigger, report });
    }
    Ok(RunOutcome { ran, disabled, alerts: alerts.lines() })
}

/// A short hash of a new request token (the current time), as the operator
/// names requested Syncs `<mapping>-<hash>`.
fn token_hash() -> String {
    let token = Timestamp::now().as_nanosecond().to_string();
    format!("{:08x}", xxhash_rust::xxh3::xxh3_64(token.as_bytes()) as u32)
}

/// The sync to run: its name and why it runs.
struct SyncRequest {
    name: String,
    trigger: SyncTrigger,
    replay_of: Option<String>,
}

async fn run_one(
    m: &Manifests,
    ns: &str,
    mapping: &manifests::Loaded<crate::api::Mapping>,
    request: &SyncRequest,
    progress: ProgressFn<'_>,
    cancel: &CancellationToken,
) -> SyncReport {
    let started = Timestamp::now();
    let prepared = async {
        let r = resolve(m, ns, mapping)?;
        let wh = warehouse::connect(r.source_name(), &r.source.object.spec, &r.secrets, &r.source_dir()).await?;
        let dest = crate::destination::build(r.destination_name(), &r.destination.object.spec, &r.secrets, &r.destination.dir)?;
        // The sync itself closes the Mapping's abandoned syncs, once it holds
        // the Mapping's lock (a running one is not abandoned).
        Ok::<_, LocalError>((r, wh, dest))
    }
    .await;
    let (r, wh, dest) = match prepared {
        Ok(p) => p,
        Err(e) => return SyncReport::failed_early(started, e.reason(), e.to_string()),
    };
    let ctx = context(&r, request);
    let observer = Callback { sync: &request.name, progress };
    // The deadline a Job would have in a cluster holds for local runs too.
    let deadline = ctx.mapping.active_deadline_seconds.unwrap_or(crate::api::DEFAULT_ACTIVE_DEADLINE_SECONDS);
    engine::run_sync_until(&ctx, wh.as_ref(), dest, &observer, cancel, Some(deadline)).await
}

fn context(r: &Resolved<'_>, request: &SyncRequest) -> SyncContext {
    SyncContext {
        namespace: r.namespace.clone(),
        sync_name: request.name.clone(),
        mapping_name: r.mapping_name().to_string(),
        mapping_uid: r.mapping_uid(),
        mapping: r.mapping.object.spec.clone(),
        model_name: r.model_name().to_string(),
        model: r.model.object.spec.clone(),
        destination_name: r.destination_name().to_string(),
        action: r.action.clone(),
        trigger: request.trigger,
        replay_of: request.replay_of.clone(),
        lock_wait: engine::DEFAULT_LOCK_WAIT,
        rate_share: engine::Share::whole(&r.destination.object.spec),
    }
}

/// Hands progress to the caller's function.
struct Callback<'a> {
    sync: &'a str,
    progress: ProgressFn<'a>,
}

#[async_trait]
impl Observer for Callback<'_> {
    async fn progress(&self, p: &engine::Progress) {
        (self.progress)(self.sync, p);
    }
}

/// Finds the Mapping a past sync belongs to, from the sync-run tables.
async fn find_sync(m: &Manifests, sync: &str) -> Result<(String, String), LocalError> {
    for ((ns, name), mapping) in &m.mappings {
        let Ok(r) = resolve(m, ns, mapping) else { continue };
        let wh = warehouse::connect(r.source_name(), &r.source.object.spec, &r.secrets, &r.source_dir()).await?;
        let filter = HistoryFilter { mapping_uids: vec![StateScope::from_uid(&r.mapping_uid()).id], ..Default::default() };
        if wh.runs(&filter).await?.iter().any(|run| run.sync == sync) {
            return Ok((ns.clone(), name.clone()));
        }
    }
    Err(LocalError::Usage(format!(
        "--replay {sync}: no Mapping in these manifests has a sync of that name in its history (see `retl history`)"
    )))
}

/// What `retl plan` shows, per Mapping.
pub async fn plan(dir: &std::path::Path, only: &[String], samples: usize) -> Result<Vec<Planned>, LocalError> {
    let m = Manifests::load(dir)?;
    check_selection(&m, dir, only)?;
    let mut out = Vec::new();
    for ((ns, name), mapping) in &m.mappings {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let outcome = if mapping.object.spec.enabled { plan_one(&m, ns, name, mapping, samples).await } else { PlanOutcome::Disabled };
        out.push(Planned { namespace: ns.clone(), mapping: name.clone(), outcome });
    }
    Ok(out)
}

async fn plan_one(m: &Manifests, ns: &str, name: &str, mapping: &manifests::Loaded<crate::api::Mapping>, samples: usize) -> PlanOutcome {
    let planned = async {
        let r = resolve(m, ns, mapping)?;
        let wh = warehouse::connect(r.source_name(), &r.source.object.spec, &r.secrets, &r.source_dir()).await?;
        let request = SyncRequest { name: format!("{name}-plan"), trigger: SyncTrigger::Manual, replay_of: None };
        let ctx = context(&r, &request);
        let spec = &r.destination.object.spec;
        let skip_for = |kind| crate::destination::skip_reason(spec, kind);
        engine::plan_sync(&ctx, wh.as_ref(), &skip_for, samples).await.map_err(|e| LocalError::Usage(e.to_string()))
    };
    match planned.await {
        Ok(p) => PlanOutcome::Plan(p),
        Err(e) => PlanOutcome::CannotPlan(e.to_string()),
    }
}

/// Filters of `retl history`.
#[derive(Clone, Debug, Default)]
pub struct HistoryOptions {
    pub phase: Option<SyncPhase>,
    pub mapping: Option<String>,
    pub model: Option<String>,
    pub destination: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

type SourceMappings = (Box<dyn Warehouse>, Vec<String>);

/// Past syncs of the Mappings in `dir`, newest first.
pub async fn history(dir: &std::path::Path, o: &HistoryOptions) -> Result<Vec<Ran>, LocalError> {
    let m = Manifests::load(dir)?;
    check_selection(&m, dir, o.mapping.as_slice())?;
    // (namespace, source) → the warehouse and the state ids of its Mappings
    let mut by_source: BTreeMap<(String, String), SourceMappings> = BTreeMap::new();
    for ((ns, name), mapping) in &m.mappings {
        let Ok(r) = resolve(&m, ns, mapping) else { continue };
        let keep = o.mapping.as_ref().is_none_or(|x| x == name)
            && o.model.as_ref().is_none_or(|x| x == r.model_name())
            && o.destination.as_ref().is_none_or(|x| x == r.destination_name());
        if !keep {
            continue;
        }
        let key = (ns.clone(), r.source_name().to_string());
        if !by_source.contains_key(&key) {
            let wh = warehouse::connect(r.source_name(), &r.source.object.spec, &r.secrets, &r.source_dir()).await?;
            by_source.insert(key.clone(), (wh, Vec::new()));
        }
        if let Some((_, uids)) = by_source.get_mut(&key) {
            uids.push(StateScope::from_uid(&r.mapping_uid()).id);
        }
    }
    let mut out = Vec::new();
    for (wh, uids) in by_source.values() {
        let filter = HistoryFilter {
            mapping_uids: uids.clone(),
            phase: o.phase.map(|p| p.as_str().to_string()),
            since_ms: o.since.map(|t| t.as_millisecond()),
            until_ms: o.until.map(|t| t.as_millisecond()),
        };
        for run in wh.runs(&filter).await? {
            let report: SyncReport = serde_json::from_str(&run.status_json).map_err(|e| WarehouseError::State {
                action: "read",
                message: format!("sync-run record of {} is not readable: {e}", run.sync),
            })?;
            let trigger = serde_json::from_value(serde_json::Value::String(run.trigger)).unwrap_or_default();
            out.push(Ran { name: run.sync, namespace: run.namespace, mapping: run.mapping, trigger, report });
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.report.started));
    Ok(out)
}

/// Runs one SQL statement against a Source (to seed or edit demo data).
pub async fn sql(dir: &std::path::Path, source: &str, statement: &str) -> Result<u64, LocalError> {
    let m = Manifests::load(dir)?;
    let (key, src) = m
        .sources
        .iter()
        .find(|((_, n), _)| n == source)
        .ok_or_else(|| LocalError::Usage(format!("there is no Source {source:?} in {}", dir.display())))?;
    let mut secrets = warehouse::SecretValues::new();
    for r in warehouse::secret_refs(&src.object.spec) {
        let v = resolve::secret_value(&m, &key.0, &r)?;
        secrets.insert((r.name.clone(), r.key.clone()), v);
    }
    let wh = warehouse::connect(source, &src.object.spec, &secrets, &src.dir).await?;
    Ok(wh.execute(statement).await?)
}
