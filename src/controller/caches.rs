//! What the controllers read instead of asking the API server: the watch
//! caches the controllers already keep (each kube-runtime Controller
//! reflects the kind it reconciles), shared, and a record of this
//! operator's own writes so that a cached object is used only when it holds
//! them.
//!
//! Why: a Mapping's reconcile used to read its Mapping, Model, Destination
//! and Source and list its Syncs from the API server, five requests before
//! the one that matters at a tick (creating the Sync), for each of 1,000
//! Mappings at the same second, and again on each of its Syncs' changes. A
//! cache may lag behind the server by a watch event; what follows from that
//! is handled where it matters (see `Written` and the Mapping controller).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::api::{Destination, Mapping, Model, Source, Sync};

/// The caches of one namespace scope (one namespace, or all).
#[derive(Clone)]
pub struct Caches {
    pub mappings: Store<Mapping>,
    pub syncs: Store<Sync>,
    /// retl's Jobs, slimmed (see `job::slim`).
    pub jobs: Store<Job>,
    pub models: Store<Model>,
    pub destinations: Store<Destination>,
    pub sources: Store<Source>,
    /// This operator's writes to the Mappings of this scope.
    pub mapping_writes: Arc<Written>,
    /// This operator's writes to the Syncs of this scope.
    pub sync_writes: Arc<Written>,
}

impl Caches {
    /// Waits until the caches the Mapping controller reads hold their
    /// first full list: until then a missing object may only be not yet
    /// listed, and a Mapping must not be told its Model does not exist
    /// because the operator just started.
    pub async fn ready_for_mappings(&self) {
        ready(&self.syncs).await;
        ready(&self.models).await;
        ready(&self.destinations).await;
        ready(&self.sources).await;
    }

    /// The same for the Sync controller: the Destinations (their limits).
    /// The Mappings and Jobs it reads are asked of the API when missing
    /// from their cache.
    pub async fn ready_for_syncs(&self) {
        ready(&self.destinations).await;
    }

    /// The Syncs of Mapping `mapping` in `ns`.
    pub fn syncs_of(&self, ns: &str, mapping: &str) -> Vec<Arc<Sync>> {
        self.syncs.state_filter(|s| s.spec.mapping_ref.name == mapping && s.metadata.namespace.as_deref() == Some(ns))
    }
}

/// Waits until `store` holds its first full list. kube-runtime's
/// `wait_until_ready` keeps one waker (a oneshot channel's): of two tasks
/// waiting at once (the controller that fills the store, and a reconcile
/// of another), one may never be woken. A wait that is polled again every
/// 100 ms sees the readiness that the other task recorded.
async fn ready<K>(store: &Store<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        match tokio::time::timeout(std::time::Duration::from_millis(100), store.wait_until_ready()).await {
            // Ready, or its writer is gone (the operator is stopping): go on either way.
            Ok(_) => return,
            Err(_) => continue,
        }
    }
}

/// `name` in `ns` from `store`.
pub fn get<K>(store: &Store<K>, ns: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(ns))
}

/// Read your own writes: per object (by UID), a resourceVersion known to
/// include every write this operator made to it (the one its last write
/// returned, or that of a fresh read). A cached copy with exactly that
/// version is the object as it was after those writes; any other version
/// may be older than them (the watch event of the write is still on its
/// way), so the object is read from the API server instead.
#[derive(Default)]
pub struct Written {
    versions: std::sync::Mutex<HashMap<String, String>>,
}

impl Written {
    /// Whether `cached` holds every write this operator made to it.
    pub fn holds_own_writes<K: Resource>(&self, cached: &K) -> bool {
        let (Some(uid), Some(version)) = (cached.meta().uid.as_deref(), cached.meta().resource_version.as_deref()) else {
            return false;
        };
        self.lock().get(uid).is_some_and(|v| v == version)
    }

    /// Records `obj` as returned by a write or a fresh read.
    pub fn record<K: Resource>(&self, obj: &K) {
        if let (Some(uid), Some(version)) = (obj.meta().uid.clone(), obj.meta().resource_version.clone()) {
            self.lock().insert(uid, version);
        }
    }

    /// Forgets objects that are gone (their UIDs fail `keep`).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|uid, _| keep(uid));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic elsewhere cannot leave a map of strings half-written.
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps `written` to the objects `store` still holds (so that it does
/// not grow with every Mapping ever deleted), every ten minutes, until `stop`.
pub async fn forget_deleted<K>(store: Store<K>, written: Arc<Written>, stop: tokio_util::sync::CancellationToken)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
        }
        let live: std::collections::HashSet<String> = store.state().iter().filter_map(|o| o.uid()).collect();
        written.retain(|uid| live.contains(uid));
    }
}
