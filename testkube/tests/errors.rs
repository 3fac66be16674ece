//! Bad client input is answered with a metav1.Status of the right code and
//! reason, never a crash; plus the harness's process helpers.

mod common;
use common::*;
use serde_json::json;
use testkube::{Harness, TestApiServer};

async fn send(client: &kube::Client, method: &str, path: &str, content_type: &str, body: &str) -> kube::core::Status {
    let req =
        http::Request::builder().method(method).uri(path).header("content-type", content_type).body(body.as_bytes().to_vec()).unwrap();
    status(client.request_text(req).await)
}

#[tokio::test]
async fn malformed_requests_get_statuses() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let w = "/apis/example.testkube.dev/v1/namespaces/default/widgets";
    let cases = [
        ("POST", w, "application/json", "{not json", 400, "BadRequest"),
        ("POST", w, "application/json", "[1,2]", 400, "BadRequest"),
        ("POST", w, "application/json", r#"{"apiVersion": "v9", "kind": "Widget", "metadata": {"name": "a"}}"#, 400, "BadRequest"),
        (
            "POST",
            w,
            "application/json",
            r#"{"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": "x"}"#,
            400,
            "BadRequest",
        ),
        (
            "POST",
            w,
            "application/json",
            r#"{"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "a", "namespace": "other"}, "spec": {"size": 1}}"#,
            400,
            "BadRequest",
        ),
        (
            "POST",
            w,
            "application/json",
            r#"{"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "a", "labels": {"x": 1}}, "spec": {"size": 1}}"#,
            422,
            "Invalid",
        ),
        ("POST", w, "application/vnd.kubernetes.protobuf", "k8s\u{0}\u{ff}\u{ff}", 400, "BadRequest"),
        ("GET", "/apis/example.testkube.dev/v1/nothings", "", "", 404, "NotFound"),
        ("GET", "/apis/nope/v1", "", "", 404, "NotFound"),
        ("GET", &format!("{w}?labelSelector=a%20in%20b"), "", "", 400, "BadRequest"),
        ("GET", &format!("{w}?fieldSelector=spec.size%3D1"), "", "", 400, "BadRequest"),
        ("GET", &format!("{w}?limit=1&continue=garbage"), "", "", 400, "BadRequest"),
        ("GET", &format!("{w}?watch=true&resourceVersion=abc"), "", "", 400, "BadRequest"),
        ("PATCH", &format!("{w}/missing"), "application/merge-patch+json", "{}", 404, "NotFound"),
        (
            "PUT",
            &format!("{w}/missing"),
            "application/json",
            r#"{"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "missing", "resourceVersion": "1"}}"#,
            404,
            "NotFound",
        ),
        ("POST", &format!("{w}/x"), "application/json", "{}", 405, "MethodNotAllowed"),
        ("DELETE", &format!("{w}/missing"), "", "", 404, "NotFound"),
        (
            "POST",
            "/api/v1/secrets",
            "application/json",
            r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}"#,
            405,
            "MethodNotAllowed",
        ),
    ];
    for (method, path, ct, body, code, reason) in cases {
        let s = send(&client, method, path, ct, body).await;
        assert_eq!((s.code, s.reason.as_str()), (code, reason), "{method} {path} {body}: {}", s.message);
    }
    // patches against an existing object
    widgets(&client, "default").create(&Default::default(), &widget("p", json!({"size": 1}))).await.unwrap();
    let p = format!("{w}/p");
    for (ct, body, code) in [
        ("application/json-patch+json", r#"[{"op": "test", "path": "/spec/size", "value": 9}]"#, 422),
        ("application/json-patch+json", r#"{"op": "add"}"#, 400),
        ("application/merge-patch+json", "[]", 400),
        ("application/merge-patch+json", r#"{"metadata": {"resourceVersion": "1"}}"#, 409),
        ("application/strategic-merge-patch+json", "{}", 415),
        ("application/apply-patch+yaml", "apiVersion: example.testkube.dev/v1\nkind: Widget\nmetadata: {name: p}\n", 400),
        ("text/plain", "x", 415),
    ] {
        let s = send(&client, "PATCH", &p, ct, body).await;
        assert_eq!(s.code, code, "{ct} {body}: {}", s.message);
    }
    // the server still works
    assert_eq!(widgets(&client, "default").get("p").await.unwrap().data["spec"]["size"], 1);
}

#[tokio::test]
async fn spawned_processes_get_the_kubeconfig_and_their_logs_are_captured() {
    let h = Harness::start().await.unwrap();
    let p = h.spawn("/bin/sh", &["-c", "echo config=$KUBECONFIG; echo oops >&2; exec sleep 30"]).unwrap();
    assert!(p.wait_for_log("oops", std::time::Duration::from_secs(5)), "{}", p.logs());
    assert!(p.logs().contains(&format!("config={}", h.kubeconfig().display())));
    assert_eq!(p.exit_code(), None);
    p.kill();
    assert!(p.exit_code().is_some());
    let missing = h.kubectl(&["get", "widgets"]).unwrap();
    assert!(!missing.success());
    assert!(matches!(missing.ok(), Err(testkube::HarnessError::KubectlFailed { .. })));
}

#[tokio::test]
async fn labels_and_sizes_are_validated() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let bad: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "l", "labels": {"retl.dev/model": "has space", "ok": "x".repeat(64)}}}))
            .unwrap();
    let s = status(api.create(&PostParams::default(), &bad).await);
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains(
            r#"metadata.labels: Invalid value: "has space": a valid label must be an empty string or consist of alphanumeric characters"#
        ),
        "{}",
        s.message
    );
    assert!(s.message.contains("must be no more than 63 characters"), "{}", s.message);
    // etcd's 1.5 MiB object limit
    let big: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "big"}, "data": {"a": "x".repeat(1_000_000), "b": "y".repeat(700_000)}}))
            .unwrap();
    let s = status(api.create(&PostParams::default(), &big).await);
    assert_eq!((s.code, s.reason.as_str()), (413, "RequestEntityTooLarge"));
    // kube-apiserver's 3 MiB request limit
    let huge: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "huge"}, "data": {"a": "x".repeat(4_000_000)}})).unwrap();
    let s = status(api.create(&PostParams::default(), &huge).await);
    assert_eq!(s.code, 413);
    assert_eq!(s.message, "Request entity too large: limit is 3145728");
}

