//! The sync overview of the reference, from the objects a user's
//! kubeconfig can list: per Mapping, its destination, model and the
//! model's Source, action, mapping status, and its latest sync's status
//! and start time; filtered as the reference filters. No client here.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{Mapping, Model, Sync, SyncPhase, conditions::label};

/// One row of the overview.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverviewRow {
    pub namespace: String,
    pub destination: String,
    pub mapping: String,
    pub model: String,
    pub source: String,
    pub action: String,
    /// `Enabled` or `Disabled`.
    pub mapping_status: String,
    pub latest_sync: Option<String>,
    pub status: Option<SyncPhase>,
    pub started: Option<Timestamp>,
}

/// The reference's filters (all optional; all must hold).
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Latest sync status, e.g. `Failed` or `InProgress` (case-insensitive).
    pub status: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub model: Option<String>,
    pub destination: Option<String>,
    /// `Enabled` or `Disabled` (case-insensitive).
    pub mapping_status: Option<String>,
}

/// The overview of `mappings`, newest sync per Mapping from `syncs`.
pub fn rows(mappings: &[Mapping], models: &[Model], syncs: &[Sync], f: &Filters) -> Vec<OverviewRow> {
    let source_of: BTreeMap<(String, String), String> =
        models.iter().map(|m| ((m.namespace().unwrap_or_default(), m.name_any()), m.spec.source_ref.name.clone())).collect();
    let mut latest: BTreeMap<(String, String), &Sync> = BTreeMap::new();
    for s in syncs {
        let Some(mapping) = s.labels().get(label::MAPPING).cloned() else { continue };
        let key = (s.namespace().unwrap_or_default(), mapping);
        let newer = latest.get(&key).is_none_or(|old| started_or_created(s) > started_or_created(old));
        if newer {
            latest.insert(key, s);
        }
    }
    let mut out: Vec<OverviewRow> = mappings
        .iter()
        .map(|m| {
            let ns = m.namespace().unwrap_or_default();
            let last = latest.get(&(ns.clone(), m.name_any()));
            let status = last.and_then(|s| s.status.as_ref());
            OverviewRow {
                destination: m.spec.destination_ref.name.clone(),
                mapping: m.name_any(),
                model: m.spec.model_ref.name.clone(),
                source: source_of.get(&(ns.clone(), m.spec.model_ref.name.clone())).cloned().unwrap_or_else(|| "-".into()),
                action: m.spec.action.clone(),
                mapping_status: if m.spec.enabled { "Enabled" } else { "Disabled" }.into(),
                latest_sync: last.map(|s| s.name_any()),
                status: last.map(|_| status.and_then(|st| st.phase).unwrap_or(SyncPhase::Pending)),
                started: status.and_then(|st| st.start_time.as_ref()).map(|t| t.0),
                namespace: ns,
            }
        })
        .filter(|r| keep(r, f))
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.destination, &a.mapping).cmp(&(&b.namespace, &b.destination, &b.mapping)));
    out
}

fn started_or_created(s: &Sync) -> Option<Timestamp> {
    s.status.as_ref().and_then(|st| st.start_time.as_ref()).map(|t| t.0).or_else(|| s.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn keep(r: &OverviewRow, f: &Filters) -> bool {
    let same = |want: &Option<String>, have: &str| want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have));
    let status = r.status.map(|p| p.to_string()).unwrap_or_default();
    same(&f.status, &status)
        && same(&f.model, &r.model)
        && same(&f.destination, &r.destination)
        && same(&f.mapping_status, &r.mapping_status)
        && f.since.is_none_or(|t| r.started.is_some_and(|s| s >= t))
        && f.until.is_none_or(|t| r.started.is_some_and(|s| s <= t))
}

