use super::*;

fn mapping(yaml: &str) -> Mapping {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const BASE: &str = r#"
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata:
  name: users
  namespace: team-a
  generation: 3
  creationTimestamp: "2026-01-01T00:00:00Z"
spec:
  modelRef: { name: users }
  destinationRef: { name: crm }
  action: identify
  schedule: "*/10 * * * *"
"#;

fn sync(name: &str, phase: Option<SyncPhase>, created: &str) -> SyncView {
    SyncView { name: name.into(), phase, created: t(created), started: Some(t(created)) }
}

#[test]
fn a_due_tick_creates_one_named_sync_and_records_the_tick() {
    let m = mapping(BASE);
    let p = plan(&m, &[], None, t("2026-01-01T00:25:00Z"));
    let tick = t("2026-01-01T00:20:00Z");
    assert_eq!(p.create, Some(NewSync { name: naming::scheduled_sync("users", tick), trigger: SyncTrigger::Schedule }));
    assert_eq!(p.status.last_schedule_time, Some(Time(tick)), "missed ticks run once, for the latest");
    assert_eq!(p.status.next_schedule_time, Some(Time(t("2026-01-01T00:30:00Z"))));
    assert_eq!(p.requeue_after_seconds, Some(300));
    assert_eq!(p.status.conditions[0].status, "True");
    assert_eq!(p.status.observed_generation, Some(3));

    // Reconciled again with that status: nothing new for the same tick.
    let mut again = m.clone();
    again.status = Some(p.status.clone());
    assert_eq!(plan(&again, &[], None, t("2026-01-01T00:26:00Z")).create, None);
}

#[test]
fn forbid_skips_while_a_sync_runs_and_replace_cancels_it() {
    let m = mapping(BASE);
    let running = [sync("users-old", Some(SyncPhase::InProgress), "2026-01-01T00:10:00Z")];
    let p = plan(&m, &running, None, t("2026-01-01T00:25:00Z"));
    assert_eq!(p.create, None);
    assert!(p.events.iter().any(|e| e.warning && e.message.contains("Forbid")), "{:?}", p.events);
    assert!(p.status.last_schedule_time.is_some(), "the tick is handled (skipped), not retried later");

    let mut replace = m.clone();
    replace.spec.concurrency_policy = ConcurrencyPolicy::Replace;
    let p = plan(&replace, &running, None, t("2026-01-01T00:25:00Z"));
    assert!(p.create.is_some());
    assert_eq!(p.cancel, vec!["users-old".to_string()]);
}

#[test]
fn sync_now_and_reset_tokens_act_once() {
    let mut m = mapping(BASE);
    m.spec.schedule = None;
    m.metadata.annotations =
        Some([(annotation::SYNC_NOW.to_string(), "t1".to_string()), (annotation::RESET.to_string(), "r1".to_string())].into());
    let p = plan(&m, &[], None, t("2026-01-01T00:25:00Z"));
    assert_eq!(p.create, Some(NewSync { name: naming::requested_sync("users", "t1"), trigger: SyncTrigger::Reset }));
    assert_eq!(p.status.last_handled_sync_now.as_deref(), Some("t1"));
    assert_eq!(p.status.last_handled_reset.as_deref(), Some("r1"));
    assert!(!p.status.reset_pending, "the reset is carried by the Sync just created");

    m.status = Some(p.status);
    let p = plan(&m, &[], None, t("2026-01-01T00:26:00Z"));
    assert_eq!(p.create, None, "re-applying the same tokens does nothing");
    assert!(p.events.is_empty());
}

#[test]
fn a_reset_alone_waits_for_the_next_sync() {
    let mut m = mapping(BASE);
    m.metadata.annotations = Some([(annotation::RESET.to_string(), "r1".to_string())].into());
    let p = plan(&m, &[], None, t("2026-01-01T00:05:00Z"));
    assert_eq!(p.create, None);
    assert!(p.status.reset_pending);
    m.status = Some(p.status);
    let p = plan(&m, &[], None, t("2026-01-01T00:11:00Z"));
    assert_eq!(p.create.unwrap().trigger, SyncTrigger::Reset);
}

#[test]
fn disabled_or_unready_mappings_start_nothing() {
    let mut m = mapping(BASE);
    m.spec.enabled = false;
    m.metadata.annotations = Some([(annotation::SYNC_NOW.to_string(), "t1".to_string())].into());
    let p = plan(&m, &[], None, t("2026-01-01T00:25:00Z"));
    assert_eq!(p.create, None);
    assert_eq!(p.status.last_handled_sync_now.as_deref(), Some("t1"), "a refused request is still handled");
    assert!(p.events.iter().any(|e| e.message.contains("disabled")));
    assert_eq!(p.status.next_schedule_time, None);

    let m = mapping(BASE);
    let p = plan(&m, &[], Some((reason::REFERENCE_NOT_FOUND, "Model \"users\" does not exist".into())), t("2026-01-01T00:25:00Z"));
    assert_eq!(p.create, None);
    let ready = &p.status.conditions[0];
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason::REFERENCE_NOT_FOUND));
}

#[test]
fn history_limits_keep_the_newest_finished_syncs() {
    let mut m = mapping(BASE);
    m.spec.schedule = None;
    m.spec.successful_syncs_history_limit = 2;
    m.spec.failed_syncs_history_limit = 1;
    let syncs = [
        sync("s1", Some(SyncPhase::Successful), "2026-01-01T00:01:00Z"),
        sync("s2", Some(SyncPhase::Failed), "2026-01-01T00:02:00Z"),
        sync("s3", Some(SyncPhase::PartiallySuccessful), "2026-01-01T00:03:00Z"),
        sync("s4", Some(SyncPhase::Failed), "2026-01-01T00:04:00Z"),
        sync("s5", Some(SyncPhase::Successful), "2026-01-01T00:05:00Z"),
        sync("s6", Some(SyncPhase::InProgress), "2026-01-01T00:06:00Z"),
    ];
    let mut p = plan(&m, &syncs, None, t("2026-01-01T00:07:00Z"));
    p.delete.sort();
    assert_eq!(p.delete, vec!["s1", "s2"]);
    assert_eq!(p.status.last_sync.unwrap().name, "s6");
}

#[test]
fn a_bad_schedule_says_so() {
    let mut m = mapping(BASE);
    m.spec.schedule = Some("every day".into());
    let p = plan(&m, &[], None, t("2026-01-01T00:25:00Z"));
    let ready = &p.status.conditions[0];
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("spec.schedule"), "{}", ready.message);
}
