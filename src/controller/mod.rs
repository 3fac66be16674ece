//! The operator's controllers: one reconciler per kind. They know no SQL and
//! send no records: warehouses and destinations are the worker's business.

use reqwest::header::{HeaderValue, USER_AGENT};

/// A Kubernetes client (in-cluster, or from KUBECONFIG) whose requests say
/// which part of retl makes them (`retl-operator/0.1.0`, `retl-worker/0.1.0`),
/// so API server audit logs tell them apart.
pub async fn client(component: &str) -> Result<kube::Client, error::ControllerError> {
    crate::install_crypto_provider();
    let mut config = kube::Config::infer().await.map_err(|e| error::ControllerError::Config(e.to_string()))?;
    let agent = format!("retl-{component}/{}", env!("CARGO_PKG_VERSION"));
    if let Ok(value) = HeaderValue::from_str(&agent) {
        config.headers.push((USER_AGENT, value));
    }
    kube::Client::try_from(config).map_err(error::ControllerError::Client)
}

pub mod admission;
pub mod alert_gather;
pub mod caches;
pub mod context;
pub mod destination;
pub mod error;
pub mod events;
pub mod job;
pub mod leader;
pub mod mapping;
pub mod mapping_plan;
pub mod metrics;
pub mod model;
pub mod naming;
pub mod own_pod;
pub mod request_gate;
pub mod run;
pub mod secrets;
pub mod source;
pub mod status;
pub mod sync;
pub mod sync_alert;
pub mod sync_plan;
pub mod worker_start;
