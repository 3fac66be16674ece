//! `metadata.managedFields` and server-side apply.
//!
//! Simplified model of structured-merge-diff: a manager owns a set of leaf
//! field paths (objects are descended into; lists and scalars are atomic
//! leaves, so list-map/set merging by key is not modelled). Apply merges the
//! applied configuration into the live object, removes fields the same
//! manager applied before and no longer applies (if nobody else owns them),
//! and reports conflicts with other managers whose owned value differs,
//! unless `force`. Update operations (PUT, merge/JSON patch, create) take
//! ownership of the leaves they changed.

use super::errors::ApiError;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: String,
    fields: FieldSet,
}

const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
];

fn tracked(path: &[String], subresource: &str, status_split: bool) -> bool {
    match path.first().map(String::as_str) {
        Some("apiVersion") | Some("kind") | None => false,
        Some("metadata") => subresource.is_empty() && !path.get(1).map(|k| SYSTEM_META.contains(&k.as_str())).unwrap_or(true),
        Some("status") if status_split => subresource == "status",
        _ => subresource.is_empty() || !status_split,
    }
}

/// Leaf paths of `v` (objects descended into, everything else a leaf).
pub fn leaves(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                prefix.push(k.clone());
                leaves(val, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

fn tracked_leaves(v: &Value, subresource: &str, status_split: bool) -> FieldSet {
    let mut all = FieldSet::new();
    leaves(v, &mut vec![], &mut all);
    all.into_iter().filter(|p| tracked(p, subresource, status_split)).collect()
}

pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.as_object()?.get(k))
}

