//! The shared budget of a Destination, on the operator's side: at most
//! `maxConcurrentSyncs` of its Syncs have a worker at once. A Sync's Job
//! carries its Destination's label, so the running ones are counted from
//! the API (not a cache that may lag), under one lock held until the new
//! Job is created: two Syncs reconciled side by side never both take the
//! last slot. (Only the leader reconciles, so one process decides.)

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::Store;
use tokio::sync::MutexGuard;

use super::context::Context;
use super::error::ControllerError;
use super::naming;
use super::sync_plan::{Admission, JobState};
use crate::api::conditions::label;
use crate::api::{Destination, Mapping};

/// Whether a Sync of `mapping` may start its worker now. When admitted on
/// a limited Destination, the returned guard must be held until its Job
/// exists.
pub async fn check<'a>(
    ctx: &'a Context,
    ns: &str,
    mapping: &Mapping,
    destinations: &Store<Destination>,
) -> Result<(Admission, Option<MutexGuard<'a, ()>>), ControllerError> {
    let name = &mapping.spec.destination_ref.name;
    // Its limit, from the watch cache (a limit just set applies once the
    // cache has it); the running Jobs are counted from the API.
    let Some(destination) = super::caches::get(destinations, ns, name) else {
        // The worker reports the missing Destination.
        return Ok((Admission::Unlimited, None));
    };
    let Some(slots) = destination.spec.sync_slots() else { return Ok((Admission::Unlimited, None)) };
    let guard = ctx.admission.lock().await;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    // Only retl's Jobs (they carry the Sync label), of this Destination.
    let selector = format!("{},{}={}", super::job::SYNC_LABEL, label::DESTINATION, naming::label_value(name));
    let listed = ctx.requests.routine(jobs.list(&ListParams::default().labels(&selector))).await.map_err(ControllerError::api(
        "list",
        "Jobs of Destination",
        name,
    ))?;
    let running: Vec<String> =
        listed.items.iter().filter(|j| JobState::of(Some(j)) == JobState::Running).filter_map(|j| j.metadata.name.clone()).collect();
    if (running.len() as u64) < u64::from(slots) {
        return Ok((Admission::Admitted, Some(guard)));
    }
    let why = format!(
        "Destination {name:?} runs at most {slots} Sync{} at a time (maxConcurrentSyncs{}); running: {}; this one starts when one of them finishes",
        if slots == 1 { "" } else { "s" },
        if destination.spec.max_concurrent_syncs.is_none() { ", 1 with a rateLimit" } else { "" },
        running.join(", ")
    );
    Ok((Admission::Waiting(why), None))
}
