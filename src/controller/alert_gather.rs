//! What a SyncAlert has to consider: the finished Syncs of the Mappings it
//! selects, in completion order, each with what an alert says about it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ListParams};
use kube::core::Selector;
use kube::{Client, Resource, ResourceExt};

use super::error::ControllerError;
use crate::alert::ledger::Finished;
use crate::alert::message::SyncSummary;
use crate::api::conditions::label;
use crate::api::{Mapping, Model, Sync};

/// A finished Sync to consider.
pub struct Candidate {
    pub mapping: String,
    pub finished: Finished,
    pub summary: SyncSummary,
    pub sync_ref: ObjectReference,
}

/// The finished Syncs of the Mappings `selector` picks in `ns`, oldest first.
pub async fn gather(client: &Client, ns: &str, selector: &Selector) -> Result<Vec<Candidate>, ControllerError> {
    let mappings: Api<Mapping> = Api::namespaced(client.clone(), ns);
    let mappings =
        mappings.list(&ListParams::default().labels_from(selector)).await.map_err(ControllerError::api("list", "Mappings", ns))?;
    let models: Api<Model> = Api::namespaced(client.clone(), ns);
    let models = models.list(&ListParams::default()).await.map_err(ControllerError::api("list", "Models", ns))?;
    let sources: BTreeMap<String, String> = models.items.iter().map(|m| (m.name_any(), m.spec.source_ref.name.clone())).collect();
    let by_name: BTreeMap<String, &Mapping> = mappings.items.iter().map(|m| (m.name_any(), m)).collect();
    let syncs: Api<Sync> = Api::namespaced(client.clone(), ns);
    let syncs = syncs.list(&ListParams::default().labels(label::MAPPING)).await.map_err(ControllerError::api("list", "Syncs", ns))?;
    let mut out: Vec<Candidate> = syncs
        .items
        .iter()
        .filter_map(|s| {
            let mapping = by_name.get(s.labels().get(label::MAPPING)?)?;
            candidate(s, mapping, &sources)
        })
        .collect();
    out.sort_by(|a, b| (a.finished.completed, &a.finished.sync).cmp(&(b.finished.completed, &b.finished.sync)));
    Ok(out)
}

/// A finished Sync as alerting sees it; `None` while it runs.
pub fn candidate(sync: &Sync, mapping: &Mapping, sources: &BTreeMap<String, String>) -> Option<Candidate> {
    let st = sync.status.as_ref()?;
    let phase = st.phase.filter(|p| p.is_finished())?;
    let completed = st.completion_time.as_ref()?.0;
    let ns = sync.namespace().unwrap_or_default();
    let name = sync.name_any();
    let model = mapping.spec.model_ref.name.clone();
    let summary = SyncSummary {
        namespace: ns.clone(),
        sync: name.clone(),
        mapping: mapping.name_any(),
        source: sources.get(&model).cloned().unwrap_or_else(|| "(unknown)".into()),
        model,
        destination: mapping.spec.destination_ref.name.clone(),
        action: mapping.spec.action.clone(),
        phase,
        reason: st.reason.clone(),
        message: st.message.clone(),
        started: st.start_time.as_ref().map(|t| t.0),
        duration: st.duration.clone(),
        extracted: st.extracted.clone(),
        loaded: st.loaded.clone(),
        errors: st.errors.clone(),
        see_more: vec![
            format!("kubectl describe sync {name} -n {ns}"),
            format!("kubectl get sync {name} -n {ns} -o jsonpath='{{.status.failedRecords}}'"),
        ],
    };
    Some(Candidate {
        mapping: mapping.name_any(),
        finished: Finished { sync: name, phase, completed },
        summary,
        sync_ref: sync.object_ref(&()),
    })
}
