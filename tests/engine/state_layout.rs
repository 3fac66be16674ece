//! State layout 2 as users meet it: the per-record log they query is a view
//! over the batch rows and the rejected records; a sync killed after its
//! records were acknowledged but before they were merged into the snapshot
//! loses nothing and sends nothing twice; a layout-1 state is upgraded in
//! place, its history kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use retl::api::{SyncPhase, SyncTrigger};
use retl::engine::{Observer, Progress, run_sync};
use retl::warehouse::{HistoryFilter, StateScope};
use tokio_util::sync::CancellationToken;

use super::fixture::Fixture;
use super::support::{Env, assert_adds_up};

/// A state table or view of the test's Mapping, quoted for its dialect.
fn state(env: &Env, name: &str) -> String {
    let id = StateScope::from_uid(&env.mapping_uid).id;
    let schema = &env.fx.source.state_schema;
    match env.fx.name {
        "sqlite" => format!("\"{schema}_{name}_{id}\""),
        "postgres" => format!("\"{schema}\".\"{name}_{id}\""),
        _ => format!("`{schema}`.`{name}_{id}`"),
    }
}

/// How many rows a query returns: copied into a scratch table, which every
/// dialect counts as rows affected.
async fn count(env: &Env, select: &str) -> u64 {
    let scratch = env.fx.table(&format!("scratch_{}", uuid::Uuid::new_v4().simple()));
    env.exec(&format!("CREATE TABLE {scratch} (k VARCHAR(200))")).await;
    let n = env.wh.execute(&format!("INSERT INTO {scratch} (k) {select}")).await.unwrap_or_else(|e| panic!("{select}: {e}"));
    env.exec(&format!("DROP TABLE {scratch}")).await;
    n
}

pub async fn the_record_log_view_shows_every_record(fx: Fixture) {
    let env = Env::new(fx, 30).await;
    let m = env.mapping();
    env.sink.set(|b| b.reject_keys.extend((1..=5).map(|k| k.to_string())));
    let (first, r) = env.sync(&m).await;
    assert_eq!((r.loaded.succeeded, r.loaded.failed), (25, 5), "{r:#?}");
    let log = state(&env, "log");
    let rows = |filter: &str| format!("SELECT k FROM {log} WHERE sync = '{first}' {filter}");
    assert_eq!(count(&env, &rows("")).await, 30, "a row per record");
    assert_eq!(count(&env, &rows("AND outcome = 'delivered' AND op = 'added'")).await, 25);
    assert_eq!(count(&env, &rows("AND outcome = 'rejected' AND code = 'INVALID_RECORD' AND payload IS NOT NULL")).await, 5);
    assert_eq!(count(&env, &rows("AND k = '17'")).await, 1, "each key once, as text");

    env.exec("DELETE FROM {users} WHERE id IN (29, 30)").await;
    env.sink.set(|b| b.reject_keys.clear());
    let (second, r) = env.sync(&m).await;
    assert_eq!((r.loaded.deleted, r.extracted.retried, r.loaded.succeeded), (2, 5, 7), "{r:#?}");
    let deleted = format!("SELECT k FROM {log} WHERE sync = '{second}' AND op = 'deleted' AND outcome = 'delivered'");
    assert_eq!(count(&env, &deleted).await, 2);
    assert_eq!(count(&env, &rows("")).await, 30, "the first sync's log stays");
}

/// Blocks the sync at its last progress report: every record answered and
/// committed, none merged into the snapshot yet.
struct StopAfterCommits {
    records: u64,
    reached: AtomicBool,
}

