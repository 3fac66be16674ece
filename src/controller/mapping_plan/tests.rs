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
    assert_eq!(p.requeue_after, Some(Duration::from_secs(300)));
    assert_eq!(p.status.conditions[0].status, "True");
    assert_eq!(p.status.observed_generation, Some(3));

    // Reconciled again with that status: nothing new for the same tick.
    let mut again = m.clone();
    again.status = Some(p.status.clone());
    assert_eq!(plan(&again, &[], None, t("2026-01-01T00:26:00Z")).create, None);
}

#[test]
fn a_reconcile_just_before_a_tick_looks_again_at_the_tick_to_the_millisecond() {
    let mut m = mapping(BASE);
    m.status = Some(MappingStatus { last_schedule_time: Some(Time(t("2026-01-01T00:10:00Z"))), ..Default::default() });
    let p = plan(&m, &[], None, t("2026-01-01T00:19:59.7004Z"));
    assert_eq!(p.create, None, "not due yet");
    assert_eq!(p.requeue_after, Some(Duration::from_millis(300)), "at the tick, not a whole second later");
    let p = plan(&m, &[], None, t("2026-01-01T00:20:00.001Z"));
    assert!(p.create.is_some(), "due at the tick");
}

#[test]
fn the_last_syncs_phase_never_moves_back_to_what_a_lagging_cache_shows() {
    let mut m = mapping(BASE);
    let ticked = Some(Time(t("2026-01-01T00:20:00Z")));
    let last = LastSync { name: "users-1".into(), phase: Some(SyncPhase::Successful), start_time: None };
    m.status = Some(MappingStatus { last_sync: Some(last.clone()), last_schedule_time: ticked.clone(), ..Default::default() });
    let lagging = [sync("users-1", Some(SyncPhase::InProgress), "2026-01-01T00:20:00Z")];
    let p = plan(&m, &lagging, None, t("2026-01-01T00:21:00Z"));
    assert_eq!(p.status.last_sync, Some(last), "still Successful");
    let newer = [sync("users-1", Some(SyncPhase::Failed), "2026-01-01T00:20:00Z")];
    m.status = Some(MappingStatus {
        last_sync: Some(LastSync { phase: Some(SyncPhase::InProgress), ..p.status.last_sync.clone().unwrap() }),
        last_schedule_time: ticked,
        ..Default::default()
    });
    let p = plan(&m, &newer, None, t("2026-01-01T00:21:00Z"));
    assert_eq!(p.status.last_sync.and_then(|l| l.phase), Some(SyncPhase::Failed), "forward it moves");
}

