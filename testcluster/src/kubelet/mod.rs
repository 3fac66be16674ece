//! The test kubelet, the one stand-in (no container runtime runs here). It
//! registers a Ready Node, watches the pods the real kube-scheduler binds
//! to it, and runs each container's command as a local process with the
//! pod's environment and ServiceAccount credentials ([`crate::credentials`]).
//! It reports Running and then the exit codes into pod status, so the real
//! Job and ReplicaSet controllers see what a kubelet would report, and it
//! honours deletion: SIGTERM, `terminationGracePeriodSeconds`, SIGKILL, then
//! the final delete. Every known difference from a real kubelet is listed in
//! testcluster/README.md.

mod env;
mod node;
mod pod;
mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;

use crate::credentials::ApiEndpoint;

/// Which local binary runs a container image (the image's entrypoint);
/// None: the image cannot be "pulled" (the container waits with `ErrImagePull`).
pub type ImageMap = Arc<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("registering Node {node}: {source}")]
    Register { node: String, source: kube::Error },
}

/// What the kubelet knows of one pod it runs.
pub(crate) struct PodEntry {
    pub namespace: String,
    pub name: String,
    /// Pids of the running containers' processes (each leads its own process group).
    pub pids: Vec<u32>,
    /// Signals sent to the pod's processes, in order: "SIGTERM", "SIGKILL".
    pub signals: Vec<String>,
    /// Set once the pod's deletion was asked for; carries the grace period in seconds.
    pub terminate: tokio::sync::watch::Sender<Option<i64>>,
    /// Its containers are done (and will not restart).
    pub finished: bool,
    /// The final delete was sent.
    pub deleted: bool,
}

pub(crate) struct Shared {
    pub client: kube::Client,
    pub endpoint: ApiEndpoint,
    pub node: String,
    pub dir: PathBuf,
    pub images: ImageMap,
    pub pods: Mutex<HashMap<String, PodEntry>>,
}

impl Shared {
    pub fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodEntry>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle on the running kubelet.
pub struct Kubelet {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    /// Registers the Node (Ready, untainted) and starts watching its pods on `runtime`.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        client: kube::Client,
        endpoint: ApiEndpoint,
        node: &str,
        dir: PathBuf,
        images: ImageMap,
    ) -> Result<Kubelet, KubeletError> {
        let _ = std::fs::create_dir_all(&dir);
        runtime.block_on(node::register(&client, node)).map_err(|source| KubeletError::Register { node: node.into(), source })?;
        let shared = Arc::new(Shared { client, endpoint, node: node.into(), dir, images, pods: Mutex::new(HashMap::new()) });
        let task = runtime.spawn(watch(shared.clone()));
        Ok(Kubelet { shared, task })
    }

    /// Stops watching and kills every pod process at once.
    pub fn stop(self) {
        self.task.abort();
        for entry in self.shared.pods().values() {
            for pid in &entry.pids {
                crate::process::signal_group(*pid, libc::SIGKILL);
            }
        }
    }

    /// The pid of the first running container of pod `namespace/name`.
    pub fn pid(&self, namespace: &str, name: &str) -> Option<u32> {
        let pods = self.shared.pods();
        pods.values().find(|p| p.namespace == namespace && p.name == name && !p.finished).and_then(|p| p.pids.first().copied())
    }

    /// Kills the pod's running containers with SIGKILL, as a crash or an
    /// OOM kill would: the container exits 137. False if none runs.
    pub fn kill(&self, namespace: &str, name: &str) -> bool {
        let pods = self.shared.pods();
        let Some(p) = pods.values().find(|p| p.namespace == namespace && p.name == name && !p.pids.is_empty()) else {
            return false;
        };
        for pid in &p.pids {
            crate::process::signal_group(*pid, libc::SIGKILL);
        }
        true
    }

    /// The signals the kubelet sent to pod `namespace/name`'s processes, in order.
    pub fn signals(&self, namespace: &str, name: &str) -> Vec<String> {
        let pods = self.shared.pods();
        pods.values().filter(|p| p.namespace == namespace && p.name == name).flat_map(|p| p.signals.clone()).collect()
    }

    /// Everything the pod's containers printed (every container, every restart).
    pub fn logs(&self, namespace: &str, name: &str) -> String {
        let prefix = format!("{namespace}_{name}_");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.shared.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        let mut out = String::new();
        for dir in dirs {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.join("logs")).into_iter().flatten().flatten().map(|e| e.path()).collect();
            logs.sort();
            for log in logs {
                out.push_str(&std::fs::read_to_string(log).unwrap_or_default());
            }
        }
        out
    }
}

/// Watches the pods bound to this node and hands each to its pod task.
async fn watch(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node));
    let mut events = watcher::watcher(pods, config).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => observe(&shared, pod),
            Ok(watcher::Event::Delete(pod)) => gone(&shared, &pod),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn observe(shared: &Arc<Shared>, pod: Pod) {
    let id = uid(&pod);
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
    let mut pods = shared.pods();
    match pods.get_mut(&id) {
        Some(entry) if deleting && entry.finished && !entry.deleted => {
            entry.deleted = true;
            tokio::spawn(pod::finish_deletion(shared.clone(), pod));
        }
        Some(entry) => {
            if deleting && entry.terminate.borrow().is_none() {
                let _ = entry.terminate.send(Some(grace));
            }
        }
        None => {
            let terminal = matches!(status::phase(&pod), Some("Succeeded" | "Failed"));
            if terminal || deleting {
                // Nothing of ours runs for it (finished, or from before a
                // restart): a kubelet finishes the deletion of such pods.
                if deleting {
                    tokio::spawn(pod::finish_deletion(shared.clone(), pod));
                }
                return;
            }
            let (tx, rx) = tokio::sync::watch::channel(None);
            pods.insert(
                id,
                PodEntry {
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    pids: Vec::new(),
                    signals: Vec::new(),
                    terminate: tx,
                    finished: false,
                    deleted: false,
                },
            );
            tokio::spawn(pod::run(shared.clone(), pod, rx));
        }
    }
}

/// The pod object is gone (deleted with no grace period, or finalized):
/// whatever still runs for it is killed.
fn gone(shared: &Arc<Shared>, pod: &Pod) {
    if let Some(entry) = shared.pods().get(&uid(pod))
        && !entry.finished
    {
        let _ = entry.terminate.send(Some(0));
    }
}
