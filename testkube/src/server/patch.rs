//! Patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902) via the
//! `json-patch` crate, and strategic merge patch approximated as a merge
//! patch whose lists of named objects merge by `name` (built-in types only).

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
pub const ACCEPTED_BUILTIN: &[&str] = &["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"];

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
            let p: json_patch::Patch = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| ApiError { code: 422, reason: "Invalid", message: e.to_string(), details: None })?;
        }
        PatchType::Apply => unreachable!("apply patches go through server-side apply"),
    }
    Ok(doc)
}

fn named_objects(v: &[Value]) -> bool {
    !v.is_empty() && v.iter().all(|x| x.get("name").map(Value::is_string).unwrap_or(false))
}

/// Merge patch, with `$`-directives dropped and lists of objects keyed by `name` merged element-wise.
fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Default::default());
    }
    let d = doc.as_object_mut().expect("object");
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => { d.remove(k); }
            Value::Object(_) => strategic_merge(d.entry(k.clone()).or_insert(Value::Null), v),
            Value::Array(items) if named_objects(items) && d.get(k).and_then(Value::as_array).map(|a| named_objects(a)).unwrap_or(false) => {
                let cur = d.get_mut(k).and_then(Value::as_array_mut).expect("array");
                for it in items {
                    let name = &it["name"];
                    let deleting = it.get("$patch").and_then(Value::as_str) == Some("delete");
                    match cur.iter().position(|c| &c["name"] == name) {
                        Some(i) if deleting => { cur.remove(i); }
                        Some(i) => strategic_merge(&mut cur[i], it),
                        None if !deleting => {
                            let mut fresh = Value::Null;
                            strategic_merge(&mut fresh, it);
                            cur.push(fresh);
                        }
                        None => {}
                    }
                }
            }
            _ => { d.insert(k.clone(), strip_directives(v)); }
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect()),
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
        let p = json!({"spec": {"containers": [{"name": "b", "image": "z"}], "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}]}});
        let out = apply_patch(&doc, PatchType::Strategic, p.to_string().as_bytes()).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}]));
    }

    #[test]
    fn refuses_strategic_for_custom_resources() {
        let e = PatchType::from_content_type("application/strategic-merge-patch+json", false).unwrap_err();
        assert_eq!(e.code, 415);
    }
}
