//! Object semantics through kube-rs: resourceVersion and conflicts,
//! AlreadyExists, generateName, finalizers, garbage collection with every
//! propagation policy, namespaces, selectors, paging, patch types and
//! server-side apply.

mod common;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;
use testkube::TestApiServer;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn resource_versions_conflicts_and_already_exists() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let a = api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    let b = api.create(&PostParams::default(), &cm("b", json!({}))).await.unwrap();
    let rv = |c: &ConfigMap| c.metadata.resource_version.clone().unwrap().parse::<u64>().unwrap();
    assert!(rv(&b) > rv(&a), "cluster-wide increasing resourceVersion");
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());

    let s = status(api.create(&PostParams::default(), &cm("a", json!({}))).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, r#"configmaps "a" already exists"#);

    let mut stale = a.clone();
    api.replace("a", &PostParams::default(), &a).await.unwrap();
    let mut changed = api.get("a").await.unwrap();
    changed.data = Some([("k".to_string(), "new".to_string())].into());
    api.replace("a", &PostParams::default(), &changed).await.unwrap();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    let s = status(api.replace("a", &PostParams::default(), &stale).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        r#"Operation cannot be fulfilled on configmaps "a": the object has been modified; please apply your changes to the latest version and try again"#
    );

    let s = status(api.get("missing").await);
    assert_eq!((s.code, s.reason.as_str(), s.message.as_str()), (404, "NotFound", r#"configmaps "missing" not found"#));

    let mut generated = cm("", json!({}));
    generated.metadata.generate_name = Some("gen-".into());
    let g = api.create(&PostParams::default(), &generated).await.unwrap();
    let name = g.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut c = cm("f", json!({}));
    c.metadata.finalizers = Some(vec!["example.dev/hold".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    let s = status(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.dev/hold", "example.dev/new"]}})),
        )
        .await,
    );
    assert_eq!(s.code, 422, "no new finalizers while deleting");
    api.patch("f", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(status(api.get("f").await).code, 404);
}

#[tokio::test]
async fn garbage_collection_with_each_propagation_policy() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for policy in ["Background", "Foreground", "Orphan"] {
        let owner = api.create(&PostParams::default(), &cm(&format!("owner-{}", policy.to_lowercase()), json!({}))).await.unwrap();
        let mut dep = cm(&format!("dep-{}", policy.to_lowercase()), json!({}));
        dep.metadata.owner_references =
            Some(vec![serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid, "blockOwnerDeletion": true
        })).unwrap()]);
        let mut fin = dep.clone();
        api.create(&PostParams::default(), &dep).await.unwrap();
        // a second dependent holding a finalizer shows foreground deletion waiting for it
        fin.metadata.name = Some(format!("fin-{}", policy.to_lowercase()));
        fin.metadata.finalizers = Some(vec!["example.dev/hold".into()]);
        api.create(&PostParams::default(), &fin).await.unwrap();
        let pp = match policy {
            "Background" => DeleteParams::background(),
            "Foreground" => DeleteParams::foreground(),
            _ => DeleteParams::orphan(),
        };
        api.delete(owner.metadata.name.as_deref().unwrap(), &pp).await.unwrap();
        let dep_name = dep.metadata.name.clone().unwrap();
        let fin_name = fin.metadata.name.clone().unwrap();
        match policy {
            "Orphan" => {
                let a = api.clone();
                eventually("orphaned dependent loses its ownerReference", || {
                    let a = a.clone();
                    let n = dep_name.clone();
                    async move { a.get(&n).await.map(|d| d.metadata.owner_references.is_none()).unwrap_or(false) }
                })
                .await;
                assert_eq!(status(api.get(owner.metadata.name.as_deref().unwrap()).await).code, 404);
            }
            _ => {
                let a = api.clone();
                eventually("dependent collected", || {
                    let a = a.clone();
                    let n = dep_name.clone();
                    async move { a.get_opt(&n).await.unwrap().is_none() }
                })
                .await;
                let held = api.get(&fin_name).await.unwrap();
                assert!(held.metadata.deletion_timestamp.is_some(), "dependent with a finalizer is being deleted");
                if policy == "Foreground" {
                    let o = api.get(owner.metadata.name.as_deref().unwrap()).await.unwrap();
                    assert!(o.metadata.finalizers.unwrap().contains(&"foregroundDeletion".to_string()), "owner waits for dependents");
                }
                api.patch(&fin_name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
                let a = api.clone();
                let on = owner.metadata.name.clone().unwrap();
                eventually("owner gone", || {
                    let a = a.clone();
                    let n = on.clone();
                    async move { a.get_opt(&n).await.unwrap().is_none() }
                })
                .await;
            }
        }
    }
}

#[tokio::test]
async fn namespaces_scope_and_terminate() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap()).await.unwrap();
    let a: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    let d: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}})).unwrap();
    let created = a.create(&PostParams::default(), &secret).await.unwrap();
    assert_eq!(created.data.unwrap()["password"].0, b"hunter2", "stringData folded into data");
    assert_eq!(status(d.get("s").await).code, 404, "namespace scoping");
    assert_eq!(Api::<Secret>::all(client.clone()).list(&ListParams::default()).await.unwrap().items.len(), 1);
    let missing: Api<Secret> = Api::namespaced(client.clone(), "nope");
    let s = status(missing.create(&PostParams::default(), &secret).await);
    assert_eq!((s.code, s.message.as_str()), (404, r#"namespaces "nope" not found"#));

    let mut held = secret.clone();
    held.metadata.name = Some("held".into());
    held.metadata.finalizers = Some(vec!["example.dev/hold".into()]);
    a.create(&PostParams::default(), &held).await.unwrap();
    nss.delete("team-a", &DeleteParams::default()).await.unwrap();
    assert_eq!(nss.get("team-a").await.unwrap().status.unwrap().phase.as_deref(), Some("Terminating"));
    let mut another = secret.clone();
    another.metadata.name = Some("late".into());
    let s = status(a.create(&PostParams::default(), &another).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        r#"secrets "late" is forbidden: unable to create new content in namespace team-a because it is being terminated"#
    );
    let aa = a.clone();
    eventually("namespace content deleted", || {
        let a = aa.clone();
        async move { a.get_opt("s").await.unwrap().is_none() }
    })
    .await;
    assert!(nss.get_opt("team-a").await.unwrap().is_some(), "namespace waits for the finalizer");
    a.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    let n = nss.clone();
    eventually("namespace gone", || {
        let n = n.clone();
        async move { n.get_opt("team-a").await.unwrap().is_none() }
    })
    .await;
}

#[tokio::test]
async fn label_and_field_selectors_and_paging() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for (n, labels) in
        [("a", json!({"app": "web", "tier": "front"})), ("b", json!({"app": "web"})), ("c", json!({"app": "db"})), ("d", json!({}))]
    {
        api.create(&PostParams::default(), &cm(n, labels)).await.unwrap();
    }
    let names = |sel: &str| {
        let api = api.clone();
        let sel = sel.to_string();
        async move {
            let l = api.list(&ListParams::default().labels(&sel)).await.unwrap();
            l.items.into_iter().map(|c| c.metadata.name.unwrap()).collect::<Vec<_>>().join(",")
        }
    };
    assert_eq!(names("app=web").await, "a,b");
    assert_eq!(names("app!=web").await, "c,d");
    assert_eq!(names("app in (db,web),tier").await, "a");
    assert_eq!(names("app notin (web)").await, "c,d");
    assert_eq!(names("!app").await, "d");
    assert_eq!(names("tier").await, "a");
    let by_name = api.list(&ListParams::default().fields("metadata.name=c")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    let not_name = api.list(&ListParams::default().fields("metadata.name!=c,metadata.namespace=default")).await.unwrap();
    assert_eq!(not_name.items.len(), 3);

    let first = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    let token = first.metadata.continue_.clone().unwrap();
    let rest = api.list(&ListParams::default().limit(3).continue_token(&token)).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.is_none());
    api.create(&PostParams::default(), &cm("e", json!({}))).await.unwrap();
    server.compact();
    let s = status(api.list(&ListParams::default().limit(3).continue_token(&token)).await);
    assert_eq!(s.code, 410, "expired continue token");
}

