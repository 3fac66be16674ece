//! Strict reading of manifests, as kubectl's strict field validation and the
//! API server do it: a manifest is checked against its kind's CRD schema
//! (the one `retl crds` installs) before it is used, so a typo such as
//! `sned:` or a value outside its range is an error that names the field,
//! not a silent default. The CEL rules of the schema that a local run cannot
//! evaluate are checked on the typed object instead, with the same messages.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool};
use serde_json::Value;

use crate::api::{Mapping, all_crds};
use crate::schedule::Schedule;

/// Why the object `value` of `kind` does not fit its CRD's schema, one line
/// per problem (empty when it fits).
pub fn schema_problems(kind: &str, value: &Value) -> Vec<String> {
    let schema = schemas().iter().find(|(k, _)| k == kind).map(|(_, s)| s);
    let mut out = Vec::new();
    if let (Some(schema), Value::Object(top)) = (schema, value) {
        for (k, v) in top {
            // metadata is a standard ObjectMeta (the CRD schema leaves it open).
            if k == "metadata" || k == "apiVersion" || k == "kind" {
                continue;
            }
            match schema.properties.as_ref().and_then(|p| p.get(k)) {
                Some(s) => walk(k, v, s, &mut out),
                None => out.push(unknown(k, schema.properties.as_ref().map(|p| p.keys().collect()).unwrap_or_default())),
            }
        }
    }
    out
}

/// Each kind's schema, generated once per process (not per manifest).
fn schemas() -> &'static [(String, JSONSchemaProps)] {
    static SCHEMAS: std::sync::OnceLock<Vec<(String, JSONSchemaProps)>> = std::sync::OnceLock::new();
    SCHEMAS.get_or_init(|| {
        all_crds()
            .into_iter()
            .filter_map(|c| {
                let schema = c.spec.versions.into_iter().next()?.schema?.open_api_v3_schema?;
                Some((c.spec.names.kind, schema))
            })
            .collect()
    })
}

fn walk(path: &str, value: &Value, schema: &JSONSchemaProps, out: &mut Vec<String>) {
    if schema.x_kubernetes_preserve_unknown_fields == Some(true) {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                match (schema.properties.as_ref().and_then(|p| p.get(k)), &schema.additional_properties) {
                    (Some(s), _) => walk(&here, v, s, out),
                    (None, Some(JSONSchemaPropsOrBool::Schema(s))) => walk(&here, v, s, out),
                    (None, Some(JSONSchemaPropsOrBool::Bool(true))) => {}
                    (None, _) => out.push(unknown(&here, schema.properties.as_ref().map(|p| p.keys().collect()).unwrap_or_default())),
                }
            }
        }
        Value::Array(items) => {
            if let Some(JSONSchemaPropsOrArray::Schema(s)) = &schema.items {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), v, s, out);
                }
            }
        }
        Value::Number(n) => {
            let Some(x) = n.as_f64() else { return };
            if let Some(min) = schema.minimum.filter(|m| x < *m) {
                out.push(format!("{path}: {n} is less than the minimum {}; use {} or more", number(min), number(min)));
            }
            if let Some(max) = schema.maximum.filter(|m| x > *m) {
                out.push(format!("{path}: {n} is more than the maximum {}; use at most {}", number(max), number(max)));
            }
        }
        Value::String(s) => {
            if let Some(max) = schema.max_length.filter(|m| s.chars().count() as i64 > *m) {
                out.push(format!("{path}: at most {max} characters"));
            }
        }
        _ => {}
    }
}

