//! What every reconciler shares.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::job::WorkerSettings;
use super::mapping_plan::PlannedEvent;
use super::metrics::Metrics;

/// The one field manager of every write retl makes.
pub const FIELD_MANAGER: &str = "retl-operator";

pub struct Context {
    pub client: Client,
    pub worker: WorkerSettings,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
}

impl Context {
    pub fn new(client: Client, worker: WorkerSettings, metrics: Arc<Metrics>, instance: Option<String>) -> Context {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance };
        Context { recorder: Recorder::new(client.clone(), reporter), client, worker, metrics }
    }

    /// Records an Event (the in-app notification channel); a failure to
    /// record one is logged, never fatal.
    pub async fn event(&self, object: &ObjectReference, e: &PlannedEvent, action: &str) {
        let ev = Event {
            type_: if e.warning { EventType::Warning } else { EventType::Normal },
            reason: e.reason.clone(),
            note: Some(e.message.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&ev, object).await {
            tracing::warn!(reason = %e.reason, error = %err, "could not record an Event");
        }
    }
}
