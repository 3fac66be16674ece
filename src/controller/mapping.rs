//! The Mapping controller, like CronJob's: dereference (Model, Destination,
//! Syncs, from the watch caches) → validate → plan (pure, see mapping_plan)
//! → apply (create, cancel and delete Syncs) → update status (only when it
//! changed).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::caches::{Caches, get};
use super::context::{Context, FIELD_MANAGER};
use super::error::ControllerError;
use super::mapping_plan::{Problem, SyncView, plan, references};
use crate::api::conditions::{annotation, reason};
use crate::api::{Mapping, Sync, SyncPhase};
use crate::fieldmap::FieldMapper;

pub async fn reconcile(cached: Arc<Mapping>, ctx: Arc<Context>, caches: Caches) -> Result<Action, ControllerError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let client = ctx.client.clone();
    let syncs_api: Api<Sync> = Api::namespaced(client.clone(), &ns);
    let mappings: Api<Mapping> = Api::namespaced(client.clone(), &ns);
    caches.ready_for_mappings().await;
    // The cached Mapping when it holds this operator's last write to it,
    // else fresh from the API: a request token or reset read from a copy
    // older than that write would be handled twice.
    let mapping = if caches.mapping_writes.holds_own_writes(cached.as_ref()) {
        cached.as_ref().clone()
    } else {
        let read = ctx.requests.urgent(mappings.get_opt(&name)).await;
        let Some(fresh) = read.map_err(ControllerError::api("get", "Mapping", &name))? else {
            return Ok(Action::await_change());
        };
        caches.mapping_writes.record(&fresh);
        fresh
    };

    // Dereference, from the caches.
    let problem = validate(&caches, &ns, &mapping);
    let views = sync_views(&ctx, &caches, &syncs_api, &ns, &mapping).await?;

    // Plan, without a client.
    let p = plan(&mapping, &views, problem, Timestamp::now());

    // Apply: the Sync first (at a tick it is what 1,000 Mappings wait for:
    // its requests are urgent), then the status that records its tick, then
    // the rest.
    if let Some(new) = &p.create {
        let sync = new.object(&mapping);
        let post = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match ctx.requests.urgent(syncs_api.create(&post, &sync)).await {
            Ok(created) => caches.sync_writes.record(&created),
            // The name is the request: AlreadyExists means it was done.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(ControllerError::api("create", "Sync", &new.name)(e)),
        }
    }
    for running in &p.cancel {
        let token = Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {annotation::CANCEL: token}}});
        ctx.requests
            .routine(syncs_api.patch(running, &PatchParams::default(), &Patch::Merge(&patch)))
            .await
            .map_err(ControllerError::api("cancel", "Sync", running))?;
    }
    // Update status (only when it changed) and record the Events, side by
    // side: at a tick, a thousand reconciles wait on these round trips.
    let status = async {
        if mapping.status.as_ref() != Some(&p.status) {
            let patch = super::status::status_patch(mapping.status.as_ref(), &p.status);
            let written = ctx
                .requests
                .routine(mappings.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)))
                .await
                .map_err(ControllerError::api("update status of", "Mapping", &name))?;
            caches.mapping_writes.record(&written);
        }
        Ok::<(), ControllerError>(())
    };
    let reference = mapping.object_ref(&());
    let events = async {
        for e in &p.events {
            ctx.event(&reference, e, "Schedule", None).await;
        }
    };
    futures::join!(status, events).0?;
    for old in &p.delete {
        match ctx.requests.routine(syncs_api.delete(old, &DeleteParams::background())).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(ControllerError::api("delete", "Sync", old)(e)),
        }
    }
    Ok(Action::requeue(p.requeue_after.unwrap_or(Duration::from_secs(600))))
}

/// The Mapping's Syncs as cached, and the last one its status names if the
/// cache does not show that one yet while it may still run (created by the
/// reconcile before this one, its watch event on its way): it must count,
/// or concurrencyPolicy Forbid could start a second Sync beside it.
async fn sync_views(
    ctx: &Context,
    caches: &Caches,
    syncs_api: &Api<Sync>,
    ns: &str,
    mapping: &Mapping,
) -> Result<Vec<SyncView>, ControllerError> {
    let name = mapping.name_any();
    let view = |s: &Sync| SyncView {
        name: s.name_any(),
        phase: s.status.as_ref().and_then(|st| st.phase),
        created: s.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now),
        started: s.status.as_ref().and_then(|st| st.start_time.as_ref()).map(|t| t.0),
    };
    let mut views: Vec<SyncView> = caches.syncs_of(ns, &name).iter().map(|s| view(s)).collect();
    let unseen = mapping
        .status
        .as_ref()
        .and_then(|s| s.last_sync.as_ref())
        .filter(|last| !last.phase.is_some_and(SyncPhase::is_finished) && !views.iter().any(|v| v.name == last.name));
    if let Some(last) = unseen
        && let Some(s) =
            ctx.requests.urgent(syncs_api.get_opt(&last.name)).await.map_err(ControllerError::api("get", "Sync", &last.name))?
        && s.spec.mapping_ref.name == name
    {
        views.push(view(&s));
    }
    Ok(views)
}

/// Why the Mapping is not ready, if it is not: a missing Model or
/// Destination, an unknown action or fields that do not fit (these block
/// Syncs), or a Model, Source or Destination that is not Ready.
fn validate(caches: &Caches, ns: &str, m: &Mapping) -> Option<Problem> {
    let missing = |kind: &str, n: &str| {
        Some(Problem::blocking(
            reason::REFERENCE_NOT_FOUND,
            format!("{kind} {n:?} does not exist in namespace {ns:?}; create it there (references never cross namespaces)"),
        ))
    };
    let model_name = &m.spec.model_ref.name;
    let Some(model) = get(&caches.models, ns, model_name) else {
        return missing("Model", model_name);
    };
    let dest_name = &m.spec.destination_ref.name;
    let Some(dest) = get(&caches.destinations, ns, dest_name) else {
        return missing("Destination", dest_name);
    };
    let action = match crate::destination::find_action(dest_name, &dest.spec, &m.spec.action) {
        Ok(action) => action,
        Err(message) => return Some(Problem::blocking(reason::INVALID_SPEC, message)),
    };
    let columns: Vec<String> = model.status.as_ref().map(|s| s.columns.iter().map(|c| c.name.clone()).collect()).unwrap_or_default();
    if columns.is_empty() {
        return Some(Problem::blocking(
            reason::REFERENCE_NOT_FOUND,
            format!("Model {model_name:?} is not ready yet (its columns are not known)"),
        ));
    }
    if let Err(e) = FieldMapper::new(&m.spec.fields, &action, m.spec.skip_nulls, &columns) {
        return Some(Problem::blocking(reason::INVALID_SPEC, e.to_string()));
    }
    let source = get(&caches.sources, ns, &model.spec.source_ref.name);
    references(&model, source.as_deref(), &dest)
}
