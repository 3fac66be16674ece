//! A segment Destination in the cluster: an action the type lacks makes it
//! (and the Mapping that uses it) not Ready, with the reason; once fixed it
//! is Ready, and a worker sends the Mapping's identify messages, with the
//! write key read from the Secret, to a real Segment-compatible server.

use std::time::Duration;

use testcluster::wait_until;
use testkit::segment::SegmentServer;

use super::cluster::{Cluster, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_destination_says_what_is_wrong_then_syncs() {
    let server = SegmentServer::start("wk-cluster-5e1").await.unwrap();
    let extra = format!(
        r#"---
apiVersion: v1
kind: Secret
metadata: {{name: segment}}
stringData: {{writeKey: wk-cluster-5e1}}
---
apiVersion: retl.dev/v1alpha1
kind: Destination
metadata: {{name: events}}
spec:
  type: segment
  segment: {{baseUrl: "{}", writeKeySecretRef: {{name: segment, key: writeKey}}}}
  actions: [{{name: identify, fields: [{{name: email}}]}}]
---
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {{name: users-segment}}
spec:
  modelRef: {{name: users}}
  destinationRef: {{name: events}}
  action: identify
  fields: [{{to: userId, from: id}}, {{to: traits, object: [{{to: email, from: email}}]}}]
"#,
        server.base_url()
    );
    let c = Cluster::start(Setup { extra_yaml: &extra, ..Default::default() }).await;
    let h = &c;
    let not_ready =
        wait_until(Duration::from_secs(30), || async { h.condition("destination", "events", "Ready").as_deref() == Some("False") });
    assert!(not_ready.await, "{}", c.yaml("destination", "events"));
    let (reason, message) = c.reason("destination", "events", "Ready");
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(message.contains(r#"spec.actions[0].fields[0]: segment's identify action has no field "email""#), "{message}");
    let mapping =
        wait_until(Duration::from_secs(30), || async { h.condition("mapping", "users-segment", "Ready").as_deref() == Some("False") });
    assert!(mapping.await, "{}", c.yaml("mapping", "users-segment"));
    assert!(c.reason("mapping", "users-segment", "Ready").1.contains("no field \"email\""), "{}", c.yaml("mapping", "users-segment"));

    c.ns.kubectl_ok(&["patch", "destination", "events", "--type=merge", "-p", r#"{"spec":{"actions":null}}"#]).unwrap();
    c.wait_ready("destination", "events").await;
    c.wait_ready("mapping", "users-segment").await;
    c.annotate("mapping", "users-segment", "retl.dev/sync-now=1");
    let s = c.wait_finished_named("users-segment-").await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}\n{}", c.worker_logs());
    let messages = server.messages();
    assert_eq!(messages.len(), 25, "{messages:?}");
    assert!(messages.iter().all(|m| m["type"] == "identify" && m["traits"]["email"].as_str().is_some_and(|e| e.ends_with("@example.com"))));
}
