//! The segment destination behind the engine, on every warehouse: messages
//! from real rows, a message the API refuses fails alone, deletes are
//! skipped with their reason, and a reset sends the same messageIds again
//! (so the API applies nothing twice).

use std::path::Path;

use retl::api::{DestinationSpec, MappingSpec, SyncPhase, SyncTrigger};
use retl::engine::{Quiet, SyncReport, run_sync, skip};
use retl::warehouse::SecretValues;
use serde_json::json;
use testkit::segment::SegmentServer;
use tokio_util::sync::CancellationToken;

use super::fixture::Fixture;
use super::support::{Env, assert_adds_up};

pub async fn segment_messages_from_every_warehouse(fx: Fixture) {
    let env = Env::new(fx, 30).await;
    let server = SegmentServer::start("wk-engine-1").await.expect("server");
    server.set(|b| {
        b.refuse_user_ids.insert("5".into());
    });
    let spec: DestinationSpec = serde_json::from_value(json!({
        "type": "segment",
        "segment": {"baseUrl": server.base_url(), "writeKeySecretRef": {"name": "segment", "key": "writeKey"}, "batchSize": 10, "initialBackoffMillis": 10},
    }))
    .expect("spec");
    let mut secrets = SecretValues::new();
    secrets.insert(("segment".into(), "writeKey".into()), "wk-engine-1".into());
    let destination = retl::destination::build("segment", &spec, &secrets, Path::new(".")).expect("destination");
    let mapping: MappingSpec = serde_json::from_value(json!({
        "modelRef": {"name": "users"}, "destinationRef": {"name": "segment"}, "action": "identify",
        "send": ["added", "updated", "deleted"],
        "fields": [{"to": "userId", "from": "id"}, {"to": "traits", "object": [{"to": "email", "from": "email"}, {"to": "plan", "from": "plan"}]}],
    }))
    .expect("mapping");
    let (env, spec, destination) = (&env, &spec, &destination);
    let sync = |trigger: SyncTrigger| {
        let mut ctx = env.context(&mapping, trigger, None);
        ctx.action = retl::destination::find_action("segment", spec, "identify").expect("a built-in action");
        let destination = destination.clone();
        async move {
            let r: SyncReport = run_sync(&ctx, env.wh.as_ref(), destination, &Quiet, &CancellationToken::new()).await;
            assert_adds_up(&r);
            r
        }
    };

    let r = sync(SyncTrigger::Manual).await;
    assert_eq!((r.phase, r.loaded.succeeded, r.loaded.failed), (SyncPhase::PartiallySuccessful, 29, 1), "{r:#?}");
    assert_eq!((r.failed_records[0].key.as_str(), r.failed_records[0].code.as_str()), ("5", "HTTP_400"), "{r:#?}");
    let messages = server.messages();
    assert_eq!(messages.len(), 29);
    let one = messages.iter().find(|m| m["userId"] == "1").expect("user 1");
    assert_eq!((one["type"].as_str(), one["traits"].clone()), (Some("identify"), json!({"email": "u1@example.com", "plan": "free"})));

    env.exec("DELETE FROM {users} WHERE id = 30").await;
    server.set(|b| b.refuse_user_ids.clear());
    let r = sync(SyncTrigger::Manual).await;
    assert_eq!((r.loaded.succeeded, r.loaded.skipped), (1, 1), "user 5 lands, the delete is skipped: {r:#?}");
    assert_eq!(r.skipped[0].reason, skip::DELETES_NOT_SUPPORTED);

    server.clear();
    let r = sync(SyncTrigger::Reset).await;
    assert_eq!((r.phase, r.loaded.succeeded), (SyncPhase::Successful, 29), "{r:#?}");
    assert_eq!(server.duplicates(), 29, "a reset sends the same messageIds: the API applies none twice");
}
