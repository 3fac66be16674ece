//! What people read about a Mapping: each Sync's outcome as its own Event
//! (not folded into the first one's note), no false SyncSkipped after a
//! request, one `retl_syncs_total` per Sync, and a Ready condition that
//! follows the Model, Source and Destination.

use std::time::Duration;

use serde_json::Value;
use testcluster::wait_until;

use super::cluster::{Cluster, Setup};

/// The Events about object `name` (newest last).
fn events_of(c: &Cluster, name: &str) -> Vec<Value> {
    let list = c.ns.kubectl_json(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")]).unwrap_or_default();
    let mut items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_string());
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_syncs_outcome_is_its_own_event_and_is_counted_once() {
    let c = Cluster::start(Setup::default()).await;
    c.sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    let mut names = Vec::new();
    for i in 1..=6 {
        // One more accepted change each time, so that each sync is partial.
        c.sql(&format!("UPDATE users SET email = 'n{i}@example.com' WHERE id = 1"));
        c.annotate("mapping", "users-api", &format!("retl.dev/sync-now=n{i}"));
        let s = c.wait_finished(i).await;
        assert_eq!(s["status"]["phase"], "PartiallySuccessful", "{s:#}");
        names.push(s["metadata"]["name"].as_str().unwrap().to_string());
    }
    let h = &c;
    let all_there = wait_until(Duration::from_secs(20), || async {
        events_of(h, "users-api").iter().filter(|e| e["reason"] == "PartiallySuccessful").count() == names.len()
    })
    .await;
    let events = events_of(&c, "users-api");
    let outcomes: Vec<&Value> = events.iter().filter(|e| e["reason"] == "PartiallySuccessful").collect();
    assert!(all_there, "one PartiallySuccessful Event per Sync on the Mapping: {events:#?}");
    for (e, name) in outcomes.iter().zip(&names) {
        let message = e["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(&format!("Sync {name} partially succeeded")) && message.contains("failed 1"), "{message}");
        assert_eq!(e["related"]["name"], name.as_str(), "the Sync is the related object: {e:#}");
        assert!(e["series"].is_null(), "not folded into a series: {e:#}");
    }
    let skipped: Vec<&Value> = events.iter().filter(|e| e["reason"] == "SyncSkipped").collect();
    assert!(skipped.is_empty(), "no SyncSkipped after a sync-now that started its Sync: {skipped:#?}");
    let described = c.ns.kubectl_ok(&["describe", "mapping", "users-api"]).unwrap();
    for name in &names {
        assert!(described.contains(&format!("Sync {name} partially succeeded")), "{described}");
    }

    let line = format!(r#"retl_syncs_total{{namespace="{}",mapping="users-api",outcome="PartiallySuccessful"}} 6"#, c.ns.name());
    let metrics = c.metrics().await;
    assert!(metrics.contains(&line), "one increment per Sync: {metrics}");

    // A disabled Mapping's skip says so, in an Event of its own.
    c.ns.kubectl_ok(&["patch", "mapping", "users-api", "--type=merge", "-p", r#"{"spec":{"enabled":false}}"#]).unwrap();
    c.annotate("mapping", "users-api", "retl.dev/sync-now=off");
    let said = wait_until(Duration::from_secs(20), || async {
        events_of(h, "users-api")
            .iter()
            .any(|e| e["reason"] == "SyncSkipped" && e["message"].as_str().is_some_and(|m| m.contains("disabled")))
    })
    .await;
    assert!(said, "{:#?}", events_of(&c, "users-api"));
    // The same skip again is the same Event, counted into its series.
    c.annotate("mapping", "users-api", "retl.dev/sync-now=off-again");
    let disabled = |e: &Value| e["reason"] == "SyncSkipped" && e["message"].as_str().is_some_and(|m| m.contains("disabled"));
    let counted = wait_until(Duration::from_secs(20), || async {
        let skips: Vec<Value> = events_of(h, "users-api").into_iter().filter(disabled).collect();
        skips.len() == 1 && skips[0]["series"]["count"] == 2
    })
    .await;
    assert!(counted, "{:#?}", events_of(&c, "users-api"));
    let forbid = events_of(&c, "users-api").into_iter().filter(|e| e["message"].as_str().is_some_and(|m| m.contains("Forbid"))).count();
    assert_eq!(forbid, 0, "nothing was still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_is_ready_only_while_its_source_is() {
    let c = Cluster::start(Setup::default()).await;
    let (_, message) = c.reason("mapping", "users-api", "Ready");
    assert!(message.contains("Model, Source and Destination are ready"), "{message}");

    // The Source's database cannot be opened any more.
    let patch = r#"{"spec":{"sqlite":{"path":"/nonexistent/retl/wh.db","seedFile":null}}}"#;
    c.ns.kubectl_ok(&["patch", "source", "wh", "--type=merge", "-p", patch]).unwrap();
    let h = &c;
    let unready =
        wait_until(Duration::from_secs(30), || async { h.condition("mapping", "users-api", "Ready").as_deref() == Some("False") }).await;
    assert!(unready, "{}\n{}", c.yaml("mapping", "users-api"), c.yaml("source", "wh"));
    let (reason, message) = c.reason("mapping", "users-api", "Ready");
    assert_eq!(reason, "ReferenceNotReady", "{message}");
    assert!(message.starts_with("Source \"wh\" is not ready ("), "names the Source and why: {message}");

    // A sync still runs, and fails with the real error (counted, alerted on).
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "Failed", "{s:#}");
    assert_eq!(c.sink.requests(), 0);

    // Fixed: Ready again.
    let db = c.manifests.join("wh.db");
    let patch = serde_json::json!({"spec": {"sqlite": {"path": db.display().to_string()}}}).to_string();
    c.ns.kubectl_ok(&["patch", "source", "wh", "--type=merge", "-p", &patch]).unwrap();
    let ready =
        wait_until(Duration::from_secs(30), || async { h.condition("mapping", "users-api", "Ready").as_deref() == Some("True") }).await;
    assert!(ready, "{}", c.yaml("mapping", "users-api"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_created_later_makes_its_destination_and_mapping_ready() {
    let c = Cluster::start(Setup {
        http_extra: ", headers: [{name: X-Token, valueFrom: {name: late-token, key: token}}]",
        ready_at_start: false,
        ..Default::default()
    })
    .await;
    let h = &c;
    let said = wait_until(Duration::from_secs(20), || async {
        h.reason("mapping", "users-api", "Ready").1.starts_with("Destination \"api\" is not ready (SecretNotFound)")
    })
    .await;
    let (reason, message) = c.reason("destination", "api", "Ready");
    assert_eq!(reason, "SecretNotFound", "{message}");
    let (reason, message) = c.reason("mapping", "users-api", "Ready");
    assert_eq!(reason, "ReferenceNotReady", "{message}");
    assert!(said, "{message}");

    // The Secret watch (names only) re-checks the Destination at once, not
    // at its five-minute re-check; the Mapping follows.
    c.ns.apply_yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: late-token}\nstringData: {token: t0k3n}\n").unwrap();
    let ready =
        wait_until(Duration::from_secs(20), || async { h.condition("mapping", "users-api", "Ready").as_deref() == Some("True") }).await;
    assert!(ready, "{}\n{}", c.yaml("destination", "api"), c.yaml("mapping", "users-api"));
}
