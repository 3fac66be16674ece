//! The CRDs: `crds/` matches the code, and every schema is structural, so
//! a Kubernetes API server accepts it.

use retl::api::{all_crds, crd_file_name, crd_yaml};
use serde_json::Value;

#[test]
fn crds_directory_matches_the_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for crd in all_crds() {
        let file = dir.join(crd_file_name(&crd));
        let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            on_disk,
            crd_yaml(&crd).unwrap(),
            "{} is out of date: regenerate with `cargo run -- crds --output-dir crds`",
            file.display()
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, all_crds().len(), "crds/ holds exactly one file per CRD");
    let bundled = std::fs::read_to_string(dir.parent().unwrap().join("deploy/crds.yaml")).unwrap_or_default();
    let expected: String = all_crds().iter().map(|c| format!("---\n{}", crd_yaml(c).unwrap())).collect();
    assert_eq!(bundled, expected, "deploy/crds.yaml is out of date: `cargo run -- crds > deploy/crds.yaml`");
}

/// The Helm chart installs the same CRDs (Helm applies `crds/` before the
/// templates and never upgrades or deletes them).
#[test]
fn the_helm_charts_crds_are_the_crds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("charts/retl/crds");
    for crd in all_crds() {
        let file = dir.join(crd_file_name(&crd));
        let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            on_disk,
            crd_yaml(&crd).unwrap(),
            "{} is out of date: `cargo run -- crds --output-dir charts/retl/crds`",
            file.display()
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, all_crds().len(), "charts/retl/crds holds exactly one file per CRD");
}

#[test]
fn reference_doc_matches_the_code() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
    let generated = retl::api::reference::markdown();
    assert_eq!(on_disk, generated, "docs/reference.md is out of date: `cargo run -- crds --reference > docs/reference.md`");
    for field in ["`spec.fields[].object[].from`", "`spec.guards.maxDeletePercent`", "`status.failedRecords[].recommendedAction`"] {
        assert!(generated.contains(field), "{field} documented");
    }
}

#[test]
fn every_schema_is_structural() {
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        for v in &crd.spec.versions {
            let schema = serde_json::to_value(&v.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            let problems = structural_problems(&schema);
            assert!(problems.is_empty(), "{name} {}: not structural:\n{}", v.name, problems.join("\n"));
            assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{name} has a status subresource");
        }
    }
}

#[test]
fn the_structural_check_catches_what_the_api_server_rejects() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "nullableOnly": {"nullable": true},
            "junctor": {"type": "string", "anyOf": [{"type": "string"}]},
            "freeform": {"type": "object"},
            "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "ref": {"$ref": "#/definitions/x"},
            "ok": {"x-kubernetes-preserve-unknown-fields": true},
        }
    });
    let p = structural_problems(&bad);
    for path in ["untyped", "nullableOnly", "junctor", "freeform", "both", "ref"] {
        assert!(p.iter().any(|x| x.contains(path)), "{path} not reported in {p:?}");
    }
    assert!(!p.iter().any(|x| x.contains(".ok")), "{p:?}");
}

#[test]
fn printer_columns_and_selectable_fields_are_declared() {
    let sync = all_crds().into_iter().find(|c| c.spec.names.kind == "Sync").unwrap();
    let v = &sync.spec.versions[0];
    let names: Vec<String> = v.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.to_uppercase()).collect();
    assert_eq!(names, ["MAPPING", "STATUS", "STARTED", "DURATION", "EXTRACTED", "ADDED", "UPDATED", "DELETED", "LOADED", "FAILED", "AGE"]);
    let selectable: Vec<String> = v.selectable_fields.as_ref().unwrap().iter().map(|f| f.json_path.clone()).collect();
    assert!(selectable.contains(&".status.phase".to_string()));
    let mapping = all_crds().into_iter().find(|c| c.spec.names.kind == "Mapping").unwrap();
    let names: Vec<String> =
        mapping.spec.versions[0].additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.to_uppercase()).collect();
    assert_eq!(names, ["MODEL", "DESTINATION", "ACTION", "ENABLED", "READY", "SCHEDULE", "LAST SYNC", "LAST STATUS", "AGE"]);
}

