//! SyncAlerts in a local run: the same ledger, messages and channels as the
//! operator's. The alert book (a SyncAlert's status in a cluster) is a JSON
//! file under `DIR/.retl/alerts/`, so that throttling, Recovered notices and
//! at-most-once delivery hold across runs; the Events channel is the
//! run's own output.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;
use kube::core::SelectorExt;

use super::LocalError;
use super::manifests::{Loaded, Manifests};
use super::resolve::secret_value;
use crate::alert::book::{self, EventChannel};
use crate::alert::channels::{self, Targets};
use crate::alert::delivery::RetryPolicy;
use crate::alert::ledger::{Finished, Notice, Policy};
use crate::alert::message::SyncSummary;
use crate::api::{Mapping, SyncAlertSpec, SyncAlertStatus};
use crate::engine::SyncReport;

/// The SyncAlerts of a directory, checked and ready to deliver.
pub struct LocalAlerts {
    alerts: Vec<Alert>,
    http: reqwest::Client,
    /// What the Events channel and failed deliveries said, for the output.
    lines: Mutex<Vec<String>>,
}

struct Alert {
    namespace: String,
    name: String,
    spec: SyncAlertSpec,
    policy: Policy,
    targets: Targets,
    book: PathBuf,
}

/// A finished local sync, as alerting needs it.
pub struct LocalSync<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub mapping: &'a Loaded<Mapping>,
    pub report: &'a SyncReport,
}

impl LocalAlerts {
    /// Checks every SyncAlert under `dir`; the error says what to fix.
    pub fn load(m: &Manifests, dir: &Path) -> Result<LocalAlerts, LocalError> {
        let mut alerts = Vec::new();
        for ((ns, name), loaded) in &m.alerts {
            let spec = loaded.object.spec.clone();
            let bad = |message: String| LocalError::Alert { name: name.clone(), message };
            let policy = Policy::of(&spec).map_err(bad)?;
            let mut values = crate::warehouse::SecretValues::new();
            for r in channels::secret_refs(&spec) {
                let v = secret_value(m, ns, &r)?;
                values.insert((r.name.clone(), r.key.clone()), v);
            }
            let targets = channels::resolve(&spec, &values).map_err(|p| bad(p.join("; ")))?;
            let book = dir.join(".retl").join("alerts").join(format!("{ns}.{name}.json"));
            alerts.push(Alert { namespace: ns.clone(), name: name.clone(), spec, policy, targets, book });
        }
        crate::install_crypto_provider();
        let http =
            reqwest::Client::builder().build().map_err(|e| LocalError::Usage(format!("cannot build the HTTP client of alerts: {e}")))?;
        Ok(LocalAlerts { alerts, http, lines: Mutex::new(Vec::new()) })
    }

    /// Alerts about one finished sync, on every SyncAlert that selects its
    /// Mapping. Delivery problems are reported, never fatal: a sync's
    /// result does not depend on its alerts.
    pub async fn after(&self, m: &Manifests, dir: &Path, sync: &LocalSync<'_>, started_run: Timestamp) {
        let Some(completed) = sync.report.completed else { return };
        let labels = sync.mapping.object.metadata.labels.clone().unwrap_or_default();
        let mapping = sync.mapping.object.metadata.name.clone().unwrap_or_default();
        let finished = Finished { sync: sync.name.to_string(), phase: sync.report.phase, completed };
        let summary = summary(m, dir, sync);
        for a in self.alerts.iter().filter(|a| a.namespace == sync.namespace && a.policy.selector.matches(&labels)) {
            if let Err(e) = self.deliver(a, &mapping, &finished, &summary, started_run).await {
                self.say(format!("SyncAlert {}: {e}", a.name));
            }
        }
    }

    async fn deliver(&self, a: &Alert, mapping: &str, f: &Finished, s: &SyncSummary, started_run: Timestamp) -> Result<(), String> {
        let mut status = read_book(&a.book)?;
        book::describe(&a.spec, &mut status);
        book::abandon_unconfirmed(&mut status);
        let Some(notice) = book::claim(&mut status, &a.spec, &a.policy, mapping, started_run, f) else {
            return write_book(&a.book, &status);
        };
        write_book(&a.book, &status)?;
        let events = Terminal { alerts: self, alert: &a.name };
        let id = format!("{}/{}", a.namespace, a.name);
        book::deliver(&mut status, mapping, &id, &notice, s, &a.targets, &self.http, &RetryPolicy::default(), &events).await;
        write_book(&a.book, &status)
    }

    /// What the alerts said, in order.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn say(&self, line: String) {
        if let Ok(mut l) = self.lines.lock() {
            l.push(line);
        }
    }
}

/// The Events channel of a local run: lines in its output.
struct Terminal<'a> {
    alerts: &'a LocalAlerts,
    alert: &'a str,
}

#[async_trait]
impl EventChannel for Terminal<'_> {
    async fn alert(&self, n: &Notice, _s: &SyncSummary, note: &str) {
        self.alerts.say(format!("SyncAlert {}: {}: {note}", self.alert, n.outcome));
    }

    async fn not_delivered(&self, _n: &Notice, _s: &SyncSummary, reason: &str, message: &str) {
        self.alerts.say(format!("SyncAlert {}: {reason}: {message}", self.alert));
    }
}

fn read_book(path: &Path) -> Result<SyncAlertStatus, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} cannot be read ({e}); delete it to start alerting afresh", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SyncAlertStatus::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Written whole to a temporary file, then renamed: a run killed while
/// writing leaves the old book, never half of one.
fn write_book(path: &Path, status: &SyncAlertStatus) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(status).map_err(|e| format!("cannot encode the alert book: {e}"))?;
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// What an alert says about a local sync.
fn summary(m: &Manifests, dir: &Path, sync: &LocalSync<'_>) -> SyncSummary {
    let spec = &sync.mapping.object.spec;
    let mapping = sync.mapping.object.metadata.name.clone().unwrap_or_default();
    let source = m.models.get(&(sync.namespace.to_string(), spec.model_ref.name.clone())).map(|x| x.object.spec.source_ref.name.clone());
    let r = sync.report;
    SyncSummary {
        namespace: sync.namespace.to_string(),
        sync: sync.name.to_string(),
        mapping: mapping.clone(),
        model: spec.model_ref.name.clone(),
        source: source.unwrap_or_else(|| "(unknown)".into()),
        destination: spec.destination_ref.name.clone(),
        action: spec.action.clone(),
        phase: r.phase,
        reason: r.reason.clone(),
        message: r.message.clone(),
        started: Some(r.started),
        duration: r.duration(),
        extracted: r.extracted.clone(),
        loaded: r.loaded.clone(),
        errors: r.errors.clone(),
        see_more: vec![format!("retl history -f {} --mapping {mapping} --details", dir.display())],
    }
}
