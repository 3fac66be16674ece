//! DELETE: preconditions, propagation policies (via the orphan and
//! foregroundDeletion finalizers), finalizers and deletionTimestamp.

use super::crd;
use super::errors::{ApiError, ApiResult, Cause};
use super::objects::{Written, after_removal, key, now, storage, stored_old, to_served, to_stored};
use super::registry::ResourceType;
use super::store::{Key, State};
use serde_json::{Value, json};

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
        && old["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or("")
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && old["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old["metadata"]["resourceVersion"].as_str().unwrap_or("")
            ),
        ));
    }
    let policy = opts.propagation.clone().unwrap_or_else(|| "Background".into());
    if !["Background", "Foreground", "Orphan"].contains(&policy.as_str()) {
        return Err(ApiError::invalid(
            &rt.group,
            &rt.kind,
            name,
            vec![Cause::not_supported(
                "propagationPolicy",
                &json!(policy),
                &[json!("Foreground"), json!("Background"), json!("Orphan"), json!("nil")],
            )],
        ));
    }
    if opts.dry_run {
        return Ok(Written { code: 200, object: old, warnings: vec![] });
    }
    let mut new = old.clone();
    let fins = new["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    let mut fins: Vec<Value> = fins;
    let special = match policy.as_str() {
        "Foreground" => Some("foregroundDeletion"),
        "Orphan" => Some("orphan"),
        _ => None,
    };
    if let Some(f) = special
        && !fins.iter().any(|x| x == f)
    {
        fins.push(json!(f));
    }
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
    if let Some(g) = new["metadata"]["generation"].as_i64() {
        new["metadata"]["generation"] = json!(g + 1);
    }
    if is_ns {
        new["status"]["phase"] = json!("Terminating");
    }
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
        if a.is_empty() {
            o["metadata"].as_object_mut().map(|m| m.remove("finalizers"));
        }
    }
    let done = o["metadata"]["finalizers"].is_null() && !o["metadata"]["deletionTimestamp"].is_null();
    st.put(storage_key, o);
    if done
        && let Some(gone) = st.remove(storage_key, k)
        && storage_key == "apiextensions.k8s.io/customresourcedefinitions"
    {
        crd::unregister(st, &gone);
    }
}
