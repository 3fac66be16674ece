//! What the Sync controller should do, decided without a client: the Job to
//! create, the death of a worker turned into a Failed Sync, cancel and replay
//! requests, labels that follow the phase, and the Events of each outcome.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::mapping_plan::PlannedEvent;
use super::naming;
use super::status::set_condition;
use crate::api::conditions::{self, annotation, label, reason};
use crate::api::{Mapping, SkipSummary, Sync, SyncPhase, SyncStatus};
use crate::engine::{format_duration, skip};

/// A replay to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReplay {
    pub name: String,
    pub replay_of: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncPlan {
    /// Labels the Sync should carry (only the ones retl owns).
    pub labels: BTreeMap<String, String>,
    pub create_job: bool,
    pub delete_job: bool,
    /// The new status, when it changed.
    pub status: Option<SyncStatus>,
    pub replay: Option<NewReplay>,
    pub events: Vec<PlannedEvent>,
    /// Look again after this long (a startup deadline to check).
    pub requeue_after: Option<std::time::Duration>,
}

/// Whether a Sync may start its worker: a Destination with
/// `maxConcurrentSyncs` admits that many Syncs at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// No limit: no condition to show.
    Unlimited,
    /// A slot was free (the caller holds it while it creates the Job).
    Admitted,
    /// Every slot is taken; why, for the `Admitted` condition.
    Waiting(String),
}

/// How often a Sync waiting for its Destination looks again.
pub const ADMISSION_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether [`plan`] would start a worker for `sync` (so that the caller
/// asks for an [`Admission`] only then).
pub fn wants_worker(sync: &Sync, job: &JobState) -> bool {
    let status = sync.status.as_ref();
    match status.and_then(|s| s.phase) {
        None => true,
        Some(SyncPhase::Pending) => *job == JobState::NotFound && status.is_some_and(|s| s.job_name.is_none()),
        Some(_) => false,
    }
}

/// What the Job says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    NotFound,
    Running,
    /// The Job exists (since `since`) but no worker pod has started; `why`
    /// is the pod's own waiting message, or why no pod could be created.
    Waiting {
        since: Timestamp,
        why: String,
    },
    Succeeded,
    Failed {
        reason: String,
        message: String,
    },
}

impl JobState {
    pub fn of(job: Option<&Job>) -> JobState {
        let Some(job) = job else { return JobState::NotFound };
        let conds = job.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        if let Some(c) = conds.iter().find(|c| c.type_ == "Failed" && c.status == "True") {
            return JobState::Failed { reason: c.reason.clone().unwrap_or_default(), message: c.message.clone().unwrap_or_default() };
        }
        if conds.iter().any(|c| c.type_ == "Complete" && c.status == "True") {
            return JobState::Succeeded;
        }
        JobState::Running
    }
}

