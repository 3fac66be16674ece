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
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use retl::api::conditions::label;
use retl::api::{ObjectRef, Sync, SyncSpec, SyncTrigger};
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
    creations(client, ns, n, |i| {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("floor-{i:04}"));
        cm.metadata.labels = Some([(FLOOR_LABEL.to_string(), "1".to_string())].into());
        cm.data = Some([("spec".to_string(), format!("mappingRef: m{i:04}, trigger: Schedule"))].into());
        cm
    })
    .await
}

/// N Syncs with the spec and labels of a scheduled one (no owner: their
/// Mappings do not exist), after 100 not timed: the API server builds a
/// custom resource's handler on its first use, and a tick's Syncs are never
/// a cluster's first.
pub async fn syncs(client: &kube::Client, ns: &str, n: usize) -> Result<Percentiles, Error> {
    creations(client, ns, 100, |i| scheduled_sync(i, "29000000")).await?;
    creations(client, ns, n, |i| scheduled_sync(i, "29000001")).await
}

fn scheduled_sync(i: usize, tick: &str) -> Sync {
    let mapping = format!("m{i:04}");
    let mut sync = Sync::new(
        &format!("{mapping}-{tick}"),
        SyncSpec { mapping_ref: ObjectRef { name: mapping.clone() }, trigger: SyncTrigger::Schedule, replay_of: None },
    );
    sync.metadata.labels = Some(
        [
            (FLOOR_LABEL.to_string(), "1".to_string()),
            (label::MAPPING.to_string(), mapping),
            (label::MODEL.to_string(), "users".to_string()),
            (label::DESTINATION.to_string(), "sink".to_string()),
            (label::STATUS.to_string(), "pending".to_string()),
        ]
        .into(),
    );
    sync
}

async fn creations<K>(client: &kube::Client, ns: &str, n: usize, make: impl Fn(usize) -> K) -> Result<Percentiles, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let objects: Vec<K> = (0..n).map(make).collect();
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
