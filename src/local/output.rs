//! `-o json|yaml` of `retl run`, `plan` and `history`: for scripts and CI.
//! Syncs print as `kubectl get syncs -o json` prints them (a List of Sync
//! objects whose status is the Sync status the operator writes), so a
//! script reads a local run and a cluster's Syncs alike.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::{PlanOutcome, Planned, Ran};
use crate::api::conditions::label;
use crate::api::{ObjectRef, Sync, SyncSpec, SyncStatus};

/// An output format of the local commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// The Syncs as a `v1` List of `Sync` objects.
pub fn syncs(ran: &[Ran]) -> Value {
    let items: Vec<Value> = ran.iter().map(sync_object).collect();
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

fn sync_object(r: &Ran) -> Value {
    let mut sync = Sync::new(&r.name, SyncSpec { mapping_ref: ObjectRef { name: r.mapping.clone() }, trigger: r.trigger, replay_of: None });
    sync.metadata.namespace = Some(r.namespace.clone());
    sync.metadata.labels = Some([(label::MAPPING.to_string(), r.mapping.clone())].into());
    let mut status = crate::worker::status::finished(SyncStatus::default(), &r.report, None, Timestamp::now());
    if !r.report.phase.is_finished() {
        // A sync still running (seen in history) has no Complete/Failed yet.
        status.conditions.clear();
        status.completion_time = None;
    }
    sync.status = Some(status);
    serde_json::to_value(&sync).unwrap_or(Value::Null)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanView<'a> {
    namespace: &'a str,
    mapping: &'a str,
    /// `Planned`, `Disabled` or `CannotPlan`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extracted: Option<&'a crate::api::ExtractedCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    would_send: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    would_skip: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    would_reject: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guard: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    samples: Vec<Value>,
}

/// What `retl plan` found, one object per Mapping.
pub fn plans(planned: &[Planned]) -> Value {
    let items: Vec<Value> = planned
        .iter()
        .map(|p| {
            let mut view = PlanView {
                namespace: &p.namespace,
                mapping: &p.mapping,
                result: "Planned",
                error: None,
                extracted: None,
                would_send: None,
                would_skip: None,
                would_reject: Vec::new(),
                guard: None,
                samples: Vec::new(),
            };
            match &p.outcome {
                PlanOutcome::Disabled => view.result = "Disabled",
                PlanOutcome::CannotPlan(e) => {
                    view.result = "CannotPlan";
                    view.error = Some(e);
                }
                PlanOutcome::Plan(r) => {
                    view.extracted = Some(&r.extracted);
                    view.would_send = Some(json!({"added": r.to_send[0], "updated": r.to_send[1], "deleted": r.to_send[2]}));
                    view.would_skip = Some(r.skipped);
                    view.would_reject = r.would_fail.iter().map(|(code, n)| json!({"code": code, "count": n})).collect();
                    view.guard = r.guard.as_deref();
                    view.samples =
                        r.samples.iter().map(|(key, kind, payload)| json!({"key": key, "operation": kind, "payload": payload})).collect();
                }
            }
            serde_json::to_value(&view).unwrap_or(Value::Null)
        })
        .collect();
    json!({ "items": items })
}

/// `doc` as JSON (pretty, with a final newline) or YAML.
pub fn render(doc: &Value, format: Format) -> String {
    match format {
        Format::Yaml => serde_yaml_ng::to_string(doc).unwrap_or_default(),
        _ => format!("{}\n", serde_json::to_string_pretty(doc).unwrap_or_default()),
    }
}
