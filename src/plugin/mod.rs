//! `kubectl retl`: the `retl` binary installed as `kubectl-retl` (kubectl
//! finds it on PATH). The sync overview of the reference, and sync-now,
//! reset, replay and cancel as the token annotations the operator reads,
//! optionally waiting for the outcome. It reads and writes only what the
//! user's kubeconfig allows: a user who may not list Syncs in a namespace
//! sees the API server's refusal, not a partial overview.

pub mod overview;
pub mod records;
pub mod test_record;

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Config};
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::api::conditions::annotation;
use crate::api::{Mapping, Model, Sync, SyncPhase};
use crate::controller::naming;

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("cannot find a Kubernetes configuration (KUBECONFIG or ~/.kube/config): {0}")]
    Config(String),
    #[error("{what}: {detail}")]
    Api { what: String, detail: String },
    #[error("{what} did not finish within {waited:?}; it goes on in the cluster (see `kubectl get syncs`)")]
    Timeout { what: String, waited: Duration },
}

/// A client for the user's kubeconfig, and its current namespace.
pub async fn client() -> Result<(Client, String), PluginError> {
    crate::install_crypto_provider();
    let config = Config::infer().await.map_err(|e| PluginError::Config(e.to_string()))?;
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| PluginError::Config(e.to_string()))?;
    Ok((client, namespace))
}

async fn list<K>(client: &Client, ns: Option<&str>, what: &str) -> Result<Vec<K>, PluginError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let where_ = ns.map(|n| format!("in namespace {n}")).unwrap_or_else(|| "in all namespaces".into());
    crate::controller::run::api::<K>(client, ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| PluginError::Api { what: format!("cannot list {what} {where_}"), detail: crate::controller::secrets::short(&e) })
}

/// The overview of namespace `ns` (all namespaces when `None`).
pub async fn overview(client: &Client, ns: Option<&str>, f: &overview::Filters) -> Result<Vec<overview::OverviewRow>, PluginError> {
    let mappings: Vec<Mapping> = list(client, ns, "Mappings").await?;
    let models: Vec<Model> = list(client, ns, "Models").await?;
    let syncs: Vec<Sync> = list(client, ns, "Syncs").await?;
    Ok(overview::rows(&mappings, &models, &syncs, f))
}

/// The Syncs of Mapping `mapping` in `ns`, newest first.
pub async fn history(client: &Client, ns: &str, mapping: &str) -> Result<Vec<Sync>, PluginError> {
    let syncs: Api<Sync> = Api::namespaced(client.clone(), ns);
    let selector = format!("{}={mapping}", crate::api::conditions::label::MAPPING);
    let mut items = syncs.list(&ListParams::default().labels(&selector)).await.map(|l| l.items).map_err(|e| PluginError::Api {
        what: format!("cannot list the Syncs of Mapping {ns}/{mapping}"),
        detail: crate::controller::secrets::short(&e),
    })?;
    newest_first(&mut items);
    Ok(items)
}

/// Orders Syncs newest first. Kubernetes times have whole seconds, so two
/// Syncs created in one second (a sync-now right after a replay finished)
/// are told apart by when they finished: one still running, or finished
/// later, is the newer.
fn newest_first(items: &mut [Sync]) {
    let created = |s: &Sync| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let finished = |s: &Sync| match s.status.as_ref().and_then(|st| st.completion_time.as_ref()) {
        Some(t) => (false, Some(t.0)),
        None => (true, None), // still running: after any finished one
    };
    items.sort_by(|a, b| (created(b), finished(b)).cmp(&(created(a), finished(a))).then_with(|| b.metadata.name.cmp(&a.metadata.name)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_created_in_one_second_are_ordered_by_when_they_finished() {
        let sync = |yaml: &str| serde_yaml_ng::from_str::<Sync>(yaml).unwrap();
        let mut items = vec![
            sync(
                "metadata: {name: b-older, creationTimestamp: '2026-12-06T05:00:00Z'}\nspec: {mappingRef: {name: m}}\n\
                  status: {completionTime: '2026-12-06T05:00:02Z'}",
            ),
            sync(
                "metadata: {name: a-newer, creationTimestamp: '2026-12-06T05:00:02Z'}\nspec: {mappingRef: {name: m}}\n\
                  status: {completionTime: '2026-12-06T05:00:03Z'}",
            ),
            sync(
                "metadata: {name: z-replay, creationTimestamp: '2026-12-06T05:00:02Z'}\nspec: {mappingRef: {name: m}}\n\
                  status: {completionTime: '2026-12-06T05:00:02Z'}",
            ),
            sync("metadata: {name: c-running, creationTimestamp: '2026-12-06T05:00:02Z'}\nspec: {mappingRef: {name: m}}"),
        ];
        newest_first(&mut items);
        let names: Vec<&str> = items.iter().map(|s| s.metadata.name.as_deref().unwrap_or_default()).collect();
        assert_eq!(names, ["c-running", "a-newer", "z-replay", "b-older"]);
    }
}

/// Syncs as `kubectl get syncs` prints them, with the start time.
pub fn history_table(syncs: &[Sync], now: Timestamp) -> String {
    let header = ["NAME", "TRIGGER", "STATUS", "STARTED", "DURATION", "EXTRACTED", "ADDED", "UPDATED", "DELETED", "LOADED", "FAILED"];
    let rows: Vec<Vec<String>> = syncs
        .iter()
        .map(|s| {
            let st = s.status.clone().unwrap_or_default();
            let started = st.start_time.as_ref().map(|t| crate::local::print::age(t.0, now) + " ago").unwrap_or_else(|| "-".into());
            let (e, l) = (&st.extracted, &st.loaded);
            vec![
                s.metadata.name.clone().unwrap_or_default(),
                format!("{:?}", s.spec.trigger),
                st.phase.unwrap_or(SyncPhase::Pending).to_string(),
                started,
                st.duration.clone().unwrap_or_else(|| "-".into()),
                e.total.to_string(),
                e.added.to_string(),
                e.updated.to_string(),
                e.deleted.to_string(),
                l.succeeded.to_string(),
                l.failed.to_string(),
            ]
        })
        .collect();
    crate::local::print::table(&header, &rows)
}

/// What a person asks the operator for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Start a sync of a Mapping now.
    SyncNow,
    /// Forget a Mapping's state; its next sync sends everything.
    Reset,
    /// Re-send what a past Sync extracted, with current values.
    Replay,
    /// Stop a running Sync.
    Cancel,
}

impl Request {
    fn annotation(self) -> &'static str {
        match self {
            Request::SyncNow => annotation::SYNC_NOW,
            Request::Reset => annotation::RESET,
            Request::Replay => annotation::REPLAY,
            Request::Cancel => annotation::CANCEL,
        }
    }
}

