//! The worker's writes to its Sync, and what it hears of it. Each write
//! carries the resourceVersion it was computed from, so a Sync that someone
//! else finished meanwhile (the Sync controller, when the Job was deleted or
//! ran past its deadline) is never written over: a finished Sync stays
//! finished. Cancel requests and such a finish arrive by a watch.

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::api::conditions::annotation;
use crate::api::{Sync, SyncPhase, SyncStatus};

/// What a status write found.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Written (or nothing had changed).
    Done,
    /// The Sync had already finished, in this phase; nothing was written.
    AlreadyFinished(SyncPhase),
}

/// Updates the status from what the server has now (so fields the
/// controller owns, like handled request tokens, stay as they are), as a
/// merge patch that also clears what the update cleared, on the condition
/// that nobody wrote in between (else it looks again). Skips the write when
/// nothing changed; writes nothing to a finished Sync.
pub async fn write_status(syncs: &Api<Sync>, name: &str, update: impl Fn(SyncStatus) -> SyncStatus) -> Result<Written, kube::Error> {
    loop {
        let current = syncs.get_status(name).await?;
        let version = current.resource_version();
        let status = current.status;
        if let Some(phase) = status.as_ref().and_then(|s| s.phase).filter(|p| p.is_finished()) {
            return Ok(Written::AlreadyFinished(phase));
        }
        let new = update(status.clone().unwrap_or_default());
        if status.as_ref() == Some(&new) {
            return Ok(Written::Done);
        }
        let mut patch = crate::controller::status::status_patch(status.as_ref(), &new);
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
        match syncs.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(Written::Done),
            // Written by someone else since it was read: look again.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Why the worker was told to stop.
pub fn stop_reason(sync: &Sync) -> Option<&'static str> {
    if sync.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_finished()) {
        Some("the Sync was finished by someone else")
    } else if sync.annotations().contains_key(annotation::CANCEL) {
        Some("cancel requested")
    } else {
        None
    }
}

/// Watches the Sync and stops the sync at the next batch boundary once
/// `retl.dev/cancel` appears or the Sync is finished by someone else.
pub async fn watch_for_stop(syncs: Api<Sync>, name: String, stop: CancellationToken) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(syncs, config).boxed();
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = stop.cancelled() => return,
        };
        match event {
            Some(Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s))) => {
                if let Some(why) = stop_reason(&s) {
                    tracing::info!(sync = %name, why, "stopping at the next batch boundary");
                    stop.cancel();
                    return;
                }
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                tracing::info!(sync = %name, "the Sync was deleted; stopping at the next batch boundary");
                stop.cancel();
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(sync = %name, error = %e, "watching the Sync failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            None => return,
        }
    }
}
