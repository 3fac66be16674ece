//! The Mapping controller, like CronJob's: dereference (Model, Destination,
//! Syncs) → validate → plan (pure, see mapping_plan) → apply (create, cancel
//! and delete Syncs) → update status (only when it changed).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, FIELD_MANAGER};
use super::error::ControllerError;
use super::mapping_plan::{Problem, SyncView, plan, references};
use super::naming;
use crate::api::conditions::{annotation, label, reason};
use crate::api::{Destination, Mapping, Model, ObjectRef, Source, Sync, SyncSpec};
use crate::fieldmap::FieldMapper;

pub async fn reconcile(cached: Arc<Mapping>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let client = ctx.client.clone();
    let syncs_api: Api<Sync> = Api::namespaced(client.clone(), &ns);
    let mappings: Api<Mapping> = Api::namespaced(client.clone(), &ns);
    // Fresh from the API: the cache can be older than this controller's own
    // last status write, and a request token or reset read from it would be
    // handled twice.
    let Some(mapping) = mappings.get_opt(&name).await.map_err(ControllerError::api("get", "Mapping", &name))? else {
        return Ok(Action::await_change());
    };

    // Dereference.
    let problem = validate(&client, &ns, &mapping).await?;
    // The label holds the name shortened to a label value; the spec tells
    // apart two long names whose shortened values could collide.
    let syncs = syncs_api
        .list(&ListParams::default().labels(&format!("{}={}", label::MAPPING, naming::label_value(&name))))
        .await
        .map_err(ControllerError::api("list", "Sync", &name))?;
    let views: Vec<SyncView> = syncs
        .items
        .iter()
        .filter(|s| s.spec.mapping_ref.name == name)
        .map(|s| SyncView {
            name: s.name_any(),
            phase: s.status.as_ref().and_then(|st| st.phase),
            created: s.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now),
            started: s.status.as_ref().and_then(|st| st.start_time.as_ref()).map(|t| t.0),
        })
        .collect();

    // Plan, without a client.
    let p = plan(&mapping, &views, problem, Timestamp::now());

    // Apply.
    if let Some(new) = &p.create {
        let mut sync =
            Sync::new(&new.name, SyncSpec { mapping_ref: ObjectRef { name: name.clone() }, trigger: new.trigger, replay_of: None });
        sync.metadata.namespace = Some(ns.clone());
        sync.metadata.labels = Some(
            [
                (label::MAPPING.to_string(), naming::label_value(&name)),
                (label::MODEL.to_string(), naming::label_value(&mapping.spec.model_ref.name)),
                (label::DESTINATION.to_string(), naming::label_value(&mapping.spec.destination_ref.name)),
                (label::STATUS.to_string(), "pending".to_string()),
            ]
            .into(),
        );
        sync.metadata.owner_references = mapping.controller_owner_ref(&()).map(|o| vec![o]);
        match syncs_api.create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &sync).await {
            Ok(_) => {}
            // The name is the request: AlreadyExists means it was done.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(ControllerError::api("create", "Sync", &new.name)(e)),
        }
    }
    for running in &p.cancel {
        let token = Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {annotation::CANCEL: token}}});
        syncs_api
            .patch(running, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(ControllerError::api("cancel", "Sync", running))?;
    }
    for old in &p.delete {
        match syncs_api.delete(old, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(ControllerError::api("delete", "Sync", old)(e)),
        }
    }
    let reference = mapping.object_ref(&());
    for e in &p.events {
        ctx.event(&reference, e, "Schedule", None).await;
    }

    // Update status, only when it changed.
    if mapping.status.as_ref() != Some(&p.status) {
        let patch = super::status::status_patch(mapping.status.as_ref(), &p.status);
        mappings.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(ControllerError::api(
            "update status of",
            "Mapping",
            &name,
        ))?;
    }
    Ok(match p.requeue_after_seconds {
        Some(s) => Action::requeue(Duration::from_secs(s)),
        None => Action::requeue(Duration::from_secs(600)),
    })
}

/// Why the Mapping is not ready, if it is not: a missing Model or
/// Destination, an unknown action or fields that do not fit (these block
/// Syncs), or a Model, Source or Destination that is not Ready.
async fn validate(client: &kube::Client, ns: &str, m: &Mapping) -> Result<Option<Problem>, ControllerError> {
    let models: Api<Model> = Api::namespaced(client.clone(), ns);
    let dests: Api<Destination> = Api::namespaced(client.clone(), ns);
    let sources: Api<Source> = Api::namespaced(client.clone(), ns);
    let missing = |kind: &str, n: &str| {
        Some(Problem::blocking(
            reason::REFERENCE_NOT_FOUND,
            format!("{kind} {n:?} does not exist in namespace {ns:?}; create it there (references never cross namespaces)"),
        ))
    };
    let model_name = &m.spec.model_ref.name;
    let Some(model) = models.get_opt(model_name).await.map_err(ControllerError::api("get", "Model", model_name))? else {
        return Ok(missing("Model", model_name));
    };
    let dest_name = &m.spec.destination_ref.name;
    let Some(dest) = dests.get_opt(dest_name).await.map_err(ControllerError::api("get", "Destination", dest_name))? else {
        return Ok(missing("Destination", dest_name));
    };
    let action = match crate::destination::find_action(dest_name, &dest.spec, &m.spec.action) {
        Ok(action) => action,
        Err(message) => return Ok(Some(Problem::blocking(reason::INVALID_SPEC, message))),
    };
    let columns: Vec<String> = model.status.as_ref().map(|s| s.columns.iter().map(|c| c.name.clone()).collect()).unwrap_or_default();
    if columns.is_empty() {
        return Ok(Some(Problem::blocking(
            reason::REFERENCE_NOT_FOUND,
            format!("Model {model_name:?} is not ready yet (its columns are not known)"),
        )));
    }
    if let Err(e) = FieldMapper::new(&m.spec.fields, &action, m.spec.skip_nulls, &columns) {
        return Ok(Some(Problem::blocking(reason::INVALID_SPEC, e.to_string())));
    }
    let source_name = &model.spec.source_ref.name;
    let source = sources.get_opt(source_name).await.map_err(ControllerError::api("get", "Source", source_name))?;
    Ok(references(&model, source.as_ref(), &dest))
}
