//! The engine's behaviour, written once and run against every warehouse.
//! Each case is what a user would check: what arrived at the destination,
//! what the Sync reports, and what the next sync does.

use std::time::Duration;

use retl::api::{ChangeKind, HttpDestination, SyncPhase, SyncTrigger};
use retl::engine::{Quiet, SyncReport, fail_abandoned_runs, run_sync};
use retl::warehouse::{HistoryFilter, StateScope};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::fixture::Fixture;
use super::support::{Env, assert_adds_up, map};

pub async fn first_sync_sends_everything_then_nothing(fx: Fixture) {
    let env = Env::new(fx, 25).await;
    let m = env.mapping();
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    assert_eq!((r.extracted.total, r.extracted.added), (25, 25));
    assert_eq!((r.loaded.succeeded, r.loaded.new), (25, 25));
    let latest = env.sink.latest();
    assert_eq!(latest.len(), 25);
    assert_eq!(latest["7"].payload, json!({"userId": "7", "email": "u7@example.com", "name": "User 7"}));
    assert_eq!(latest["7"].operation, "upsert");
    assert_eq!(latest["7"].action, "upsertContact");

    env.sink.clear();
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful, "zero records is a successful sync: {r:#?}");
    assert_eq!((r.extracted.total, r.extracted.unchanged, r.loaded.succeeded), (25, 25, 0));
    assert!(env.sink.received().is_empty(), "an unchanged model sends nothing");
}

pub async fn updates_deletes_and_inserts_are_found(fx: Fixture) {
    let env = Env::new(fx, 5).await;
    let m = env.mapping();
    env.sync(&m).await;
    env.sink.clear();
    env.exec("UPDATE {users} SET email = 'new2@example.com' WHERE id = 2").await;
    env.exec("UPDATE {users} SET plan = 'pro' WHERE id = 3").await; // plan is not mapped, but it is a change
    env.exec("DELETE FROM {users} WHERE id = 4").await;
    env.insert([6]).await;
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    let e = &r.extracted;
    assert_eq!((e.added, e.updated, e.deleted, e.unchanged, e.total), (1, 2, 1, 2, 6));
    assert_eq!((r.loaded.new, r.loaded.updated, r.loaded.deleted), (1, 2, 1));
    let latest = env.sink.latest();
    assert_eq!(latest["2"].payload["email"], "new2@example.com");
    assert_eq!(latest["4"].operation, "delete");
    assert_eq!(latest["6"].operation, "upsert");
    assert_eq!(latest.len(), 4);
}

pub async fn send_choice_skips_and_moves_on(fx: Fixture) {
    let env = Env::new(fx, 3).await;
    let mut m = env.mapping();
    m.send = vec![ChangeKind::Added];
    env.sync(&m).await;
    env.sink.clear();
    env.exec("UPDATE {users} SET email = 'x@example.com' WHERE id = 1").await;
    env.exec("DELETE FROM {users} WHERE id = 2").await;
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful);
    assert_eq!((r.loaded.skipped, r.loaded.succeeded), (2, 0));
    assert_eq!(r.skipped[0].reason, "NotSelected");
    assert!(env.sink.received().is_empty());
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.extracted.added + r.extracted.updated + r.extracted.deleted, 0, "skipped changes are not found again");
}

