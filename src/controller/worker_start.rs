//! Whether a sync's worker has started, and if not, why: read from its
//! Job's pods (a container's waiting reason, an unschedulable pod) or, when
//! no pod could be created, from the Job's `FailedCreate` Events (a missing
//! ServiceAccount, a quota). Only asked while a Sync is Pending.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::sync_plan::JobState;

/// `JobState::Waiting` when the Job runs but no pod of it has started.
pub async fn job_state(client: &Client, job: &Job) -> Result<JobState, kube::Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let since = job.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or_else(jiff::Timestamp::now);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let list = pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"))).await?;
    if list.items.iter().any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|ph| ph != "Pending")) {
        return Ok(JobState::Running);
    }
    let why = match list.items.first() {
        Some(pod) => pending_pod(pod),
        None => failed_create(client, &ns, &name).await?,
    };
    Ok(JobState::Waiting { since, why })
}

/// What holds a Pending pod: a container's waiting reason and message, or its scheduling.
fn pending_pod(pod: &Pod) -> String {
    let name = pod.name_any();
    let status = pod.status.clone().unwrap_or_default();
    let waiting = status.container_statuses.iter().flatten().find_map(|c| c.state.as_ref().and_then(|s| s.waiting.clone()));
    if let Some(w) = waiting.filter(|w| w.reason.as_deref() != Some("ContainerCreating")) {
        return format!("pod {name}: {}: {}", w.reason.unwrap_or_default(), w.message.unwrap_or_default());
    }
    let unscheduled = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    match unscheduled {
        Some(c) => {
            format!("pod {name} is not scheduled: {}: {}", c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
        }
        None => format!("pod {name} is still Pending"),
    }
}

/// The latest `FailedCreate` Event of the Job, or that no pod exists yet.
async fn failed_create(client: &Client, ns: &str, job: &str) -> Result<String, kube::Error> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={job},reason=FailedCreate"))).await?;
    let latest = list.items.iter().max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0)).and_then(|e| e.message.clone());
    Ok(match latest {
        Some(message) => format!("Job {job} cannot create its pod: {message}"),
        None => format!("Job {job} has no pod yet"),
    })
}
