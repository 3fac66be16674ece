use super::*;
use crate::api::{ExtractedCounts, LoadedCounts};

fn sync(yaml_status: &str) -> Sync {
    let mut s: Sync = serde_yaml_ng::from_str(
        "apiVersion: retl.dev/v1alpha1\nkind: Sync\nmetadata: {name: users-1, namespace: team-a, generation: 1}\nspec: {mappingRef: {name: users}}\n",
    )
    .unwrap();
    if !yaml_status.is_empty() {
        s.status = Some(serde_yaml_ng::from_str(yaml_status).unwrap());
    }
    s
}

fn mapping() -> Mapping {
    serde_yaml_ng::from_str(
        "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {name: users, namespace: team-a}\n\
         spec: {modelRef: {name: users-model}, destinationRef: {name: crm}, action: identify}\n",
    )
    .unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

#[test]
fn a_new_sync_gets_a_job_labels_and_pending() {
    let p = plan(&sync(""), Some(&mapping()), JobState::NotFound, &Admission::Unlimited, now());
    assert!(p.create_job);
    let st = p.status.unwrap();
    assert_eq!(st.phase, Some(SyncPhase::Pending));
    assert_eq!(st.job_name.as_deref(), Some("users-1"));
    assert_eq!(p.labels[label::MODEL], "users-model");
    assert_eq!(p.labels[label::DESTINATION], "crm");
    assert_eq!(p.labels[label::STATUS], "pending");
}

#[test]
fn a_dead_worker_fails_the_sync_and_the_counts_still_add_up() {
    let s = sync(
        "phase: InProgress\nobservedGeneration: 1\njobName: users-1\nstartTime: \"2026-01-01T00:00:00Z\"\nextracted: {total: 10, added: 6, updated: 2, deleted: 0, unchanged: 2, retried: 0}\nloaded: {succeeded: 3, failed: 1, skipped: 0, expired: 0, new: 3, updated: 0, deleted: 0}\n",
    );
    for (job, why) in [
        (JobState::Failed { reason: "BackoffLimitExceeded".into(), message: "pod failed".into() }, reason::WORKER_DIED),
        (JobState::Failed { reason: "DeadlineExceeded".into(), message: "too long".into() }, reason::DEADLINE_EXCEEDED),
        (JobState::NotFound, reason::WORKER_DIED),
        (JobState::Succeeded, reason::WORKER_DIED),
    ] {
        let p = plan(&s, Some(&mapping()), job.clone(), &Admission::Unlimited, now());
        let st = p.status.unwrap();
        assert_eq!((st.phase, st.reason.as_deref()), (Some(SyncPhase::Failed), Some(why)), "{job:?}");
        let l: &LoadedCounts = &st.loaded;
        let e: &ExtractedCounts = &st.extracted;
        assert_eq!(e.added + e.updated + e.deleted, l.succeeded + l.failed + l.skipped);
        assert_eq!(st.skipped[0].reason, "NotProcessed");
        assert_eq!(st.duration.as_deref(), Some("10m0s"));
        let failed = st.conditions.iter().find(|c| c.type_ == conditions::FAILED).unwrap();
        assert_eq!(failed.status, "True");
        assert!(p.events.iter().any(|e| e.warning && e.reason == reason::FAILED));
        assert_eq!(p.labels[label::STATUS], "failed");
    }
    assert_eq!(plan(&s, Some(&mapping()), JobState::Running, &Admission::Unlimited, now()).status, None, "no write when nothing changed");
}

#[test]
fn cancel_before_the_worker_starts_ends_it_right_away() {
    let mut s = sync("phase: Pending\njobName: users-1\n");
    s.metadata.annotations = Some([(annotation::CANCEL.to_string(), "c1".to_string())].into());
    let p = plan(&s, Some(&mapping()), JobState::Running, &Admission::Unlimited, now());
    assert!(p.delete_job);
    let st = p.status.unwrap();
    assert_eq!((st.phase, st.last_handled_cancel.as_deref()), (Some(SyncPhase::Canceled), Some("c1")));
    let complete = st.conditions.iter().find(|c| c.type_ == conditions::COMPLETE).unwrap();
    assert_eq!(complete.status, "True");

    let mut running = sync("phase: InProgress\njobName: users-1\n");
    running.metadata.annotations = s.metadata.annotations.clone();
    let p = plan(&running, Some(&mapping()), JobState::Running, &Admission::Unlimited, now());
    let st = p.status.unwrap();
    assert_eq!(st.phase, Some(SyncPhase::InProgress), "a running worker stops itself at the next batch boundary");
    assert_eq!(st.last_handled_cancel.as_deref(), Some("c1"));
}

#[test]
fn finished_syncs_replay_once_per_token_and_announce_their_outcome_once() {
    let mut s =
        sync("phase: PartiallySuccessful\njobName: users-1\nerrors: [{code: HTTP_422, count: 2, message: bad, recommendedAction: fix}]\n");
    s.metadata.annotations = Some([(annotation::REPLAY.to_string(), "r1".to_string())].into());
    let p = plan(&s, Some(&mapping()), JobState::Succeeded, &Admission::Unlimited, now());
    assert_eq!(p.replay, Some(NewReplay { name: naming::replay_sync("users-1", "r1"), replay_of: "users-1".into() }));
    let ev = &p.events[0];
    assert!(ev.warning && ev.message.contains("HTTP_422"), "{ev:?}");
    s.status = p.status.clone();
    s.metadata.labels = Some(p.labels.clone());
    let again = plan(&s, Some(&mapping()), JobState::Succeeded, &Admission::Unlimited, now());
    assert_eq!(again.replay, None);
    assert!(again.events.is_empty());
    assert_eq!(again.status, None, "finished Syncs are immutable history");
}

#[test]
fn a_worker_that_never_starts_fails_at_the_startup_deadline_with_the_pods_message() {
    let s = sync("phase: Pending\njobName: users-1\n");
    let since = now() - jiff::SignedDuration::from_secs(60);
    let why = "pod users-1-abcde: ErrImagePull: image \"x\" not found".to_string();
    let early = plan(&s, Some(&mapping()), JobState::Waiting { since, why: why.clone() }, &Admission::Unlimited, now());
    let phase = early.status.as_ref().map_or(Some(SyncPhase::Pending), |st| st.phase);
    assert!(phase == Some(SyncPhase::Pending) && !early.delete_job, "still within the default 300 s");
    assert_eq!(early.requeue_after, Some(std::time::Duration::from_secs(30)));
    let late = now() + jiff::SignedDuration::from_secs(300);
    let p = plan(&s, Some(&mapping()), JobState::Waiting { since, why }, &Admission::Unlimited, late);
    let st = p.status.unwrap();
    assert_eq!((st.phase, st.reason.as_deref()), (Some(SyncPhase::Failed), Some(reason::WORKER_NOT_STARTED)));
    assert!(st.message.unwrap().contains("ErrImagePull: image \"x\" not found"));
    assert!(p.delete_job, "the pod must not start later");
}

#[test]
fn a_sync_waits_for_a_slot_of_its_destination_then_starts() {
    let waiting = Admission::Waiting("Destination \"crm\" runs at most 1 Sync at a time (maxConcurrentSyncs); running: users-0".into());
    let p = plan(&sync(""), Some(&mapping()), JobState::NotFound, &waiting, now());
    assert!(!p.create_job, "no worker while every slot is taken");
    assert_eq!(p.requeue_after, Some(ADMISSION_RETRY), "it looks again soon");
    let st = p.status.unwrap();
    assert_eq!((st.phase, st.job_name.as_deref()), (Some(SyncPhase::Pending), None));
    let c = st.conditions.iter().find(|c| c.type_ == conditions::ADMITTED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason::WAITING_FOR_DESTINATION));
    assert!(c.message.contains("maxConcurrentSyncs"), "{c:?}");

    // Still waiting: a Pending Sync without a Job is not a dead worker.
    let mut s = sync("");
    s.status = Some(st);
    assert!(wants_worker(&s, &JobState::NotFound));
    let p = plan(&s, Some(&mapping()), JobState::NotFound, &waiting, now());
    assert!(!p.create_job && p.status.is_none(), "nothing changed: {p:?}");
    let p = plan(&s, Some(&mapping()), JobState::NotFound, &Admission::Admitted, now());
    assert!(p.create_job);
    let st = p.status.unwrap();
    assert_eq!((st.phase, st.job_name.as_deref()), (Some(SyncPhase::Pending), Some("users-1")));
    let c = st.conditions.iter().find(|c| c.type_ == conditions::ADMITTED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reason::ADMITTED));
    let mut started = s.clone();
    started.status = Some(st);
    assert!(!wants_worker(&started, &JobState::NotFound), "a Job was made: its loss is a dead worker, not a wait");
}
