//! What the API server's audit log says. testcluster's audit policy logs
//! every request of a ServiceAccount at the Metadata level (and nothing of
//! the control plane's own components), so it holds every request the
//! operator made, each once per stage (a watch: ResponseStarted, then
//! ResponseComplete when it ends), with microsecond timestamps taken by the
//! API server itself.
//!
//! - A Sync's creation time is the `stageTimestamp` of the operator's
//!   successful `create syncs` at ResponseComplete: the moment the API
//!   server answered 201 (the object is in etcd and watchers see it).
//! - Its tick is in its name, `<mapping>-<unix minutes of the tick>`.
//! - A Sync has finished when its worker's last status write was answered.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use jiff::Timestamp;
use serde_json::Value;

use crate::Error;

/// A scheduled Sync the operator created.
#[derive(Clone, Debug)]
pub struct Created {
    pub name: String,
    pub tick: Timestamp,
    pub at: Timestamp,
}

/// One request of the operator (all stages of it folded into one).
#[derive(Clone, Debug)]
pub struct Request {
    pub received: Timestamp,
    pub verb: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// The response code, once the request completed.
    pub code: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Audit {
    pub created: Vec<Created>,
    /// The answer to each Sync's last status write by its worker.
    pub finished: HashMap<String, Timestamp>,
    pub requests: Vec<Request>,
}

fn time(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

/// The tick a scheduled Sync is named after.
fn tick_of(name: &str) -> Option<Timestamp> {
    let minutes: i64 = name.rsplit('-').next()?.parse().ok()?;
    Timestamp::from_second(minutes.checked_mul(60)?).ok()
}

/// Reads the audit log: the operator is `operator_user`, the workers `worker_user`.
pub fn read(path: &Path, operator_user: &str, worker_user: &str) -> Result<Audit, Error> {
    let file = std::fs::File::open(path)?;
    let mut audit = Audit::default();
    let mut requests: HashMap<String, Request> = HashMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Ok(e) = serde_json::from_str::<Value>(&line) else { continue };
        let user = e["user"]["username"].as_str().unwrap_or_default();
        let complete = e["stage"] == "ResponseComplete";
        let code = e["responseStatus"]["code"].as_i64();
        let resource = e["objectRef"]["resource"].as_str().unwrap_or_default();
        let subresource = e["objectRef"]["subresource"].as_str().unwrap_or_default();
        let verb = e["verb"].as_str().unwrap_or_default();
        let name = e["objectRef"]["name"].as_str().unwrap_or_default();
        if user == operator_user {
            let id = e["auditID"].as_str().unwrap_or_default().to_string();
            let Some(received) = time(&e["requestReceivedTimestamp"]) else { continue };
            let r = requests.entry(id).or_insert_with(|| Request {
                received,
                verb: verb.to_string(),
                resource: if subresource.is_empty() { resource.to_string() } else { format!("{resource}/{subresource}") },
                code: None,
            });
            if complete {
                r.code = code;
            }
            if complete
                && code == Some(201)
                && verb == "create"
                && resource == "syncs"
                && subresource.is_empty()
                && let (Some(tick), Some(at)) = (tick_of(name), time(&e["stageTimestamp"]))
            {
                audit.created.push(Created { name: name.to_string(), tick, at });
            }
        } else if user == worker_user
            && complete
            && code == Some(200)
            && verb == "patch"
            && resource == "syncs"
            && subresource == "status"
            && let Some(at) = time(&e["stageTimestamp"])
        {
            let last = audit.finished.entry(name.to_string()).or_insert(at);
            *last = (*last).max(at);
        }
    }
    audit.requests = requests.into_values().collect();
    audit.requests.sort_by_key(|r| r.received);
    Ok(audit)
}

/// p50, p99 and max of `values` (nearest rank), or None when empty.
pub fn percentiles(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (!v.is_empty()).then(|| (at(0.50), at(0.99), v[v.len() - 1]))
}