/// What a request led to.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// What to tell the user.
    pub message: String,
    /// How the Sync it led to ended, when waited for.
    pub phase: Option<SyncPhase>,
}

/// Sets the request's token annotation on `name` (a Mapping for sync-now
/// and reset, a Sync for replay and cancel); with `wait`, waits for what
/// it leads to.
pub async fn request(client: &Client, ns: &str, req: Request, name: &str, wait: Option<Duration>) -> Result<Answer, PluginError> {
    let token = Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {req.annotation(): token}}});
    let params = PatchParams::default();
    let failed = |what: String| move |e: kube::Error| PluginError::Api { what, detail: crate::controller::secrets::short(&e) };
    match req {
        Request::SyncNow | Request::Reset => {
            let mappings: Api<Mapping> = Api::namespaced(client.clone(), ns);
            mappings.patch(name, &params, &Patch::Merge(&patch)).await.map_err(failed(format!("cannot annotate Mapping {ns}/{name}")))?;
        }
        Request::Replay | Request::Cancel => {
            let syncs: Api<Sync> = Api::namespaced(client.clone(), ns);
            syncs.patch(name, &params, &Patch::Merge(&patch)).await.map_err(failed(format!("cannot annotate Sync {ns}/{name}")))?;
        }
    }
    let sync = match req {
        Request::SyncNow => Some(naming::requested_sync(name, &token)),
        Request::Replay => Some(naming::replay_sync(name, &token)),
        Request::Cancel => Some(name.to_string()),
        Request::Reset => None,
    };
    let asked = format!(
        "{} {ns}/{name}: {}={token}",
        if sync.is_some() && req != Request::Cancel { "requested" } else { "asked" },
        req.annotation()
    );
    let Some(wait) = wait else {
        let message = match &sync {
            Some(s) if req != Request::Cancel => format!("{asked}; Sync {s} will run (kubectl get sync {s} -n {ns})"),
            _ => asked,
        };
        return Ok(Answer { message, phase: None });
    };
    match sync {
        Some(s) => {
            let phase = wait_finished(client, ns, &s, wait).await?;
            Ok(Answer { message: format!("{asked}; Sync {s} finished {phase}"), phase: Some(phase) })
        }
        None => {
            wait_reset(client, ns, name, &token, wait).await?;
            Ok(Answer { message: format!("{asked}; the reset was handled: the next sync sends every record as new"), phase: None })
        }
    }
}

async fn wait_finished(client: &Client, ns: &str, sync: &str, wait: Duration) -> Result<SyncPhase, PluginError> {
    let syncs: Api<Sync> = Api::namespaced(client.clone(), ns);
    let finished = || async { syncs.get_opt(sync).await.ok().flatten()?.status?.phase.filter(|p| p.is_finished()) };
    poll(wait, &format!("Sync {ns}/{sync}"), finished).await
}

async fn wait_reset(client: &Client, ns: &str, mapping: &str, token: &str, wait: Duration) -> Result<(), PluginError> {
    let mappings: Api<Mapping> = Api::namespaced(client.clone(), ns);
    let handled = || async {
        let m = mappings.get_opt(mapping).await.ok().flatten()?;
        (m.status?.last_handled_reset.as_deref() == Some(token)).then_some(())
    };
    poll(wait, &format!("the reset of Mapping {ns}/{mapping}"), handled).await
}

/// Asks `check` every half second until it answers, for at most `wait`.
async fn poll<T, F, Fut>(wait: Duration, what: &str, check: F) -> Result<T, PluginError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PluginError::Timeout { what: what.to_string(), waited: wait });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
