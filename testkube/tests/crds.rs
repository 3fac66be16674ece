//! CRD registration, discovery, structural schemas, defaulting, pruning,
//! validation (422 wording), status subresource and generation, through kube-rs.

mod common;
use common::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use serde_json::json;
use testkube::TestApiServer;

#[tokio::test]
async fn crd_is_served_and_discoverable() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.example.testkube.dev").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Established" && c.status == "True"));

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery.groups().find(|g| g.name() == "example.testkube.dev").expect("group discovered");
    let (ar, caps) = group.recommended_kind("Widget").expect("Widget discovered");
    assert_eq!(ar.plural, "widgets");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "widgets/status" || s.plural == "status"), "{caps:?}");
    // built-ins retl uses
    for (g, kind) in [
        ("", "Secret"),
        ("", "ConfigMap"),
        ("batch", "Job"),
        ("coordination.k8s.io", "Lease"),
        ("events.k8s.io", "Event"),
        ("", "Namespace"),
    ] {
        let found = discovery.groups().find(|x| x.name() == g).and_then(|x| x.recommended_kind(kind));
        assert!(found.is_some(), "{g}/{kind}");
    }
    let doc = raw_get(&client, "/apis/example.testkube.dev/v1", "application/json").await;
    let w = doc["resources"].as_array().unwrap().iter().find(|r| r["name"] == "widgets").unwrap().clone();
    assert_eq!(w["shortNames"], json!(["wd"]));
    assert_eq!(w["categories"], json!(["all"]));
}

#[tokio::test]
async fn defaults_pruning_and_validation_errors() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let api = widgets(&client, "default");
    let created =
        api.create(&PostParams::default(), &widget("a", json!({"size": 2, "unknown": true, "extra": {"kept": 1}}))).await.unwrap();
    assert_eq!(created.data["spec"]["mode"], "fast", "default applied");
    assert!(created.data["spec"].get("unknown").is_none(), "unknown field pruned");
    assert_eq!(created.data["spec"]["extra"]["kept"], 1, "x-kubernetes-preserve-unknown-fields keeps fields");

    // 422 with causes, worded as kube-apiserver words them
    // (apiextensions-apiserver validation.go + apimachinery field errors)
    let s = status(api.create(&PostParams::default(), &widget("b", json!({"size": "big", "mode": "medium"}))).await);
    assert_eq!(s.code, 422);
    assert_eq!(s.reason, "Invalid");
    assert_eq!(
        s.message,
        r#"Widget.example.testkube.dev "b" is invalid: [spec.size: Invalid value: "string": spec.size in body must be of type integer: "string", spec.mode: Unsupported value: "medium": supported values: "fast", "slow"]"#
    );
    let causes = s.details.unwrap().causes;
    assert_eq!(causes[0].field, "spec.size");
    assert_eq!(causes[1].reason, "FieldValueNotSupported");

    let s = status(api.create(&PostParams::default(), &widget("c", json!({"mode": "slow"}))).await);
    assert_eq!(s.message, r#"Widget.example.testkube.dev "c" is invalid: spec.size: Required value"#);
    let s = status(api.create(&PostParams::default(), &widget("d", json!({"size": 11}))).await);
    assert!(s.message.ends_with("spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"), "{}", s.message);
    let s = status(api.create(&PostParams::default(), &widget("Bad_Name", json!({"size": 1}))).await);
    assert!(s.message.contains("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", s.message);

    // patches are validated too
    let s = status(api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": -1}}))).await);
    assert_eq!(s.code, 422);
    // int-or-string
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"port": "http"}}))).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"port": 80}}))).await.unwrap();
    let s = status(api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"port": true}}))).await);
    assert_eq!(s.code, 422);
}

#[tokio::test]
async fn non_structural_schema_is_refused() {
    let server = TestApiServer::start().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.testkube.dev"},
        "spec": {"group": "example.testkube.dev", "scope": "Namespaced", "names": {"kind": "Thing", "plural": "things"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}}}]}
    }))
    .unwrap();
    let s = status(crds.create(&PostParams::default(), &crd).await);
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
        ),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn status_subresource_splits_writes_and_generation_tracks_spec() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let api = widgets(&client, "default");
    let mut w = widget("s", json!({"size": 1}));
    w.data["status"] = json!({"phase": "Ignored"});
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(created.data.get("status").is_none(), "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    // a status write changes only status, and not the generation
    let after_status = api
        .patch_status("s", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}, "spec": {"size": 9}})))
        .await
        .unwrap();
    assert_eq!(after_status.data["status"]["phase"], "Running");
    assert_eq!(after_status.data["spec"]["size"], 1);
    assert_eq!(after_status.metadata.generation, Some(1));

    // a main-resource write ignores status, bumps generation on spec change only
    let after_spec =
        api.patch("s", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}, "status": {"phase": "Hacked"}}))).await.unwrap();
    assert_eq!(after_spec.data["status"]["phase"], "Running");
    assert_eq!(after_spec.metadata.generation, Some(2));
    let after_label = api.patch("s", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}))).await.unwrap();
    assert_eq!(after_label.metadata.generation, Some(2));
    let rv: u64 = after_label.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(rv > after_spec.metadata.resource_version.unwrap().parse::<u64>().unwrap());

    // a no-op write keeps the resourceVersion
    let same = api.patch("s", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}}))).await.unwrap();
    assert_eq!(same.metadata.resource_version, after_label.metadata.resource_version);

    // selectableFields: field selector on status.phase
    let lp = ListParams::default().fields("status.phase=Running");
    assert_eq!(api.list(&lp).await.unwrap().items.len(), 1);
    let lp = ListParams::default().fields("status.phase=Failed");
    assert_eq!(api.list(&lp).await.unwrap().items.len(), 0);
    let s = status(api.list(&ListParams::default().fields("spec.size=2")).await);
    assert_eq!(s.code, 400);
}

