//! An audit log of the API calls clients made, as kube-apiserver's audit
//! log records them (verb, API group, resource, subresource, user agent), so
//! tests can check that RBAC rules cover exactly what a component does.
//! Verbs follow the authorizer's: get/list/watch for GET, create, update,
//! patch, delete and deletecollection
//! (https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb).

use std::collections::HashMap;

use axum::http::Method;

/// One API call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuditEntry {
    pub verb: String,
    /// API group; empty for the core group.
    pub group: String,
    pub resource: String,
    /// `status`, or empty.
    pub subresource: String,
    pub namespace: Option<String>,
    pub user_agent: String,
}

/// The audit entry of a request to a resource path; `None` for discovery,
/// OpenAPI and other non-resource paths.
pub fn entry(method: &Method, path: &str, query: &HashMap<String, String>, user_agent: &str) -> Option<AuditEntry> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        other => (None, other),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (resource.to_string(), None, String::new()),
        [resource, name] => (resource.to_string(), Some(*name), String::new()),
        [resource, name, sub] => (resource.to_string(), Some(*name), sub.to_string()),
        _ => return None,
    };
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(AuditEntry { verb: verb.into(), group, resource, subresource, namespace, user_agent: user_agent.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_resources_are_read_from_paths() {
        let q = HashMap::new();
        let w: HashMap<String, String> = [("watch".to_string(), "true".to_string())].into();
        let e = entry(&Method::PATCH, "/apis/retl.dev/v1alpha1/namespaces/a/syncs/s1/status", &q, "ua").unwrap();
        assert_eq!(
            (e.verb.as_str(), e.group.as_str(), e.resource.as_str(), e.subresource.as_str()),
            ("patch", "retl.dev", "syncs", "status")
        );
        assert_eq!(entry(&Method::GET, "/api/v1/secrets", &w, "ua").unwrap().verb, "watch");
        assert_eq!(entry(&Method::GET, "/api/v1/namespaces/a/secrets", &q, "ua").unwrap().verb, "list");
        assert_eq!(entry(&Method::GET, "/api/v1/namespaces/a", &q, "ua").unwrap().resource, "namespaces");
        assert!(entry(&Method::GET, "/apis", &q, "ua").is_none());
    }
}