pub async fn rejected_records_are_retried_with_current_values(fx: Fixture) {
    let env = Env::new(fx, 5).await;
    let m = env.mapping();
    env.sink.set(|b| {
        b.reject_keys.insert("2".into());
    });
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::PartiallySuccessful, "{r:#?}");
    assert_eq!((r.loaded.succeeded, r.loaded.failed), (4, 1));
    let f = &r.failed_records[0];
    assert_eq!((f.key.as_str(), f.code.as_str(), f.operation.as_str()), ("2", "INVALID_RECORD", "added"));
    assert!(f.message.contains("not valid"), "{f:?}");
    assert!(!f.recommended_action.is_empty());
    assert_eq!(f.payload.as_ref().unwrap()["email"], "u2@example.com");
    assert_eq!(r.errors[0].code, "INVALID_RECORD");

    // Still rejected: retried again, counted as a retry.
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Failed, "every record sent was rejected: {r:#?}");
    assert_eq!((r.extracted.retried, r.loaded.failed), (1, 1));

    // The upstream problem is fixed and the row changed: the retry carries the new value.
    env.exec("UPDATE {users} SET email = 'fixed2@example.com' WHERE id = 2").await;
    env.sink.set(|b| b.reject_keys.clear());
    env.sink.clear();
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful);
    assert_eq!((r.extracted.retried, r.loaded.succeeded), (1, 1));
    assert_eq!(env.sink.latest()["2"].payload["email"], "fixed2@example.com");
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.extracted.retried, r.loaded.succeeded + r.loaded.failed), (0, 0), "nothing left to retry");
}

pub async fn retried_record_deleted_from_model_is_not_upserted(fx: Fixture) {
    let env = Env::new(fx, 3).await;
    let m = env.mapping();
    env.sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    env.sync(&m).await;
    env.sink.set(|b| b.reject_keys.clear());
    env.sink.clear();
    env.exec("DELETE FROM {users} WHERE id = 3").await;
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    assert!(env.sink.received().is_empty(), "a record gone from the model is not sent as an upsert");
    assert_eq!(r.extracted.retried, 0);
}

pub async fn failures_expire_after_the_retry_window(fx: Fixture) {
    let env = Env::new(fx, 3).await;
    let mut m = env.mapping();
    m.retry_window = "1s".into();
    env.sink.set(|b| {
        b.reject_keys.insert("1".into());
    });
    let (first, r) = env.sync(&m).await;
    assert_eq!(r.loaded.failed, 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    env.sink.clear();
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.loaded.expired, r.loaded.skipped, r.loaded.failed), (1, 1, 0), "{r:#?}");
    // The first sync's run and record log are pruned with the window: there
    // is nothing left to replay.
    let (_, replay) = env.sync_as(&m, SyncTrigger::Replay, Some(&first)).await;
    assert_eq!(replay.phase, SyncPhase::Failed, "{replay:#?}");
    assert!(replay.message.as_deref().unwrap_or_default().contains(&first), "{replay:#?}");
    assert_eq!(r.skipped[0].reason, "RetryWindowExpired");
    assert!(env.sink.received().is_empty() && env.sink.rejected() == 0, "an expired record is not sent");
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.extracted.added + r.extracted.updated, 0, "an expired record is dropped for good");
}

pub async fn every_record_rejected_is_a_failed_sync(fx: Fixture) {
    let env = Env::new(fx, 4).await;
    env.sink.set(|b| b.always_status = Some(400));
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!(r.phase, SyncPhase::Failed);
    assert_eq!(r.reason.as_deref(), Some("AllRecordsRejected"));
    assert_eq!(r.errors[0].code, "HTTP_400");
    assert_eq!(r.loaded.failed, 4);
}

pub async fn unreachable_destination_fails_and_nothing_is_lost(fx: Fixture) {
    let env = Env::new(fx, 4).await;
    let mut http = env.http.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    http.url = format!("http://user:secretpw@{closed}/batch");
    http.max_retries = Some(1);
    let m = env.mapping();
    let ctx = env.context(&m, SyncTrigger::Manual, None);
    let r = run_sync(&ctx, env.wh.as_ref(), env.destination_with(&http), &Quiet, &CancellationToken::new()).await;
    assert_adds_up(&r);
    assert_eq!(r.phase, SyncPhase::Failed);
    assert_eq!(r.reason.as_deref(), Some("DestinationUnreachable"));
    assert_eq!(r.errors[0].code, "DESTINATION_UNAVAILABLE");
    assert!(r.errors[0].message.contains("cannot connect"), "{}", r.errors[0].message);
    assert!(!format!("{r:?}").contains("secretpw"), "credentials in the URL never show");
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.phase, r.extracted.retried, r.loaded.succeeded), (SyncPhase::Successful, 4, 4));
}

