pub mod api;
pub mod controller;
pub mod warehouse;
pub mod worker;
pub mod destination;
pub mod engine;
pub mod fieldmap;
pub mod local;
pub mod telemetry;

/// Installs rustls' ring crypto provider as the process default (once); the
/// HTTP client and the Kubernetes client both use it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
