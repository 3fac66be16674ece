//! `retl operator`: wires the reconcilers into kube-runtime Controllers,
//! behind leader election, with metrics and health on one port, and stops
//! gracefully on SIGTERM/Ctrl-C. Syncs run in their own Jobs, so stopping
//! the operator never leaves a Sync stuck: a new leader picks up the watch.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::caches::Caches;
use super::context::Context;
use super::error::ControllerError;
use super::job::WorkerSettings;
use super::leader::{LeaderElection, Timing};
use super::metrics::{ControllerLabels, Metrics};
use super::{destination, mapping, model, source, sync, sync_alert};
use crate::api::{Destination, Mapping, Model, Source, Sync, SyncAlert};

/// How long the controllers may take to stop once asked to.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Reconciles of Mappings at once. At a tick every Mapping on that
/// schedule is due in the same millisecond, and every one of them should
/// have its Sync's creation in the queue of urgent requests (the
/// RequestGate), ahead of the status writes, Events and deletions of the
/// Mappings served before it: so this is not what limits the requests in
/// flight (the gate's slots are), only the memory a burst may take.
const MAPPING_CONCURRENCY: u16 = 4096;

/// Reconciles of Syncs at once: their work (a Job each, and what the
/// control plane then does for it) may trail a tick by a moment, and must
/// not crowd out the Mappings' Sync creations.
const SYNC_CONCURRENCY: u16 = 16;

fn limit(concurrency: u16) -> controller::Config {
    controller::Config::default().concurrency(concurrency)
}

/// Settings of `retl operator`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty for all.
    pub namespaces: Vec<String>,
    /// Image of the workers; `None` for the operator's own (see own_pod).
    pub worker_image: Option<String>,
    pub worker_service_account: String,
    pub job_ttl_seconds: i32,
    /// Address of /metrics, /healthz and /readyz.
    pub metrics_addr: String,
    /// Lease to elect a leader with (`namespace/name`); `None` runs without election.
    pub leader_lease: Option<(String, String)>,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// The operator's own Pod (namespace, name), when it runs in one.
    pub pod: Option<(String, String)>,
}

pub async fn run(settings: Settings) -> Result<(), ControllerError> {
    let client = super::client("operator").await?;
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());

    let listener = tokio::net::TcpListener::bind(&settings.metrics_addr)
        .await
        .map_err(|source| ControllerError::Metrics { addr: settings.metrics_addr.clone(), source })?;
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| settings.metrics_addr.clone());
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    let router = super::metrics::router(metrics.clone());
    let server_stop = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).with_graceful_shutdown(server_stop.cancelled_owned()).await;
    });

    let pod = settings.pod.as_ref().map(|(ns, n)| (ns.as_str(), n.as_str()));
    let worker = WorkerSettings {
        image: super::own_pod::worker_image(&client, settings.worker_image.as_deref(), pod).await?,
        service_account: settings.worker_service_account.clone(),
        ttl_seconds_after_finished: settings.job_ttl_seconds,
    };
    tracing::info!(image = %worker.image, "workers run this image");

    // Only the leader reconciles. A replica is ready while it takes part
    // in the election (it can read the Lease), leader or standby: a rollout
    // must not wait for a standby to lead.
    let leadership = match &settings.leader_lease {
        None => {
            metrics.ready.store(true, Ordering::Relaxed);
            None
        }
        Some((ns, name)) => {
            let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
            let election = LeaderElection::new(leases, name, &settings.identity, Timing::default(), metrics.ready.clone());
            match election.lead(stop.clone()).await {
                None => return Ok(()),
                Some(l) => Some(l),
            }
        }
    };
    let run_stop = match &leadership {
        None => stop.clone(),
        Some(l) => {
            let both = stop.child_token();
            let (b, lost) = (both.clone(), l.lost.clone());
            tokio::spawn(async move {
                lost.cancelled().await;
                b.cancel();
            });
            both
        }
    };
    let http = reqwest::Client::builder().build().map_err(|e| ControllerError::AlertClient(e.to_string()))?;
    let ctx = Arc::new(Context::new(client.clone(), worker, metrics.clone(), Some(settings.identity.clone()), http));
    let namespaces: Vec<Option<String>> =
        if settings.namespaces.is_empty() { vec![None] } else { settings.namespaces.iter().cloned().map(Some).collect() };
    let mut tasks = Vec::new();
    for ns in namespaces {
        tasks.extend(controllers(&client, ns.as_deref(), ctx.clone(), run_stop.clone()));
    }
    // Reconciles in flight may finish, for a while: kube-runtime's runner
    // never ends if it is stopped while still waiting for its cache's
    // first list (seen when a leader lost its Lease right after starting),
    // and a leader that lost its Lease must not linger.
    let all = futures::future::join_all(tasks);
    let grace = async {
        run_stop.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = all => {}
        _ = grace => tracing::warn!(grace = ?SHUTDOWN_GRACE, "the controllers did not stop within the grace period; exiting anyway"),
    }
    metrics.ready.store(false, Ordering::Relaxed);
    // The controllers have stopped: only now may another replica lead.
    let lost = leadership.as_ref().is_some_and(|l| l.lost.is_cancelled());
    if let Some(l) = leadership {
        l.release().await;
    }
    if lost && !stop.is_cancelled() {
        return Err(ControllerError::Leader("lost the Lease; exiting so that a new leader takes over".into()));
    }
    tracing::info!("stopped");
    Ok(())
}

