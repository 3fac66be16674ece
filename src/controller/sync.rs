//! The Sync controller, like the Job controller's view of a CronJob's Jobs:
//! dereference (the Job; the Mapping, from the watch cache) → plan (pure, see sync_plan) → apply (labels,
//! the Job, a replay) → update status (only when it changed). It turns a
//! worker's death, deletion or deadline into a Failed Sync.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::caches::{Caches, get};
use super::context::{Context, FIELD_MANAGER};
use super::error::ControllerError;
use super::metrics::{RecordLabels, SyncLabels};
use super::sync_plan::{Admission, JobState, plan, wants_worker};
use super::{job, naming};
use crate::api::conditions::label;
use crate::api::{Mapping, Sync, SyncSpec, SyncTrigger};

pub async fn reconcile(cached: Arc<Sync>, ctx: Arc<Context>, caches: Caches) -> Result<Action, ControllerError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let client = ctx.client.clone();
    let syncs: Api<Sync> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    caches.ready_for_syncs().await;
    // The Job first (a finished Sync needs none): as cached, or from the
    // API when the cache does not have it (yet: it may have been created a
    // moment ago; or it is gone). Then the Sync: as cached when the cache
    // holds this operator's last write to it and the worker is not done,
    // else fresh from the API. The worker writes its result before it
    // exits, so a Sync read after its Job finished shows that result, while
    // the cache can lag behind (and judging a finished Job against a stale
    // InProgress status would fail a sync that succeeded); a copy older
    // than this operator's own write would announce a phase twice.
    let cached_status = cached.status.as_ref();
    let running = !cached_status.and_then(|s| s.phase).is_some_and(|p| p.is_finished());
    let job_name = naming::job_name(&name);
    let job = match get(&caches.jobs, &ns, &job_name) {
        _ if !running => None,
        Some(j) => Some(j.as_ref().clone()),
        None => ctx.requests.routine(jobs.get_opt(&job_name)).await.map_err(ControllerError::api("get", "Job", &job_name))?,
    };
    let worker_done = match JobState::of(job.as_ref()) {
        JobState::Succeeded | JobState::Failed { .. } => true,
        JobState::NotFound => cached_status.is_some_and(|s| s.job_name.is_some()),
        _ => false,
    };
    let sync = if caches.sync_writes.holds_own_writes(cached.as_ref()) && !(running && worker_done) {
        cached.as_ref().clone()
    } else {
        match ctx.requests.routine(syncs.get_opt(&name)).await.map_err(ControllerError::api("get", "Sync", &name))? {
            Some(fresh) => {
                caches.sync_writes.record(&fresh);
                fresh
            }
            None => return Ok(Action::await_change()),
        }
    };
    ctx.metrics.reconciles.get_or_create(&super::metrics::ControllerLabels { controller: "sync".into() }).inc();

    // Dereference: the Mapping as cached, or from the API when the cache
    // does not have it (yet: it may have been created a moment ago).
    let mapping_name = &sync.spec.mapping_ref.name;
    let mapping = match get(&caches.mappings, &ns, mapping_name) {
        Some(m) => Some(m.as_ref().clone()),
        None => {
            let mappings = Api::<Mapping>::namespaced(client.clone(), &ns);
            ctx.requests.routine(mappings.get_opt(mapping_name)).await.map_err(ControllerError::api("get", "Mapping", mapping_name))?
        }
    };

    // A Pending Sync's running Job: has its worker started, and if not, why?
    // Its pods are looked at once the startup deadline has passed: before
    // that the answer changes nothing, and a thousand Pending Syncs would
    // list pods (and Events) on every change of their Jobs.
    let mut job_state = JobState::of(job.as_ref());
    let mut startup_check = None;
    let pending = sync.status.as_ref().and_then(|s| s.phase) == Some(crate::api::SyncPhase::Pending);
    if pending
        && job_state == JobState::Running
        && let Some(j) = &job
    {
        let limit = mapping.as_ref().and_then(|m| m.spec.startup_deadline_seconds).unwrap_or(crate::api::DEFAULT_STARTUP_DEADLINE_SECONDS);
        let age = j.metadata.creation_timestamp.as_ref().map_or(limit, |t| Timestamp::now().duration_since(t.0).as_secs());
        if age >= limit {
            job_state = ctx.requests.routine(super::worker_start::job_state(&client, j)).await.map_err(ControllerError::api(
                "read the pods of",
                "Job",
                &job_name,
            ))?;
        } else {
            startup_check = Some(Duration::from_secs((limit - age).clamp(1, 30) as u64));
        }
    }

    // A Destination's slots, asked for only when a worker would start.
    let (admission, _slot) = match &mapping {
        Some(m) if wants_worker(&sync, &job_state) => super::admission::check(&ctx, &ns, m, &caches.destinations).await?,
        _ => (Admission::Unlimited, None),
    };

    // Plan, without a client.
    let p = plan(&sync, mapping.as_ref(), job_state, &admission, Timestamp::now());

    // Apply: the Job, a replay.
    if p.create_job
        && let Some(m) = &mapping
    {
        let j = job::build(&sync, m, &ctx.worker);
        let post = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match ctx.requests.routine(jobs.create(&post, &j)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(ControllerError::api("create", "Job", &job_name)(e)),
        }
    }
    if p.delete_job {
        match ctx.requests.routine(jobs.delete(&job_name, &DeleteParams::background())).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(ControllerError::api("delete", "Job", &job_name)(e)),
        }
    }
    if let Some(r) = &p.replay {
        let mut replay = Sync::new(
            &r.name,
            SyncSpec { mapping_ref: sync.spec.mapping_ref.clone(), trigger: SyncTrigger::Replay, replay_of: Some(r.replay_of.clone()) },
        );
        replay.metadata.namespace = Some(ns.clone());
        replay.metadata.labels = Some([(label::MAPPING.to_string(), naming::label_value(mapping_name))].into());
        replay.metadata.owner_references = mapping.as_ref().and_then(|m| m.controller_owner_ref(&())).map(|o| vec![o]);
        let post = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match ctx.requests.routine(syncs.create(&post, &replay)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(ControllerError::api("create", "Sync", &r.name)(e)),
        }
    }
    // Update status, only when it changed, and only over what was read: a
    // worker that finished the Sync meanwhile is never written over.
    let status = p.status.as_ref().or(sync.status.as_ref());
    if let Some(st) = &p.status {
        let mut patch = super::status::status_patch(sync.status.as_ref(), st);
        patch["metadata"] = json!({ "resourceVersion": sync.resource_version() });
        match ctx.requests.routine(syncs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))).await {
            Ok(written) => caches.sync_writes.record(&written),
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(Duration::from_millis(500))),
            Err(e) => return Err(ControllerError::api("update status of", "Sync", &name)(e)),
        }
    }
    // Labels (the status label follows the status just written) and owner.
    let mut metadata = serde_json::Map::new();
    let labels = sync.labels();
    if p.labels.iter().any(|(k, v)| labels.get(k) != Some(v)) {
        metadata.insert("labels".into(), json!(p.labels));
    }
    if sync.metadata.owner_references.as_ref().is_none_or(|o| o.is_empty())
        && let Some(owner) = mapping.as_ref().and_then(|m| m.controller_owner_ref(&()))
    {
        metadata.insert("ownerReferences".into(), json!([owner]));
    }
    if !metadata.is_empty() {
        let written = ctx
            .requests
            .routine(syncs.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({ "metadata": metadata }))))
            .await
            .map_err(ControllerError::api("label", "Sync", &name))?;
        caches.sync_writes.record(&written);
    }
    let reference = sync.object_ref(&());
    for e in &p.events {
        ctx.event(&reference, e, "Sync", None).await;
        if let Some(m) = &mapping {
            ctx.event(&m.object_ref(&()), e, "Sync", Some(&reference)).await;
        }
    }

    if !p.events.is_empty()
        && let Some(st) = status
        && let Some(phase) = st.phase.filter(|p| p.is_finished())
    {
        let m = &ctx.metrics;
        m.syncs.get_or_create(&SyncLabels { namespace: ns.clone(), mapping: mapping_name.clone(), outcome: phase.to_string() }).inc();
        for (outcome, n) in [("succeeded", st.loaded.succeeded), ("failed", st.loaded.failed), ("skipped", st.loaded.skipped)] {
            m.records.get_or_create(&RecordLabels { outcome: outcome.into() }).inc_by(n);
        }
        if let (Some(a), Some(b)) = (&st.start_time, &st.completion_time) {
            m.sync_duration.observe(b.0.duration_since(a.0).as_secs_f64().max(0.0));
        }
    }
    let finished = status.and_then(|s| s.phase).is_some_and(|p| p.is_finished());
    Ok(match (finished, p.requeue_after) {
        (true, _) => Action::await_change(),
        (false, Some(after)) => Action::requeue(after),
        (false, None) => Action::requeue(startup_check.unwrap_or(Duration::from_secs(30))),
    })
}