#[async_trait]
impl Observer for StopAfterCommits {
    async fn progress(&self, p: &Progress) {
        if p.answered() >= self.records {
            self.reached.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    }
}

pub async fn a_kill_between_acknowledgement_and_merge_loses_and_resends_nothing(fx: Fixture) {
    let env = Arc::new(Env::new(fx, 50).await);
    let m = env.mapping();
    env.sink.set(|b| b.reject_keys.extend(["7".to_string()]));
    let ctx = env.context(&m, SyncTrigger::Manual, None);
    let killed = ctx.sync_name.clone();
    let observer = Arc::new(StopAfterCommits { records: 50, reached: AtomicBool::new(false) });
    let (runner, watcher) = (env.clone(), observer.clone());
    let task =
        tokio::spawn(
            async move { run_sync(&ctx, runner.wh.as_ref(), runner.destination(), watcher.as_ref(), &CancellationToken::new()).await },
        );
    tokio::time::timeout(Duration::from_secs(60), async {
        while !observer.reached.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the sync commits every batch");
    task.abort();
    let _ = task.await;
    assert_eq!((env.sink.received().len(), env.sink.rejected()), (49, 1), "every record reached the destination once");

    // One record changes upstream meanwhile; record 7 is now accepted.
    env.exec("UPDATE {users} SET name = 'Changed' WHERE id = 3").await;
    env.sink.set(|b| b.reject_keys.clear());
    env.sink.clear();
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    assert_eq!((r.extracted.unchanged, r.extracted.updated, r.extracted.added), (48, 1, 1), "merged before the diff: {r:#?}");
    assert_eq!((r.extracted.retried, r.loaded.succeeded), (1, 2), "{r:#?}");
    let mut sent: Vec<String> = env.sink.received().into_iter().map(|x| x.key).collect();
    sent.sort();
    assert_eq!(sent, ["3", "7"], "only the change and the rejected record, nothing twice");

    // The killed sync is closed with what its log holds.
    let runs =
        env.wh.runs(&HistoryFilter { mapping_uids: vec![StateScope::from_uid(&env.mapping_uid).id], ..Default::default() }).await.unwrap();
    let run = runs.iter().find(|x| x.sync == killed).expect("the killed sync's run");
    let dead: retl::engine::SyncReport = serde_json::from_str(&run.status_json).unwrap();
    assert_adds_up(&dead);
    assert_eq!((dead.phase, dead.reason.as_deref()), (SyncPhase::Failed, Some("WorkerDied")), "{dead:#?}");
    assert_eq!((dead.loaded.succeeded, dead.loaded.failed), (49, 1), "{dead:#?}");
}

/// The tables an older retl (state layout 1) left for the test's Mapping:
/// a record log with a row per record, a key marked in flight, and a
/// snapshot; `layout` says 1.
async fn layout_1(env: &Env) {
    let schema = &env.fx.source.state_schema;
    let (s, l, i) = (state(env, "snapshot"), state(env, "log"), state(env, "inflight"));
    let (text, key, layout, runs) = match env.fx.name {
        "sqlite" => ("TEXT", "TEXT", format!("\"{schema}_layout\""), format!("\"{schema}_sync_runs\"")),
        "postgres" => ("text", "text", format!("\"{schema}\".layout"), format!("\"{schema}\".sync_runs")),
        _ => ("VARCHAR(253)", "VARBINARY(1024)", format!("`{schema}`.layout"), format!("`{schema}`.sync_runs")),
    };
    let hash = if env.fx.name == "postgres" { "bigint" } else { "VARCHAR(64)" };
    let long = if env.fx.name == "mysql" { "LONGTEXT" } else { text };
    match env.fx.name {
        "postgres" => env.exec(&format!("CREATE SCHEMA \"{schema}\"")).await,
        "mysql" => env.exec(&format!("CREATE DATABASE `{schema}`")).await,
        _ => {}
    }
    let uid = StateScope::from_uid(&env.mapping_uid).id;
    // Recent: the retry window keeps it.
    let at = jiff::Timestamp::now().as_millisecond() - 60_000;
    for sql in [
        format!("CREATE TABLE {layout} (version INTEGER NOT NULL)"),
        format!("INSERT INTO {layout} (version) VALUES (1)"),
        format!(
            "CREATE TABLE {runs} (namespace {text} NOT NULL, sync {text} NOT NULL, mapping {text} NOT NULL, mapping_uid {text} NOT NULL,
             model {text} NOT NULL, destination {text} NOT NULL, trigger_kind {text} NOT NULL, phase {text} NOT NULL,
             started_ms BIGINT NOT NULL, completed_ms BIGINT, status_json {long} NOT NULL, PRIMARY KEY (namespace, sync))"
        ),
        format!(
            "INSERT INTO {runs} VALUES ('default', 'old-sync', 'users', '{uid}', 'users', 'sink', 'Manual', 'Successful', {at}, {at}, '{{}}')"
        ),
        format!("CREATE TABLE {s} (k {key} PRIMARY KEY, h {hash} NOT NULL, delivered_at BIGINT NOT NULL)"),
        format!(
            "CREATE TABLE {l} (sync {text} NOT NULL, k {key}, op {text} NOT NULL, outcome {text} NOT NULL, code {text},
             error {text}, payload {text}, at BIGINT NOT NULL)"
        ),
        format!("CREATE TABLE {i} (k {key} PRIMARY KEY, sync {text} NOT NULL, at BIGINT NOT NULL)"),
        format!("INSERT INTO {i} (k, sync, at) VALUES ('9', 'old-sync', {at})"),
    ] {
        env.exec(&sql).await;
    }
    for k in 1..=8 {
        env.exec(&format!("INSERT INTO {s} (k, h, delivered_at) VALUES ('{k}', 1, {at})")).await;
        env.exec(&format!("INSERT INTO {l} (sync, k, op, outcome, at) VALUES ('old-sync', '{k}', 'added', 'delivered', {at})")).await;
    }
}

pub async fn layout_1_state_is_upgraded_in_place(fx: Fixture) {
    let env = Env::new(fx, 10).await;
    layout_1(&env).await;
    let m = env.mapping();
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.phase, SyncPhase::Successful, "{r:#?}");
    // 1-8 were delivered with other values, 9 was in flight when the old
    // retl stopped (its hash is unknown): all sent as updates; 10 is new.
    assert_eq!((r.extracted.updated, r.extracted.added, r.loaded.succeeded), (9, 1, 10), "{r:#?}");
    let old = format!("SELECT k FROM {} WHERE sync = 'old-sync'", state(&env, "log"));
    assert_eq!(count(&env, &old).await, 8, "the old record log reads through the new view");
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.extracted.unchanged, r.changes()), (10, 0), "the snapshot is whole: {r:#?}");
    env.sink.clear();
    let (_, r) = env.sync_as(&m, SyncTrigger::Replay, Some("old-sync")).await;
    assert_eq!((r.phase, r.loaded.succeeded), (SyncPhase::Successful, 8), "a layout-1 sync replays: {r:#?}");
    assert_eq!(env.sink.received().len(), 8);
}

