//! Runner and engine safety (issue 11): guards on every kind of sync, one
//! sync of a Mapping at a time, no ghost records after a kill, and history
//! that tells what a killed sync delivered.

use retl::api::{SyncPhase, SyncTrigger};

use super::fixture::Fixture;
use super::support::Env;

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