/// The overview as a table (`wide` adds the namespace and latest sync).
pub fn table(rows: &[OverviewRow], wide: bool, now: Timestamp) -> String {
    let mut header = vec!["DESTINATION", "MAPPING", "MODEL", "SOURCE", "ACTION", "MAPPING STATUS", "LATEST SYNC", "STARTED"];
    if wide {
        header.insert(0, "NAMESPACE");
        header.push("SYNC");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.destination.clone(),
                r.mapping.clone(),
                r.model.clone(),
                r.source.clone(),
                r.action.clone(),
                r.mapping_status.clone(),
                r.status.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                r.started
                    .map(|t| format!("{} ({} ago)", t.strftime("%Y-%m-%d %H:%M:%S"), crate::local::print::age(t, now)))
                    .unwrap_or_else(|| "-".into()),
            ];
            if wide {
                c.insert(0, r.namespace.clone());
                c.push(r.latest_sync.clone().unwrap_or_else(|| "-".into()));
            }
            c
        })
        .collect();
    crate::local::print::table(&header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> (Vec<Mapping>, Vec<Model>, Vec<Sync>) {
        let mapping = |name: &str, model: &str, dest: &str, enabled: bool| -> Mapping {
            serde_json::from_value(serde_json::json!({"apiVersion": "retl.dev/v1alpha1", "kind": "Mapping",
                "metadata": {"name": name, "namespace": "team-a"},
                "spec": {"modelRef": {"name": model}, "destinationRef": {"name": dest}, "action": "upsert", "enabled": enabled}}))
            .unwrap()
        };
        let model: Model = serde_json::from_value(serde_json::json!({"apiVersion": "retl.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "users", "namespace": "team-a"},
            "spec": {"sourceRef": {"name": "warehouse"}, "query": "SELECT 1", "primaryKey": "id"}}))
        .unwrap();
        let sync = |name: &str, mapping: &str, phase: &str, started: &str| -> Sync {
            serde_json::from_value(serde_json::json!({"apiVersion": "retl.dev/v1alpha1", "kind": "Sync",
                "metadata": {"name": name, "namespace": "team-a", "labels": {"retl.dev/mapping": mapping}},
                "spec": {"mappingRef": {"name": mapping}}, "status": {"phase": phase, "startTime": started}}))
            .unwrap()
        };
        (
            vec![
                mapping("users-crm", "users", "crm", true),
                mapping("users-ads", "users", "ads", false),
                mapping("orders-crm", "orders", "crm", true),
            ],
            vec![model],
            vec![
                sync("users-crm-1", "users-crm", "Failed", "2026-12-01T10:00:00Z"),
                sync("users-crm-2", "users-crm", "Successful", "2026-12-01T11:00:00Z"),
                sync("users-ads-1", "users-ads", "PartiallySuccessful", "2026-12-01T09:00:00Z"),
            ],
        )
    }

    #[test]
    fn each_mapping_shows_its_latest_sync_and_the_models_source() {
        let (m, models, s) = objects();
        let rows = rows(&m, &models, &s, &Filters::default());
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.destination.as_str(), r.mapping.as_str(), r.source.as_str(), r.status, r.mapping_status.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("ads", "users-ads", "warehouse", Some(SyncPhase::PartiallySuccessful), "Disabled"),
                ("crm", "orders-crm", "-", None, "Enabled"),
                ("crm", "users-crm", "warehouse", Some(SyncPhase::Successful), "Enabled"),
            ]
        );
        assert_eq!(rows[2].latest_sync.as_deref(), Some("users-crm-2"));
    }

    #[test]
    fn the_filters_of_the_reference_narrow_it() {
        let (m, models, s) = objects();
        let names = |f: Filters| rows(&m, &models, &s, &f).into_iter().map(|r| r.mapping).collect::<Vec<_>>();
        assert_eq!(names(Filters { status: Some("partiallysuccessful".into()), ..Default::default() }), ["users-ads"]);
        assert_eq!(names(Filters { mapping_status: Some("Enabled".into()), ..Default::default() }), ["orders-crm", "users-crm"]);
        assert_eq!(names(Filters { destination: Some("crm".into()), model: Some("users".into()), ..Default::default() }), ["users-crm"]);
        let since: Timestamp = "2026-12-01T10:30:00Z".parse().unwrap();
        assert_eq!(names(Filters { since: Some(since), ..Default::default() }), ["users-crm"]);
        assert_eq!(names(Filters { until: Some(since), ..Default::default() }), ["users-ads"]);
    }
}
