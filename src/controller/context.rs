//! What every reconciler shares.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;

use super::events::{EventRecorder, EventSpec};
use super::job::WorkerSettings;
use super::mapping_plan::PlannedEvent;
use super::metrics::Metrics;
use super::request_gate::RequestGate;

/// The one field manager of every write retl makes.
pub const FIELD_MANAGER: &str = "retl-operator";

pub struct Context {
    pub client: Client,
    pub worker: WorkerSettings,
    pub metrics: Arc<Metrics>,
    /// The HTTP client alerts are posted with (Slack webhooks).
    pub http: reqwest::Client,
    /// Held while a Sync of a limited Destination is admitted and its Job
    /// created (see `admission`).
    pub admission: tokio::sync::Mutex<()>,
    /// Slots for the controllers' API requests: a Sync's creation first.
    pub requests: RequestGate,
    recorder: EventRecorder,
}

impl Context {
    pub fn new(client: Client, worker: WorkerSettings, metrics: Arc<Metrics>, instance: Option<String>, http: reqwest::Client) -> Context {
        let instance = instance.unwrap_or_else(|| FIELD_MANAGER.into());
        Context {
            recorder: EventRecorder::new(client.clone(), FIELD_MANAGER, &instance),
            client,
            worker,
            metrics,
            http,
            admission: Default::default(),
            requests: RequestGate::default(),
        }
    }

    /// Records an Event (the in-app notification channel) about `object`,
    /// and `related` when it concerns a second object (a Sync, on its
    /// Mapping); a failure to record one is logged, never fatal.
    pub async fn event(&self, object: &ObjectReference, e: &PlannedEvent, action: &str, related: Option<&ObjectReference>) {
        let spec = EventSpec {
            warning: e.warning,
            reason: e.reason.clone(),
            action: action.into(),
            note: e.message.clone(),
            related: related.cloned(),
        };
        if let Err(err) = self.requests.routine(self.recorder.publish(object, &spec)).await {
            tracing::warn!(reason = %e.reason, error = %super::secrets::short(&err), "could not record an Event");
        }
    }
}