/// Keys that a YAML 1.1 reader (kubectl's) turns into booleans: a property
/// named so can never be set from a YAML manifest.
const YAML_BOOLEANS: [&str; 8] = ["on", "off", "yes", "no", "y", "n", "true", "false"];

#[test]
fn no_property_is_named_like_a_yaml_boolean() {
    let mut found = Vec::new();
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        for v in &crd.spec.versions {
            let schema = serde_json::to_value(&v.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            for path in yaml_boolean_properties(&schema, "") {
                found.push(format!("{name} {}: {path}", v.name));
            }
        }
    }
    assert!(found.is_empty(), "properties that kubectl's YAML reader turns into booleans (rename them):\n{}", found.join("\n"));
}

#[test]
fn the_yaml_boolean_check_catches_every_spelling_at_any_depth() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "On": {"type": "array", "items": {"type": "string"}},
                "list": {"type": "array", "items": {"type": "object", "properties": {"YES": {"type": "string"}}}},
                "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"n": {"type": "string"}}}},
                "either": {"type": "object", "anyOf": [{"properties": {"false": {"type": "string"}}}]},
                "outcomes": {"type": "string"},
                "only": {"type": "string"},
            }},
        }
    });
    let mut found = yaml_boolean_properties(&bad, "");
    found.sort();
    assert_eq!(found, [".spec.On", ".spec.either<anyOf0>.false", ".spec.list[].YES", ".spec.map{*}.n"]);
}

/// The paths of the properties of `node` named like a YAML 1.1 boolean.
fn yaml_boolean_properties(node: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(obj) = node.as_object() else { return out };
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let here = format!("{path}.{k}");
            if YAML_BOOLEANS.contains(&k.to_lowercase().as_str()) {
                out.push(here.clone());
            }
            out.extend(yaml_boolean_properties(v, &here));
        }
    }
    if let Some(items) = obj.get("items") {
        out.extend(yaml_boolean_properties(items, &format!("{path}[]")));
    }
    if let Some(ap) = obj.get("additionalProperties") {
        out.extend(yaml_boolean_properties(ap, &format!("{path}{{*}}")));
    }
    for j in ["anyOf", "oneOf", "allOf"] {
        for (i, v) in obj.get(j).and_then(Value::as_array).into_iter().flatten().enumerate() {
            out.extend(yaml_boolean_properties(v, &format!("{path}<{j}{i}>")));
        }
    }
    if let Some(not) = obj.get("not") {
        out.extend(yaml_boolean_properties(not, &format!("{path}<not>")));
    }
    out
}

/// What kube-apiserver's structural-schema check refuses, and free-form
/// objects it would silently prune
/// (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).
fn structural_problems(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, "", false, &mut out);
    out
}

fn walk(node: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: schema is not an object"));
        return;
    };
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let has_type = obj.get("type").and_then(Value::as_str).is_some_and(|t| !t.is_empty());
    if obj.contains_key("$ref") || obj.contains_key("definitions") {
        out.push(format!("{path}: $ref/definitions are not allowed"));
    }
    if in_junctor {
        for forbidden in ["type", "description", "default", "additionalProperties", "nullable"] {
            if obj.contains_key(forbidden) && !int_or_string {
                out.push(format!("{path}: {forbidden} inside anyOf/oneOf/allOf/not"));
            }
        }
    } else if !has_type && !preserve && !int_or_string {
        out.push(format!("{path}: no type"));
    }
    if obj.get("type").and_then(Value::as_str) == Some("object")
        && !obj.contains_key("properties")
        && !obj.contains_key("additionalProperties")
        && !preserve
    {
        out.push(format!("{path}: free-form object without x-kubernetes-preserve-unknown-fields"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        out.push(format!("{path}: properties and additionalProperties together"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(v, &format!("{path}.{k}"), in_junctor, out);
        }
    }
    if let Some(items) = obj.get("items") {
        walk(items, &format!("{path}[]"), in_junctor, out);
    }
    if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        walk(ap, &format!("{path}{{*}}"), in_junctor, out);
    }
    for j in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = obj.get(j).and_then(Value::as_array) {
            for (i, v) in list.iter().enumerate() {
                walk(v, &format!("{path}<{j}{i}>"), true, out);
            }
        }
    }
    if let Some(not) = obj.get("not") {
        walk(not, &format!("{path}<not>"), true, out);
    }
}
