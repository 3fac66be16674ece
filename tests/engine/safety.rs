//! Runner and engine safety (issue 11): guards on every kind of sync, one
//! sync of a Mapping at a time, no ghost records after a kill, and history
//! that tells what a killed sync delivered.

use std::time::Duration;

use retl::api::{SyncPhase, SyncTrigger};
use retl::engine::{Quiet, run_sync};
use retl::warehouse::{HistoryFilter, StateScope};
use tokio_util::sync::CancellationToken;

use super::fixture::Fixture;
use super::support::{Env, assert_adds_up};

pub async fn replay_and_reset_obey_the_guards(fx: Fixture) {
    let env = Env::new(fx, 10).await;
    let mut m = env.mapping();
    let (first, _) = env.sync(&m).await;
    env.exec("DELETE FROM {users}").await;
    env.sink.clear();
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.reason.as_deref(), Some("GuardTripped"), "{r:#?}");

    // Replaying the first sync now would send a delete for each of its records.
    let (_, r) = env.sync_as(&m, SyncTrigger::Replay, Some(&first)).await;
    assert_eq!((r.phase, r.reason.as_deref()), (SyncPhase::Failed, Some("GuardTripped")), "{r:#?}");
    assert!(r.message.as_deref().unwrap_or_default().contains("allowEmptyModel"), "{r:#?}");
    assert_eq!((r.loaded.succeeded, r.loaded.skipped), (0, 10));
    // A reset would forget the delivered records, so that nothing could delete them later.
    let (_, r) = env.sync_as(&m, SyncTrigger::Reset, None).await;
    assert_eq!((r.phase, r.reason.as_deref()), (SyncPhase::Failed, Some("GuardTripped")), "{r:#?}");
    assert!(env.sink.received().is_empty(), "no guard was bypassed: {:?}", env.sink.received());
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.reason.as_deref(), Some("GuardTripped"), "the reset left the state as it was: {r:#?}");

    // maxDeletes holds for a replay too.
    env.insert(1..=7).await;
    m.guards.max_deletes = Some(2);
    let (_, r) = env.sync_as(&m, SyncTrigger::Replay, Some(&first)).await;
    assert_eq!(r.reason.as_deref(), Some("GuardTripped"), "3 deletes > maxDeletes 2: {r:#?}");
    assert!(r.message.as_deref().unwrap_or_default().contains("maxDeletes"), "{r:#?}");
    assert!(env.sink.received().is_empty());
    m.guards.max_deletes = Some(3);
    let (_, r) = env.sync_as(&m, SyncTrigger::Replay, Some(&first)).await;
    assert_eq!((r.phase, r.loaded.deleted, r.loaded.updated), (SyncPhase::Successful, 3, 7), "{r:#?}");
}

/// How many times the sink accepted each key, for keys accepted more than once.
fn sent_twice(env: &Env) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for r in env.sink.received() {
        *counts.entry(r.key).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).collect()
}

