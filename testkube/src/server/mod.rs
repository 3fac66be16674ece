//! A faithful-enough in-memory Kubernetes API server (plain HTTP, no auth).

pub mod audit;
mod builtins;
mod crd;
mod deletion;
mod discovery;
pub mod errors;
mod events;
mod gc;
mod http;
pub mod managed_fields;
mod metadata;
mod objects;
mod openapi;
pub mod patch;
mod protobuf;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod store;
pub mod table;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::State;
use tokio::sync::{Notify, broadcast};

/// Tunables; the defaults suit tests.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (kube-apiserver: about a minute).
    pub bookmark_interval: Duration,
    /// How many changes are kept for watches that resume from a resourceVersion; older ones get 410.
    pub history_limit: usize,
    /// Garbage collector / namespace controller tick.
    pub gc_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { bookmark_interval: Duration::from_secs(5), history_limit: 100_000, gc_interval: Duration::from_millis(100) }
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub config: ServerConfig,
    pub gc_wake: Notify,
    pub addr: SocketAddr,
    pub audit: Mutex<Vec<audit::AuditEntry>>,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running test API server, on its own thread and tokio runtime (so tests
/// may block on `kubectl` without starving it). Dropping it stops it.
pub struct TestApiServer {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the test API server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the test API server thread died while starting")]
    Died,
}

impl TestApiServer {
    /// Starts a server on an ephemeral port of 127.0.0.1 with the default config.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_blocking(ServerConfig::default())
    }

    pub async fn start_with(config: ServerConfig) -> Result<Self, StartError> {
        Self::start_blocking(config)
    }

    /// Starts the server without needing an async context.
    pub fn start_blocking(config: ServerConfig) -> Result<Self, StartError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("testkube-apiserver".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let started = rt.block_on(async { Self::serve(config).await });
            match started {
                Ok(shared) => {
                    let _ = ready_tx.send(Ok((shared, rt.handle().clone())));
                    let _ = stop_rx.recv();
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
            rt.shutdown_background();
        })?;
        let (shared, handle) = ready_rx.recv().map_err(|_| StartError::Died)??;
        Ok(TestApiServer { shared, handle, stop: Some(stop_tx), thread: Some(thread) })
    }

    async fn serve(config: ServerConfig) -> std::io::Result<Arc<Shared>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, _) = broadcast::channel(16_384);
        let mut state = State::new(config.history_limit, tx);
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let o = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let rt = state.registry.get("", "v1", "namespaces").expect("namespaces");
            let opts = objects::WriteOpts {
                manager: "kube-apiserver".into(),
                dry_run: false,
                field_validation: objects::FieldValidation::Ignore,
                force: false,
            };
            let _ = objects::create(&mut state, &rt, None, o, &opts);
        }
        let shared = Arc::new(Shared { state: Mutex::new(state), config, gc_wake: Notify::new(), addr, audit: Mutex::new(Vec::new()) });
        let app = http::router(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let gc_shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let changed = {
                    let mut st = gc_shared.lock();
                    gc::pass(&mut st)
                };
                if !changed {
                    tokio::select! {
                        _ = gc_shared.gc_wake.notified() => {}
                        _ = tokio::time::sleep(gc_shared.config.gc_interval) => {}
                    }
                }
            }
        });
        Ok(shared)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The server's own runtime, for background helpers (the test kubelet runs there).
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }

    /// A kube-rs client for this server. Must be called inside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("server url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Every API call so far (see [`audit::AuditEntry`]).
    pub fn audit(&self) -> Vec<audit::AuditEntry> {
        self.shared.audit.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the change history (like an etcd compaction): watches resuming from older versions get 410 Gone.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
