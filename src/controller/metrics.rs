//! Prometheus metrics (prometheus-client) and the health endpoints, served
//! on one HTTP port: /metrics, /healthz, /readyz.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    pub namespace: String,
    pub mapping: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    pub syncs: Family<SyncLabels, Counter>,
    pub records: Family<RecordLabels, Counter>,
    pub sync_duration: Histogram,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub running_syncs: Gauge,
    /// What /readyz answers (shared with the leader election).
    pub ready: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("retl");
        let syncs = Family::<SyncLabels, Counter>::default();
        let records = Family::<RecordLabels, Counter>::default();
        let sync_duration = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let running_syncs = Gauge::default();
        registry.register("syncs", "Finished syncs by mapping and outcome", syncs.clone());
        registry.register("records", "Records of finished syncs by outcome (succeeded, failed, skipped)", records.clone());
        registry.register("sync_duration_seconds", "Duration of finished syncs", sync_duration.clone());
        registry.register("reconcile_errors", "Reconciles that failed, by controller", reconcile_errors.clone());
        registry.register("reconciles", "Reconciles, by controller (the work queue's throughput)", reconciles.clone());
        registry.register("running_syncs", "Syncs pending or in progress", running_syncs.clone());
        Metrics {
            registry,
            syncs,
            records,
            sync_duration,
            reconcile_errors,
            reconciles,
            running_syncs,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The HTTP server of /metrics, /healthz and /readyz.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(metrics)
}

async fn serve_metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
}

async fn ready(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
}
