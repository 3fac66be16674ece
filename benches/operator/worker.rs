//! The benchmark's workers: what a sync Job's pod runs. The test kubelet
//! maps the workers' image to this very binary, started as `<bench> worker
//! --sync NAMESPACE/NAME` with the pod's ServiceAccount credentials, as
//! `retl worker` would be. It makes the status writes a real worker makes
//! for a sync with nothing to send, with retl's own status functions: the
//! Sync goes `InProgress` (with its start time), then `Successful` with zero
//! records and its `Complete` condition. It reads no warehouse and sends
//! nothing, so that what is measured is the operator and the control plane,
//! not 1,000 syncs' worth of SQL on two cores.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use retl::api::{Sync, SyncPhase, SyncStatus};
use retl::engine::{Progress, SyncReport};

use crate::Error;

/// `worker --sync NAMESPACE/NAME`, as the Job's container args say.
pub fn main(args: &[String]) -> Result<(), Error> {
    let target = args.iter().skip_while(|a| *a != "--sync").nth(1).ok_or("worker: usage: worker --sync NAMESPACE/NAME")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(finish(target))
}

async fn finish(target: &str) -> Result<(), Error> {
    let (namespace, name) = target.split_once('/').ok_or("worker: --sync must be NAMESPACE/NAME")?;
    retl::install_crypto_provider();
    // In-cluster credentials: the kubelet mounted the pod's token.
    let client = kube::Client::try_default().await?;
    let syncs: Api<Sync> = Api::namespaced(client, namespace);
    let started = Timestamp::now();
    let generation = write(&syncs, name, |current| {
        let current = SyncStatus { start_time: Some(Time(started)), ..current };
        retl::worker::status::in_progress(current, &Progress::default())
    })
    .await?;
    let mut report = SyncReport::started(started);
    report.phase = SyncPhase::Successful;
    report.completed = Some(Timestamp::now());
    write(&syncs, name, |current| retl::worker::status::finished(current, &report, generation, Timestamp::now())).await?;
    Ok(())
}

/// A status write as `retl worker` makes it: computed from the status read
/// just before, conditional on its resourceVersion (read again on a
/// conflict), never over a finished Sync. Returns the Sync's generation.
async fn write(syncs: &Api<Sync>, name: &str, update: impl Fn(SyncStatus) -> SyncStatus) -> Result<Option<i64>, Error> {
    loop {
        let current = syncs.get_status(name).await?;
        let generation = current.metadata.generation;
        let old = current.status.clone();
        if old.as_ref().and_then(|s| s.phase).is_some_and(SyncPhase::is_finished) {
            return Ok(generation);
        }
        let new = update(old.clone().unwrap_or_default());
        let mut patch = retl::controller::status::status_patch(old.as_ref(), &new);
        patch["metadata"] = serde_json::json!({ "resourceVersion": current.resource_version() });
        match syncs.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(generation),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
