//! `retl worker --sync NAMESPACE/NAME`: the entrypoint of a sync's Job. It
//! reads the Sync, its Mapping, Model, Source, Destination and Secrets
//! through the API, runs the engine, and writes progress and the outcome to
//! the Sync's status. It is the only part of the operator that talks SQL and
//! sends records (through the engine).

pub mod status;
mod writes;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::{Client, ResourceExt};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::api::conditions::reason;
use crate::api::{Destination, Mapping, Model, Source, Sync, SyncPhase, SyncStatus};
use crate::controller::secrets::short;
use crate::engine::{self, Observer, Progress, SyncContext, SyncReport};
use crate::warehouse::SecretValues;
use writes::{Written, write_status};

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("--sync must be NAMESPACE/NAME, got {0:?}")]
    Usage(String),
    #[error("cannot read or write Sync {sync}: {source}")]
    Api { sync: String, source: kube::Error },
}

/// Runs one Sync to its end; returns its final phase. On SIGTERM (pod
/// deletion, node drain, eviction) it stops at the next batch boundary,
/// commits what was acknowledged and ends the Sync `Failed` with reason
/// `Terminated`, well within a pod's grace period.
pub async fn run(client: Client, target: &str) -> Result<SyncPhase, WorkerError> {
    let (namespace, name) = target.split_once('/').ok_or_else(|| WorkerError::Usage(target.to_string()))?;
    let syncs: Api<Sync> = Api::namespaced(client.clone(), namespace);
    let api_err = |source| WorkerError::Api { sync: target.to_string(), source };
    let sync = syncs.get(name).await.map_err(api_err)?;
    let started = Timestamp::now();
    let first = write_status(&syncs, name, |current| {
        let started = SyncStatus { start_time: Some(Time(started)), ..current };
        status::in_progress(started, &Progress::default())
    })
    .await
    .map_err(api_err)?;
    if let Written::AlreadyFinished(phase) = first {
        tracing::info!(sync = target, %phase, "the sync already finished; nothing to do");
        return Ok(phase);
    }

    let stop = CancellationToken::new();
    let terminated = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_on_sigterm(stop.clone(), terminated.clone()));
    let (mut report, deadline) = match resolve(&client, namespace, &sync).await {
        Err((why, message)) => (SyncReport::failed_early(started, why, message), None),
        Ok(resolved) => {
            let deadline = resolved.ctx.mapping.active_deadline_seconds.unwrap_or(crate::api::DEFAULT_ACTIVE_DEADLINE_SECONDS);
            (execute(&syncs, name, resolved, stop.clone()).await, Some(deadline))
        }
    };
    stop.cancel();
    if terminated.load(Ordering::SeqCst) {
        // The Job controller stops a pod at the Job's activeDeadlineSeconds
        // with SIGTERM too; the Job started after the Sync was created, so
        // a deadline reached counts from the Sync's creation.
        let created = sync.metadata.creation_timestamp.as_ref().map(|t| t.0);
        match deadline.filter(|d| created.is_some_and(|c| Timestamp::now().duration_since(c).as_secs() >= *d)) {
            Some(d) => status::deadline_exceeded(&mut report, d),
            None => status::terminated(&mut report),
        }
    }
    let generation = sync.metadata.generation;
    let last =
        write_status(&syncs, name, |current| status::finished(current, &report, generation, Timestamp::now())).await.map_err(api_err)?;
    if let Written::AlreadyFinished(phase) = last {
        tracing::info!(sync = target, %phase, "the Sync was finished by someone else; its status stays as it is");
        return Ok(phase);
    }
    Ok(report.phase)
}

/// SIGTERM is how Kubernetes stops a pod: stop at the next batch boundary.
async fn stop_on_sigterm(stop: CancellationToken, terminated: Arc<AtomicBool>) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
    tokio::select! {
        _ = term.recv() => {
            tracing::info!("SIGTERM: stopping at the next batch boundary");
            terminated.store(true, Ordering::SeqCst);
            stop.cancel();
        }
        _ = stop.cancelled() => {}
    }
}

/// Everything a sync needs, read from the API.
struct Resolved {
    ctx: SyncContext,
    source: Source,
    destination: Destination,
    secrets: SecretValues,
}