#[test]
fn a_sync_not_yet_looked_at_is_pending_in_the_mappings_status() {
    let mut m = mapping(BASE);
    let tick = t("2026-01-01T00:20:00Z");
    let p = plan(&m, &[], None, t("2026-01-01T00:20:00.001Z"));
    m.status = Some(p.status.clone());
    let name = naming::scheduled_sync("users", tick);
    let new = SyncView { name, phase: None, created: tick, started: None };
    let p = plan(&m, &[new], None, t("2026-01-01T00:20:00.02Z"));
    assert_eq!(Some(&p.status), m.status.as_ref(), "nothing to write: it was written Pending");
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
    let p =
        plan(&m, &[], Some(Problem::blocking(reason::REFERENCE_NOT_FOUND, "Model \"users\" does not exist")), t("2026-01-01T00:25:00Z"));
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
fn of_syncs_created_in_one_second_the_last_sync_is_the_newest() {
    // A sync-now right after a sync finished: both created in the same
    // second (Kubernetes times have whole seconds). The Mapping's lastSync,
    // the Sync it created last, is the newer; the other goes.
    let mut m = mapping(BASE);
    m.spec.schedule = None;
    m.spec.successful_syncs_history_limit = 1;
    let syncs = [
        sync("z-first", Some(SyncPhase::Successful), "2026-01-01T00:01:00Z"),
        sync("a-second", Some(SyncPhase::Successful), "2026-01-01T00:01:00Z"),
    ];
    let last = |name: &str| Some(LastSync { name: name.into(), phase: Some(SyncPhase::Successful), start_time: None });
    m.status = Some(MappingStatus { last_sync: last("a-second"), ..Default::default() });
    let p = plan(&m, &syncs, None, t("2026-01-01T00:02:00Z"));
    assert_eq!(p.delete, vec!["z-first"]);
    assert_eq!(p.status.last_sync.unwrap().name, "a-second", "the lastSync stays the newer one, whatever the names");

    // Neither is the lastSync: which is newer is not known, both are kept.
    m.status = Some(MappingStatus { last_sync: last("older"), ..Default::default() });
    let p = plan(&m, &syncs, None, t("2026-01-01T00:02:00Z"));
    assert!(p.delete.is_empty(), "{:?}", p.delete);
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

#[test]
fn a_request_whose_sync_exists_was_handled_and_is_not_skipped() {
    // The Mapping in hand predates the status write of the reconcile that
    // created the Sync (a cache behind the API): same token, same Sync.
    let mut m = mapping(BASE);
    m.spec.schedule = None;
    m.metadata.annotations = Some([(annotation::SYNC_NOW.to_string(), "t1".to_string())].into());
    let name = naming::requested_sync("users", "t1");
    let just_created = [sync(&name, None, "2026-01-01T00:25:00Z")];
    let p = plan(&m, &just_created, None, t("2026-01-01T00:25:01Z"));
    assert_eq!(p.create, None);
    assert!(p.events.is_empty(), "no SyncSkipped for the Sync this request created: {:?}", p.events);
    assert_eq!(p.status.last_handled_sync_now.as_deref(), Some("t1"));

    // The same for a scheduled tick.
    let m = mapping(BASE);
    let name = naming::scheduled_sync("users", t("2026-01-01T00:20:00Z"));
    let p = plan(&m, &[sync(&name, Some(SyncPhase::InProgress), "2026-01-01T00:20:01Z")], None, t("2026-01-01T00:25:00Z"));
    assert_eq!((p.create, p.events), (None, vec![]));
}

fn with_ready<K: serde::de::DeserializeOwned>(kind: &str, name: &str, ready: Option<(&str, &str, &str)>) -> K {
    let status = match ready {
        None => String::new(),
        Some((s, r, m)) => format!(
            "status: {{conditions: [{{type: Ready, status: \"{s}\", reason: {r}, message: \"{m}\", lastTransitionTime: \"2026-01-01T00:00:00Z\"}}]}}"
        ),
    };
    let spec = match kind {
        "Model" => "{sourceRef: {name: wh}, primaryKey: id, query: select 1}",
        "Source" => "{type: sqlite, sqlite: {path: /tmp/x.db}}",
        _ => "{type: http, http: {url: \"http://127.0.0.1:1\"}, actions: [{name: upsert}]}",
    };
    serde_yaml_ng::from_str(&format!("apiVersion: retl.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n{status}\n"))
        .unwrap()
}

#[test]
fn a_reference_that_is_not_ready_makes_the_mapping_not_ready_and_says_which() {
    let ok = Some(("True", "Ready", "fine"));
    let model: crate::api::Model = with_ready("Model", "users", ok);
    let source: crate::api::Source = with_ready("Source", "wh", Some(("False", "WarehouseUnreachable", "connection refused")));
    let dest: crate::api::Destination = with_ready("Destination", "crm", ok);
    let p = references(&model, Some(&source), &dest).expect("not ready");
    assert_eq!(p.reason, reason::REFERENCE_NOT_READY);
    assert_eq!(p.message, "Source \"wh\" is not ready (WarehouseUnreachable): connection refused");
    assert!(!p.blocks_syncs, "a sync still runs and fails with the real error");

    let good: crate::api::Source = with_ready("Source", "wh", ok);
    assert_eq!(references(&model, Some(&good), &dest), None);
    let unchecked: crate::api::Destination = with_ready("Destination", "crm", None);
    assert!(references(&model, Some(&good), &unchecked).is_some_and(|p| p.message.contains("Destination \"crm\" has not been checked")));
    assert!(references(&model, None, &dest).is_some_and(|p| p.message.contains("Source \"wh\" does not exist")));

    // Not ready, but a requested sync still starts.
    let mut m = mapping(BASE);
    m.metadata.annotations = Some([(annotation::SYNC_NOW.to_string(), "t1".to_string())].into());
    let p = plan(&m, &[], references(&model, Some(&source), &dest), t("2026-01-01T00:25:00Z"));
    assert!(p.create.is_some());
    let ready = &p.status.conditions[0];
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason::REFERENCE_NOT_READY));
    assert!(ready.message.contains("connection refused"));
}