/// `unknown field "spec.sned"`, with the known field nearest to it.
fn unknown(path: &str, known: Vec<&String>) -> String {
    let (parent, field) = path.rsplit_once('.').map(|(p, f)| (Some(p), f)).unwrap_or((None, path));
    let field = field.split('[').next().unwrap_or(field);
    let nearest =
        known.iter().map(|k| (strsim::jaro_winkler(field, k), *k)).filter(|(score, _)| *score >= 0.8).max_by(|a, b| a.0.total_cmp(&b.0));
    let hint = match (nearest, parent) {
        (Some((_, k)), Some(p)) => format!(" (did you mean \"{p}.{k}\"?)"),
        (Some((_, k)), None) => format!(" (did you mean \"{k}\"?)"),
        (None, _) if known.is_empty() => String::new(),
        (None, _) => format!(" (known fields here: {})", known.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")),
    };
    format!("unknown field \"{path}\"{hint}")
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { x.to_string() }
}

/// What the Mapping CRD's CEL rules and the operator's own checks refuse,
/// checked on the typed Mapping: its schedule and time zone, its retry
/// window, its delete percentage and its `send`.
pub fn mapping_problems(m: &Mapping) -> Vec<String> {
    let spec = &m.spec;
    let mut out = Vec::new();
    if let Some(tz) = spec.time_zone.as_deref()
        && jiff::tz::TimeZone::get(tz).is_err()
    {
        out.push(format!("spec.timeZone {tz:?} is not an IANA time zone; use one like Europe/Berlin, America/New_York or UTC"));
    }
    if let Some(expr) = spec.schedule.as_deref().filter(|s| !s.trim().is_empty())
        && let Err(e) = Schedule::parse(expr, None, jiff::Timestamp::UNIX_EPOCH)
    {
        out.push(format!("{e}; for example \"*/15 * * * *\", \"@hourly\" or \"@every 15m\""));
    }
    if !retry_window_ok(&spec.retry_window) {
        out.push(format!(
            "spec.retryWindow {:?}: a positive duration: whole numbers of at most 6 digits, each with a unit s, m, h, d or w, such as 336h, 14d or 1d12h",
            spec.retry_window
        ));
    }
    if let Some(p) = spec.guards.max_delete_percent.filter(|p| !(0.0..=100.0).contains(p)) {
        out.push(format!("spec.guards.maxDeletePercent {p}: maxDeletePercent is a percentage from 0 to 100"));
    }
    if spec.send.is_empty() {
        out.push(
            "spec.send: send lists at least one of added, updated or deleted; leave send out for the default (added and updated)".into(),
        );
    }
    out
}

/// The CRD's rule for `retryWindow`: `^([0-9]{1,6}[smhdw])+$` with a
/// non-zero digit somewhere.
fn retry_window_ok(s: &str) -> bool {
    let mut digits = 0;
    for c in s.chars() {
        match c {
            '0'..='9' if digits < 6 => digits += 1,
            's' | 'm' | 'h' | 'd' | 'w' if digits > 0 => digits = 0,
            _ => return false,
        }
    }
    digits == 0 && !s.is_empty() && s.chars().any(|c| ('1'..='9').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_name_the_nearest_known_one() {
        let m = serde_json::json!({"apiVersion": "retl.dev/v1alpha1", "kind": "Mapping", "metadata": {"name": "m"},
            "spec": {"modelRef": {"name": "x"}, "destinationRef": {"name": "d"}, "action": "a", "sned": ["deleted"],
                     "guards": {"maxDeletesPercent": 10}}});
        let p = schema_problems("Mapping", &m);
        assert!(p.contains(&"unknown field \"spec.sned\" (did you mean \"spec.send\"?)".to_string()), "{p:?}");
        assert!(
            p.contains(&"unknown field \"spec.guards.maxDeletesPercent\" (did you mean \"spec.guards.maxDeletePercent\"?)".to_string()),
            "{p:?}"
        );
    }

    #[test]
    fn numbers_outside_their_range_say_what_to_use() {
        let d = serde_json::json!({"spec": {"type": "http", "http": {"url": "http://x", "batchSize": 4294967295u64, "maxInFlight": 0}}});
        let p = schema_problems("Destination", &d);
        assert!(p.contains(&"spec.http.batchSize: 4294967295 is more than the maximum 10000; use at most 10000".to_string()), "{p:?}");
        assert!(p.contains(&"spec.http.maxInFlight: 0 is less than the minimum 1; use 1 or more".to_string()), "{p:?}");
    }

    #[test]
    fn retry_windows_follow_the_crds_rule() {
        for ok in ["336h", "14d", "1d12h", "2w", "90s"] {
            assert!(retry_window_ok(ok), "{ok}");
        }
        for bad in ["0s", "", "1.5h", "14days", "1234567s", "h", "10"] {
            assert!(!retry_window_ok(bad), "{bad}");
        }
    }
}
