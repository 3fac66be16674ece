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
