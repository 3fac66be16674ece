//! Label selectors (all operators of k8s.io/apimachinery/pkg/labels) and
//! field selectors (`=`, `==`, `!=` on supported fields).

use super::errors::{ApiError, ApiResult};
use super::registry::ResourceType;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn set_values(rest: &str, whole: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    if !rest.starts_with('(') || !rest.ends_with(')') {
        return Err(ApiError::bad_request(format!("unable to parse requirement: found '{rest}', expected: '('")))
            .map_err(|e| with_sel(e, whole));
    }
    Ok(rest[1..rest.len() - 1].split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn with_sel(e: ApiError, _whole: &str) -> ApiError {
    e
}

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = vec![];
        for part in split_top(s) {
            let r = if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some(idx) = part.find(" notin ") {
                Req::NotIn(part[..idx].trim().into(), set_values(&part[idx + 7..], s)?)
            } else if let Some(idx) = part.find(" in ") {
                Req::In(part[..idx].trim().into(), set_values(&part[idx + 4..], s)?)
            } else if part.contains(' ') || part.contains('(') {
                return Err(ApiError::bad_request(format!("unable to parse requirement: {part}")));
            } else {
                Req::Exists(part.clone())
            };
            let key = match &r {
                Req::Eq(k, _) | Req::NotEq(k, _) | Req::In(k, _) | Req::NotIn(k, _) | Req::Exists(k) | Req::NotExists(k) => k,
            };
            if key.is_empty() {
                return Err(ApiError::bad_request(format!("unable to parse requirement: {part}: key must not be empty")));
            }
            reqs.push(r);
        }
        Ok(LabelSelector(reqs))
    }

    /// Builds a selector from a `metav1.LabelSelector` object (matchLabels + matchExpressions).
    pub fn from_object(sel: &Value) -> Self {
        let mut reqs = vec![];
        if let Some(m) = sel["matchLabels"].as_object() {
            for (k, v) in m {
                reqs.push(Req::Eq(k.clone(), v.as_str().unwrap_or("").into()));
            }
        }
        for e in sel["matchExpressions"].as_array().into_iter().flatten() {
            let key = e["key"].as_str().unwrap_or("").to_string();
            let vals: Vec<String> = e["values"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
            reqs.push(match e["operator"].as_str().unwrap_or("") {
                "In" => Req::In(key, vals),
                "NotIn" => Req::NotIn(key, vals),
                "Exists" => Req::Exists(key),
                _ => Req::NotExists(key),
            });
        }
        LabelSelector(reqs)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(|v| v.as_str());
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).map(|x| vs.iter().any(|v| v == x)).unwrap_or(false),
            Req::NotIn(k, vs) => get(k).map(|x| !vs.iter().any(|v| v == x)).unwrap_or(true),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// The fields a type can be selected by: metadata.name and metadata.namespace
/// for all, declared selectableFields for custom resources, a few well-known
/// ones for built-ins.
pub fn selectable_fields(rt: &ResourceType) -> Vec<String> {
    let mut f = vec!["metadata.name".to_string(), "metadata.namespace".to_string()];
    if let Some(c) = &rt.custom {
        f.extend(c.selectable_fields.iter().map(|p| p.trim_start_matches('.').to_string()));
    }
    match rt.plural.as_str() {
        "secrets" => f.push("type".into()),
        "events" if rt.group == "events.k8s.io" => {
            for x in [
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "regarding.apiVersion",
                "regarding.resourceVersion",
                "regarding.fieldPath",
                "reason",
                "reportingController",
                "type",
            ] {
                f.push(x.into());
            }
        }
        "events" => {
            for x in [
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ] {
                f.push(x.into());
            }
        }
        "jobs" => f.push("status.successful".into()),
        "namespaces" => f.push("status.phase".into()),
        _ => {}
    }
    f
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, seg| v.get(seg))
}

fn field_string(obj: &Value, path: &str) -> String {
    match lookup(obj, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

impl FieldSelector {
    pub fn parse(s: &str, rt: &ResourceType) -> ApiResult<Self> {
        let allowed = selectable_fields(rt);
        let mut reqs = vec![];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{part}'")));
            };
            let k = k.trim();
            if !allowed.iter().any(|a| a == k) {
                return Err(ApiError::bad_request(format!("field label not supported: {k}")));
            }
            reqs.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let actual = if k == "source" { field_string(obj, "source.component") } else { field_string(obj, k) };
            (actual == *v) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_operators() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier in (back)", false),
            ("missing notin (x)", true),
            ("missing in (x)", false),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(&o), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
    }
}