async fn execute(syncs: &Api<Sync>, name: &str, r: Resolved, stop: CancellationToken) -> SyncReport {
    let source_name = r.source.name_any();
    let here = Path::new(".");
    let warehouse = match crate::warehouse::connect(&source_name, &r.source.spec, &r.secrets, here).await {
        Ok(w) => w,
        Err(e) => return SyncReport::failed_early(Timestamp::now(), e.reason(), e.to_string()),
    };
    let destination = match crate::destination::build(&r.destination.name_any(), &r.destination.spec, &r.secrets, here) {
        Ok(d) => d,
        Err(e) => return SyncReport::failed_early(Timestamp::now(), reason::INVALID_SPEC, e.to_string()),
    };
    let watcher = tokio::spawn(writes::watch_for_stop(syncs.clone(), name.to_string(), stop.clone()));
    let observer = StatusWriter {
        syncs: syncs.clone(),
        name: name.to_string(),
        throttle: engine::Throttle::new(Duration::from_secs(5)),
        stop: stop.clone(),
    };
    let report = engine::run_sync(&r.ctx, warehouse.as_ref(), destination, &observer, &stop).await;
    watcher.abort();
    report
}

/// Follows the Sync's references (never across namespaces) and reads the Secrets.
async fn resolve(client: &Client, ns: &str, sync: &Sync) -> Result<Resolved, (&'static str, String)> {
    let missing = |kind: &str, name: &str, e: kube::Error| {
        (reason::REFERENCE_NOT_FOUND, format!("{kind} {name:?} cannot be read in namespace {ns:?}: {}", short(&e)))
    };
    let mapping_name = &sync.spec.mapping_ref.name;
    let mapping: Mapping = Api::namespaced(client.clone(), ns).get(mapping_name).await.map_err(|e| missing("Mapping", mapping_name, e))?;
    let model_name = &mapping.spec.model_ref.name;
    let model: Model = Api::namespaced(client.clone(), ns).get(model_name).await.map_err(|e| missing("Model", model_name, e))?;
    let source_name = &model.spec.source_ref.name;
    let source: Source = Api::namespaced(client.clone(), ns).get(source_name).await.map_err(|e| missing("Source", source_name, e))?;
    let dest_name = &mapping.spec.destination_ref.name;
    let destination: Destination =
        Api::namespaced(client.clone(), ns).get(dest_name).await.map_err(|e| missing("Destination", dest_name, e))?;
    let action = crate::destination::find_action(dest_name, &destination.spec, &mapping.spec.action)
        .map_err(|message| (reason::INVALID_SPEC, message))?;
    let mut refs = crate::warehouse::secret_refs(&source.spec);
    refs.extend(crate::destination::secret_refs(&destination.spec));
    let secrets = crate::controller::secrets::read(client, ns, &refs).await?;
    let ctx = SyncContext {
        namespace: ns.to_string(),
        sync_name: sync.name_any(),
        mapping_name: mapping.name_any(),
        mapping_uid: mapping.uid().unwrap_or_default(),
        mapping: mapping.spec.clone(),
        model_name: model.name_any(),
        model: model.spec.clone(),
        destination_name: destination.name_any(),
        action,
        trigger: sync.spec.trigger,
        replay_of: sync.spec.replay_of.clone(),
        lock_wait: engine::DEFAULT_LOCK_WAIT,
        rate_share: engine::Share::per_admitted_sync(&destination.spec),
    };
    Ok(Resolved { ctx, source, destination, secrets })
}

/// Writes progress to the Sync's status at most every five seconds.
struct StatusWriter {
    syncs: Api<Sync>,
    name: String,
    throttle: engine::Throttle,
    /// Canceled when the Sync turns out finished by someone else.
    stop: CancellationToken,
}

#[async_trait]
impl Observer for StatusWriter {
    async fn progress(&self, p: &Progress) {
        if !self.throttle.ready() {
            return;
        }
        match write_status(&self.syncs, &self.name, |current| status::in_progress(current, p)).await {
            Ok(Written::Done) => {}
            Ok(Written::AlreadyFinished(phase)) => {
                tracing::info!(sync = %self.name, %phase, "the Sync was finished by someone else; stopping at the next batch boundary");
                self.stop.cancel();
            }
            Err(e) => tracing::warn!(sync = %self.name, error = %short(&e), "could not write progress"),
        }
    }
}
