//! The real `kubectl` against the test server: discovery, apply (client- and
//! server-side), get with server-side Tables, selectors, annotate, delete, wait,
//! and kubectl's rendering of the server's errors. These tests fail (they do
//! not skip) when kubectl is missing.

use serde_json::json;
use std::time::Duration;
use testkube::Harness;

fn fixtures() -> String {
    format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"))
}

const WIDGET: &str = r#"
apiVersion: example.testkube.dev/v1
kind: Widget
metadata:
  name: w1
  labels: {app: web}
spec:
  size: 3
"#;

#[test]
fn kubectl_is_installed() {
    let path = testkube::harness::find_kubectl().expect("kubectl is required for the testkube suite");
    assert!(path.exists(), "kubectl is required at {}", path.display());
}

#[tokio::test]
async fn api_resources_lists_builtins_and_crds() {
    let h = Harness::start().await.unwrap();
    h.apply_dir(fixtures()).await.unwrap();
    let out = h.kubectl(&["api-resources"]).unwrap();
    assert!(out.success(), "{}", out.stderr);
    let rows = out.table();
    assert_eq!(rows[0], ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for want in [
        vec!["widgets", "wd", "example.testkube.dev/v1", "true", "Widget"],
        vec!["jobs", "batch/v1", "true", "Job"],
        vec!["leases", "coordination.k8s.io/v1", "true", "Lease"],
        vec!["customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", "false", "CustomResourceDefinition"],
    ] {
        assert!(rows.iter().any(|r| *r == want), "missing {want:?} in\n{}", out.stdout);
    }
    let ns = h.kubectl(&["get", "namespaces"]).unwrap().ok().unwrap();
    assert!(ns.contains("default") && ns.contains("Active"), "{ns}");
}

#[tokio::test]
async fn apply_get_annotate_delete_wait() {
    let h = Harness::start().await.unwrap();
    h.apply_dir(fixtures()).await.unwrap();
    assert_eq!(h.apply_yaml(WIDGET).unwrap().trim(), "widget.example.testkube.dev/w1 created");
    assert_eq!(h.apply_yaml(WIDGET).unwrap().trim(), "widget.example.testkube.dev/w1 unchanged");
    assert_eq!(h.apply_yaml(&WIDGET.replace("size: 3", "size: 4")).unwrap().trim(), "widget.example.testkube.dev/w1 configured");

    let out = h.kubectl(&["get", "widgets"]).unwrap();
    let rows = out.table();
    assert_eq!(rows[0], ["NAME", "SIZE", "MODE", "PHASE", "READY", "STARTED", "AGE"], "{}", out.stdout);
    // missing values are null cells, which kubectl prints as blanks
    assert_eq!(rows[1][..3], ["w1", "4", "fast"], "{}", out.stdout);
    assert_eq!(rows[1].len(), 4, "{}", out.stdout);
    assert!(rows[1][3].ends_with('s'), "age: {:?}", rows[1]);

    let w = h.kubectl_json(&["get", "widget", "w1"]).unwrap();
    assert_eq!(w["spec"], json!({"size": 4, "mode": "fast"}));
    assert_eq!(w["metadata"]["generation"], 2);

    h.kubectl(&["annotate", "widget", "w1", "retl.dev/sync-now=1"]).unwrap().ok().unwrap();
    h.kubectl(&["label", "widget", "w1", "tier=front"]).unwrap().ok().unwrap();
    let w = h.kubectl_json(&["get", "wd", "-l", "tier=front,app in (web)"]).unwrap();
    assert_eq!(w["items"][0]["metadata"]["annotations"]["retl.dev/sync-now"], "1");
    assert_eq!(w["items"][0]["metadata"]["generation"], 2, "metadata changes keep the generation");

    let client = h.client();
    let api = kube::Api::<kube::api::DynamicObject>::namespaced_with(
        client,
        "default",
        &kube::api::ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("example.testkube.dev", "v1", "Widget"), "widgets"),
    );
    let status = json!({"status": {"phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}]}});
    api.patch_status("w1", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(status)).await.unwrap();
    let failed = h.kubectl(&["get", "widgets", "--field-selector", "status.phase=Failed", "-o", "name"]).unwrap().ok().unwrap();
    assert_eq!(failed.trim(), "widget.example.testkube.dev/w1");
    let none = h.kubectl(&["get", "widgets", "--field-selector", "status.phase=Running"]).unwrap();
    assert!(none.stderr.contains("No resources found in default namespace."), "{none:?}");
    let bad = h.kubectl(&["get", "widgets", "--field-selector", "spec.size=1"]).unwrap();
    assert!(!bad.success() && bad.stderr.contains("field label not supported: spec.size"), "{bad:?}");

    let waited = h.kubectl(&["wait", "--for=jsonpath={.status.phase}=Failed", "widget/w1", "--timeout=5s"]).unwrap();
    assert!(waited.success(), "{waited:?}");
    let waited = h.kubectl(&["wait", "--for=condition=Ready=False", "widget/w1", "--timeout=5s"]).unwrap();
    assert!(waited.success(), "{waited:?}");

    let del = h.kubectl(&["delete", "widget", "w1"]).unwrap().ok().unwrap();
    assert_eq!(del.trim(), "widget.example.testkube.dev \"w1\" deleted");
    let gone = h.kubectl(&["get", "widget", "w1"]).unwrap();
    assert_eq!(gone.stderr.trim(), "Error from server (NotFound): widgets.example.testkube.dev \"w1\" not found");
}

#[tokio::test]
async fn kubectl_shows_server_errors() {
    let h = Harness::start().await.unwrap();
    h.apply_dir(fixtures()).await.unwrap();
    let invalid = h.kubectl_stdin(&["apply", "-f", "-"], &WIDGET.replace("size: 3", "size: 30")).unwrap();
    assert!(!invalid.success());
    assert!(
        invalid
            .stderr
            .contains(r#"The Widget "w1" is invalid: spec.size: Invalid value: 30: spec.size in body should be less than or equal to 10"#),
        "{}",
        invalid.stderr
    );
    let unknown = h.kubectl_stdin(&["apply", "-f", "-"], &WIDGET.replace("size: 3", "size: 3\n  colour: red")).unwrap();
    assert!(unknown.stderr.contains(r#"strict decoding error: unknown field "spec.colour""#), "{}", unknown.stderr);
    // --validate=false: the unknown field is pruned silently
    let pruned = h.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], &WIDGET.replace("size: 3", "size: 3\n  colour: red")).unwrap();
    assert!(pruned.success(), "{}", pruned.stderr);
    let w = h.kubectl_json(&["get", "widget", "w1"]).unwrap();
    assert!(w["spec"].get("colour").is_none());
}

#[tokio::test]
async fn server_side_apply_with_kubectl() {
    let h = Harness::start().await.unwrap();
    h.apply_dir(fixtures()).await.unwrap();
    let out = h.kubectl_stdin(&["apply", "--server-side", "-f", "-"], WIDGET).unwrap();
    assert_eq!(out.stdout.trim(), "widget.example.testkube.dev/w1 serverside-applied", "{}", out.stderr);
    let conflict =
        h.kubectl_stdin(&["apply", "--server-side", "--field-manager=other", "-f", "-"], &WIDGET.replace("size: 3", "size: 5")).unwrap();
    assert!(!conflict.success());
    assert!(conflict.stderr.contains(r#"conflict with "kubectl""#) && conflict.stderr.contains(".spec.size"), "{}", conflict.stderr);
    let forced = h
        .kubectl_stdin(
            &["apply", "--server-side", "--force-conflicts", "--field-manager=other", "-f", "-"],
            &WIDGET.replace("size: 3", "size: 5"),
        )
        .unwrap();
    assert!(forced.success(), "{}", forced.stderr);
    let w = h.kubectl_json(&["get", "widget", "w1", "--show-managed-fields"]).unwrap();
    assert_eq!(w["spec"]["size"], 5);
    let managers: Vec<&str> = w["metadata"]["managedFields"].as_array().unwrap().iter().map(|m| m["manager"].as_str().unwrap()).collect();
    assert!(managers.contains(&"other"), "{managers:?}");
}

#[tokio::test]
async fn jobs_and_events_print_as_tables() {
    let h = Harness::start().await.unwrap();
    let _kubelet = h.start_kubelet(|_| Some(std::path::PathBuf::from("/bin/sh")));
    h.apply_yaml(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: hello}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: shell, command: [sh, -c, "echo hi"]}]
"#,
    )
    .unwrap();
    let waited = h.kubectl(&["wait", "--for=condition=Complete", "job/hello", "--timeout=10s"]).unwrap();
    assert!(waited.success(), "{waited:?}");
    let rows = h.kubectl(&["get", "jobs"]).unwrap().table();
    assert_eq!(rows[0], ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
    assert_eq!(rows[1][..3], ["hello", "Complete", "1/1"]);
    h.apply_yaml(
        r#"
apiVersion: v1
kind: Event
metadata: {name: hello.1}
involvedObject: {kind: Job, name: hello, namespace: default}
reason: Testing
message: it works
type: Normal
count: 1
"#,
    )
    .unwrap();
    let rows = h.kubectl(&["get", "events"]).unwrap().table();
    assert_eq!(rows[0], ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    assert_eq!(rows[1][1..], ["Normal", "Testing", "job/hello", "it works"]);
    let _ = Duration::from_secs(0);
}

/// Events published by kube-runtime's Recorder (events.k8s.io/v1, created then
/// merge-patched as a series) are listed by `kubectl get events` (core/v1 view).
#[tokio::test]
async fn recorder_events_show_in_kubectl() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let h = Harness::start().await.unwrap();
    let recorder = Recorder::new(h.client(), Reporter { controller: "retl".into(), instance: None });
    let reference = ObjectReference {
        kind: Some("Sync".into()),
        api_version: Some("retl.dev/v1alpha1".into()),
        name: Some("s1".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    let ev = Event {
        type_: EventType::Warning,
        reason: "SyncFailed".into(),
        note: Some("the warehouse is down".into()),
        action: "Sync".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let rows = h.kubectl(&["get", "events"]).unwrap().table();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][1..], ["Warning", "SyncFailed", "sync/s1", "the warehouse is down"]);
    let list = h.kubectl_json(&["get", "events.v1.events.k8s.io"]).unwrap();
    assert_eq!(list["items"][0]["note"], "the warehouse is down");
    assert_eq!(list["items"][0]["series"]["count"], 2);
    assert_eq!(list["items"][0]["regarding"]["name"], "s1");
}

/// kubectl's typed `create` commands send protobuf bodies.
#[tokio::test]
async fn kubectl_create_secret_configmap_namespace() {
    let h = Harness::start().await.unwrap();
    h.kubectl(&["create", "namespace", "team-b"]).unwrap().ok().unwrap();
    h.kubectl(&["create", "secret", "generic", "creds", "-n", "team-b", "--from-literal=password=hunter2"]).unwrap().ok().unwrap();
    h.kubectl(&["create", "configmap", "settings", "-n", "team-b", "--from-literal=mode=fast"]).unwrap().ok().unwrap();
    let s = h.kubectl_json(&["get", "secret", "creds", "-n", "team-b"]).unwrap();
    assert_eq!(s["data"]["password"], "aHVudGVyMg==");
    assert_eq!(s["type"], "Opaque");
    assert!(s["metadata"].get("generateName").is_none());
    let c = h.kubectl_json(&["get", "configmap", "settings", "-n", "team-b"]).unwrap();
    assert_eq!(c["data"]["mode"], "fast");
    let rows = h.kubectl(&["get", "secrets", "-n", "team-b"]).unwrap().table();
    assert_eq!(rows[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(rows[1][..3], ["creds", "Opaque", "1"]);
    h.kubectl(&["delete", "namespace", "team-b", "--wait=true", "--timeout=10s"]).unwrap().ok().unwrap();
    let gone = h.kubectl(&["get", "namespace", "team-b"]).unwrap();
    assert!(!gone.success(), "{gone:?}");
}

/// Re-applying a changed CRD (a strategic merge patch of a built-in type)
/// replaces its lists: a removed printer column disappears from `kubectl get`.
#[tokio::test]
async fn reapplying_a_changed_crd() {
    let h = Harness::start().await.unwrap();
    h.apply_dir(fixtures()).await.unwrap();
    let text = std::fs::read_to_string(format!("{}/widgets.yaml", fixtures())).unwrap();
    let without_mode = text.replace("        - name: Mode\n          type: string\n          jsonPath: .spec.mode\n", "");
    assert_ne!(text, without_mode);
    let out = h.kubectl_stdin(&["apply", "-f", "-"], &without_mode).unwrap().ok().unwrap();
    assert!(out.contains("widgets.example.testkube.dev configured"), "{out}");
    h.apply_yaml(WIDGET).unwrap();
    let rows = h.kubectl(&["get", "widgets"]).unwrap().table();
    assert_eq!(rows[0], ["NAME", "SIZE", "PHASE", "READY", "STARTED", "AGE"]);
}
