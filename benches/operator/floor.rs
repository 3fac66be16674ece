//! The API server's own floor for a tick: N small objects created at once
//! (ConfigMaps, about a Sync's size, 128 requests in flight as the
//! operator's Mapping reconciles), timed from the first request to each
//! answer. No operator work is in it: a tick's Syncs cannot all exist
//! sooner than the API server can create that many objects on this machine.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::Error;

/// The same number of requests in flight as the operator's Mapping controller allows.
pub const IN_FLIGHT: usize = 128;

/// Seconds from the start to each creation's answer: p50, p99, max.
pub async fn creations(client: &kube::Client, ns: &str, n: usize) -> Result<(f64, f64, f64), Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let answers: Vec<Result<Duration, kube::Error>> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("floor-{i:04}"));
                cm.metadata.labels = Some([("retl.dev/bench-floor".to_string(), "1".to_string())].into());
                cm.data = Some([("spec".to_string(), format!("mappingRef: m{i:04}, trigger: Schedule"))].into());
                api.create(&PostParams::default(), &cm).await.map(|_| start.elapsed())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let times: Vec<f64> = answers.into_iter().map(|r| r.map(|d| d.as_secs_f64())).collect::<Result<_, _>>()?;
    api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("retl.dev/bench-floor")).await?;
    crate::audit::percentiles(&times).ok_or_else(|| "no creations".into())
}
