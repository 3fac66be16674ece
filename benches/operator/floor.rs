//! The API server's own floor for a tick: N objects created at once, 128
//! requests in flight as the operator's RequestGate allows, timed from the
//! first request to each answer. No operator work is in it: a tick's Syncs
//! cannot all exist sooner than the API server can create that many
//! objects on this machine. Two kinds: small ConfigMaps (a built-in kind),
//! and Syncs as the operator makes them (a custom resource: validated
//! against its schema, and sent to the watches of Syncs), in a namespace no
//! Mapping is in, before the operator runs.

use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use retl::api::{Mapping, Sync, SyncTrigger};
use retl::controller::mapping_plan::NewSync;
use retl::controller::naming;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// The same number of requests in flight as the operator's RequestGate allows.
pub const IN_FLIGHT: usize = retl::controller::request_gate::REQUESTS_IN_FLIGHT;

const FLOOR_LABEL: &str = "retl.dev/bench-floor";

/// p50, p99 and max seconds from the start to each creation's answer.
pub type Percentiles = (f64, f64, f64);

/// N ConfigMaps about a Sync's size.
pub async fn configmaps(client: &kube::Client, ns: &str, n: usize) -> Result<Percentiles, Error> {
    let objects = (0..n).map(|i| {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("floor-{i:04}"));
        cm.metadata.labels = Some([(FLOOR_LABEL.to_string(), "1".to_string())].into());
        cm.data = Some([("spec".to_string(), format!("mappingRef: m{i:04}, trigger: Schedule"))].into());
        cm
    });
    creations(client, ns, objects.collect()).await
}

/// N Syncs as the operator makes them for the benchmark's Mappings at a
/// tick (no owner: the Mappings do not exist yet), after 100 not timed: the
/// API server builds a custom resource's handler on its first use, and a
/// tick's Syncs are never a cluster's first.
pub async fn syncs(client: &kube::Client, ns: &str, n: usize) -> Result<Percentiles, Error> {
    let mappings: Vec<Mapping> = (0..n).map(|i| serde_json::from_value(crate::setup::mapping(i))).collect::<Result<_, _>>()?;
    let scheduled = |tick: i64| -> Result<Vec<Sync>, Error> {
        let tick = Timestamp::from_second(tick)?;
        Ok(mappings
            .iter()
            .map(|m| {
                let new = NewSync { name: naming::scheduled_sync(&m.name_any(), tick), trigger: SyncTrigger::Schedule };
                let mut sync = new.object(m);
                sync.labels_mut().insert(FLOOR_LABEL.to_string(), "1".to_string());
                sync
            })
            .collect())
    };
    creations(client, ns, scheduled(0)?.into_iter().take(100).collect()).await?;
    creations(client, ns, scheduled(60)?).await
}

async fn creations<K>(client: &kube::Client, ns: &str, objects: Vec<K>) -> Result<Percentiles, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let answers: Vec<Result<Duration, kube::Error>> = futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await.map(|_| start.elapsed()) }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let times: Vec<f64> = answers.into_iter().map(|r| r.map(|d| d.as_secs_f64())).collect::<Result<_, _>>()?;
    api.delete_collection(&DeleteParams::default(), &ListParams::default().labels(FLOOR_LABEL)).await?;
    crate::audit::percentiles(&times).ok_or_else(|| "no creations".into())
}
