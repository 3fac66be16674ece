//! Object semantics shared by every write: system metadata, generation,
//! optimistic concurrency, CRD schemas, status subresource, finalizers,
//! deletion with propagation policies.

use super::builtins::{decode_builtin, default_job, event_v1_causes, secret_string_data};
use super::crd;
use super::errors::{ApiError, ApiResult, Cause};
use super::managed_fields;
use super::metadata::{metadata_causes, namespace_name_causes};
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

pub(super) fn storage(rt: &ResourceType) -> String {
    rt.storage_key()
}

pub(super) fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
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

pub(super) fn to_stored(rt: &ResourceType, obj: Value) -> Value {
    if rt.group == "events.k8s.io" {
        let mut o = super::events::events_v1_to_core(obj);
        o["apiVersion"] = json!("v1");
        return o;
    }
    obj
}

/// Fetches an object as served by `rt`.
pub fn get(st: &State, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    st.get(&storage(rt), &key(rt, ns, name))
        .cloned()
        .map(|o| to_served(rt, o))
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
}

fn check_namespace(st: &State, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<()> {
    if !rt.namespaced {
        return Ok(());
    }
    let ns = ns.unwrap_or("");
    match st.get("/namespaces", &(String::new(), ns.to_string())) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::forbidden(
            &rt.group,
            &rt.plural,
            name,
            &format!("unable to create new content in namespace {ns} because it is being terminated"),
        )),
        _ => Ok(()),
    }
}

fn check_type(rt: &ResourceType, body: &Value) -> ApiResult<()> {
    let av = body["apiVersion"].as_str().unwrap_or("");
    let kind = body["kind"].as_str().unwrap_or("");
    if (!av.is_empty() && av != rt.api_version()) || (!kind.is_empty() && kind != rt.kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
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
        if rt.status_subresource {
            m.remove("status");
        }
    }
    c
}

fn comparable(o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
            for e in entries.iter_mut() {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    c
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
    if rt.plural == "namespaces" && old.is_none() {
        causes.extend(namespace_name_causes(obj["metadata"]["name"].as_str().unwrap_or("")));
    }
    if rt.group == "events.k8s.io" {
        causes.extend(event_v1_causes(obj));
    }
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
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version {:?} cannot be handled as a {kind}: strict decoding error: {}",
                        rt.version,
                        list.join(", "),
                        kind = rt.kind
                    )));
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
        && !old["metadata"]["deletionTimestamp"].is_null()
    {
        let before: Vec<&Value> = old["metadata"]["finalizers"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        for f in obj["metadata"]["finalizers"].as_array().into_iter().flatten() {
            if !before.contains(&f) {
                causes.push(Cause::forbidden(
                    "metadata.finalizers",
                    &format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{f}}}"),
                ));
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
        && comparable(old) == comparable(&obj)
    {
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

pub(super) fn after_removal(st: &mut State, rt: &ResourceType, gone: &Value) {
    if rt.plural == "customresourcedefinitions" {
        crd::unregister(st, gone);
    }
}

pub fn create(st: &mut State, rt: &ResourceType, ns: Option<&str>, mut body: Value, opts: &WriteOpts) -> ApiResult<Written> {
    check_type(rt, &body)?;
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(rt.kind);
    if body["metadata"].is_null() {
        body["metadata"] = json!({});
    }
    let meta = body["metadata"].as_object_mut().expect("metadata object");
    if rt.namespaced {
        let ns = ns.unwrap_or("");
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    if meta.get("name").and_then(Value::as_str).unwrap_or("").is_empty()
        && let Some(g) = meta.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty())
    {
        let n = format!("{g}{}", random_suffix());
        meta.insert("name".into(), json!(n));
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    for k in ["uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(k);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    if rt.has_generation || rt.custom.is_some() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if rt.status_subresource
        && rt.plural != "namespaces"
        && let Some(m) = body.as_object_mut()
    {
        m.remove("status");
    }
    if rt.plural == "namespaces" {
        body["spec"] = json!({"finalizers": ["kubernetes"]});
        body["status"] = json!({"phase": "Active"});
        if body["metadata"]["labels"].is_null() || body["metadata"]["labels"].is_object() {
            body["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
    }
    check_namespace(st, rt, ns, &name)?;
    if rt.plural == "jobs" {
        default_job(&mut body);
    }
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
        if n["status"].is_null() {
            n.as_object_mut().map(|m| m.remove("status"));
        }
        n
    } else {
        let mut n = requested;
        if rt.status_subresource {
            match old.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    n.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        n
    };
    if new["metadata"].is_null() || !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    for k in ["uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                new["metadata"].as_object_mut().map(|m| m.remove(k));
            }
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

pub(super) fn stored_old(st: &State, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    st.get(&storage(rt), &key(rt, ns, name))
        .cloned()
        .map(|o| to_served(rt, o))
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
}

pub fn update(
    st: &mut State,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    mut body: Value,
    opts: &WriteOpts,
) -> ApiResult<Written> {
    check_type(rt, &body)?;
    let old = stored_old(st, rt, ns, name)?;
    if let Some(n) = body["metadata"]["name"].as_str()
        && n != name
    {
        return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
    }
    match body["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
        Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => return Err(ApiError::stale(&rt.group, &rt.plural, name)),
        Some(_) => {}
        None if rt.custom.is_some() || rt.plural == "customresourcedefinitions" => {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                vec![Cause::invalid("metadata.resourceVersion", &json!(0), "must be specified for an update")],
            ));
        }
        None => {}
    }
    let client_managed = body["metadata"].get("managedFields").cloned();
    if body["metadata"].is_object() {
        body["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
    }
    let mut new = merge_for_update(rt, &old, body, sub);
    new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
    let warnings = admit(st, rt, Some(&old), &mut new, opts)?;
    match client_managed {
        Some(Value::Array(a)) if a.is_empty() => {
            new["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
        }
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

pub fn patch(
    st: &mut State,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    request: PatchBody<'_>,
    opts: &WriteOpts,
) -> ApiResult<Written> {
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
        if rt.namespaced {
            skeleton["metadata"]["namespace"] = json!(ns.unwrap_or(""));
        }
        let live = existing.clone().unwrap_or(skeleton);
        let applier = managed_fields::Applier {
            manager: &opts.manager,
            force: opts.force,
            subresource: sub,
            status_split: rt.status_subresource,
            group: &rt.group,
            plural: &rt.plural,
            name,
        };
        let merged = applier.apply(&live, &applied)?;
        return match existing {
            None => {
                if !sub.is_empty() {
                    return Err(ApiError::not_found(&rt.group, &rt.plural, name));
                }
                create(st, rt, ns, merged, opts).map(|w| Written { code: 201, ..w })
            }
            Some(old) => {
                if let Some(rv) = applied["metadata"]["resourceVersion"].as_str()
                    && Some(rv) != old["metadata"]["resourceVersion"].as_str()
                {
                    return Err(ApiError::stale(&rt.group, &rt.plural, name));
                }
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

pub use super::deletion::{DeleteOpts, delete, remove_finalizer};