pub async fn throttling_and_server_errors_are_retried_inside_the_run(fx: Fixture) {
    let env = Env::new(fx, 30).await;
    env.sink.set(|b| {
        b.fail_next = [429, 503, 500].into();
        b.drop_next_connections = 1;
    });
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    assert_eq!(r.loaded.succeeded, 30);
    assert_eq!(env.sink.latest().len(), 30);
    assert!(env.sink.requests() >= 3 + 3, "3 batches plus 3 refused attempts");
}

pub async fn a_stalled_destination_times_out(fx: Fixture) {
    let env = Env::new(fx, 3).await;
    let mut http = env.http.clone();
    http.timeout_seconds = Some(1);
    http.max_retries = Some(0);
    env.sink.set(|b| b.stall = Some(Duration::from_secs(3)));
    let m = env.mapping();
    let ctx = env.context(&m, SyncTrigger::Manual, None);
    let r = run_sync(&ctx, env.wh.as_ref(), env.destination_with(&http), &Quiet, &CancellationToken::new()).await;
    assert_adds_up(&r);
    assert_eq!(r.phase, SyncPhase::Failed);
    assert!(r.errors[0].message.contains("timed out"), "{:?}", r.errors);
    env.sink.set(|b| b.stall = None);
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.loaded.succeeded, 3);
}

pub async fn reset_sends_everything_again(fx: Fixture) {
    let env = Env::new(fx, 6).await;
    let m = env.mapping();
    env.sync(&m).await;
    env.sink.clear();
    let (_, r) = env.sync_as(&m, SyncTrigger::Reset, None).await;
    assert_eq!((r.extracted.added, r.loaded.new), (6, 6), "{r:#?}");
    assert_eq!(env.sink.latest().len(), 6);
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.extracted.unchanged, 6, "once");
}

pub async fn replay_resends_a_past_sync_with_current_values(fx: Fixture) {
    let env = Env::new(fx, 4).await;
    let m = env.mapping();
    let (first, _) = env.sync(&m).await;
    env.insert([5]).await;
    env.sync(&m).await;
    env.exec("UPDATE {users} SET email = 'now1@example.com' WHERE id = 1").await;
    env.exec("DELETE FROM {users} WHERE id = 2").await;
    env.sink.clear();
    let (_, r) = env.sync_as(&m, SyncTrigger::Replay, Some(&first)).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    assert_eq!(r.extracted.total, 4, "exactly the records the replayed sync extracted");
    let latest = env.sink.latest();
    assert_eq!(latest.keys().cloned().collect::<Vec<_>>(), vec!["1", "2", "3", "4"]);
    assert_eq!(latest["1"].payload["email"], "now1@example.com", "current values, never stale data");
    assert_eq!(latest["2"].operation, "delete", "gone from the model: sent as a delete");
    let (_, r) = env.sync_as(&m, SyncTrigger::Replay, Some("no-such-sync")).await;
    assert_eq!(r.phase, SyncPhase::Failed);
    assert!(r.message.unwrap().contains("no-such-sync"));
}

pub async fn guards_stop_a_sync_before_anything_is_sent(fx: Fixture) {
    let env = Env::new(fx, 10).await;
    let mut m = env.mapping();
    env.sync(&m).await;
    env.sink.clear();
    env.exec("DELETE FROM {users}").await;
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.phase, r.reason.as_deref()), (SyncPhase::Failed, Some("GuardTripped")));
    assert!(r.message.as_deref().unwrap().contains("allowEmptyModel"));
    assert_eq!(r.loaded.skipped, 10);
    assert!(env.sink.received().is_empty());

    env.insert(1..=7).await;
    m.guards.max_deletes = Some(2);
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.reason.as_deref(), Some("GuardTripped"), "3 deletes > maxDeletes 2");
    assert!(env.sink.received().is_empty());
    m.guards.max_deletes = Some(3);
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.phase, r.loaded.deleted), (SyncPhase::Successful, 3), "the state was left as it was");
}

