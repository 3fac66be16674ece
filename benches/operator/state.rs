//! What the cluster holds at the end of a run: Syncs by phase, Jobs and
//! pods by state, so that a pipeline that fell behind says where.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use retl::api::Sync;

use crate::Error;

fn count(map: &mut BTreeMap<String, usize>, key: impl Into<String>) {
    *map.entry(key.into()).or_default() += 1;
}

/// One line per kind: how many of each state.
pub async fn summary(client: &kube::Client, ns: &str, kubelet: &testcluster::Kubelet) -> Result<String, Error> {
    let mut out = String::new();
    let syncs: Api<Sync> = Api::namespaced(client.clone(), ns);
    let mut phases = BTreeMap::new();
    for s in syncs.list(&ListParams::default()).await?.items {
        count(&mut phases, s.status.and_then(|st| st.phase).map(|p| p.to_string()).unwrap_or_else(|| "none".into()));
    }
    out.push_str(&format!("Syncs by phase: {phases:?}\n"));

    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut states = BTreeMap::new();
    for j in jobs.list(&ListParams::default()).await?.items {
        let st = j.status.unwrap_or_default();
        let done = st.conditions.iter().flatten().find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"));
        count(&mut states, done.map(|c| c.type_.clone()).unwrap_or_else(|| format!("active={}", st.active.unwrap_or(0))));
    }
    out.push_str(&format!("Jobs: {states:?}\n"));

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut states = BTreeMap::new();
    let mut example = None;
    for p in pods.list(&ListParams::default()).await?.items {
        let st = p.status.clone().unwrap_or_default();
        let waiting = st.container_statuses.iter().flatten().find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
        let unscheduled =
            st.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False").and_then(|c| c.reason.clone());
        let phase = st.phase.unwrap_or_default();
        count(
            &mut states,
            format!(
                "{phase}{}{}",
                waiting.map(|w| format!("/{w}")).unwrap_or_default(),
                unscheduled.map(|u| format!("/{u}")).unwrap_or_default()
            ),
        );
        if example.is_none() && phase != "Pending" {
            example = p.metadata.name.clone();
        }
    }
    out.push_str(&format!("Pods: {states:?}\n"));
    if let Some(pod) = example {
        let logs = kubelet.logs(ns, &pod);
        out.push_str(&format!("output of pod {pod}: {}\n", logs.chars().take(600).collect::<String>()));
    }
    Ok(out)
}
