//! The manifest reference (docs/reference.md), generated from the CRD
//! schemas so that it documents every field and never drifts from the code.

use std::fmt::Write as _;

use serde_json::Value;

use super::all_crds;

/// Markdown: one section per kind, one row per field (dotted path, type,
/// default, description and the API server's rules).
pub fn markdown() -> String {
    let mut out = String::from(
        "# Manifest reference\n\nGenerated from the CRDs by `retl crds --reference` (a test fails when it drifts). \
         Every resource is `apiVersion: retl.dev/v1alpha1` and namespaced.\n",
    );
    for crd in all_crds() {
        let Some(version) = crd.spec.versions.first() else { continue };
        let Some(schema) = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) else { continue };
        let Ok(schema) = serde_json::to_value(schema) else { continue };
        let _ = write!(out, "\n## {}\n\n", crd.spec.names.kind);
        if let Some(d) = schema.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", one_line(d));
        }
        out.push_str("| field | type | default | description |\n| --- | --- | --- | --- |\n");
        for part in ["spec", "status"] {
            if let Some(node) = schema.pointer(&format!("/properties/{part}")) {
                rows(node, part, &mut out);
            }
        }
    }
    out
}

fn rows(node: &Value, path: &str, out: &mut String) {
    let ty = type_of(node);
    let default = node.get("default").map(|d| format!("`{d}`")).unwrap_or_default();
    let desc = node.get("description").and_then(Value::as_str).map(one_line).unwrap_or_default();
    let enums = node
        .get("enum")
        .and_then(Value::as_array)
        .map(|e| {
            let vals: Vec<String> = e.iter().filter(|v| !v.is_null()).map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect();
            format!(" One of {}.", vals.join(", "))
        })
        .unwrap_or_default();
    // The API server's CEL rules (`x-kubernetes-validations`) of the field
    // and, for a list, of each entry, by their messages.
    let rules: String = [Some(node), node.get("items")]
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("x-kubernetes-validations").and_then(Value::as_array))
        .flatten()
        .filter_map(|r| r.get("message").and_then(Value::as_str))
        .map(|m| format!(" Rule: {m}."))
        .collect();
    let _ = writeln!(out, "| `{path}` | {ty} | {default} | {} |", format!("{desc}{enums}{rules}").replace('|', "\\|"));
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            rows(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(props) = node.get("items").and_then(|i| i.get("properties")).and_then(Value::as_object) {
        for (k, v) in props {
            rows(v, &format!("{path}[].{k}"), out);
        }
    }
}

fn type_of(node: &Value) -> String {
    if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) && node.get("type").is_none() {
        return "any JSON".into();
    }
    match node.get("type").and_then(Value::as_str) {
        Some("array") => {
            let inner = node.get("items").map(type_of).unwrap_or_else(|| "any".into());
            format!("[]{inner}")
        }
        Some(t) => t.to_string(),
        None => "any".into(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