pub async fn bad_sql_and_bad_mappings_fail_with_a_clear_message(fx: Fixture) {
    let mut env = Env::new(fx, 2).await;
    let m = env.mapping();
    let good = env.model.clone();
    env.model.query = "SELEC nonsense FROM".into();
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.phase, r.reason.as_deref()), (SyncPhase::Failed, Some("QueryFailed")), "{r:#?}");
    assert!(r.message.as_deref().unwrap().contains("Fix the query"));

    env.model.query = format!("SELECT email, name FROM {}", env.fx.table("users"));
    let (_, r) = env.sync(&m).await;
    assert!(r.message.as_deref().unwrap().contains("primary key column \"id\""), "{r:#?}");

    env.model = good;
    let mut m2 = env.mapping();
    m2.fields.push(map("plan", "no_such_column"));
    let (_, r) = env.sync(&m2).await;
    assert_eq!((r.phase, r.reason.as_deref()), (SyncPhase::Failed, Some("InvalidSpec")));
    assert!(r.message.as_deref().unwrap().contains("no_such_column"), "{r:#?}");
    assert!(env.sink.received().is_empty());
}

pub async fn a_killed_worker_loses_nothing(fx: Fixture) {
    let env = std::sync::Arc::new(Env::new(fx, 200).await);
    let mut http = env.http.clone();
    http.max_in_flight = Some(1);
    env.sink.set(|b| b.stall = Some(Duration::from_millis(100)));
    let m = env.mapping();
    let ctx = env.context(&m, SyncTrigger::Manual, None);
    let runner = env.clone();
    let dest = env.destination_with(&http);
    let task = tokio::spawn(async move { run_sync(&ctx, runner.wh.as_ref(), dest, &Quiet, &CancellationToken::new()).await });
    // Kill it mid-load, once a few batches are acknowledged.
    while env.sink.received().len() < 30 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    let delivered_before = env.sink.latest().len();
    assert!(delivered_before < 200, "the kill came mid-load");

    env.sink.set(|b| b.stall = None);
    let abandoned = fail_abandoned_runs(env.wh.as_ref(), &env.mapping_uid).await.unwrap();
    assert_eq!(abandoned, 1, "the killed run is marked Failed");
    let runs =
        env.wh.runs(&HistoryFilter { mapping_uids: vec![StateScope::from_uid(&env.mapping_uid).id], ..Default::default() }).await.unwrap();
    assert_eq!(runs[0].phase, "Failed");
    assert!(runs[0].status_json.contains("WorkerDied"));

    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    assert!(r.loaded.succeeded as usize <= 200 - delivered_before + 10, "acknowledged batches were committed");
    assert_eq!(env.sink.latest().len(), 200, "every record ends up delivered");
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.extracted.unchanged, 200, "and the state holds all of them");
}

pub async fn cancel_stops_at_a_batch_boundary(fx: Fixture) {
    let env = Env::new(fx, 100).await;
    let mut http = env.http.clone();
    http.max_in_flight = Some(1);
    env.sink.set(|b| b.stall = Some(Duration::from_millis(50)));
    let r = canceled_when(&env, &http, || env.sink.received().len() >= 20).await;
    assert!(r.loaded.succeeded >= 20 && r.loaded.succeeded < 100);
    assert_eq!(r.skipped[0].reason, "Canceled");
    the_next_sync_sends_the_rest(&env, 100, &r).await;
}

