//! Background garbage collection (ownerReferences), the orphan and
//! foregroundDeletion finalizers, and namespace termination. Runs as a task
//! woken after deletions and on a short tick, like kube-controller-manager's
//! garbage collector and namespace controller (eventually consistent).

use super::objects::{self, DeleteOpts};
use super::store::{Key, State};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// (storage, key, owner uids with blockOwnerDeletion, being deleted)
type Dependent = (String, Key, Vec<(String, bool)>, bool);

struct Info {
    storage: String,
    key: Key,
    deleting: bool,
    finalizers: Vec<String>,
}

fn finalizers(o: &Value) -> Vec<String> {
    o["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(String::from)).collect()
}

fn owner_uids(o: &Value) -> Vec<(String, bool)> {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(|u| (u.to_string(), r["blockOwnerDeletion"] == true)))
        .collect()
}

/// One pass; returns whether anything changed.
pub fn pass(st: &mut State) -> bool {
    let mut by_uid: HashMap<String, Info> = HashMap::new();
    let mut dependents: Vec<Dependent> = vec![];
    for (storage, objs) in &st.objects {
        for (k, o) in objs {
            if let Some(uid) = o["metadata"]["uid"].as_str() {
                by_uid.insert(
                    uid.to_string(),
                    Info {
                        storage: storage.clone(),
                        key: k.clone(),
                        deleting: !o["metadata"]["deletionTimestamp"].is_null(),
                        finalizers: finalizers(o),
                    },
                );
            }
            let owners = owner_uids(o);
            if !owners.is_empty() {
                dependents.push((storage.clone(), k.clone(), owners, !o["metadata"]["deletionTimestamp"].is_null()));
            }
        }
    }
    let by_storage = st.registry.by_storage();
    let mut changed = false;
    let mut referenced: HashSet<String> = HashSet::new();
    let mut blocking: HashSet<String> = HashSet::new();
    for (storage, k, owners, dep_deleting) in &dependents {
        let Some(rt) = by_storage.get(storage) else { continue };
        let orphaning: Vec<&String> = owners
            .iter()
            .filter(|(u, _)| by_uid.get(u).map(|i| i.deleting && i.finalizers.iter().any(|f| f == "orphan")).unwrap_or(false))
            .map(|(u, _)| u)
            .collect();
        if !orphaning.is_empty() {
            if let Some(mut o) = st.get(storage, k).cloned() {
                if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| !orphaning.iter().any(|u| r["uid"].as_str() == Some(u.as_str())));
                    if refs.is_empty() {
                        o["metadata"].as_object_mut().map(|m| m.remove("ownerReferences"));
                    }
                }
                st.put(storage, o);
                changed = true;
            }
            continue;
        }
        let live: Vec<&(String, bool)> = owners.iter().filter(|(u, _)| by_uid.contains_key(u)).collect();
        let foreground = live
            .iter()
            .any(|(u, _)| by_uid.get(u).map(|i| i.deleting && i.finalizers.iter().any(|f| f == "foregroundDeletion")).unwrap_or(false));
        for (u, block) in &live {
            referenced.insert(u.clone());
            if *block {
                blocking.insert(u.clone());
            }
        }
        if (live.is_empty() || foreground) && !dep_deleting {
            let ns = if k.0.is_empty() { None } else { Some(k.0.as_str()) };
            let policy = if foreground { "Foreground" } else { "Background" };
            let _ = objects::delete(st, rt, ns, &k.1, &DeleteOpts { propagation: Some(policy.into()), ..Default::default() });
            changed = true;
        }
    }
    for (uid, info) in &by_uid {
        if !info.deleting {
            continue;
        }
        if info.finalizers.iter().any(|f| f == "orphan") && !referenced.contains(uid) {
            objects::remove_finalizer(st, &info.storage, &info.key, "orphan");
            changed = true;
        } else if info.finalizers.iter().any(|f| f == "foregroundDeletion") && !blocking.contains(uid) && !referenced.contains(uid) {
            objects::remove_finalizer(st, &info.storage, &info.key, "foregroundDeletion");
            changed = true;
        }
    }
    changed |= namespaces(st);
    changed
}

/// Deletes the content of terminating namespaces, then the namespaces themselves.
fn namespaces(st: &mut State) -> bool {
    let terminating: Vec<String> = st
        .list("/namespaces")
        .into_iter()
        .filter(|n| !n["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
        .collect();
    let mut changed = false;
    let by_storage = st.registry.by_storage();
    for ns in terminating {
        let mut remaining = 0;
        for (storage, rt) in &by_storage {
            if !rt.namespaced {
                continue;
            }
            let keys: Vec<(Key, bool)> = st
                .objects
                .get(storage)
                .map(|m| {
                    m.iter().filter(|(k, _)| k.0 == ns).map(|(k, o)| (k.clone(), !o["metadata"]["deletionTimestamp"].is_null())).collect()
                })
                .unwrap_or_default();
            for (k, deleting) in keys {
                remaining += 1;
                if !deleting {
                    let _ = objects::delete(st, rt, Some(&ns), &k.1, &DeleteOpts::default());
                    changed = true;
                }
            }
        }
        if remaining == 0 {
            st.remove("/namespaces", &(String::new(), ns));
            changed = true;
        }
    }
    changed
}
