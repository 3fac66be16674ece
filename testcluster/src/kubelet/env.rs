//! A container's environment, resolved as a kubelet resolves it: `env`
//! values with `$(VAR)` references, `valueFrom` (secretKeyRef,
//! configMapKeyRef, fieldRef) and `envFrom` (secretRef, configMapRef, with
//! prefix), read from the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

fn secret_data(s: Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect();
    out.extend(s.string_data.unwrap_or_default());
    out
}

/// The value of a `fieldRef` path for `pod`.
fn field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let lookup = |map: &Option<BTreeMap<String, String>>, key: &str| map.as_ref().and_then(|m| m.get(key).cloned());
    let key = |prefix: &str| path.strip_prefix(prefix).and_then(|k| k.strip_suffix("']")).map(str::to_string);
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
        "status.podIPs" | "status.hostIPs" => Some("127.0.0.1".into()),
        _ => {
            if let Some(k) = key("metadata.labels['") {
                lookup(&meta.labels, &k)
            } else if let Some(k) = key("metadata.annotations['") {
                lookup(&meta.annotations, &k)
            } else {
                None
            }
        }
    }
}

/// `$(NAME)` references to variables defined earlier are expanded; `$$` escapes.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(').and_then(|s| s.find(')').map(|end| (&s[..end], &s[end + 1..]))) {
            match env.get(inner.0) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(inner.0);
                    out.push(')');
                }
            }
            rest = inner.1;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Fails with the message a pod's `CreateContainerConfigError` carries when
/// a referenced Secret, ConfigMap or key is missing and not optional.
pub async fn resolve(client: &kube::Client, pod: &Pod, container: &Container) -> Result<BTreeMap<String, String>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.secret_ref {
            match secrets.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(s) => env.extend(secret_data(s).into_iter().map(|(k, v)| (format!("{prefix}{k}"), v))),
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.config_map_ref {
            match config_maps.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(cm) => env.extend(cm.data.unwrap_or_default().into_iter().map(|(k, v)| (format!("{prefix}{k}"), v))),
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or_default(), &env),
            Some(from) => {
                if let Some(r) = &from.secret_key_ref {
                    let found = secrets.get_opt(&r.name).await.map_err(|e| e.to_string())?;
                    match found.map(secret_data).and_then(|d| d.get(&r.key).cloned()) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => return Err(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name)),
                    }
                } else if let Some(r) = &from.config_map_key_ref {
                    let found = config_maps.get_opt(&r.name).await.map_err(|e| e.to_string())?;
                    match found.and_then(|c| c.data.unwrap_or_default().get(&r.key).cloned()) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => return Err(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name)),
                    }
                } else if let Some(r) = &from.field_ref {
                    field(pod, &r.field_path).unwrap_or_default()
                } else {
                    return Err(format!("env {}: resourceFieldRef is not supported by the test kubelet", var.name));
                }
            }
        };
        env.insert(var.name.clone(), value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_like_a_kubelet() {
        let env: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("x-$(A)-$(B)-$$(A)-$", &env), "x-1-$(B)-$(A)-$");
    }

    #[test]
    fn field_paths_read_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "x"}},
            "spec": {"nodeName": "node", "containers": []}
        }))
        .unwrap();
        assert_eq!(field(&pod, "metadata.labels['app']").as_deref(), Some("x"));
        assert_eq!(field(&pod, "spec.nodeName").as_deref(), Some("node"));
        assert_eq!(field(&pod, "metadata.annotations['none']"), None);
    }
}