#[tokio::test]
async fn odd_shapes_do_not_crash_the_server() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    for (path, body) in [
        ("/api/v1/namespaces/default/secrets", r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": "x"}"#),
        ("/api/v1/namespaces/default/secrets", r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s2"}, "stringData": [1]}"#),
        ("/api/v1/namespaces", r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "labels": "x"}}"#),
        (
            "/api/v1/namespaces/default/configmaps",
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": [1], "finalizers": "x", "ownerReferences": 3}}"#,
        ),
        ("/apis/batch/v1/namespaces/default/jobs", r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": 7}"#),
        (
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "a.b"}, "spec": {"names": "x", "versions": [1, {"schema": 3}]}}"#,
        ),
        (
            "/apis/example.testkube.dev/v1/namespaces/default/widgets",
            r#"{"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": [], "status": 5}"#,
        ),
    ] {
        let req = http::Request::post(path).header("content-type", "application/json").body(body.as_bytes().to_vec()).unwrap();
        let s = status(client.request_text(req).await);
        assert!(s.code == 400 || s.code == 422, "{path} {body}: {} {}", s.code, s.message);
    }
    // still serving
    let req = http::Request::get("/api/v1/namespaces").body(Vec::new()).unwrap();
    client.request_text(req).await.unwrap();
}

#[tokio::test]
async fn namespace_names_and_events_v1_are_validated() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Api, PostParams};
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    let s = status(nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team.a"}})).unwrap()).await);
    assert!(s.message.contains("a lowercase RFC 1123 label must consist of"), "{}", s.message);
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let bare: Event = serde_json::from_value(json!({"metadata": {"name": "e"}, "type": "Info", "reason": "X", "note": "n"})).unwrap();
    let s = status(events.create(&PostParams::default(), &bare).await);
    assert_eq!(s.code, 422);
    for want in [
        "eventTime: Required value",
        "reportingController: Required value",
        "reportingInstance: Required value",
        "action: Required value",
        "type: Invalid value: \"\": has invalid value: Info",
    ] {
        assert!(s.message.contains(want), "{want} in {}", s.message);
    }
}
