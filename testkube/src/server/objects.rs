//! Object semantics shared by every write: system metadata, generation,
//! optimistic concurrency, CRD schemas, status subresource, finalizers,
//! deletion with propagation policies.

use super::crd;
use super::errors::{ApiError, ApiResult, Cause};
use super::managed_fields;
use super::patch::{self, PatchType};
use super::registry::ResourceType;
use super::schema;
use super::store::{Key, State};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Options of a write request.
#[derive(Debug, Clone)]
pub struct WriteOpts {
    pub manager: String,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub force: bool,
}

/// What a write returned: the object and any `Warning` headers.
#[derive(Debug, Clone)]
pub struct Written {
    pub code: u16,
    pub object: Value,
    pub warnings: Vec<String>,
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let u = uuid::Uuid::new_v4();
    u.as_bytes()[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn valid_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(|l| {
        !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-') && !l.ends_with('-')
    })
}

fn storage(rt: &ResourceType) -> String {
    rt.storage_key()
}

fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
    (if rt.namespaced { ns.unwrap_or("").to_string() } else { String::new() }, name.to_string())
}

/// Converts a stored object to the served form of `rt` (apiVersion; events.k8s.io field names).
pub fn to_served(rt: &ResourceType, mut obj: Value) -> Value {
    if rt.group == "events.k8s.io" {
        obj = super::events::core_to_events_v1(obj);
    }
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    obj
}

fn to_stored(rt: &ResourceType, obj: Value) -> Value {
    if rt.group == "events.k8s.io" {
        let mut o = super::events::events_v1_to_core(obj);
        o["apiVersion"] = json!("v1");
        return o;
    }
    obj
}

/// Fetches an object as served by `rt`.
pub fn get(st: &State, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    st.get(&storage(rt), &key(rt, ns, name)).cloned().map(|o| to_served(rt, o))
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
}

fn check_namespace(st: &State, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<()> {
    if !rt.namespaced { return Ok(()); }
    let ns = ns.unwrap_or("");
    match st.get("/namespaces", &(String::new(), ns.to_string())) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::forbidden(&rt.group, &rt.plural, name,
            &format!("unable to create new content in namespace {ns} because it is being terminated"))),
        _ => Ok(()),
    }
}

fn check_type(rt: &ResourceType, body: &Value) -> ApiResult<()> {
    let av = body["apiVersion"].as_str().unwrap_or("");
    let kind = body["kind"].as_str().unwrap_or("");
    if (!av.is_empty() && av != rt.api_version()) || (!kind.is_empty() && kind != rt.kind) {
        return Err(ApiError::bad_request(format!("the API version in the data ({av}) does not match the expected API version ({})", rt.api_version())));
    }
    if !body.is_object() || (!body["metadata"].is_null() && !body["metadata"].is_object()) {
        return Err(ApiError::bad_request("Object 'metadata' is missing or invalid"));
    }
    Ok(())
}

fn spec_part(rt: &ResourceType, o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if rt.status_subresource { m.remove("status"); }
    }
    c
}

fn comparable(o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
            for e in entries.iter_mut() {
                if let Some(e) = e.as_object_mut() { e.remove("time"); }
            }
        }
    }
    c
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn label_token_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_' || *c == b'.')
}

/// apimachinery `IsQualifiedName`: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters.
fn qualified_name_errors(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = vec![];
    if let Some(p) = prefix {
        if !valid_subdomain(p) { errs.push(format!("prefix part {DNS1123_SUBDOMAIN_MSG}")); }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else {
        if name.len() > 63 { errs.push("name part must be no more than 63 characters".into()); }
        if !label_token_ok(name) { errs.push(QUALIFIED_NAME_MSG.into()); }
    }
    errs
}

/// Labels and annotations as kube-apiserver validates them (apimachinery `ValidateLabels`, `ValidateAnnotations`).
fn label_causes(m: &Value, causes: &mut Vec<Cause>) {
    if let Some(labels) = m["labels"].as_object() {
        for (k, v) in labels {
            for e in qualified_name_errors(k) { causes.push(Cause::invalid("metadata.labels", &json!(k), &e)); }
            if let Some(s) = v.as_str() {
                if s.len() > 63 { causes.push(Cause::invalid("metadata.labels", v, "must be no more than 63 characters")); }
                if !s.is_empty() && !label_token_ok(s) { causes.push(Cause::invalid("metadata.labels", v, LABEL_VALUE_MSG)); }
            }
        }
    }
    if let Some(annotations) = m["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in annotations {
            for e in qualified_name_errors(&k.to_lowercase()) { causes.push(Cause::invalid("metadata.annotations", &json!(k), &e)); }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            causes.push(Cause { reason: "FieldValueTooLong".into(), message: "Too long: must have at most 262144 bytes".into(), field: "metadata.annotations".into() });
        }
    }
}