pub async fn overlapping_syncs_send_each_record_once(fx: Fixture) {
    let env = Env::new(fx, 200).await;
    let mut http = env.http.clone();
    http.max_in_flight = Some(1);
    // 20 batches of 10 at 100 ms each: a sync runs for about 2 s.
    env.sink.set(|b| b.stall = Some(Duration::from_millis(100)));
    let m = env.mapping();
    let run = |ctx: retl::engine::SyncContext| {
        let dest = env.destination_with(&http);
        let wh = env.wh.as_ref();
        async move {
            let r = run_sync(&ctx, wh, dest, &Quiet, &CancellationToken::new()).await;
            assert_adds_up(&r);
            r
        }
    };

    // Started together: one waits for the other, then finds nothing left.
    // The wait outlasts the first sync however slow the machine is (the
    // second case checks a wait shorter than the first sync).
    let patient = || {
        let mut ctx = env.context(&m, SyncTrigger::Manual, None);
        ctx.lock_wait = Duration::from_secs(120);
        ctx
    };
    let (a, b) = tokio::join!(run(patient()), run(patient()));
    assert_eq!(sent_twice(&env), vec![], "no record is sent twice");
    assert_eq!(env.sink.latest().len(), 200);
    assert_eq!((a.phase, b.phase), (SyncPhase::Successful, SyncPhase::Successful), "{a:#?}\n{b:#?}");
    assert_eq!(a.loaded.succeeded + b.loaded.succeeded, 200, "{a:#?}\n{b:#?}");

    // Started 1 s apart, with a wait shorter than the first sync: the second
    // gives up with a clear reason and leaves the first alone.
    env.insert(201..=400).await;
    env.sink.clear();
    let mut second = env.context(&m, SyncTrigger::Manual, None);
    second.lock_wait = Duration::from_millis(500);
    let first = env.context(&m, SyncTrigger::Manual, None);
    let first_name = first.sync_name.clone();
    let (a, b) = tokio::join!(run(first), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        run(second).await
    });
    assert_eq!((a.phase, a.loaded.succeeded), (SyncPhase::Successful, 200), "the first sync was not disturbed: {a:#?}");
    assert_eq!((b.phase, b.reason.as_deref()), (SyncPhase::Failed, Some("SyncInProgress")), "{b:#?}");
    assert!(b.message.as_deref().unwrap_or_default().contains("another sync of Mapping users"), "{b:#?}");
    assert_eq!(b.loaded.succeeded + b.loaded.failed, 0);
    let runs =
        env.wh.runs(&HistoryFilter { mapping_uids: vec![StateScope::from_uid(&env.mapping_uid).id], ..Default::default() }).await.unwrap();
    let first_run = runs.iter().find(|r| r.sync == first_name).unwrap();
    assert_eq!(first_run.phase, "Successful", "not taken for abandoned: {}", first_run.status_json);

    // Started 1 s apart, with a wait longer than the first sync: the second
    // runs after the first.
    env.insert(401..=600).await;
    env.sink.clear();
    let (a, b) = tokio::join!(run(patient()), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        run(patient()).await
    });
    assert_eq!((a.phase, a.loaded.succeeded), (SyncPhase::Successful, 200), "{a:#?}");
    assert_eq!((b.phase, b.loaded.succeeded), (SyncPhase::Successful, 0), "{b:#?}");
    assert_eq!(sent_twice(&env), vec![], "no record is sent twice");
    assert_eq!(env.sink.latest().len(), 200);
}

pub async fn records_in_flight_at_a_kill_get_their_deletes(fx: Fixture) {
    let env = std::sync::Arc::new(Env::new(fx, 50).await);
    let mut http = env.http.clone();
    http.max_in_flight = Some(1);
    http.timeout_seconds = Some(60);
    // The destination takes the first batch, then the worker dies before the answer.
    env.sink.set(|b| b.hang_after_accept = Some(Duration::from_secs(30)));
    let m = env.mapping();
    let ctx = env.context(&m, SyncTrigger::Manual, None);
    let runner = env.clone();
    let dest = env.destination_with(&http);
    let task = tokio::spawn(async move { run_sync(&ctx, runner.wh.as_ref(), dest, &Quiet, &CancellationToken::new()).await });
    while env.sink.received().len() < 10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    let ghosts: Vec<String> = env.sink.received().into_iter().map(|r| r.key).collect();
    assert_eq!(ghosts.len(), 10, "one batch reached the destination: {ghosts:?}");

    // Upstream deletes those rows before the next sync.
    env.exec(&format!("DELETE FROM {{users}} WHERE id IN ({})", ghosts.join(", "))).await;
    env.sink.set(|b| b.hang_after_accept = None);
    env.sink.clear();
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    let latest = env.sink.latest();
    for k in &ghosts {
        assert_eq!(latest.get(k).map(|x| x.operation.as_str()), Some("delete"), "key {k} gets a delete: {r:#?}");
    }
    assert_eq!(latest.len(), 50, "the other 40 are delivered, the 10 deleted");
    assert_eq!((r.loaded.new, r.loaded.deleted), (40, 10), "{r:#?}");
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.extracted.unchanged, r.changes()), (40, 0), "nothing left over: {r:#?}");
}

