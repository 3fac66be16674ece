//! Status helpers shared by the controllers.

use jiff::Timestamp;

/// Sets a condition, keeping its transition time when its status did not
/// change; returns whether anything changed.
pub fn set_condition(
    list: &mut Vec<crate::api::Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let mut new = crate::api::condition(type_, status, reason, message, generation, now);
    match list.iter_mut().find(|c| c.type_ == type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            let changed = *old != new;
            *old = new;
            changed
        }
        None => {
            list.push(new);
            true
        }
    }
}

/// Writes a `Ready` condition (and any extra status fields) to an object's
/// status subresource, only when something changed.
pub async fn write_ready<K>(
    api: &kube::Api<K>,
    obj: &K,
    old_conditions: &[crate::api::Condition],
    ready: Result<String, (&str, String)>,
    extra: serde_json::Map<String, serde_json::Value>,
    old_extra: serde_json::Map<String, serde_json::Value>,
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let generation = obj.meta().generation;
    let mut conditions = old_conditions.to_vec();
    let changed = match &ready {
        Ok(msg) => set_condition(&mut conditions, crate::api::conditions::READY, true, "Ready", msg, generation, Timestamp::now()),
        Err((why, msg)) => set_condition(&mut conditions, crate::api::conditions::READY, false, why, msg, generation, Timestamp::now()),
    };
    if !changed && extra == old_extra {
        return Ok(());
    }
    let mut status = extra;
    status.insert("conditions".into(), serde_json::json!(conditions));
    status.insert("observedGeneration".into(), serde_json::json!(generation));
    let name = obj.meta().name.clone().unwrap_or_default();
    let patch = serde_json::json!({ "status": status });
    api.patch_status(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.map(|_| ())
}

/// A JSON merge patch (RFC 7396) that turns `old` into `new`: changed keys
/// carry their new value and keys that disappeared are set to null, so a
/// field cleared in Rust (an `Option` set to `None`) is cleared on the server.
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = serde_json::Map::new();
            for (k, v) in n {
                match o.get(k) {
                    Some(ov) if ov == v => {}
                    Some(ov) if ov.is_object() && v.is_object() => {
                        patch.insert(k.clone(), merge_patch(ov, v));
                    }
                    _ => {
                        patch.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

/// The merge patch of a status subresource: `{"status": <diff>}`.
pub fn status_patch<S: serde::Serialize>(old: Option<&S>, new: &S) -> serde_json::Value {
    let old = old.and_then(|o| serde_json::to_value(o).ok()).unwrap_or_else(|| serde_json::json!({}));
    let new = serde_json::to_value(new).unwrap_or_else(|_| serde_json::json!({}));
    serde_json::json!({ "status": merge_patch(&old, &new) })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn merge_patches_clear_what_disappeared() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "gone": true});
        let new = json!({"a": 1, "b": {"c": 5}, "e": [1]});
        assert_eq!(super::merge_patch(&old, &new), json!({"b": {"c": 5, "d": null}, "e": [1], "gone": null}));
    }
}