/// `K`s in namespace `ns`, or in every namespace when `None`.
pub(crate) fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

type Task = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The six controllers for one namespace (or all).
fn controllers(client: &Client, ns: Option<&str>, ctx: Arc<Context>, stop: CancellationToken) -> Vec<Task> {
    let cfg = watcher::Config::default;
    let mut tasks: Vec<Task> = Vec::new();

    // Only the Jobs retl made (they carry the Sync label), not every Job,
    // cached (without what the Sync controller never reads, like their pod
    // templates) by the same watch that then wakes the Sync controller: a
    // reconcile sees its Job at least as new as the event that woke it.
    let (jobs, job_cache) = reflector::store();
    let job_events = watcher(api::<Job>(client, ns), watcher::Config::default().labels(super::job::SYNC_LABEL))
        .default_backoff()
        .modify(super::job::slim)
        .reflect(job_cache)
        .touched_objects();
    let syncs = Controller::new(api::<Sync>(client, ns), cfg()).with_config(limit(SYNC_CONCURRENCY)).owns_stream(job_events);
    let sources = Controller::new(api::<Source>(client, ns), cfg());
    let dests = Controller::new(api::<Destination>(client, ns), cfg());
    let models = Controller::new(api::<Model>(client, ns), cfg());
    let mappings = Controller::new(api::<Mapping>(client, ns), cfg()).with_config(limit(MAPPING_CONCURRENCY));
    // What the Mapping controller reads is cached by the very watches that
    // wake it: a reconcile woken by a Destination turning Ready (or a Sync
    // finishing) sees it so in the cache. (The other controllers' caches
    // are filled by watches of their own, which may lag behind these.)
    let (sync_store, sync_events) = reflected(api::<Sync>(client, ns));
    let (model_store, model_events) = reflected(api::<Model>(client, ns));
    let (dest_store, dest_events) = reflected(api::<Destination>(client, ns));
    let (source_store, source_events) = reflected(api::<Source>(client, ns));
    let caches = Caches {
        mappings: mappings.store(),
        syncs: sync_store,
        jobs,
        models: model_store,
        destinations: dest_store,
        sources: source_store,
        mapping_writes: Default::default(),
        sync_writes: Default::default(),
    };
    tasks.push(Box::pin(super::caches::forget_deleted(caches.syncs.clone(), caches.sync_writes.clone(), stop.clone())));

    let mappings = mappings.owns_stream(sync_events);
    let store = mappings.store();
    tasks.push(Box::pin(super::caches::forget_deleted(store.clone(), caches.mapping_writes.clone(), stop.clone())));
    let by_model = store.clone();
    let by_source = store.clone();
    let mappings = mappings
        .watches_stream(model_events, move |m: Model| referrers(&by_model, &m, |x: &Mapping, n| x.spec.model_ref.name == n))
        .watches_stream(dest_events, move |d: Destination| referrers(&store, &d, |x: &Mapping, n| x.spec.destination_ref.name == n))
        // A Mapping names its Source only through its Model: a Source's
        // change looks again at every Mapping of its namespace.
        .watches_stream(source_events, move |s: Source| referrers(&by_source, &s, |_: &Mapping, _| true));
    let with = caches.clone();
    let reconcile = move |m, ctx| mapping::reconcile(m, ctx, with.clone());
    tasks.push(Box::pin(drive(mappings, reconcile, ctx.clone(), "mapping", stop.clone())));

    tasks.push(Box::pin(gauge_running(syncs.store(), ctx.clone(), stop.clone())));
    let reconcile = move |s, ctx| sync::reconcile(s, ctx, caches.clone());
    tasks.push(Box::pin(drive(syncs, reconcile, ctx.clone(), "sync", stop.clone())));

    let store = sources.store();
    // Secrets are watched for their names only (metadata): a change of one
    // re-checks what refers to it; values are read with a GET when needed.
    let sources = sources.watches(secret_metadata(client, ns), cfg(), move |s| {
        referrers(&store, &s, |x: &Source, n| crate::warehouse::secret_refs(&x.spec).iter().any(|r| r.name == n))
    });
    tasks.push(Box::pin(drive(sources, source::reconcile, ctx.clone(), "source", stop.clone())));

    let store = dests.store();
    let dests = dests.watches(secret_metadata(client, ns), cfg(), move |s| {
        referrers(&store, &s, |x: &Destination, n| crate::destination::secret_refs(&x.spec).iter().any(|r| r.name == n))
    });
    tasks.push(Box::pin(drive(dests, destination::reconcile, ctx.clone(), "destination", stop.clone())));

    let store = models.store();
    let models = models
        .watches(api::<Source>(client, ns), cfg(), move |s: Source| referrers(&store, &s, |x: &Model, n| x.spec.source_ref.name == n));
    tasks.push(Box::pin(drive(models, model::reconcile, ctx.clone(), "model", stop.clone())));

    // A finished Sync is news for every SyncAlert of its namespace (each
    // picks the Mappings it selects); a Secret's change re-checks the
    // SyncAlerts that use it.
    let alerts = Controller::new(api::<SyncAlert>(client, ns), cfg());
    let (by_sync, by_secret) = (alerts.store(), alerts.store());
    let alerts = alerts
        .watches(api::<Sync>(client, ns), cfg(), move |s: Sync| {
            let finished = s.status.as_ref().and_then(|st| st.phase).is_some_and(|p| p.is_finished());
            if finished { referrers(&by_sync, &s, |_: &SyncAlert, _| true) } else { Vec::new() }
        })
        .watches(secret_metadata(client, ns), cfg(), move |s| {
            referrers(&by_secret, &s, |x: &SyncAlert, n| crate::alert::channels::secret_refs(&x.spec).iter().any(|r| r.name == n))
        });
    tasks.push(Box::pin(drive(alerts, sync_alert::reconcile, ctx, "syncalert", stop)));
    tasks
}