pub fn plan(sync: &Sync, mapping: Option<&Mapping>, job: JobState, admission: &Admission, now: Timestamp) -> SyncPlan {
    let name = sync.metadata.name.clone().unwrap_or_default();
    let annotations = sync.metadata.annotations.clone().unwrap_or_default();
    let old = sync.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut out = SyncPlan::default();
    let generation = sync.metadata.generation;

    match status.phase {
        None if mapping.is_none() => {
            status.phase = Some(SyncPhase::Pending);
            let why = format!("Mapping {:?} does not exist in this namespace", sync.spec.mapping_ref.name);
            fail(&mut status, reason::REFERENCE_NOT_FOUND, &why, now);
        }
        None => {
            status.phase = Some(SyncPhase::Pending);
            admit(&mut status, &mut out, &name, admission, generation, now);
        }
        Some(SyncPhase::Pending) | Some(SyncPhase::InProgress) => {
            let cancel = annotations.get(annotation::CANCEL).filter(|t| old.last_handled_cancel.as_ref() != Some(*t));
            if let Some(token) = cancel {
                status.last_handled_cancel = Some(token.clone());
                if status.phase == Some(SyncPhase::Pending) {
                    // The worker never started: nothing was sent.
                    finish(&mut status, SyncPhase::Canceled, reason::CANCELED, "canceled before the worker started; nothing was sent", now);
                    out.delete_job = true;
                }
            }
            if !status.phase.is_some_and(SyncPhase::is_finished) {
                match job {
                    JobState::Failed { reason: why, message } => {
                        let (r, m) = if why == "DeadlineExceeded" {
                            (
                                reason::DEADLINE_EXCEEDED,
                                format!(
                                    "the sync ran past the Mapping's activeDeadlineSeconds and was stopped ({message}); what the destination acknowledged is committed, and the next sync sends the rest"
                                ),
                            )
                        } else {
                            (
                                reason::WORKER_DIED,
                                format!(
                                    "the worker's Job failed ({why}: {message}); what the destination acknowledged is committed, and the next sync sends the rest"
                                ),
                            )
                        };
                        fail(&mut status, r, &m, now);
                    }
                    JobState::NotFound if old.job_name.is_some() => fail(
                        &mut status,
                        reason::WORKER_DIED,
                        "the sync's Job was deleted before it finished; what the destination acknowledged is committed, and the next sync sends the rest",
                        now,
                    ),
                    JobState::NotFound if mapping.is_some() => admit(&mut status, &mut out, &name, admission, generation, now),
                    JobState::NotFound => {}
                    JobState::Succeeded => fail(
                        &mut status,
                        reason::WORKER_DIED,
                        "the worker exited without writing the sync's result; the next sync picks up where it stopped",
                        now,
                    ),
                    JobState::Running => {}
                    JobState::Waiting { since, why } => {
                        let limit =
                            mapping.and_then(|m| m.spec.startup_deadline_seconds).unwrap_or(crate::api::DEFAULT_STARTUP_DEADLINE_SECONDS);
                        let waited = now.duration_since(since).as_secs();
                        if status.phase == Some(SyncPhase::Pending) && waited >= limit {
                            let m = format!(
                                "the worker did not start within the Mapping's startupDeadlineSeconds ({limit}): {why}; nothing was sent, fix the cause and sync again"
                            );
                            fail(&mut status, reason::WORKER_NOT_STARTED, &m, now);
                            out.delete_job = true;
                        } else if status.phase == Some(SyncPhase::Pending) {
                            out.requeue_after = Some(std::time::Duration::from_secs((limit - waited).clamp(1, 30) as u64));
                        }
                    }
                }
            }
        }
        Some(_) => {}
    }

    // Replays may be asked of any Sync, finished or not.
    if let Some(token) = annotations.get(annotation::REPLAY).filter(|t| old.last_handled_replay.as_ref() != Some(*t)) {
        status.last_handled_replay = Some(token.clone());
        out.replay = Some(NewReplay { name: naming::replay_sync(&name, token), replay_of: name.clone() });
    }

    // Conditions follow the phase.
    if let Some(phase) = status.phase.filter(|p| p.is_finished()) {
        let msg = status.message.clone().unwrap_or_else(|| phase.to_string());
        let why = status.reason.clone().unwrap_or_else(|| phase.to_string());
        set_condition(&mut status.conditions, conditions::COMPLETE, phase != SyncPhase::Failed, &why, &msg, generation, now);
        set_condition(&mut status.conditions, conditions::FAILED, phase == SyncPhase::Failed, &why, &msg, generation, now);
        status.progress = None;
    }
    status.observed_generation = generation.or(status.observed_generation);

    // Labels, and an Event whenever the phase label moves on.
    let labels = sync.metadata.labels.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(SyncPhase::Pending);
    if labels.get(label::STATUS).map(String::as_str) != Some(phase.label_value()) {
        out.events.extend(event_for(&name, phase, &status));
    }
    out.labels.insert(label::STATUS.into(), phase.label_value().into());
    // Names become label values shortened to fit (a long name would be refused).
    out.labels.insert(label::MAPPING.into(), naming::label_value(&sync.spec.mapping_ref.name));
    if let Some(m) = mapping {
        out.labels.insert(label::MODEL.into(), naming::label_value(&m.spec.model_ref.name));
        out.labels.insert(label::DESTINATION.into(), naming::label_value(&m.spec.destination_ref.name));
    }
    if status != old {
        out.status = Some(status);
    }
    out
}

