//! OpenAPI v3 structural schemas of CRDs: the structural check done when a CRD
//! is written, and defaulting, pruning and validation of custom resources.
//!
//! Wording of validation errors follows kube-openapi's validate errors as
//! converted by apiextensions-apiserver (`ValidateCustomResource`), e.g.
//! `spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`
//! (k8s.io/apiextensions-apiserver/pkg/apiserver/validation/validation.go).

use super::errors::Cause;
use serde_json::{Map, Value};

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

fn int_or_string(schema: &Value) -> bool {
    schema["x-kubernetes-int-or-string"] == Value::Bool(true)
}

// ---------------------------------------------------------------- structural check

/// Errors that make `schema` non-structural, with paths below `path`
/// (e.g. `spec.versions[0].schema.openAPIV3Schema`), as apiextensions words them.
pub fn structural_errors(schema: &Value, path: &str) -> Vec<Cause> {
    let mut errs = vec![];
    if !schema.is_object() {
        errs.push(Cause::invalid(path, schema, "must be an object"));
        return errs;
    }
    if schema["type"] != "object" {
        if schema.get("type").is_none() {
            errs.push(Cause::required(&format!("{path}.type"), "must not be empty at the root"));
        } else {
            errs.push(Cause::invalid(&format!("{path}.type"), &schema["type"], "must be object at the root"));
        }
    }
    if let Some(meta) = schema["properties"].get("metadata") {
        let only_names = meta
            .as_object()
            .map(|m| {
                m.keys().all(|k| k == "type" || k == "properties" || k == "description")
                    && meta["properties"].as_object().map(|p| p.keys().all(|k| k == "name" || k == "generateName")).unwrap_or(true)
            })
            .unwrap_or(false);
        if !only_names {
            errs.push(Cause::forbidden(
                &format!("{path}.properties[metadata]"),
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    check_node(schema, path, false, &mut errs);
    errs
}

const VALUE_VALIDATION_FORBIDDEN: &[&str] = &[
    "type",
    "default",
    "nullable",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "description",
];

fn check_node(s: &Value, path: &str, in_value_validation: bool, errs: &mut Vec<Cause>) {
    let Some(obj) = s.as_object() else {
        errs.push(Cause::invalid(path, s, "must be a schema object"));
        return;
    };
    if in_value_validation {
        for k in VALUE_VALIDATION_FORBIDDEN {
            if obj.contains_key(*k) && *k != "description" {
                errs.push(Cause::forbidden(&format!("{path}.{k}"), "must be empty to be structural"));
            }
        }
    } else if !obj.contains_key("type") && !int_or_string(s) && !preserves(s) {
        let detail = if obj.contains_key("properties") {
            "must not be empty for specified object fields"
        } else if obj.contains_key("items") {
            "must not be empty for specified array items"
        } else {
            "must not be empty for specified fields"
        };
        errs.push(Cause::required(&format!("{path}.type"), detail));
    }
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        if !["object", "array", "string", "integer", "number", "boolean"].contains(&t) {
            errs.push(Cause::not_supported(
                &format!("{path}.type"),
                &obj["type"],
                &["array", "boolean", "integer", "number", "object", "string"].map(|x| Value::String(x.into())),
            ));
        }
        if t == "array" && !obj.contains_key("items") && !in_value_validation {
            errs.push(Cause::required(&format!("{path}.items"), "must be specified"));
        }
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errs.push(Cause::forbidden(&format!("{path}.additionalProperties"), "additionalProperties and properties are mutual exclusive"));
    }
    if let Some(p) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            check_node(v, &format!("{path}.properties[{k}]"), in_value_validation, errs);
        }
    }
    if let Some(items) = obj.get("items") {
        if items.is_array() {
            errs.push(Cause::forbidden(&format!("{path}.items"), "items must be a schema object and not an array"));
        } else {
            check_node(items, &format!("{path}.items"), in_value_validation, errs);
        }
    }
    if let Some(ap) = obj.get("additionalProperties") {
        if ap.is_object() {
            check_node(ap, &format!("{path}.additionalProperties"), in_value_validation, errs);
        } else if *ap == Value::Bool(false) && !in_value_validation {
            errs.push(Cause::forbidden(&format!("{path}.additionalProperties"), "must not be false"));
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in obj.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            check_node(sub, &format!("{path}.{key}[{i}]"), true, errs);
        }
    }
    if let Some(n) = obj.get("not") {
        check_node(n, &format!("{path}.not"), true, errs);
    }
}

// ---------------------------------------------------------------- defaulting

/// Applies `default`s of `schema` to absent (or null, non-nullable) fields of `v`.
pub fn apply_defaults(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, ps) in props {
                    let missing = match map.get(k) {
                        None => true,
                        Some(Value::Null) => ps["nullable"] != Value::Bool(true),
                        _ => false,
                    };
                    if missing && let Some(d) = ps.get("default") {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(val) = map.get_mut(k) {
                        apply_defaults(val, ps);
                    }
                }
            }
            if schema["additionalProperties"].is_object() {
                for val in map.values_mut() {
                    apply_defaults(val, &schema["additionalProperties"]);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for it in items {
                apply_defaults(it, &schema["items"]);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- pruning

/// Drops fields the schema does not declare (unless preserved), recording their paths in `pruned`.
/// At the root, `apiVersion`, `kind` and `metadata` are always kept.
pub fn prune(v: &mut Value, schema: &Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let keep_all = preserves(schema) || schema["additionalProperties"] == Value::Bool(true) || int_or_string(schema);
            let props = schema["properties"].as_object();
            let addl = schema["additionalProperties"].is_object().then(|| &schema["additionalProperties"]);
            let embedded = schema["x-kubernetes-embedded-resource"] == Value::Bool(true);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if (root || embedded) && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                let p = child(path, &k);
                if let Some(ps) = props.and_then(|p| p.get(&k)) {
                    if let Some(val) = map.get_mut(&k) {
                        prune(val, ps, &p, false, pruned);
                    }
                } else if let Some(ad) = addl {
                    if let Some(val) = map.get_mut(&k) {
                        prune(val, ad, &p, false, pruned);
                    }
                } else if !keep_all {
                    map.remove(&k);
                    pruned.push(p);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, it) in items.iter_mut().enumerate() {
                prune(it, &schema["items"], &format!("{path}[{i}]"), false, pruned);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- validation

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => v.as_f64().map(|f| f.fract() == 0.0).unwrap_or(false) && v.is_number(),
        _ => true,
    }
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" => uuid::Uuid::parse_str(s).is_ok(),
        "byte" => s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='),
        _ => true,
    }
}

/// Go's `%v` of a float64 bound: `10`, not `10.0`.
fn go_num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => v.to_string(),
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Validates `v` against `schema`; `path` is the field path of `v` (empty at the root).
pub fn validate(v: &Value, schema: &Value, path: &str, errs: &mut Vec<Cause>) {
    let shown = if path.is_empty() { "body".to_string() } else { path.to_string() };
    if v.is_null() {
        if schema["nullable"] == Value::Bool(true) {
            return;
        }
        if let Some(t) = schema["type"].as_str() {
            errs.push(Cause::type_invalid(path, &Value::String("null".into()), &format!("{shown} in body must be of type {t}: \"null\"")));
        }
        return;
    }
    // On a type mismatch the enum check still runs (kube-openapi runs both; see
    // apiextensions-apiserver validation_test.go), the type-specific ones do not.
    let enum_check = |errs: &mut Vec<Cause>| {
        if let Some(en) = schema["enum"].as_array()
            && !en.contains(v)
        {
            errs.push(Cause::not_supported(path, v, en));
        }
    };
    let type_error = if int_or_string(schema) {
        (!(v.is_string() || type_ok("integer", v))).then(|| "integer,string".to_string())
    } else {
        schema["type"].as_str().filter(|t| !type_ok(t, v)).map(String::from)
    };
    if let Some(t) = type_error {
        errs.push(Cause::type_invalid(
            path,
            &Value::String(type_name(v).into()),
            &format!("{shown} in body must be of type {t}: {:?}", type_name(v)),
        ));
        enum_check(errs);
        return;
    }
    enum_check(errs);
    match v {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                errs.push(Cause::too_long(path, max));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                errs.push(Cause::invalid(path, v, &format!("{shown} in body should be at least {min} chars long")));
            }
            if let Some(p) = schema["pattern"].as_str()
                && let Ok(re) = regex::Regex::new(p)
                && !re.is_match(s)
            {
                errs.push(Cause::invalid(path, v, &format!("{shown} in body should match '{p}'")));
            }
            if let Some(f) = schema["format"].as_str()
                && !format_ok(f, s)
            {
                errs.push(Cause::invalid(path, v, &format!("{shown} in body must be of type {f}: {s:?}")));
            }
        }
        Value::Number(_) => {
            let x = num(v);
            if let Some(max) = schema.get("maximum").filter(|m| m.is_number()) {
                let excl = schema["exclusiveMaximum"] == Value::Bool(true);
                if (excl && x >= num(max)) || (!excl && x > num(max)) {
                    let how = if excl { "less than" } else { "less than or equal to" };
                    errs.push(Cause::invalid(path, v, &format!("{shown} in body should be {how} {}", go_num(max))));
                }
            }
            if let Some(min) = schema.get("minimum").filter(|m| m.is_number()) {
                let excl = schema["exclusiveMinimum"] == Value::Bool(true);
                if (excl && x <= num(min)) || (!excl && x < num(min)) {
                    let how = if excl { "greater than" } else { "greater than or equal to" };
                    errs.push(Cause::invalid(path, v, &format!("{shown} in body should be {how} {}", go_num(min))));
                }
            }
            if let Some(m) = schema["multipleOf"].as_f64()
                && m != 0.0
                && (x / m).fract() != 0.0
            {
                errs.push(Cause::invalid(path, v, &format!("{shown} in body should be a multiple of {m}")));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                errs.push(Cause::too_many(path, items.len(), max));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                errs.push(Cause::invalid(path, v, &format!("{shown} in body should have at least {min} items")));
            }
            let list_type = schema["x-kubernetes-list-type"].as_str().unwrap_or("");
            if schema["uniqueItems"] == Value::Bool(true) || list_type == "set" {
                for (i, it) in items.iter().enumerate() {
                    if items[..i].contains(it) {
                        errs.push(Cause::duplicate(&format!("{path}[{i}]"), it));
                    }
                }
            }
            if list_type == "map" {
                let keys: Vec<&str> =
                    schema["x-kubernetes-list-map-keys"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let ids: Vec<Vec<&Value>> = items.iter().map(|it| keys.iter().map(|k| &it[*k]).collect()).collect();
                for i in 0..ids.len() {
                    if ids[..i].contains(&ids[i]) {
                        let shown_key: Map<String, Value> = keys.iter().map(|k| (k.to_string(), items[i][*k].clone())).collect();
                        errs.push(Cause::duplicate(&format!("{path}[{i}]"), &Value::Object(shown_key)));
                    }
                }
            }
            if schema["items"].is_object() {
                for (i, it) in items.iter().enumerate() {
                    validate(it, &schema["items"], &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(map) => {
            for r in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    errs.push(Cause::required(&child(path, r), ""));
                }
            }
            if let Some(max) = schema["maxProperties"].as_u64()
                && map.len() as u64 > max
            {
                errs.push(Cause::too_many(path, map.len(), max));
            }
            if let Some(min) = schema["minProperties"].as_u64()
                && (map.len() as u64) < min
            {
                errs.push(Cause::invalid(path, v, &format!("{shown} in body should have at least {min} properties")));
            }
            let props = schema["properties"].as_object();
            for (k, val) in map {
                if path.is_empty() && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    validate(val, ps, &child(path, k), errs);
                } else if schema["additionalProperties"].is_object() {
                    validate(val, &schema["additionalProperties"], &child(path, k), errs);
                }
            }
        }
        _ => {}
    }
    for sub in schema["allOf"].as_array().into_iter().flatten() {
        validate(v, sub, path, errs);
    }
    if let Some(any) = schema["anyOf"].as_array() {
        let ok = any.iter().any(|s| {
            let mut e = vec![];
            validate(v, s, path, &mut e);
            e.is_empty()
        });
        if !ok {
            errs.push(Cause::invalid(path, v, &format!("{shown} in body must match at least one schema (anyOf)")));
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let n = one
            .iter()
            .filter(|s| {
                let mut e = vec![];
                validate(v, s, path, &mut e);
                e.is_empty()
            })
            .count();
        if n != 1 {
            errs.push(Cause::invalid(path, v, &format!("{shown} in body must validate one and only one schema (oneOf)")));
        }
    }
    if let Some(not) = schema.get("not") {
        let mut e = vec![];
        validate(v, not, path, &mut e);
        if e.is_empty() {
            errs.push(Cause::invalid(path, v, &format!("{shown} in body must not validate the schema (not)")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "maximum": 10},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }}}})
    }

    #[test]
    fn defaults_prunes_and_validates() {
        let mut o =
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"size": "big", "junk": 1, "free": {"any": 1}}});
        apply_defaults(&mut o, &schema());
        let mut pruned = vec![];
        prune(&mut o, &schema(), "", true, &mut pruned);
        assert_eq!(pruned, vec!["spec.junk"]);
        assert_eq!(o["spec"]["mode"], "a");
        assert_eq!(o["spec"]["free"]["any"], 1);
        let mut errs = vec![];
        validate(&o, &schema(), "", &mut errs);
        assert_eq!(errs[0].render(), r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#);
        let mut errs = vec![];
        validate(&json!({"spec": {"mode": "c"}}), &schema(), "", &mut errs);
        let mut both = vec![];
        validate(&json!({"spec": {"size": 1, "mode": 3}}), &schema(), "", &mut both);
        let r: Vec<String> = both.iter().map(Cause::render).collect();
        assert_eq!(
            r,
            vec![
                r#"spec.mode: Invalid value: "integer": spec.mode in body must be of type string: "integer""#,
                r#"spec.mode: Unsupported value: 3: supported values: "a", "b""#
            ]
        );
        let r: Vec<String> = errs.iter().map(Cause::render).collect();
        assert_eq!(r, vec!["spec.size: Required value", r#"spec.mode: Unsupported value: "c": supported values: "a", "b""#]);
    }

    #[test]
    fn structural() {
        let bad = json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}});
        let e = structural_errors(&bad, "s");
        assert_eq!(e[0].render(), "s.properties[spec].type: Required value: must not be empty for specified object fields");
        assert!(structural_errors(&schema(), "s").is_empty());
    }
}