#[tokio::test]
async fn table_output_from_printer_columns() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("t", json!({"size": 7, "mode": "slow"}))).await.unwrap();
    api.patch_status(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "startTime": "2020-01-01T00:00:00Z",
        "conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let t = raw_get(&client, "/apis/example.testkube.dev/v1/namespaces/default/widgets", TABLE).await;
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    let names: Vec<&str> = t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Name", "Size", "Mode", "Phase", "Ready", "Started", "Age"]);
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    let cells = t["rows"][0]["cells"].as_array().unwrap();
    assert_eq!(cells[0], "t");
    assert_eq!(cells[1], 7, "integer columns stay numbers");
    assert_eq!(cells[3], "Running");
    assert_eq!(cells[4], "True", "JSONPath filter expression");
    assert!(cells[5].as_str().unwrap().ends_with('d') || cells[5].as_str().unwrap().contains('y'), "date shown as age: {}", cells[5]);
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    // a CRD without printer columns gets Name + Age (serveDefaultColumnsIfEmpty)
    let t = raw_get(&client, "/apis/example.testkube.dev/v1/namespaces/default/gadgets", TABLE).await;
    let names: Vec<&str> = t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Name", "Age"]);
}

#[tokio::test]
async fn crd_updates_and_deletion_change_what_is_served() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("u", json!({"size": 1}))).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // tighten the schema: the next write is validated against the new one
    let patch =
        json!([{"op": "replace", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/size/maximum", "value": 2}]);
    let p: json_patch::Patch = serde_json::from_value(patch).unwrap();
    let crd = crds.patch("widgets.example.testkube.dev", &PatchParams::default(), &Patch::<()>::Json(p)).await.unwrap();
    assert_eq!(crd.metadata.generation, Some(2));
    let s = status(api.patch("u", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 3}}))).await);
    assert!(s.message.ends_with("spec.size in body should be less than or equal to 2"), "{}", s.message);
    // deletecollection with a selector
    for n in ["x1", "x2"] {
        let mut w = widget(n, json!({"size": 1}));
        w.metadata.labels = Some([("batch".to_string(), "x".to_string())].into());
        api.create(&PostParams::default(), &w).await.unwrap();
    }
    api.delete_collection(&Default::default(), &ListParams::default().labels("batch=x")).await.unwrap();
    let left: Vec<String> = api.list(&ListParams::default()).await.unwrap().items.into_iter().map(|w| w.metadata.name.unwrap()).collect();
    assert_eq!(left, ["u"]);
    // deleting the CRD removes its objects and stops serving them
    crds.delete("widgets.example.testkube.dev", &Default::default()).await.unwrap();
    let s = status(api.list(&ListParams::default()).await);
    assert_eq!(s.code, 404);
    let doc = raw_get(&client, "/apis/example.testkube.dev/v1", "application/json").await;
    assert!(!doc["resources"].as_array().unwrap().iter().any(|r| r["name"] == "widgets"));
}

#[tokio::test]
async fn server_side_apply_of_status() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("a", json!({"size": 1}))).await.unwrap();
    let status = json!({"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "a"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    let w = api.patch_status("a", &PatchParams::apply("ctrl").force(), &Patch::Apply(&status)).await.unwrap();
    assert_eq!(w.data["status"]["phase"], "Running");
    assert_eq!(w.data["spec"]["size"], 1);
    assert_eq!(w.metadata.generation, Some(1));
    let mf = w.metadata.managed_fields.unwrap();
    let entry = mf.iter().find(|m| m.manager.as_deref() == Some("ctrl")).unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    // applying less removes what this manager no longer applies
    let less = json!({"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "a"}, "status": {"phase": "Done"}});
    let w = api.patch_status("a", &PatchParams::apply("ctrl").force(), &Patch::Apply(&less)).await.unwrap();
    assert_eq!(w.data["status"], json!({"phase": "Done"}));
}
