//! What kube-apiserver does for the built-in types besides storing them:
//! decoding into their Go types, Secret `stringData`, Job defaults.

use super::errors::{ApiError, ApiResult, Cause};
use super::registry::ResourceType;
use serde_json::{Value, json};

/// Secrets: `stringData` is merged into `data` (base64) and never stored; `data` must be base64.
pub(super) fn secret_string_data(obj: &mut Value, causes: &mut Vec<Cause>) {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    if obj["type"].as_str().unwrap_or("").is_empty() {
        obj["type"] = json!("Opaque");
    }
    if !obj["data"].is_null() && !obj["data"].is_object() {
        causes.push(Cause::invalid("data", &obj["data"], "must be a map of base64 strings"));
        return;
    }
    if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        for (k, v) in sd.as_object().into_iter().flatten() {
            let text = v.as_str().unwrap_or("");
            obj["data"][k.as_str()] = json!(engine.encode(text));
        }
    }
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        if v.as_str().map(|s| engine.decode(s).is_err()).unwrap_or(true) {
            causes.push(Cause::invalid(&format!("data[{k}]"), v, "must be a base64 encoded string"));
        }
    }
}

/// Job defaults as kube-apiserver stores them (pkg/apis/batch/v1/defaults.go,
/// pkg/apis/core/v1/defaults.go) and the selector/labels the Job strategy
/// generates (pkg/registry/batch/job/strategy.go), on create.
pub(super) fn default_job(obj: &mut Value) {
    let uid = obj["metadata"]["uid"].clone();
    let name = obj["metadata"]["name"].clone();
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    for (k, v) in [
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", Value::Null),
    ] {
        if spec[k].is_null() && !v.is_null() {
            spec[k] = v;
        }
    }
    if spec["selector"].is_null() && spec["manualSelector"] != true {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = &mut spec["template"]["metadata"]["labels"];
        if labels.is_null() || labels.is_object() {
            for (k, v) in [
                ("batch.kubernetes.io/controller-uid", &uid),
                ("controller-uid", &uid),
                ("batch.kubernetes.io/job-name", &name),
                ("job-name", &name),
            ] {
                labels[k] = v.clone();
            }
        }
    }
    let pod = &mut spec["template"]["spec"];
    if !pod.is_object() {
        return;
    }
    for (k, v) in [
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("securityContext", json!({})),
    ] {
        if pod[k].is_null() {
            pod[k] = v;
        }
    }
    for c in pod["containers"].as_array_mut().into_iter().flatten().filter(|c| c.is_object()) {
        let image = c["image"].as_str().unwrap_or("");
        let tagged = image.rsplit('/').next().map(|last| last.contains(':') || last.contains('@')).unwrap_or(false);
        let pull = if !tagged || image.ends_with(":latest") { "Always" } else { "IfNotPresent" };
        for (k, v) in [
            ("terminationMessagePath", json!("/dev/termination-log")),
            ("terminationMessagePolicy", json!("File")),
            ("imagePullPolicy", json!(pull)),
            ("resources", json!({})),
        ] {
            if c[k].is_null() {
                c[k] = v;
            }
        }
    }
}

/// Built-in objects must decode into their Go types; here, into the
/// k8s-openapi types (a type mismatch is a 400, as the real decoder answers).
pub(super) fn decode_builtin(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    use k8s_openapi::api::{batch::v1::Job, coordination::v1::Lease, core::v1 as core, events::v1 as events};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    fn check<T: serde::de::DeserializeOwned>(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
        serde_json::from_value::<T>(obj.clone()).map(|_| ()).map_err(|e| {
            ApiError::bad_request(format!("{kind} in version {:?} cannot be handled as a {kind}: {e}", rt.version, kind = rt.kind))
        })
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => check::<core::Namespace>(rt, obj),
        ("", "secrets") => check::<core::Secret>(rt, obj),
        ("", "configmaps") => check::<core::ConfigMap>(rt, obj),
        ("", "events") => check::<core::Event>(rt, obj),
        ("events.k8s.io", "events") => check::<events::Event>(rt, obj),
        ("coordination.k8s.io", "leases") => check::<Lease>(rt, obj),
        ("batch", "jobs") => check::<Job>(rt, obj),
        ("apiextensions.k8s.io", "customresourcedefinitions") => check::<CustomResourceDefinition>(rt, obj),
        _ => Ok(()),
    }
}

/// events.k8s.io/v1 create/update validation (pkg/apis/core/validation/events.go,
/// the checks that apply to events written through the events.k8s.io API).
pub(super) fn event_v1_causes(ev: &Value) -> Vec<Cause> {
    let mut causes = vec![];
    for f in ["eventTime", "reportingController", "reportingInstance", "action", "reason"] {
        if ev[f].as_str().unwrap_or("").is_empty() {
            causes.push(Cause::required(f, ""));
        }
    }
    for (f, max) in [("action", 128), ("reason", 128), ("reportingInstance", 128), ("note", 1024)] {
        if ev[f].as_str().map(str::len).unwrap_or(0) > max {
            causes.push(Cause::too_long(f, max as u64));
        }
    }
    let ty = ev["type"].as_str().unwrap_or("");
    if ty != "Normal" && ty != "Warning" {
        causes.push(Cause::invalid("type", &json!(""), &format!("has invalid value: {ty}")));
    }
    if !ev["series"].is_null() {
        if ev["series"]["count"].as_i64().unwrap_or(0) < 2 {
            causes.push(Cause::invalid("series.count", &ev["series"]["count"], "should be at least 2"));
        }
        if ev["series"]["lastObservedTime"].is_null() {
            causes.push(Cause::required("series.lastObservedTime", ""));
        }
    }
    causes
}