/// Starts the worker when admitted; else the Sync stays Pending, saying why.
fn admit(status: &mut SyncStatus, out: &mut SyncPlan, name: &str, admission: &Admission, generation: Option<i64>, now: Timestamp) {
    let (admitted, why, message) = match admission {
        Admission::Unlimited => (true, None, String::new()),
        Admission::Admitted => (true, Some(reason::ADMITTED), "a slot of the Destination was free; the worker starts".to_string()),
        Admission::Waiting(message) => (false, Some(reason::WAITING_FOR_DESTINATION), message.clone()),
    };
    if let Some(why) = why {
        set_condition(&mut status.conditions, conditions::ADMITTED, admitted, why, &message, generation, now);
    }
    if admitted {
        status.job_name = Some(naming::job_name(name));
        out.create_job = true;
    } else {
        out.requeue_after = Some(ADMISSION_RETRY);
    }
}

fn fail(status: &mut SyncStatus, why: &str, message: &str, now: Timestamp) {
    finish(status, SyncPhase::Failed, why, message, now);
}

/// Ends a sync from the outside (the worker is gone): the counts it last
/// wrote stay, and what it had not accounted for is skipped as not processed,
/// so the counts still add up.
fn finish(status: &mut SyncStatus, phase: SyncPhase, why: &str, message: &str, now: Timestamp) {
    status.phase = Some(phase);
    status.reason = Some(why.to_string());
    status.message = Some(message.to_string());
    status.completion_time = Some(Time(now));
    if let Some(start) = status.start_time.as_ref() {
        status.duration = Some(format_duration(now.duration_since(start.0).as_millis().max(0) as u64));
    }
    let e = &status.extracted;
    let l = &mut status.loaded;
    let rest = (e.added + e.updated + e.deleted).saturating_sub(l.succeeded + l.failed + l.skipped);
    if rest > 0 {
        l.skipped += rest;
        let reason = if phase == SyncPhase::Canceled { skip::CANCELED } else { skip::NOT_PROCESSED };
        match status.skipped.iter_mut().find(|s| s.reason == reason) {
            Some(s) => s.count += rest,
            None => status.skipped.push(SkipSummary { reason: reason.into(), count: rest, message: skip::message(reason).into() }),
        }
    }
}

/// The Event for a phase a Sync just reached (the in-app notification).
fn event_for(name: &str, phase: SyncPhase, s: &SyncStatus) -> Option<PlannedEvent> {
    let counts = format!(
        "extracted {} ({} added, {} updated, {} deleted), loaded {}, failed {}",
        s.extracted.total, s.extracted.added, s.extracted.updated, s.extracted.deleted, s.loaded.succeeded, s.loaded.failed
    );
    let top = s.errors.first().map(|e| format!("; top error {} ({}×): {}", e.code, e.count, e.message)).unwrap_or_default();
    let (warning, why, message) = match phase {
        SyncPhase::Pending => return None,
        SyncPhase::InProgress => (false, "SyncStarted", format!("Sync {name} started")),
        SyncPhase::Successful => (false, reason::SUCCESSFUL, format!("Sync {name} succeeded: {counts}")),
        SyncPhase::PartiallySuccessful => (true, reason::PARTIALLY_SUCCESSFUL, format!("Sync {name} partially succeeded: {counts}{top}")),
        SyncPhase::Failed => (true, reason::FAILED, format!("Sync {name} failed: {}{top}", s.message.clone().unwrap_or_default())),
        SyncPhase::Canceled => (false, reason::CANCELED, format!("Sync {name} was canceled: {counts}")),
    };
    Some(PlannedEvent { warning, reason: why.into(), message })
}

#[cfg(test)]
mod tests;