/// PostgreSQL only (a first sync there fills a snapshot without its primary
/// key, which is then built): should the snapshot ever hold a key twice, the
/// key is still built, the newer entry kept, and nothing is sent again.
pub async fn a_snapshot_holding_a_key_twice_is_mended(fx: Fixture) {
    let env = Env::new(fx, 10).await;
    let m = env.mapping();
    let (_, r) = env.sync(&m).await;
    assert_eq!(r.loaded.succeeded, 10, "{r:#?}");
    let snapshot = state(&env, "snapshot");
    let key = format!("\"snapshot_{}_pkey\"", StateScope::from_uid(&env.mapping_uid).id);
    env.exec(&format!("ALTER TABLE {snapshot} DROP CONSTRAINT {key}")).await;
    // An older entry of key 3 with another hash: were it kept, record 3
    // would be sent again as updated.
    env.exec(&format!("INSERT INTO {snapshot} (k, h, delivered_at) SELECT k, h + 1, delivered_at - 1 FROM {snapshot} WHERE k = '3'")).await;
    env.sink.clear();
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.phase, r.extracted.unchanged, r.loaded.succeeded), (SyncPhase::Successful, 10, 0), "{r:#?}");
    assert!(env.sink.received().is_empty(), "nothing is sent again");
    assert_eq!(count(&env, &format!("SELECT k FROM {snapshot}")).await, 10, "one entry per key");
    // The key is back: the next sync's upserts need it.
    env.exec("UPDATE {users} SET plan = 'pro' WHERE id = 3").await;
    let (_, r) = env.sync(&m).await;
    assert_eq!((r.phase, r.loaded.succeeded, r.extracted.updated), (SyncPhase::Successful, 1, 1), "{r:#?}");
}
