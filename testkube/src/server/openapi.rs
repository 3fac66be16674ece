//! A minimal OpenAPI v3 (`/openapi/v3` index and one document per
//! group-version). It declares, for every resource, the PATCH operation with
//! its `x-kubernetes-group-version-kind` and the `fieldValidation` query
//! parameter, which is what kubectl's query-param verifier looks for before
//! it leaves validation to the server (`--validate=strict`), and each custom
//! resource's schema under `components.schemas` (for `kubectl explain`).
//! Built-in types have no schemas; `/openapi/v2` is a 404.

use super::registry::{Registry, ResourceType};
use serde_json::{Map, Value, json};
use std::hash::{Hash, Hasher};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

fn hash_of(v: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: `{"paths": {"apis/g/v": {"serverRelativeURL": "/openapi/v3/apis/g/v?hash=..."}}}`
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, versions) in reg.groups() {
        for v in versions {
            let p = gv_path(&g, &v);
            let doc = document(reg, &g, &v).unwrap_or(Value::Null);
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash_of(&doc))}));
        }
    }
    json!({"paths": paths})
}

fn schema_name(t: &ResourceType) -> String {
    let g = if t.group.is_empty() { "io.k8s.api.core".to_string() } else { t.group.split('.').rev().collect::<Vec<_>>().join(".") };
    format!("{g}.{}.{}", t.version, t.kind)
}

fn operation(t: &ResourceType, verb: &str) -> Value {
    json!({
        "operationId": format!("{verb}{}", t.kind),
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(t))}}}}},
    })
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/GROUP/VERSION`.
pub fn document(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<_> = reg.types.values().filter(|t| t.group == group && t.version == version).collect();
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in types {
        let base = format!("/{}", gv_path(group, version));
        let item = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        paths.insert(item, json!({"get": operation(t, "get"), "put": operation(t, "put"), "patch": operation(t, "patch"), "delete": operation(t, "delete")}));
        let mut schema = t
            .custom
            .as_ref()
            .and_then(|c| c.schema.clone())
            .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.entry("apiVersion").or_insert(json!({"type": "string"}));
            props.entry("kind").or_insert(json!({"type": "string"}));
            props.entry("metadata").or_insert(json!({"type": "object"}));
        }
        schema["x-kubernetes-group-version-kind"] = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        schemas.insert(schema_name(t), schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