#[tokio::test]
async fn patch_types_and_server_side_apply() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("p", json!({"size": 1, "tags": ["a"]}))).await.unwrap();
    let jp: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/spec/size", "value": 4}, {"op": "add", "path": "/spec/tags/-", "value": "b"}]),
    )
    .unwrap();
    let w = api.patch("p", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(w.data["spec"], json!({"size": 4, "mode": "fast", "tags": ["a", "b"]}));
    let s = status(api.patch("p", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"size": 2}}))).await);
    assert_eq!((s.code, s.reason.as_str()), (415, "UnsupportedMediaType"), "strategic merge refused for custom resources");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("smp", json!({}))).await.unwrap();
    let c = cms.patch("smp", &PatchParams::default(), &Patch::Strategic(json!({"data": {"x": "y"}}))).await.unwrap();
    assert_eq!(c.data.unwrap()["x"], "y", "strategic merge accepted for built-ins");

    // server-side apply: create, ownership, removal of dropped fields, conflicts, force
    let applied =
        json!({"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "ssa"}, "spec": {"size": 3, "tags": ["x"]}});
    let w = api.patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(w.data["spec"]["size"], 3);
    let mf = w.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let smaller = json!({"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "ssa"}, "spec": {"size": 3}});
    let w = api.patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&smaller)).await.unwrap();
    assert!(w.data["spec"].get("tags").is_none(), "field no longer applied is removed");
    let bob = json!({"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": "ssa"}, "spec": {"size": 5}});
    let s = status(api.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&bob)).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(s.message, r#"Apply failed with 1 conflict: conflict with "alice" using example.testkube.dev/v1: .spec.size"#);
    let w = api.patch("ssa", &PatchParams::apply("bob").force(), &Patch::Apply(&bob)).await.unwrap();
    assert_eq!(w.data["spec"]["size"], 5);
    let managers: Vec<String> = w.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.contains(&"bob".to_string()));
    // an Update by another manager takes the field; alice re-applying the old value now conflicts with it
    let pp = PatchParams { field_manager: Some("carol".into()), ..Default::default() };
    api.patch("ssa", &pp, &Patch::Merge(json!({"spec": {"size": 6}}))).await.unwrap();
    let s = status(api.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&bob)).await);
    assert!(s.message.contains(r#"conflict with "carol""#), "{}", s.message);
}
