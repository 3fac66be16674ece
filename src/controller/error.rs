//! Errors of the controllers: API calls that failed. Everything a user can
//! fix shows as a condition instead, never as a reconcile error.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("{action} {kind} {name}: {source}")]
    Api { action: &'static str, kind: &'static str, name: String, source: kube::Error },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics { addr: String, source: std::io::Error },
    #[error("cannot build a Kubernetes client (is KUBECONFIG or the in-cluster service account set up?): {0}")]
    Client(kube::Error),
    #[error("cannot find a Kubernetes configuration (in-cluster service account or KUBECONFIG): {0}")]
    Config(String),
    #[error(
        "cannot read the operator's own Pod {pod} to learn the workers' image ({detail}); set RETL_WORKER_IMAGE, or let the operator get its Pod (deploy/rbac.yaml)"
    )]
    OwnPod { pod: String, detail: String },
    #[error("cannot build the HTTP client that alerts are posted with: {0}")]
    AlertClient(String),
    #[error("leader election: {0}")]
    Leader(String),
}

impl ControllerError {
    pub fn api(action: &'static str, kind: &'static str, name: &str) -> impl FnOnce(kube::Error) -> ControllerError {
        let name = name.to_string();
        move |source| ControllerError::Api { action, kind, name, source }
    }
}