pub async fn a_killed_sync_shows_what_it_delivered(fx: Fixture) {
    let env = std::sync::Arc::new(Env::new(fx, 200).await);
    let mut http = env.http.clone();
    http.max_in_flight = Some(1);
    env.sink.set(|b| b.stall = Some(Duration::from_millis(50)));
    let m = env.mapping();
    let ctx = env.context(&m, SyncTrigger::Manual, None);
    let killed = ctx.sync_name.clone();
    let runner = env.clone();
    let dest = env.destination_with(&http);
    let task = tokio::spawn(async move { run_sync(&ctx, runner.wh.as_ref(), dest, &Quiet, &CancellationToken::new()).await });
    while env.sink.received().len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    let delivered = env.sink.received().len() as u64;
    assert_eq!(retl::engine::fail_abandoned_runs(env.wh.as_ref(), &env.mapping_uid).await.unwrap(), 1);
    let runs =
        env.wh.runs(&HistoryFilter { mapping_uids: vec![StateScope::from_uid(&env.mapping_uid).id], ..Default::default() }).await.unwrap();
    let run = runs.iter().find(|r| r.sync == killed).unwrap();
    let r: retl::engine::SyncReport = serde_json::from_str(&run.status_json).unwrap();
    assert_adds_up(&r);
    assert_eq!((r.phase, r.reason.as_deref()), (SyncPhase::Failed, Some("WorkerDied")), "{r:#?}");
    assert_eq!((r.extracted.total, r.extracted.added), (200, 200), "what it found: {r:#?}");
    // What the log holds: every batch acknowledged and committed before the kill.
    assert!(r.loaded.succeeded >= 30 && r.loaded.succeeded <= delivered, "{delivered} sent: {r:#?}");
    assert_eq!((r.loaded.new, r.loaded.skipped), (r.loaded.succeeded, 200 - r.loaded.succeeded), "{r:#?}");
    assert_eq!(r.skipped[0].reason, "NotProcessed", "{r:#?}");
}

pub async fn state_writes_cancelled_at_any_moment_leave_no_transaction_behind(fx: Fixture) {
    let env = Env::new(fx, 20).await;
    let m = env.mapping();
    let scope = StateScope::from_uid(&env.mapping_uid);
    // A reset is one transaction. Dropped at each of its await points in
    // turn (as a task abort or a deadline drops a sync), it must not leave
    // a pooled connection inside a transaction: the next sync's statements
    // on that connection would never commit and would hold their row locks,
    // so that the sync's other statements wait on them and fail.
    for polls in 1..=12 {
        let _ = cancel_after_polls(env.wh.reset(&scope), polls).await;
        let (_, r) = tokio::time::timeout(Duration::from_secs(120), env.sync(&m))
            .await
            .unwrap_or_else(|_| panic!("a sync after a reset cancelled at poll {polls} hangs"));
        assert_eq!(r.phase, SyncPhase::Successful, "after a reset cancelled at poll {polls}: {r:#?}");
        assert_adds_up(&r);
    }
    // What the syncs committed is there: nothing more to send.
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.extracted.unchanged, 20, "{r:#?}");
}

/// Polls `f` until it has returned `Pending` `polls` times, then drops it.
async fn cancel_after_polls<F: std::future::Future>(f: F, polls: usize) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut pending = 0;
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => {
            pending += 1;
            if pending >= polls { std::task::Poll::Ready(None) } else { std::task::Poll::Pending }
        }
    })
    .await
}

/// Runs of one Mapping in separate processes (two `retl run`s, two Jobs)
/// prepare its state at the same moment: each gets a connection of its own
/// here, and every one must find the state ready, none half-made.
pub async fn state_prepared_by_runs_starting_together_is_whole(fx: Fixture) {
    let env = Env::new(fx, 0).await;
    let scope = StateScope::from_uid(&env.mapping_uid);
    let mut warehouses = Vec::new();
    for _ in 0..4 {
        warehouses.push(retl::warehouse::connect(env.fx.name, &env.fx.source, &env.fx.secrets, std::path::Path::new(".")).await.unwrap());
    }
    for round in 0..5 {
        let results = futures::future::join_all(warehouses.iter().map(|wh| wh.prepare_state(&scope))).await;
        for r in results {
            r.unwrap_or_else(|e| panic!("round {round}: a run starting with others failed: {e}"));
        }
    }
    // The state works: a sync runs on it.
    env.insert(1..=5).await;
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!((r.phase, r.loaded.succeeded), (SyncPhase::Successful, 5), "{r:#?}");
}
