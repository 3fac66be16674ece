//! The record log as people read it (`retl records`, `kubectl retl
//! records`): every failed record of a sync, with its error and payload,
//! page by page, not only the samples a Sync's status keeps; rows the
//! model cannot deliver (null or duplicate keys, missing fields) are failed
//! records like any other.

use retl::api::{ChangeKind, SyncPhase};
use retl::warehouse::StateScope;

use super::fixture::Fixture;
use super::support::Env;

pub async fn every_failed_record_is_in_the_record_log_page_by_page(fx: Fixture) {
    let env = Env::new(fx, 30).await;
    let m = env.mapping();
    env.sink.set(|b| b.reject_keys.extend((1..=22).map(|k| k.to_string())));
    env.exec("UPDATE {users} SET email = NULL WHERE id = 30").await;
    let (sync, r) = env.sync(&m).await;
    assert_eq!((r.loaded.succeeded, r.loaded.failed), (7, 23), "{r:#?}");
    assert!(r.failed_records.len() <= 10, "the status keeps samples only: {r:#?}");

    let scope = StateScope::from_uid(&env.mapping_uid);
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = env.wh.failed_records(&scope, &sync, offset, 10).await.unwrap();
        assert!(page.len() <= 10, "a page holds at most its limit");
        if page.is_empty() {
            break;
        }
        offset += page.len() as u64;
        seen.extend(page);
    }
    assert_eq!(seen.len(), 23, "every failed record, each once: {seen:#?}");
    let mut keys: Vec<u32> = seen.iter().map(|f| f.key.as_deref().unwrap().parse().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, (1..=22).chain([30]).collect::<Vec<_>>());

    let refused = seen.iter().find(|f| f.key.as_deref() == Some("5")).unwrap();
    assert_eq!((refused.kind, refused.code.as_str()), (ChangeKind::Added, "INVALID_RECORD"));
    assert!(refused.message.contains("not valid"), "the destination's own message: {refused:?}");
    let payload: serde_json::Value = serde_json::from_str(refused.payload.as_deref().unwrap()).unwrap();
    assert_eq!(payload["email"], "u5@example.com", "the payload as sent");
    let missing = seen.iter().find(|f| f.key.as_deref() == Some("30")).unwrap();
    assert_eq!(missing.code, "MISSING_REQUIRED_FIELD", "rejected before sending: {missing:?}");
    assert!(missing.at_ms > 0);

    // The next sync retries them; its log is its own, the first one's stays.
    env.sink.set(|b| b.reject_keys.clear());
    let (next, r) = env.sync(&m).await;
    assert_eq!((r.extracted.retried, r.loaded.succeeded, r.loaded.failed), (23, 22, 1), "{r:#?}");
    let failed = env.wh.failed_records(&scope, &next, 0, 100).await.unwrap();
    assert_eq!(failed.iter().map(|f| f.key.as_deref()).collect::<Vec<_>>(), [Some("30")]);
    assert_eq!(env.wh.failed_records(&scope, &sync, 0, 100).await.unwrap().len(), 23, "history stays");
    assert!(env.wh.failed_records(&scope, &sync, 23, 10).await.unwrap().is_empty(), "past the end: nothing");
    assert!(env.wh.failed_records(&scope, "no-such-sync", 0, 10).await.unwrap().is_empty());
}

pub async fn bad_rows_are_failed_records_not_a_crash(fx: Fixture) {
    let env = Env::new(fx, 0).await;
    env.exec("CREATE TABLE {users}_raw (id INTEGER, email VARCHAR(200), name VARCHAR(200))").await;
    env.exec(
        "INSERT INTO {users}_raw (id, email, name) VALUES (1, 'a@x.io', 'A'), (2, 'b@x.io', 'B'), (2, 'b2@x.io', 'B2'), \
         (NULL, 'n@x.io', 'N'), (3, NULL, 'no email')",
    )
    .await;
    let mut env = env;
    env.model.query = format!("SELECT id, email, name FROM {}_raw", env.fx.table("users"));
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!(r.phase, SyncPhase::PartiallySuccessful, "{r:#?}");
    assert_eq!((r.loaded.succeeded, r.loaded.failed), (1, 4));
    let codes: Vec<&str> = r.errors.iter().map(|e| e.code.as_str()).collect();
    assert!(codes.contains(&"DUPLICATE_PRIMARY_KEY") && codes.contains(&"NULL_PRIMARY_KEY"), "{codes:?}");
    assert!(codes.contains(&"MISSING_REQUIRED_FIELD"), "{codes:?}");
    assert_eq!(env.sink.latest().keys().cloned().collect::<Vec<_>>(), vec!["1"]);

    // Against a snapshot: a delivered key gains a second, different copy.
    // Neither copy is sent (not even the one still as delivered), and the
    // earlier failures are retried and fail again.
    env.sink.clear();
    env.exec("INSERT INTO {users}_raw (id, email, name) VALUES (1, 'a2@x.io', 'A2')").await;
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!(r.phase, SyncPhase::Failed, "{r:#?}");
    assert_eq!((r.extracted.total, r.extracted.updated, r.extracted.unchanged), (6, 2, 0), "{r:#?}");
    assert_eq!((r.loaded.succeeded, r.loaded.failed), (0, 6), "{r:#?}");
    let dups = r.errors.iter().find(|e| e.code == "DUPLICATE_PRIMARY_KEY").map(|e| e.count);
    assert_eq!(dups, Some(4), "both copies of keys 1 and 2: {r:#?}");
    assert!(env.sink.received().is_empty(), "nothing of a duplicated key is sent");
}