fn set_path(v: &mut Value, path: &[String], val: Value) {
    let mut cur = v;
    for k in &path[..path.len() - 1] {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur.as_object_mut().expect("object").entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut().expect("object").insert(path[path.len() - 1].clone(), val);
}

fn remove_path(v: &mut Value, path: &[String]) {
    let mut cur = v;
    for k in &path[..path.len() - 1] {
        match cur.as_object_mut().and_then(|m| m.get_mut(k)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(&path[path.len() - 1]);
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for p in set {
        let mut cur = &mut root;
        for k in p {
            cur = cur.as_object_mut().expect("object").entry(format!("f:{k}")).or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

fn from_fields_v1(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    let named: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if named.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (k, val) in named {
        prefix.push(k[2..].to_string());
        from_fields_v1(val, prefix, out);
        prefix.pop();
    }
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut fields = FieldSet::new();
            from_fields_v1(&e["fieldsV1"], &mut vec![], &mut fields);
            Entry {
                manager: e["manager"].as_str().unwrap_or("").into(),
                operation: e["operation"].as_str().unwrap_or("Update").into(),
                api_version: e["apiVersion"].as_str().unwrap_or("").into(),
                time: e["time"].as_str().unwrap_or("").into(),
                subresource: e["subresource"].as_str().unwrap_or("").into(),
                fields,
            }
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version, "time": e.time,
            "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Records an Update by `manager`: it takes the leaves that changed from `old` to `new`.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, subresource: &str, status_split: bool) {
    let mut entries = match old {
        Some(o) => read_entries(o),
        None => vec![],
    };
    let null = Value::Null;
    let old_v = old.unwrap_or(&null);
    let new_leaves = tracked_leaves(new, subresource, status_split);
    let old_leaves = tracked_leaves(old_v, subresource, status_split);
    let changed: FieldSet = new_leaves.iter().filter(|p| get_path(old_v, p) != get_path(new, p)).cloned().collect();
    let removed: FieldSet = old_leaves.iter().filter(|p| get_path(new, p).is_none()).cloned().collect();
    if changed.is_empty() && removed.is_empty() && old.is_some() {
        write_entries(new, entries);
        return;
    }
    for e in entries.iter_mut() {
        e.fields.retain(|p| !removed.iter().any(|r| overlaps(p, r)));
        if !(e.manager == manager && e.operation == "Update" && e.subresource == subresource) {
            e.fields.retain(|p| !changed.iter().any(|c| overlaps(p, c)));
        }
    }
    let api_version = new["apiVersion"].as_str().unwrap_or("").to_string();
    match entries.iter_mut().find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource) {
        Some(e) => {
            e.fields.retain(|p| !changed.iter().any(|c| overlaps(p, c)));
            e.fields.extend(changed);
            e.time = now();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version,
            time: now(),
            subresource: subresource.into(),
            fields: changed,
        }),
    }
    write_entries(new, entries);
}

/// One server-side apply request: who applies, how, and to which object (for error details).
pub struct Applier<'a> {
    pub manager: &'a str,
    pub force: bool,
    /// "" for the main resource, "status" for the status subresource.
    pub subresource: &'a str,
    /// Whether the type has a status subresource (status is then not owned through the main resource).
    pub status_split: bool,
    pub group: &'a str,
    pub plural: &'a str,
    pub name: &'a str,
}

impl Applier<'_> {
    /// Server-side apply of `applied` onto `live` (an existing object or a skeleton for a create).
    pub fn apply(&self, live: &Value, applied: &Value) -> Result<Value, ApiError> {
        apply(live, applied, self)
    }
}

fn apply(live: &Value, applied: &Value, a: &Applier<'_>) -> Result<Value, ApiError> {
    let Applier { manager, force, subresource, status_split, group, plural, name } = *a;
    let mut entries = read_entries(live);
    let applied_set = tracked_leaves(applied, subresource, status_split);
    let mut conflicts: Vec<(String, String, FieldPath)> = vec![];
    for e in entries.iter_mut() {
        if e.manager == manager && e.operation == "Apply" && e.subresource == subresource {
            continue;
        }
        let mut lost = vec![];
        for p in &e.fields {
            for a in &applied_set {
                if overlaps(p, a) && get_path(live, a) != get_path(applied, a) {
                    if force {
                        lost.push(p.clone());
                    } else {
                        conflicts.push((e.manager.clone(), e.api_version.clone(), a.clone()));
                    }
                }
            }
        }
        e.fields.retain(|p| !lost.contains(p));
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        conflicts.dedup();
        let fmt_path = |p: &FieldPath| format!(".{}", p.join("."));
        let message = if conflicts.len() == 1 {
            let (m, v, p) = &conflicts[0];
            format!("Apply failed with 1 conflict: conflict with {m:?} using {v}: {}", fmt_path(p))
        } else {
            let mut s = format!("Apply failed with {} conflicts: ", conflicts.len());
            let lines: Vec<String> = conflicts.iter().map(|(m, v, p)| format!("conflict with {m:?} using {v}: {}", fmt_path(p))).collect();
            s.push_str(&lines.join("\n"));
            s
        };
        let causes: Vec<Value> = conflicts.iter().map(|(m, v, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m:?} using {v}"), "field": fmt_path(p)})).collect();
        return Err(ApiError {
            code: 409,
            reason: "Conflict",
            message,
            details: Some(json!({"name": name, "group": group, "kind": plural, "causes": causes})),
        });
    }
    let mut out = live.clone();
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(&applied_set) {
        let owned_elsewhere = entries.iter().any(|e| {
            !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource) && e.fields.iter().any(|q| overlaps(p, q))
        });
        if !owned_elsewhere {
            remove_path(&mut out, p);
        }
    }
    for p in &applied_set {
        let val = get_path(applied, p).cloned().unwrap_or(Value::Null);
        if val.as_object().map(|m| m.is_empty()).unwrap_or(false) && get_path(&out, p).map(Value::is_object).unwrap_or(false) {
            continue;
        }
        set_path(&mut out, p, val);
    }
    let api_version = applied["apiVersion"].as_str().unwrap_or("").to_string();
    entries.retain(|e| !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource));
    entries.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version,
        time: now(),
        subresource: subresource.into(),
        fields: applied_set,
    });
    write_entries(&mut out, entries);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_removes_dropped_fields_and_detects_conflicts() {
        let skeleton = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let apply = |live: &Value, applied: &Value, manager: &str, force: bool| {
            Applier { manager, force, subresource: "", status_split: false, group: "", plural: "configmaps", name: "c" }
                .apply(live, applied)
        };
        let a1 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let o1 = apply(&skeleton, &a1, "m1", false).unwrap();
        assert_eq!(o1["data"], json!({"a": "1", "b": "2"}));
        let a2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let o2 = apply(&o1, &a2, "m1", false).unwrap();
        assert_eq!(o2["data"], json!({"a": "1"}));
        let a3 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "9"}});
        let e = apply(&o2, &a3, "m2", false).unwrap_err();
        assert_eq!(e.message, "Apply failed with 1 conflict: conflict with \"m1\" using v1: .data.a");
        let o3 = apply(&o2, &a3, "m2", true).unwrap();
        assert_eq!(o3["data"]["a"], "9");
        assert_eq!(o3["metadata"]["managedFields"].as_array().unwrap().len(), 1);
    }
}
