#![allow(dead_code)]

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::core::Status;
use serde_json::{Value, json};
use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.testkube.dev", "v1", "Widget"), "widgets")
}

pub fn widgets(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &widget_resource())
}

pub fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.testkube.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

/// Registers the fixture CRDs through kube-rs.
pub async fn install_crds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let text = std::fs::read_to_string(fixtures().join("widgets.yaml")).unwrap();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
}

/// The Status of a failed call.
pub fn status<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// GETs `path` with an Accept header and returns the JSON body.
pub async fn raw_get(client: &kube::Client, path: &str, accept: &str) -> Value {
    let req = http::Request::get(path).header("accept", accept).body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    serde_json::from_str(&text).unwrap()
}

pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
