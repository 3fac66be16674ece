//! What the Mapping controller should do, decided without a client: from the
//! Mapping, its Syncs and the time, to the Syncs to create, cancel and
//! delete, the Events to record and the new status. Unit-tested from YAML.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;

use super::naming;
use super::status::set_condition;
use crate::api::conditions::{self, annotation, label, reason};
use crate::api::{ConcurrencyPolicy, LastSync, Mapping, MappingStatus, ObjectRef, Sync, SyncPhase, SyncSpec, SyncTrigger};
use crate::schedule::{Due, Schedule};

mod readiness;
pub use readiness::{Problem, references};

/// The part of a Sync the Mapping controller looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncView {
    pub name: String,
    pub phase: Option<SyncPhase>,
    pub created: Timestamp,
    pub started: Option<Timestamp>,
}

impl SyncView {
    fn running(&self) -> bool {
        !self.phase.is_some_and(SyncPhase::is_finished)
    }
}

/// A Sync to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSync {
    pub name: String,
    pub trigger: SyncTrigger,
}

impl NewSync {
    /// The Sync to create for `mapping`: in its namespace, labelled with its
    /// Mapping, Model and Destination and as pending, owned by it.
    pub fn object(&self, mapping: &Mapping) -> Sync {
        let name = mapping.metadata.name.clone().unwrap_or_default();
        let mut sync =
            Sync::new(&self.name, SyncSpec { mapping_ref: ObjectRef { name: name.clone() }, trigger: self.trigger, replay_of: None });
        sync.metadata.namespace = mapping.metadata.namespace.clone();
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
        sync
    }
}

/// An Event to record on the Mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MappingPlan {
    pub create: Option<NewSync>,
    /// Running Syncs to cancel (concurrencyPolicy Replace).
    pub cancel: Vec<String>,
    /// Finished Syncs beyond the history limits.
    pub delete: Vec<String>,
    pub events: Vec<PlannedEvent>,
    pub status: MappingStatus,
    /// When to look again: at the next schedule tick, to the millisecond
    /// (a reconcile that wakes before the tick finds nothing due, and one
    /// that wakes a second after it has made the Sync a second late).
    pub requeue_after: Option<Duration>,
}

/// Decides. `problem` is why the Mapping is not ready (a missing reference,
/// fields that do not fit, a reference that is not ready), checked by the
/// caller; a blocking problem lets no Sync start.
pub fn plan(m: &Mapping, syncs: &[SyncView], problem: Option<Problem>, now: Timestamp) -> MappingPlan {
    let name = m.metadata.name.clone().unwrap_or_default();
    let spec = &m.spec;
    let mut status = m.status.clone().unwrap_or_default();
    let mut out = MappingPlan::default();
    let generation = m.metadata.generation;
    let annotations = m.metadata.annotations.clone().unwrap_or_default();
    let created = m.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);

    match &problem {
        None => set_condition(
            &mut status.conditions,
            conditions::READY,
            true,
            "Ready",
            "its Model, Source and Destination are ready and its fields are valid",
            generation,
            now,
        ),
        Some(p) => set_condition(&mut status.conditions, conditions::READY, false, &p.reason, &p.message, generation, now),
    };
    status.observed_generation = generation;

    let running: Vec<&SyncView> = syncs.iter().filter(|s| s.running()).collect();
    let start = |out: &mut MappingPlan, status: &mut MappingStatus, sync: String, trigger: SyncTrigger, what: &str| {
        // The Sync's name is the request: if it exists, this request was
        // handled already (by a reconcile whose status write the Mapping in
        // hand predates), and it must not be skipped as "still running".
        if syncs.iter().any(|s| s.name == sync) {
            return;
        }
        if !spec.enabled {
            out.events.push(skip(what, "the Mapping is disabled (spec.enabled: false)"));
            return;
        }
        if problem.as_ref().is_some_and(|p| p.blocks_syncs) {
            out.events.push(skip(what, "the Mapping is not ready; see its Ready condition"));
            return;
        }
        if let Some(r) = running.first() {
            match spec.concurrency_policy {
                ConcurrencyPolicy::Forbid => {
                    out.events.push(skip(what, &format!("Sync {} is still running (concurrencyPolicy: Forbid)", r.name)));
                    return;
                }
                ConcurrencyPolicy::Replace => out.cancel.extend(running.iter().map(|r| r.name.clone())),
                ConcurrencyPolicy::Allow => {}
            }
        }
        let trigger = if status.reset_pending { SyncTrigger::Reset } else { trigger };
        status.reset_pending = false;
        out.events.push(PlannedEvent { warning: false, reason: "SyncCreated".into(), message: format!("created Sync {sync} ({what})") });
        out.create = Some(NewSync { name: sync, trigger });
    };

    // Requests first: a reset marks the next sync; sync-now starts one.
    if let Some(token) = annotations.get(annotation::RESET).filter(|t| status.last_handled_reset.as_ref() != Some(*t)) {
        status.last_handled_reset = Some(token.clone());
        status.reset_pending = true;
        out.events.push(PlannedEvent {
            warning: false,
            reason: "ResetRequested".into(),
            message: "the sync state will be forgotten: the next sync sends every record as new".into(),
        });
    }
    if let Some(token) = annotations.get(annotation::SYNC_NOW).filter(|t| status.last_handled_sync_now.as_ref() != Some(*t)) {
        status.last_handled_sync_now = Some(token.clone());
        let trigger = SyncTrigger::Manual;
        start(&mut out, &mut status, naming::requested_sync(&name, token), trigger, "requested with retl.dev/sync-now");
    }

    // Then the schedule.
    if let Some(expr) = spec.schedule.as_deref().filter(|s| !s.trim().is_empty()) {
        match Schedule::parse(expr, spec.time_zone.as_deref(), created) {
            Err(e) => {
                set_condition(&mut status.conditions, conditions::READY, false, reason::INVALID_SPEC, &e.to_string(), generation, now);
            }
            Ok(schedule) => {
                let last = status.last_schedule_time.as_ref().map(|t| t.0).unwrap_or(created);
                match schedule.due(last, now, spec.starting_deadline_seconds) {
                    Due::Nothing => {}
                    Due::Missed(tick) => {
                        status.last_schedule_time = Some(Time(tick));
                        out.events.push(PlannedEvent {
                            warning: true,
                            reason: "MissedSchedule".into(),
                            message: format!("the tick of {tick} is older than startingDeadlineSeconds; skipped"),
                        });
                    }
                    Due::Run(tick) => {
                        status.last_schedule_time = Some(Time(tick));
                        if out.create.is_none() {
                            start(&mut out, &mut status, naming::scheduled_sync(&name, tick), SyncTrigger::Schedule, "scheduled");
                        }
                    }
                }
                let from = status.last_schedule_time.as_ref().map(|t| t.0).unwrap_or(created).max(now);
                status.next_schedule_time = if spec.enabled { schedule.next_tick(from).map(Time) } else { None };
                out.requeue_after = status.next_schedule_time.as_ref().map(|t| until(now, t.0));
            }
        }
    } else {
        status.next_schedule_time = None;
    }

    // The lastSync this status names is the newest Sync this plan created:
    // among Syncs created in the same second, it is the newer.
    let newest = status.last_sync.as_ref().map(|l| l.name.clone());
    let age = |s: &SyncView| (s.created, Some(&s.name) == newest.as_ref(), s.name.clone());
    out.delete = beyond_history(syncs, age, spec.successful_syncs_history_limit, spec.failed_syncs_history_limit);
    status.last_sync = match (&out.create, syncs.iter().max_by_key(|s| age(s))) {
        (Some(new), _) => Some(LastSync { name: new.name.clone(), phase: Some(SyncPhase::Pending), start_time: None }),
        (None, Some(s)) => {
            // A Sync its controller has not looked at yet is Pending (as the
            // status written when it was created says).
            let phase = s.phase.or(Some(SyncPhase::Pending));
            let seen = LastSync { name: s.name.clone(), phase, start_time: s.started.map(Time) };
            // A Sync's phase only moves forward: a cached copy that lags
            // behind the status written from a fresher one must not move
            // it back (and forth again: a status write each way).
            match &status.last_sync {
                Some(old) if old.name == seen.name && progress(old.phase) > progress(seen.phase) => Some(old.clone()),
                _ => Some(seen),
            }
        }
        (None, None) => status.last_sync.clone(),
    };
    out.status = status;
    out
}

