//! Watches through kube-rs: replay from a resourceVersion, bookmarks, 410 Gone,
//! timeoutSeconds, selector transitions, streaming lists, and a kube-runtime
//! reflector that stays in sync through a long run of writes.

mod common;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use std::time::Duration;
use testkube::{ServerConfig, TestApiServer};

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"n": "0"}})).unwrap()
}

fn fast_bookmarks() -> ServerConfig {
    ServerConfig { bookmark_interval: Duration::from_millis(100), ..Default::default() }
}

fn kind(e: &WatchEvent<ConfigMap>) -> String {
    match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.clone().unwrap()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.clone().unwrap()),
        WatchEvent::Bookmark(_) => "BOOKMARK".into(),
        WatchEvent::Error(s) => format!("ERROR {}", s.code),
    }
}

#[tokio::test]
async fn watch_replays_from_resource_version_and_filters_by_selector() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let a = api.create(&PostParams::default(), &cm("a", json!({"app": "x"}))).await.unwrap();
    let rv = a.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({"app": "y"}))).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"n": "1"}}))).await.unwrap();
    api.patch("b", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}}))).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}}))).await.unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();

    let all: Vec<String> =
        api.watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv).await.unwrap().map(|e| kind(&e.unwrap())).collect().await;
    assert_eq!(all, ["ADDED b", "MODIFIED a", "MODIFIED b", "MODIFIED a", "DELETED b"]);
    // with a selector, objects entering and leaving the selection are ADDED / DELETED
    let sel: Vec<String> = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks().labels("app=x"), &rv)
        .await
        .unwrap()
        .map(|e| kind(&e.unwrap()))
        .collect()
        .await;
    assert_eq!(sel, ["MODIFIED a", "ADDED b", "DELETED a", "DELETED b"]);
    // from "0": synthetic ADDED for what exists now
    let now: Vec<String> =
        api.watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0").await.unwrap().map(|e| kind(&e.unwrap())).collect().await;
    assert_eq!(now, ["ADDED a"]);
}

#[tokio::test]
async fn too_old_resource_version_is_gone() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let a = api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({}))).await.unwrap();
    server.compact();
    let events: Vec<_> =
        api.watch(&WatchParams::default().timeout(1), &a.metadata.resource_version.unwrap()).await.unwrap().collect().await;
    match events.first() {
        Some(Ok(WatchEvent::Error(s))) => {
            assert_eq!(s.code, 410);
            assert_eq!(s.reason, "Expired");
            assert!(s.message.starts_with("too old resource version"), "{}", s.message);
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_and_timeout() {
    let server = TestApiServer::start_with(fast_bookmarks()).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let start = std::time::Instant::now();
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({}))).await.unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let events: Vec<WatchEvent<ConfigMap>> = api.watch(&WatchParams::default().timeout(2), "0").await.unwrap().try_collect().await.unwrap();
    writer.await.unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(4), "timeoutSeconds ends the watch: {elapsed:?}");
    let mut last_rv = 0u64;
    let mut bookmarks = 0;
    for e in &events {
        let rv: u64 = match e {
            WatchEvent::Bookmark(b) => {
                bookmarks += 1;
                assert_eq!(b.types.kind, "ConfigMap");
                b.metadata.resource_version.parse().unwrap()
            }
            WatchEvent::Added(o) => o.metadata.resource_version.clone().unwrap().parse().unwrap(),
            other => panic!("unexpected {other:?}"),
        };
        assert!(rv >= last_rv, "resourceVersions never go back");
        last_rv = rv;
    }
    assert!(bookmarks >= 10, "bookmarks every 100ms: {bookmarks}");
    assert_eq!(events.iter().filter(|e| matches!(e, WatchEvent::Added(_))).count(), 5);
}

#[tokio::test]
async fn streaming_list_ends_initial_events_with_annotated_bookmark() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    let events: Vec<WatchEvent<ConfigMap>> =
        api.watch(&WatchParams::default().initial_events().timeout(1), "").await.unwrap().try_collect().await.unwrap();
    assert!(matches!(&events[0], WatchEvent::Added(_)));
    match &events[1] {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true")),
        other => panic!("expected the initial-events-end bookmark, got {other:?}"),
    }
}

/// A kube-runtime reflector follows a long run of writes (with watch restarts
/// every second via timeoutSeconds, resuming from bookmarks) and ends in sync.
#[tokio::test]
async fn reflector_survives_a_long_run() {
    let server = TestApiServer::start_with(fast_bookmarks()).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default().timeout(1))).applied_objects();
    let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
    for i in 0..20 {
        api.create(&PostParams::default(), &cm(&format!("o{i}"), json!({}))).await.unwrap();
    }
    let end = std::time::Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while std::time::Instant::now() < end {
        let name = format!("o{}", n % 20);
        api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"data": {"n": n.to_string()}}))).await.unwrap();
        if n % 7 == 0 {
            api.delete(&format!("o{}", (n / 7) % 20), &DeleteParams::default()).await.ok();
            api.create(&PostParams::default(), &cm(&format!("o{}", (n / 7) % 20), json!({}))).await.ok();
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let want: Vec<(String, String)> = {
        let mut v: Vec<_> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| (c.metadata.name.unwrap(), c.metadata.resource_version.unwrap()))
            .collect();
        v.sort();
        v
    };
    let mut got = vec![];
    for _ in 0..40 {
        got = reader
            .state()
            .iter()
            .map(|c| (c.metadata.name.clone().unwrap(), c.metadata.resource_version.clone().unwrap()))
            .collect::<Vec<_>>();
        got.sort();
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    assert!(n > 50, "long enough run: {n} writes");
    assert_eq!(got, want);
}