/// Secrets as metadata only (kube asks the API server for
/// PartialObjectMetadata): their values never reach the watch cache.
fn secret_metadata(client: &Client, ns: Option<&str>) -> Api<PartialObjectMeta<Secret>> {
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Objects in the store, in `target`'s namespace, that refer to it by name.
/// A watch of every `K` in scope, cached in the returned store before each
/// change is passed on.
fn reflected<K>(api: Api<K>) -> (reflector::Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + std::marker::Sync + 'static,
{
    let (store, writer) = reflector::store();
    (store, watcher(api, watcher::Config::default()).default_backoff().reflect(writer).touched_objects())
}

fn referrers<K, T>(store: &kube::runtime::reflector::Store<K>, target: &T, refers_to: impl Fn(&K, &str) -> bool) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    T: Resource,
{
    let ns = target.meta().namespace.clone();
    let name = target.meta().name.clone().unwrap_or_default();
    store.state().iter().filter(|o| o.meta().namespace == ns && refers_to(o, &name)).map(|o| ObjectRef::from_obj(o.as_ref())).collect()
}

async fn drive<K, F, Fut>(controller: Controller<K>, reconcile: F, ctx: Arc<Context>, name: &'static str, stop: CancellationToken)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + std::marker::Sync + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, ControllerError>> + Send + 'static,
{
    let error_policy = move |obj: Arc<K>, err: &ControllerError, ctx: Arc<Context>| {
        let (namespace, object) = (obj.meta().namespace.clone().unwrap_or_default(), obj.meta().name.clone().unwrap_or_default());
        tracing::warn!(controller = name, namespace, kind = %K::kind(&()), name = object, error = %err, "reconcile failed; retrying in 30s");
        ctx.metrics.reconcile_errors.get_or_create(&ControllerLabels { controller: name.into() }).inc();
        Action::requeue(Duration::from_secs(30))
    };
    controller
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| {
            // Each reconcile's outcome, once, naming its object (a failed
            // one was logged by the error policy, with its error).
            match outcome {
                Ok((obj, action)) => {
                    let namespace = obj.namespace.as_deref().unwrap_or_default();
                    tracing::info!(controller = name, namespace, kind = %K::kind(&()), name = %obj.name, next = ?action, "reconciled");
                }
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => tracing::warn!(controller = name, error = %e, "the controller's watch or queue failed; it retries"),
            }
            futures::future::ready(())
        })
        .await;
}

/// Keeps `retl_running_syncs` (the queue of sync work: Syncs pending or in
/// progress) current from the Sync controller's cache.
async fn gauge_running(store: kube::runtime::reflector::Store<Sync>, ctx: Arc<Context>, stop: CancellationToken) {
    loop {
        let running = store.state().iter().filter(|s| !s.status.as_ref().and_then(|st| st.phase).is_some_and(|p| p.is_finished())).count();
        ctx.metrics.running_syncs.set(running as i64);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

fn spawn_signal_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
}
