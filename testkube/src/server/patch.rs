//! Patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902) via the
//! `json-patch` crate, and strategic merge patch approximated as a merge
//! patch whose lists merge by key where the patch says so (built-in types only).

use super::errors::{ApiError, ApiResult};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

pub const ACCEPTED_CR: &[&str] = &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];
pub const ACCEPTED_BUILTIN: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

impl PatchType {
    pub fn from_content_type(ct: &str, builtin: bool) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        let accepted = if builtin { ACCEPTED_BUILTIN } else { ACCEPTED_CR };
        match base {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" if builtin => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media_type(ct, accepted)),
        }
    }
}

/// Applies a merge/JSON/strategic patch to `target`.
pub fn apply_patch(target: &Value, kind: PatchType, body: &[u8]) -> ApiResult<Value> {
    let mut doc = target.clone();
    match kind {
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            if !p.is_object() {
                return Err(ApiError::bad_request("json: cannot unmarshal into Go value of type map[string]interface {}"));
            }
            json_patch::merge(&mut doc, &p);
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            strategic_merge(&mut doc, &p);
        }
        PatchType::Json => {
            let p: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| ApiError {
                code: 422,
                reason: "Invalid",
                message: e.to_string(),
                details: None,
            })?;
        }
        PatchType::Apply => unreachable!("apply patches go through server-side apply"),
    }
    Ok(doc)
}

/// The merge key of a list, from the `$setElementOrder/KEY` directive kubectl
/// sends next to every list it merges (None: a list of primitives).
fn merge_key(order: &[Value]) -> Option<String> {
    order.iter().find_map(|o| o.as_object().and_then(|m| m.keys().next().cloned()))
}

/// Merge patch semantics, except for lists that the patch marks as merging
/// (a `$setElementOrder/KEY` sibling, as kubectl's three-way patches carry):
/// those merge item by item on their merge key (or as a set of primitives),
/// honour `$patch: delete` and `$deleteFromPrimitiveList/KEY`, and follow the
/// given order. Without the directive a list is replaced, like an atomic list.
fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *doc = strip_directives(patch);
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *doc = strip_directives(patch);
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Default::default());
    }
    let d = doc.as_object_mut().expect("object");
    for (k, v) in p {
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(cur), Some(del)) = (d.get_mut(list).and_then(Value::as_array_mut), v.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let order = p.get(&format!("$setElementOrder/{k}")).and_then(Value::as_array);
        match (v, order) {
            (Value::Null, _) => {
                d.remove(k);
            }
            (Value::Object(_), _) => strategic_merge(d.entry(k.clone()).or_insert(Value::Null), v),
            (Value::Array(items), Some(order)) => {
                let mut cur = d.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
                match merge_key(order) {
                    Some(key) => {
                        for it in items {
                            let id = &it[&key];
                            let deleting = it.get("$patch").and_then(Value::as_str) == Some("delete");
                            match cur.iter().position(|c| &c[&key] == id) {
                                Some(i) if deleting => {
                                    cur.remove(i);
                                }
                                Some(i) => strategic_merge(&mut cur[i], it),
                                None if !deleting => {
                                    let mut fresh = Value::Null;
                                    strategic_merge(&mut fresh, it);
                                    cur.push(fresh);
                                }
                                None => {}
                            }
                        }
                        let pos = |c: &Value| order.iter().position(|o| o[&key] == c[&key]).unwrap_or(usize::MAX);
                        cur.sort_by_key(pos);
                    }
                    None => {
                        for it in items {
                            if !cur.contains(it) {
                                cur.push(it.clone());
                            }
                        }
                        cur.sort_by_key(|c| order.iter().position(|o| o == c).unwrap_or(usize::MAX));
                    }
                }
                d.insert(k.clone(), Value::Array(cur));
            }
            _ => {
                d.insert(k.clone(), strip_directives(v));
            }
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_named_lists() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let p =
            json!({"spec": {"containers": [{"name": "b", "image": "z"}], "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}]}});
        let out = apply_patch(&doc, PatchType::Strategic, p.to_string().as_bytes()).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}]));
    }

    #[test]
    fn strategic_replaces_lists_without_directives() {
        let doc = json!({"spec": {"versions": [{"name": "v1", "x": 1}, {"name": "v2"}]}});
        let p = json!({"spec": {"versions": [{"name": "v1", "y": 2}]}});
        let out = apply_patch(&doc, PatchType::Strategic, p.to_string().as_bytes()).unwrap();
        assert_eq!(out["spec"]["versions"], json!([{"name": "v1", "y": 2}]));
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let p = json!({"metadata": {"$setElementOrder/finalizers": ["b", "c"], "finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = apply_patch(&doc, PatchType::Strategic, p.to_string().as_bytes()).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn refuses_strategic_for_custom_resources() {
        let e = PatchType::from_content_type("application/strategic-merge-patch+json", false).unwrap_err();
        assert_eq!(e.code, 415);
    }
}
