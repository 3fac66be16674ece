//! Server-side printing: `meta.k8s.io/v1` Table responses.
//!
//! Custom resources: a `Name` column (format `name`) then the version's
//! additionalPrinterColumns, or a lone `Age` column when none are declared
//! (apiextensions-apiserver `serveDefaultColumnsIfEmpty`). Cells are
//! evaluated with JSONPath; `date` cells are turned into ages on the server
//! (`metatable.ConvertToHumanReadableDateType`), `integer`/`number`/`boolean`
//! cells keep their JSON type, missing values are null (kubectl shows `<none>`).
//! Built-ins: the columns of kube-apiserver's printers for the types served.

use super::registry::{BuiltinTable, ResourceType};
use jsonpath_rust::JsonPath;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// k8s.io/apimachinery/pkg/util/duration.HumanDuration.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{d}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// `ConvertToHumanReadableDateType`: age of a timestamp, `<unknown>` when absent.
pub fn age(ts: &Value) -> String {
    match ts.as_str().and_then(parse_time) {
        Some(t) => human_duration((chrono::Utc::now() - t).num_seconds()),
        None => "<unknown>".into(),
    }
}

/// Evaluates a Kubernetes JSONPath (`.status.phase`, `{.a[0].b}`, filters) and returns the first match.
pub fn eval_jsonpath<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let p = path.trim();
    let p = p.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(p);
    let p = if p.starts_with('$') { p.to_string() } else { format!("${p}") };
    obj.query(&p).ok().and_then(|v| v.into_iter().next())
}

fn col(name: &str, ty: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    col(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        0,
    )
}

fn age_col() -> Value {
    col(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        0,
    )
}

fn custom_columns(rt: &ResourceType) -> Vec<Value> {
    let declared = rt.custom.as_ref().map(|c| c.printer_columns.clone()).unwrap_or_default();
    if declared.is_empty() {
        return vec![
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}),
        ];
    }
    declared
}

/// Column definitions for a type.
pub fn columns(rt: &ResourceType) -> Vec<Value> {
    let mut cols = vec![name_col()];
    if rt.custom.is_some() {
        for c in custom_columns(rt) {
            let jp = c["jsonPath"].as_str().unwrap_or("");
            let desc = c["description"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("Custom resource definition column (in JSONPath format): {jp}"));
            cols.push(col(
                c["name"].as_str().unwrap_or(""),
                c["type"].as_str().unwrap_or("string"),
                c["format"].as_str().unwrap_or(""),
                &desc,
                c["priority"].as_i64().unwrap_or(0),
            ));
        }
        return cols;
    }
    match rt.table {
        BuiltinTable::Namespace => cols.extend([col("Status", "string", "", "The status of the namespace", 0), age_col()]),
        BuiltinTable::Secret => cols.extend([
            col("Type", "string", "", "The type of the secret", 0),
            col("Data", "string", "", "The number of data entries", 0),
            age_col(),
        ]),
        BuiltinTable::ConfigMap => cols.extend([col("Data", "string", "", "Number of data entries", 0), age_col()]),
        BuiltinTable::Lease => cols.extend([col("Holder", "string", "", "The holder of the lease", 0), age_col()]),
        BuiltinTable::Crd => cols.push(col("Created At", "date", "", "Creation timestamp", 0)),
        BuiltinTable::Job => cols.extend([
            col("Status", "string", "", "Status of the job", 0),
            col("Completions", "string", "", "The completion status of the job", 0),
            col("Duration", "string", "", "Time required to complete the job", 0),
            age_col(),
            col("Containers", "string", "", "Names of each container in the template", 1),
            col("Images", "string", "", "Images referenced by each container in the template", 1),
            col("Selector", "string", "", "Selector for pods", 1),
        ]),
        BuiltinTable::Event => {
            cols = vec![
                col("Last Seen", "string", "", "Time since the last occurrence", 0),
                col("Type", "string", "", "Type of this event", 0),
                col("Reason", "string", "", "Why the action was taken", 0),
                col("Object", "string", "", "The object this event is about", 0),
                col("Subobject", "string", "", "The subobject this event is about", 1),
                col("Source", "string", "", "The component reporting this event", 1),
                col("Message", "string", "", "A human-readable description of the status of this operation", 0),
                col("First Seen", "string", "", "Time since the first occurrence", 1),
                col("Count", "string", "", "The number of times this event has occurred", 1),
                col("Name", "string", "name", "The name of the event", 1),
            ];
        }
        BuiltinTable::Generic => cols.push(age_col()),
    }
    cols
}