/// How far a Sync got: its phase only moves forward.
fn progress(phase: Option<SyncPhase>) -> u8 {
    match phase {
        None | Some(SyncPhase::Pending) => 0,
        Some(SyncPhase::InProgress) => 1,
        Some(_) => 2,
    }
}

/// From `now` to `tick`, rounded up to the millisecond, between 1 ms and an hour.
fn until(now: Timestamp, tick: Timestamp) -> Duration {
    let ms = (tick.duration_since(now).as_nanos() + 999_999).div_euclid(1_000_000);
    Duration::from_millis(ms.clamp(1, 3_600_000) as u64)
}

fn skip(what: &str, why: &str) -> PlannedEvent {
    PlannedEvent { warning: true, reason: "SyncSkipped".into(), message: format!("a sync was {what} but skipped: {why}") }
}

/// Finished Syncs to delete so that at most `ok_limit` successful ones and
/// `failed_limit` failed ones are kept, newest first by `age`: when created,
/// then whether it is the Mapping's lastSync, then the name. Creation times
/// have one-second resolution: a Sync created in the same second as the last
/// one kept is kept too, rather than guessing which of the two is newer,
/// unless the one kept is the lastSync (the newer of the two).
fn beyond_history<K: Ord>(
    syncs: &[SyncView],
    age: impl Fn(&SyncView) -> (Timestamp, bool, K),
    ok_limit: u32,
    failed_limit: u32,
) -> Vec<String> {
    let mut finished: Vec<&SyncView> = syncs.iter().filter(|s| !s.running()).collect();
    finished.sort_by_key(|s| std::cmp::Reverse(age(s)));
    let mut kept: BTreeMap<bool, (u32, Option<(Timestamp, bool)>)> = BTreeMap::new();
    let mut out = Vec::new();
    for s in finished {
        let failed = s.phase == Some(SyncPhase::Failed);
        let limit = if failed { failed_limit } else { ok_limit };
        let (n, last) = kept.entry(failed).or_default();
        if *n >= limit && *last != Some((s.created, false)) {
            out.push(s.name.clone());
        } else {
            *n += 1;
            *last = Some((s.created, age(s).1));
        }
    }
    out
}

#[cfg(test)]
mod tests;
