//! Discovery documents: /version, /api, /apis, /api/v1, /apis/GROUP[/VERSION].
//! Aggregated discovery (apidiscovery.k8s.io/v2) is not served: requests that
//! ask for it get the legacy documents with `Content-Type: application/json`,
//! which kubectl and kube-rs treat as "not supported" and fall back from.

use super::registry::{Registry, ResourceType};
use serde_json::{Value, json};

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "34", "gitVersion": "v1.34.0-testkube", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
    })
}

pub fn core_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

/// Kubernetes version priority: GA > beta > alpha, then by number (apimachinery `CompareKubeAwareVersionStrings`).
fn version_rank(v: &str) -> (u8, u32, u32) {
    let re = regex::Regex::new(r"^v(\d+)(?:(alpha|beta)(\d+))?$").expect("regex");
    match re.captures(v) {
        Some(c) => {
            let major: u32 = c[1].parse().unwrap_or(0);
            let stage = match c.get(2).map(|m| m.as_str()) {
                None => 3,
                Some("beta") => 2,
                _ => 1,
            };
            let minor: u32 = c.get(3).and_then(|m| m.as_str().parse().ok()).unwrap_or(0);
            (stage, major, minor)
        }
        None => (0, 0, 0),
    }
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let mut vs = versions.to_vec();
    vs.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
    let list: Vec<Value> = vs.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": list, "preferredVersion": list.first().cloned().unwrap_or(Value::Null)})
}

pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg.groups().iter().filter(|(g, _)| !g.is_empty()).map(|(g, v)| group_doc(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    reg.groups().get(name).map(|v| {
        let mut d = group_doc(name, v);
        d["kind"] = json!("APIGroup");
        d["apiVersion"] = json!("v1");
        d
    })
}

fn resource_entry(t: &ResourceType) -> Vec<Value> {
    let mut main = json!({
        "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind, "verbs": t.verbs(),
    });
    if !t.short_names.is_empty() {
        main["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        main["categories"] = json!(t.categories);
    }
    let mut out = vec![main];
    if t.status_subresource {
        out.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
    }
    out
}

pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<_> = reg.types.values().filter(|t| t.group == group && t.version == version).collect();
    if types.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let resources: Vec<Value> = types.iter().flat_map(|t| resource_entry(t)).collect();
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}