fn custom_cell(ty: &str, v: Option<&Value>) -> Value {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Value::Null };
    match ty {
        "date" => v.as_str().map(|_| Value::String(age(v))).unwrap_or(Value::String("<invalid>".into())),
        "integer" => v.as_f64().map(|f| json!(f as i64)).unwrap_or(Value::Null),
        "number" => v.as_f64().map(|f| json!(f)).unwrap_or(Value::Null),
        "boolean" => v.as_bool().map(Value::Bool).unwrap_or(Value::Null),
        _ => match v {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        },
    }
}

fn job_status(o: &Value) -> &'static str {
    let conds = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let has = |t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if o["spec"]["suspend"] == true {
        "Suspended"
    } else {
        "Running"
    }
}

fn builtin_cells(rt: &ResourceType, o: &Value) -> Vec<Value> {
    let name = o["metadata"]["name"].clone();
    let created = age(&o["metadata"]["creationTimestamp"]);
    match rt.table {
        BuiltinTable::Namespace => vec![name, o["status"]["phase"].clone(), json!(created)],
        BuiltinTable::Secret => vec![name, o["type"].clone(), json!(o["data"].as_object().map(|m| m.len()).unwrap_or(0)), json!(created)],
        BuiltinTable::ConfigMap => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0) + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![name, json!(n), json!(created)]
        }
        BuiltinTable::Lease => vec![name, o["spec"]["holderIdentity"].clone(), json!(created)],
        BuiltinTable::Crd => vec![name, o["metadata"]["creationTimestamp"].clone()],
        BuiltinTable::Job => {
            let completions = o["spec"]["completions"].as_i64().unwrap_or(1);
            let succeeded = o["status"]["succeeded"].as_i64().unwrap_or(0);
            let duration = match o["status"]["startTime"].as_str().and_then(parse_time) {
                Some(start) => {
                    let end = o["status"]["completionTime"].as_str().and_then(parse_time).unwrap_or_else(chrono::Utc::now);
                    human_duration((end - start).num_seconds())
                }
                None => String::new(),
            };
            let containers = o["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
            let names: Vec<&str> = containers.iter().filter_map(|c| c["name"].as_str()).collect();
            let images: Vec<&str> = containers.iter().filter_map(|c| c["image"].as_str()).collect();
            let selector = o["spec"]["selector"]["matchLabels"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(job_status(o)),
                json!(format!("{succeeded}/{completions}")),
                json!(duration),
                json!(created),
                json!(names.join(",")),
                json!(images.join(",")),
                json!(selector),
            ]
        }
        BuiltinTable::Event => {
            let last = [&o["lastTimestamp"], &o["series"]["lastObservedTime"], &o["eventTime"]]
                .into_iter()
                .find(|v| v.is_string())
                .cloned()
                .unwrap_or(Value::Null);
            let first = [&o["firstTimestamp"], &o["eventTime"]].into_iter().find(|v| v.is_string()).cloned().unwrap_or(Value::Null);
            let io = &o["involvedObject"];
            let object = format!("{}/{}", io["kind"].as_str().unwrap_or("").to_lowercase(), io["name"].as_str().unwrap_or(""));
            let source = o["source"]["component"].as_str().or(o["reportingComponent"].as_str()).unwrap_or("").to_string();
            vec![
                json!(age(&last)),
                o["type"].clone(),
                o["reason"].clone(),
                json!(object),
                json!(io["fieldPath"].as_str().unwrap_or("")),
                json!(source),
                o["message"].clone(),
                json!(age(&first)),
                json!(o["count"].as_i64().unwrap_or(1)),
                name,
            ]
        }
        BuiltinTable::Generic => vec![name, json!(created)],
    }
}

/// The cells of one row.
pub fn cells(rt: &ResourceType, o: &Value) -> Vec<Value> {
    if rt.custom.is_none() {
        return builtin_cells(rt, o);
    }
    let mut out = vec![o["metadata"]["name"].clone()];
    for c in custom_columns(rt) {
        let v = eval_jsonpath(o, c["jsonPath"].as_str().unwrap_or(""));
        out.push(custom_cell(c["type"].as_str().unwrap_or("string"), v));
    }
    out
}

pub fn partial_metadata(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
}

/// A Table of `objects`; `list_meta` is the list metadata (resourceVersion, continue...).
pub fn table(rt: &ResourceType, objects: &[Value], list_meta: Value, include: IncludeObject, with_headers: bool) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(rt, o)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o),
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "rows": rows});
    t["columnDefinitions"] = if with_headers { Value::Array(columns(rt)) } else { Value::Null };
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(130), "2m10s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
    }

    #[test]
    fn jsonpath_filters() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(eval_jsonpath(&o, r#".status.conditions[?(@.type=="Ready")].status"#), Some(&json!("True")));
        assert_eq!(eval_jsonpath(&o, ".status.conditions[0].type"), Some(&json!("A")));
        assert_eq!(eval_jsonpath(&o, ".status.missing"), None);
    }
}