fn metadata_causes(o: &Value, creating: bool) -> Vec<Cause> {
    let mut causes = vec![];
    let m = &o["metadata"];
    let name = m["name"].as_str().unwrap_or("");
    if creating && name.is_empty() {
        causes.push(Cause::required("metadata.name", "name or generateName is required"));
    } else if creating && !valid_subdomain(name) {
        causes.push(Cause::invalid("metadata.name", &json!(name), DNS1123_SUBDOMAIN_MSG));
    }
    label_causes(m, &mut causes);
    for field in ["labels", "annotations"] {
        if let Some(map) = m[field].as_object() {
            for (k, v) in map {
                if !v.is_string() {
                    causes.push(Cause::invalid(&format!("metadata.{field}[{k}]"), v, "must be a string"));
                }
            }
        } else if !m[field].is_null() {
            causes.push(Cause::invalid(&format!("metadata.{field}"), &m[field], "must be a map of strings"));
        }
    }
    causes
}

/// Secrets: `stringData` is merged into `data` (base64) and never stored; `data` must be base64.
fn secret_string_data(obj: &mut Value, causes: &mut Vec<Cause>) {
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

/// Built-in objects must decode into their Go types; here, into the
/// k8s-openapi types (a type mismatch is a 400, as the real decoder answers).
fn decode_builtin(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
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

/// Defaulting, pruning and validation common to create and update. Returns warnings.
fn admit(st: &State, rt: &ResourceType, old: Option<&Value>, obj: &mut Value, opts: &WriteOpts) -> ApiResult<Vec<String>> {
    if rt.is_builtin() {
        decode_builtin(rt, obj)?;
    }
    if !obj["metadata"].is_object() {
        return Err(ApiError::bad_request("Object 'metadata' is missing or invalid"));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut causes = metadata_causes(obj, old.is_none());
    if rt.plural == "secrets" {
        secret_string_data(obj, &mut causes);
    }
    let mut warnings = vec![];
    if let Some(schema_v) = rt.custom.as_ref().and_then(|c| c.schema.as_ref()) {
        schema::apply_defaults(obj, schema_v);
        let mut pruned = vec![];
        schema::prune(obj, schema_v, "", true, &mut pruned);
        if !pruned.is_empty() {
            match opts.field_validation {
                FieldValidation::Strict => {
                    let list: Vec<String> = pruned.iter().map(|p| format!("unknown field {p:?}")).collect();
                    return Err(ApiError::bad_request(format!("{kind} in version {:?} cannot be handled as a {kind}: strict decoding error: {}", rt.version, list.join(", "), kind = rt.kind)));
                }
                FieldValidation::Warn => warnings.extend(pruned.iter().map(|p| format!("unknown field {p:?}"))),
                FieldValidation::Ignore => {}
            }
        }
        schema::validate(obj, schema_v, "", &mut causes);
    }
    if rt.plural == "customresourcedefinitions" {
        causes.extend(crd::validate(st, obj, old));
    }
    if rt.plural == "jobs" {
        if obj["spec"]["template"]["spec"]["containers"].as_array().map(|a| a.is_empty()).unwrap_or(true) {
            causes.push(Cause::required("spec.template.spec.containers", ""));
        }
        let rp = &obj["spec"]["template"]["spec"]["restartPolicy"];
        if rp != "Never" && rp != "OnFailure" {
            causes.push(Cause::not_supported("spec.template.spec.restartPolicy", rp, &[json!("OnFailure"), json!("Never")]));
        }
    }
    if let Some(old) = old
        && !old["metadata"]["deletionTimestamp"].is_null() {
            let before: Vec<&Value> = old["metadata"]["finalizers"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
            for f in obj["metadata"]["finalizers"].as_array().into_iter().flatten() {
                if !before.contains(&f) {
                    causes.push(Cause::forbidden("metadata.finalizers", &format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{f}}}")));
                }
            }
        }
    if !causes.is_empty() {
        return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
    }
    Ok(warnings)
}

/// etcd's default request limit (`--max-request-bytes`): larger objects cannot be stored.
const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Stores a new or changed object (after admission), honouring no-op updates,
/// dry-run and completion of a pending deletion.
fn commit(st: &mut State, rt: &ResourceType, old: Option<&Value>, mut obj: Value, opts: &WriteOpts) -> ApiResult<Value> {
    if serde_json::to_vec(&obj).map(|b| b.len()).unwrap_or(0) > MAX_OBJECT_BYTES {
        return Err(ApiError::too_large("etcdserver: request is too large"));
    }
    if let Some(old) = old
        && comparable(old) == comparable(&obj) {
            return Ok(to_served(rt, old.clone()));
        }
    if rt.plural == "customresourcedefinitions" {
        crd::set_status(&mut obj);
    }
    if opts.dry_run {
        return Ok(to_served(rt, obj));
    }
    let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
    let no_finalizers = obj["metadata"]["finalizers"].as_array().map(|a| a.is_empty()).unwrap_or(true)
        && !(rt.plural == "namespaces" && obj["spec"]["finalizers"].as_array().map(|a| !a.is_empty()).unwrap_or(false));
    let stored = to_stored(rt, obj);
    if deleting && no_finalizers {
        let k = super::store::key_of(&stored);
        st.put(&storage(rt), stored);
        let gone = st.remove(&storage(rt), &k).unwrap_or(Value::Null);
        after_removal(st, rt, &gone);
        return Ok(to_served(rt, gone));
    }
    let saved = st.put(&storage(rt), stored);
    if rt.plural == "customresourcedefinitions" {
        crd::register(st, &saved);
    }
    Ok(to_served(rt, saved))
}

fn after_removal(st: &mut State, rt: &ResourceType, gone: &Value) {
    if rt.plural == "customresourcedefinitions" {
        crd::unregister(st, gone);
    }
}

pub fn create(st: &mut State, rt: &ResourceType, ns: Option<&str>, mut body: Value, opts: &WriteOpts) -> ApiResult<Written> {
    check_type(rt, &body)?;
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(rt.kind);
    if body["metadata"].is_null() { body["metadata"] = json!({}); }
    let meta = body["metadata"].as_object_mut().expect("metadata object");
    if rt.namespaced {
        let ns = ns.unwrap_or("");
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request")),
            _ => { meta.insert("namespace".into(), json!(ns)); }
        }
    } else {
        meta.remove("namespace");
    }
    if meta.get("name").and_then(Value::as_str).unwrap_or("").is_empty()
        && let Some(g) = meta.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty()) {
            let n = format!("{g}{}", random_suffix());
            meta.insert("name".into(), json!(n));
        }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    for k in ["uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(k);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    if rt.has_generation || rt.custom.is_some() { meta.insert("generation".into(), json!(1)); } else { meta.remove("generation"); }
    if rt.status_subresource && rt.plural != "namespaces"
        && let Some(m) = body.as_object_mut() { m.remove("status"); }
    if rt.plural == "namespaces" {
        body["spec"] = json!({"finalizers": ["kubernetes"]});
        body["status"] = json!({"phase": "Active"});
        if body["metadata"]["labels"].is_null() || body["metadata"]["labels"].is_object() {
            body["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
    }
    check_namespace(st, rt, ns, &name)?;
    let warnings = admit(st, rt, None, &mut body, opts)?;
    if st.get(&storage(rt), &key(rt, ns, &name)).is_some() {
        return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
    }
    if body["metadata"]["managedFields"].is_null() {
        managed_fields::record_update(None, &mut body, &opts.manager, "", rt.status_subresource);
    }
    let object = commit(st, rt, None, body, opts)?;
    Ok(Written { code: 201, object, warnings })
}

/// Builds the object a PUT/PATCH wants to store from the current one and the requested one.
fn merge_for_update(rt: &ResourceType, old: &Value, requested: Value, sub: &str) -> Value {
    let mut new = if sub == "status" {
        let mut n = old.clone();
        n["status"] = requested.get("status").cloned().unwrap_or(Value::Null);
        if n["status"].is_null() { n.as_object_mut().map(|m| m.remove("status")); }
        n
    } else {
        let mut n = requested;
        if rt.status_subresource {
            match old.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => { n.as_object_mut().map(|m| m.remove("status")); }
            }
        }
        n
    };
    if new["metadata"].is_null() || !new["metadata"].is_object() { new["metadata"] = json!({}); }
    for k in ["uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => { new["metadata"].as_object_mut().map(|m| m.remove(k)); }
        }
    }
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    if rt.has_generation || rt.custom.is_some() {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let changed = spec_part(rt, old) != spec_part(rt, &new);
        new["metadata"]["generation"] = json!(if changed { g + 1 } else { g });
    }
    new
}

fn stored_old(st: &State, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    st.get(&storage(rt), &key(rt, ns, name)).cloned().map(|o| to_served(rt, o))
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
}

pub fn update(st: &mut State, rt: &ResourceType, ns: Option<&str>, name: &str, sub: &str, mut body: Value, opts: &WriteOpts) -> ApiResult<Written> {
    check_type(rt, &body)?;
    let old = stored_old(st, rt, ns, name)?;
    if let Some(n) = body["metadata"]["name"].as_str()
        && n != name {
            return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
        }
    match body["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
        Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => return Err(ApiError::stale(&rt.group, &rt.plural, name)),
        Some(_) => {}
        None if rt.custom.is_some() || rt.plural == "customresourcedefinitions" => {
            return Err(ApiError::invalid(&rt.group, &rt.kind, name, vec![Cause::invalid("metadata.resourceVersion", &json!(0), "must be specified for an update")]));
        }
        None => {}
    }
    let client_managed = body["metadata"].get("managedFields").cloned();
    if body["metadata"].is_object() { body["metadata"].as_object_mut().map(|m| m.remove("managedFields")); }
    let mut new = merge_for_update(rt, &old, body, sub);
    new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
    let warnings = admit(st, rt, Some(&old), &mut new, opts)?;
    match client_managed {
        Some(Value::Array(a)) if a.is_empty() => { new["metadata"].as_object_mut().map(|m| m.remove("managedFields")); }
        _ => managed_fields::record_update(Some(&old), &mut new, &opts.manager, sub, rt.status_subresource),
    }
    let object = commit(st, rt, Some(&old), new, opts)?;
    Ok(Written { code: 200, object, warnings })
}

/// A PATCH request body and its content type (which selects the patch type).
pub struct PatchBody<'a> {
    pub content_type: &'a str,
    pub body: &'a [u8],
}

pub fn patch(st: &mut State, rt: &ResourceType, ns: Option<&str>, name: &str, sub: &str, request: PatchBody<'_>, opts: &WriteOpts) -> ApiResult<Written> {
    let PatchBody { content_type, body } = request;
    let kind = PatchType::from_content_type(content_type, rt.is_builtin())?;
    let existing = st.get(&storage(rt), &key(rt, ns, name)).cloned().map(|o| to_served(rt, o));
    if kind == PatchType::Apply {
        if opts.manager.is_empty() {
            return Err(ApiError::bad_request("PATCH request with apply content type requires fieldManager"));
        }
        let applied: Value = serde_yaml_ng::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        check_type(rt, &applied)?;
        if applied["metadata"]["name"].as_str().map(|n| n != name).unwrap_or(true) {
            return Err(ApiError::bad_request(format!("metadata.name in the applied configuration must be {name:?}")));
        }
        if applied["metadata"].get("managedFields").is_some() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let mut skeleton = json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": name}});
        if rt.namespaced { skeleton["metadata"]["namespace"] = json!(ns.unwrap_or("")); }
        let live = existing.clone().unwrap_or(skeleton);
        let applier = managed_fields::Applier {
            manager: &opts.manager, force: opts.force, subresource: sub, status_split: rt.status_subresource,
            group: &rt.group, plural: &rt.plural, name,
        };
        let merged = applier.apply(&live, &applied)?;
        return match existing {
            None => {
                if !sub.is_empty() { return Err(ApiError::not_found(&rt.group, &rt.plural, name)); }
                create(st, rt, ns, merged, opts).map(|w| Written { code: 201, ..w })
            }
            Some(old) => {
                if let Some(rv) = applied["metadata"]["resourceVersion"].as_str()
                    && Some(rv) != old["metadata"]["resourceVersion"].as_str() { return Err(ApiError::stale(&rt.group, &rt.plural, name)); }
                let mut new = merge_for_update(rt, &old, merged.clone(), sub);
                new["metadata"]["managedFields"] = merged["metadata"]["managedFields"].clone();
                let warnings = admit(st, rt, Some(&old), &mut new, opts)?;
                let object = commit(st, rt, Some(&old), new, opts)?;
                Ok(Written { code: 200, object, warnings })
            }
        };
    }
    let old = existing.ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
    let patched = patch::apply_patch(&old, kind, body)?;
    if !patched.is_object() {
        return Err(ApiError::bad_request("the patched object is not a JSON object"));
    }
    if patched["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] && !patched["metadata"]["resourceVersion"].is_null() {
        return Err(ApiError::stale(&rt.group, &rt.plural, name));
    }
    let mut new = merge_for_update(rt, &old, patched, sub);
    let warnings = admit(st, rt, Some(&old), &mut new, opts)?;
    managed_fields::record_update(Some(&old), &mut new, &opts.manager, sub, rt.status_subresource);
    let object = commit(st, rt, Some(&old), new, opts)?;
    Ok(Written { code: 200, object, warnings })
}

/// Options of a DELETE (metav1.DeleteOptions).
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub fn delete(st: &mut State, rt: &ResourceType, ns: Option<&str>, name: &str, opts: &DeleteOpts) -> ApiResult<Written> {
    let old = stored_old(st, rt, ns, name)?;
    if let Some(uid) = &opts.precondition_uid
        && old["metadata"]["uid"].as_str() != Some(uid) {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", old["metadata"]["uid"].as_str().unwrap_or(""))));
        }
    if let Some(rv) = &opts.precondition_rv
        && old["metadata"]["resourceVersion"].as_str() != Some(rv) {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", old["metadata"]["resourceVersion"].as_str().unwrap_or(""))));
        }
    let policy = opts.propagation.clone().unwrap_or_else(|| "Background".into());
    if !["Background", "Foreground", "Orphan"].contains(&policy.as_str()) {
        return Err(ApiError::invalid(&rt.group, &rt.kind, name, vec![Cause::not_supported("propagationPolicy", &json!(policy), &[json!("Foreground"), json!("Background"), json!("Orphan"), json!("nil")])]));
    }
    if opts.dry_run {
        return Ok(Written { code: 200, object: old, warnings: vec![] });
    }
    let mut new = old.clone();
    let fins = new["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    let mut fins: Vec<Value> = fins;
    let special = match policy.as_str() { "Foreground" => Some("foregroundDeletion"), "Orphan" => Some("orphan"), _ => None };
    if let Some(f) = special
        && !fins.iter().any(|x| x == f) { fins.push(json!(f)); }
    let is_ns = rt.plural == "namespaces";
    if !old["metadata"]["deletionTimestamp"].is_null() {
        if fins.len() != old["metadata"]["finalizers"].as_array().map(|a| a.len()).unwrap_or(0) {
            new["metadata"]["finalizers"] = Value::Array(fins);
            let saved = st.put(&storage(rt), to_stored(rt, new));
            return Ok(Written { code: 202, object: to_served(rt, saved), warnings: vec![] });
        }
        return Ok(Written { code: 202, object: old, warnings: vec![] });
    }
    if fins.is_empty() && !is_ns {
        let gone = st.remove(&storage(rt), &key(rt, ns, name)).unwrap_or(old);
        after_removal(st, rt, &gone);
        return Ok(Written { code: 200, object: to_served(rt, gone), warnings: vec![] });
    }
    new["metadata"]["finalizers"] = Value::Array(fins);
    new["metadata"]["deletionTimestamp"] = json!(now());
    new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    if let Some(g) = new["metadata"]["generation"].as_i64() { new["metadata"]["generation"] = json!(g + 1); }
    if is_ns { new["status"]["phase"] = json!("Terminating"); }
    if new["metadata"]["finalizers"].as_array().map(|a| a.is_empty()).unwrap_or(false) {
        new["metadata"].as_object_mut().map(|m| m.remove("finalizers"));
    }
    let saved = st.put(&storage(rt), to_stored(rt, new));
    Ok(Written { code: 202, object: to_served(rt, saved), warnings: vec![] })
}

/// Removes `finalizer` from a stored object; deletes it when it was being deleted and none remain.
pub fn remove_finalizer(st: &mut State, storage_key: &str, k: &Key, finalizer: &str) {
    let Some(mut o) = st.get(storage_key, k).cloned() else { return };
    if let Some(a) = o["metadata"]["finalizers"].as_array_mut() {
        a.retain(|f| f != finalizer);
        if a.is_empty() { o["metadata"].as_object_mut().map(|m| m.remove("finalizers")); }
    }
    let done = o["metadata"]["finalizers"].is_null() && !o["metadata"]["deletionTimestamp"].is_null();
    st.put(storage_key, o);
    if done
        && let Some(gone) = st.remove(storage_key, k)
            && storage_key == "apiextensions.k8s.io/customresourcedefinitions" { crd::unregister(st, &gone); }
}