pub async fn cancel_stops_batches_already_mapped(fx: Fixture) {
    // 25 records in batches of 10, one in flight: the three batches are
    // mapped at once, the first is sent and the other two wait for room.
    // A cancel while the first is answered stops the last one from going.
    let env = Env::new(fx, 25).await;
    let mut http = env.http.clone();
    http.batch_size = Some(10);
    http.max_in_flight = Some(1);
    env.sink.set(|b| b.stall = Some(Duration::from_millis(500)));
    let r = canceled_when(&env, &http, || env.sink.max_in_flight() > 0).await;
    assert!(r.loaded.succeeded < 25 && env.sink.received().len() < 25, "the last batch stayed: {r:#?}");
    the_next_sync_sends_the_rest(&env, 25, &r).await;
}

/// Runs a sync through `http` and cancels it once `now()` holds; it ends
/// `Canceled`, its counts adding up.
async fn canceled_when(env: &Env, http: &HttpDestination, now: impl Fn() -> bool) -> SyncReport {
    let m = env.mapping();
    let ctx = env.context(&m, SyncTrigger::Manual, None);
    let cancel = CancellationToken::new();
    let watcher = async {
        while !now() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
    };
    let (r, _) = tokio::join!(run_sync(&ctx, env.wh.as_ref(), env.destination_with(http), &Quiet, &cancel), watcher);
    assert_adds_up(&r);
    assert_eq!(r.phase, SyncPhase::Canceled, "{r:#?}");
    r
}

/// After the canceled sync `r`, the next one (the sink no longer stalling)
/// sends exactly the rest of the `total` records.
async fn the_next_sync_sends_the_rest(env: &Env, total: u64, r: &SyncReport) {
    env.sink.set(|b| b.stall = None);
    let (_, rest) = env.sync(&env.mapping()).await;
    assert_eq!(rest.loaded.succeeded, total - r.loaded.succeeded, "the next sync sends exactly the rest");
    assert_eq!(env.sink.latest().len() as u64, total);
}

pub async fn concurrency_and_rate_limit_are_bounded(fx: Fixture) {
    let env = Env::new(fx, 60).await;
    let mut http = env.http.clone();
    http.batch_size = Some(2);
    http.max_in_flight = Some(3);
    http.requests_per_second = Some(10);
    env.sink.set(|b| b.stall = Some(Duration::from_millis(30)));
    let m = env.mapping();
    let ctx = env.context(&m, SyncTrigger::Manual, None);
    let started = std::time::Instant::now();
    let r = run_sync(&ctx, env.wh.as_ref(), env.destination_with(&http), &Quiet, &CancellationToken::new()).await;
    assert_adds_up(&r);
    assert_eq!(r.loaded.succeeded, 60);
    assert_eq!(env.sink.requests(), 30);
    let peak = env.sink.max_in_flight();
    assert!((2..=3).contains(&peak), "batches overlap, but never more than maxInFlight: {peak}");
    // 30 requests at 10 per second (a burst of 10, then one per 100 ms) take at least 2 s.
    assert!(started.elapsed() >= Duration::from_millis(1900), "rate limit held: {:?}", started.elapsed());
}

pub async fn values_json_cannot_carry_fail_that_record(fx: Fixture) {
    let Some(expr) = fx.unsupported_value else { return };
    let mut env = Env::new(fx, 3).await;
    env.model.query = format!("SELECT id, email, name, CASE WHEN id = 2 THEN {expr} ELSE NULL END AS plan FROM {}", env.fx.table("users"));
    let mut m = env.mapping();
    m.fields.push(map("plan", "plan"));
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::PartiallySuccessful, "{r:#?}");
    assert_eq!(r.failed_records[0].key, "2");
    assert_eq!(r.failed_records[0].code, "UNSUPPORTED_VALUE");
    assert!(r.failed_records[0].message.contains("cast it in the model"), "{r:#?}");
    assert_eq!(env.sink.latest().len(), 2);
}
