//! `retl worker --sync NAMESPACE/NAME`: the entrypoint of a sync's Job. It
//! reads the Sync, its Mapping, Model, Source, Destination and Secrets
//! through the API, runs the engine, and writes progress and the outcome to
//! the Sync's status. It is the only part of the operator that talks SQL and
//! sends records (through the engine).

mod status;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::api::conditions::{annotation, reason};
use crate::api::{Destination, Mapping, Model, Source, Sync, SyncPhase, SyncStatus};
use crate::controller::secrets::short;
use crate::engine::{self, Observer, Progress, SyncContext, SyncReport};
use crate::warehouse::SecretValues;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("--sync must be NAMESPACE/NAME, got {0:?}")]
    Usage(String),
    #[error("cannot read or write Sync {sync}: {source}")]
    Api { sync: String, source: kube::Error },
}

/// Runs one Sync to its end; returns its final phase.
pub async fn run(client: Client, target: &str) -> Result<SyncPhase, WorkerError> {
    let (namespace, name) = target.split_once('/').ok_or_else(|| WorkerError::Usage(target.to_string()))?;
    let syncs: Api<Sync> = Api::namespaced(client.clone(), namespace);
    let api_err = |source| WorkerError::Api { sync: target.to_string(), source };
    let sync = syncs.get(name).await.map_err(api_err)?;
    if let Some(phase) = sync.status.as_ref().and_then(|s| s.phase).filter(|p| p.is_finished()) {
        tracing::info!(sync = target, %phase, "the sync already finished; nothing to do");
        return Ok(phase);
    }
    let started = Timestamp::now();
    write_status(&syncs, name, |current| {
        let started = SyncStatus { start_time: Some(Time(started)), ..current };
        status::in_progress(started, &Progress::default())
    })
    .await
    .map_err(api_err)?;

    let report = match resolve(&client, namespace, &sync).await {
        Err((why, message)) => SyncReport::failed_early(started, why, message),
        Ok(resolved) => execute(&syncs, name, resolved).await,
    };
    let generation = sync.metadata.generation;
    write_status(&syncs, name, |current| status::finished(current, &report, generation, Timestamp::now())).await.map_err(api_err)?;
    Ok(report.phase)
}

/// Everything a sync needs, read from the API.
struct Resolved {
    ctx: SyncContext,
    source: Source,
    destination: Destination,
    secrets: SecretValues,
}

async fn execute(syncs: &Api<Sync>, name: &str, r: Resolved) -> SyncReport {
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
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(watch_cancel(syncs.clone(), name.to_string(), cancel.clone()));
    let observer = StatusWriter { syncs: syncs.clone(), name: name.to_string(), throttle: engine::Throttle::new(Duration::from_secs(5)) };
    let report = engine::run_sync(&r.ctx, warehouse.as_ref(), destination, &observer, &cancel).await;
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
    let action = destination
        .spec
        .actions
        .iter()
        .find(|a| a.name == mapping.spec.action)
        .cloned()
        .ok_or_else(|| (reason::INVALID_SPEC, format!("Destination {dest_name:?} has no action {:?}", mapping.spec.action)))?;
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
    };
    Ok(Resolved { ctx, source, destination, secrets })
}

/// Updates the status from what the server has now (so fields the
/// controller owns, like handled request tokens, stay as they are), as a
/// merge patch that also clears what the update cleared. Skips the write
/// when nothing changed.
async fn write_status(syncs: &Api<Sync>, name: &str, update: impl FnOnce(SyncStatus) -> SyncStatus) -> Result<(), kube::Error> {
    let current = syncs.get_status(name).await?.status;
    let new = update(current.clone().unwrap_or_default());
    if current.as_ref() == Some(&new) {
        return Ok(());
    }
    let patch = crate::controller::status::status_patch(current.as_ref(), &new);
    syncs.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

/// Stops the sync at the next batch boundary once `retl.dev/cancel` appears.
async fn watch_cancel(syncs: Api<Sync>, name: String, cancel: CancellationToken) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(s) = syncs.get(&name).await
            && s.annotations().contains_key(annotation::CANCEL)
        {
            tracing::info!(sync = %name, "cancel requested; stopping at the next batch boundary");
            cancel.cancel();
            return;
        }
    }
}

/// Writes progress to the Sync's status at most every five seconds.
struct StatusWriter {
    syncs: Api<Sync>,
    name: String,
    throttle: engine::Throttle,
}

#[async_trait]
impl Observer for StatusWriter {
    async fn progress(&self, p: &Progress) {
        if !self.throttle.ready() {
            return;
        }
        if let Err(e) = write_status(&self.syncs, &self.name, |current| status::in_progress(current, p)).await {
            tracing::warn!(sync = %self.name, error = %short(&e), "could not write progress");
        }
    }
}
