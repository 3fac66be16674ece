//! The environment of a Job's container, resolved as the kubelet does:
//! `env` values, `valueFrom` (secretKeyRef, configMapKeyRef, fieldRef) and
//! `envFrom` (secretRef, configMapRef, with prefix), read from the test server.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde_json::Value;
use std::collections::BTreeMap;

/// Fails (with the message a pod's CreateContainerConfigError would carry) when a
/// referenced Secret/ConfigMap or key is missing and not optional.
pub(super) async fn env_for(client: &kube::Client, ns: &str, pod: &str, container: &Value) -> Result<BTreeMap<String, String>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut env = BTreeMap::new();
    let secret_data = |s: Secret| -> BTreeMap<String, String> {
        s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect()
    };
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or("");
        let optional = |r: &Value| r["optional"] == true;
        if let Some(name) = from["secretRef"]["name"].as_str() {
            match secrets.get_opt(name).await.map_err(|e| e.to_string())? {
                Some(sec) => {
                    for (k, v) in secret_data(sec) {
                        env.insert(format!("{prefix}{k}"), v);
                    }
                }
                None if optional(&from["secretRef"]) => {}
                None => return Err(format!("secret {name:?} not found")),
            }
        }
        if let Some(name) = from["configMapRef"]["name"].as_str() {
            match cms.get_opt(name).await.map_err(|e| e.to_string())? {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        env.insert(format!("{prefix}{k}"), v);
                    }
                }
                None if optional(&from["configMapRef"]) => {}
                None => return Err(format!("configmap {name:?} not found")),
            }
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or("").to_string();
        let vf = &e["valueFrom"];
        let value = if let Some(r) = vf.get("secretKeyRef") {
            let sname = r["name"].as_str().unwrap_or("");
            let key = r["key"].as_str().unwrap_or("");
            match secrets.get_opt(sname).await.map_err(|e| e.to_string())?.map(secret_data).and_then(|d| d.get(key).cloned()) {
                Some(v) => v,
                None if r["optional"] == true => continue,
                None => return Err(format!("couldn't find key {key} in Secret {ns}/{sname}")),
            }
        } else if let Some(r) = vf.get("configMapKeyRef") {
            let cname = r["name"].as_str().unwrap_or("");
            let key = r["key"].as_str().unwrap_or("");
            match cms.get_opt(cname).await.map_err(|e| e.to_string())?.and_then(|c| c.data.unwrap_or_default().get(key).cloned()) {
                Some(v) => v,
                None if r["optional"] == true => continue,
                None => return Err(format!("couldn't find key {key} in ConfigMap {ns}/{cname}")),
            }
        } else if let Some(r) = vf.get("fieldRef") {
            match r["fieldPath"].as_str().unwrap_or("") {
                "metadata.name" => pod.to_string(),
                "metadata.namespace" => ns.to_string(),
                "spec.nodeName" => "testkube-node".into(),
                "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
                _ => String::new(),
            }
        } else {
            e["value"].as_str().unwrap_or("").to_string()
        };
        env.insert(name, value);
    }
    Ok(env)
}
