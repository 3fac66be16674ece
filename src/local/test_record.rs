//! `retl test -f DIR --mapping M [--key K]`: one row of a Mapping's model
//! mapped and sent to its destination, with the request and the reply
//! printed, and no sync state changed (see [`crate::engine::test_record`]).
//! `kubectl retl test-record` finds the same objects in a cluster and
//! prints the same [`TestReport`].

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{LocalError, Manifests, resolve};
use crate::api::{Action, DestinationSpec, MappingSpec, ModelSpec};
use crate::destination::exchange::Exchange;
use crate::engine::test_record::{Outcome, TestOutcome, TestRecord};
use crate::warehouse::Warehouse;

/// A test record and what it was sent through.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    pub namespace: String,
    pub mapping: String,
    pub model: String,
    pub destination: String,
    /// The Destination's type (`http`, `segment`, `file`, `postgres`, `mysql`).
    pub destination_type: String,
    pub action: String,
    #[serde(flatten)]
    pub outcome: TestOutcome,
}

impl TestReport {
    /// Whether the destination accepted the record (else the command exits 1).
    pub fn accepted(&self) -> bool {
        self.outcome.result.outcome == Outcome::Accepted
    }
}

/// What `sent` needs besides a warehouse and a destination.
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub mapping_name: &'a str,
    pub mapping_uid: &'a str,
    pub mapping: &'a MappingSpec,
    pub model: &'a ModelSpec,
    pub destination: &'a DestinationSpec,
    pub action: &'a Action,
}

/// Tests one record of `s` and names what it went through.
pub async fn sent(
    s: &Subject<'_>,
    key: Option<&str>,
    wh: &dyn Warehouse,
    dest: &dyn crate::destination::Destination,
) -> Result<TestReport, crate::engine::EngineError> {
    let test = TestRecord { mapping_uid: s.mapping_uid, mapping: s.mapping, model: s.model, action: s.action, key };
    let outcome = test.run(wh, dest).await?;
    let destination_type = serde_json::to_value(s.destination.type_).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    Ok(TestReport {
        namespace: s.namespace.to_string(),
        mapping: s.mapping_name.to_string(),
        model: s.mapping.model_ref.name.clone(),
        destination: s.mapping.destination_ref.name.clone(),
        destination_type,
        action: s.action.name.clone(),
        outcome,
    })
}

/// Tests one record of Mapping `mapping` under `dir`.
pub async fn test(dir: &Path, mapping: &str, key: Option<&str>) -> Result<TestReport, LocalError> {
    let m = Manifests::load(dir)?;
    let Some(((ns, _), loaded)) = m.mappings.iter().find(|((_, n), _)| n == mapping) else {
        let names: Vec<&str> = m.mappings.keys().map(|(_, n)| n.as_str()).collect();
        return Err(LocalError::Usage(format!(
            "--mapping {mapping}: there is no Mapping {mapping:?} in {}; its Mappings: {}",
            dir.display(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        )));
    };
    let r = resolve::resolve(&m, ns, loaded)?;
    let wh = crate::warehouse::connect(r.source_name(), &r.source.object.spec, &r.secrets, &r.source_dir()).await?;
    let dest = crate::destination::build(r.destination_name(), &r.destination.object.spec, &r.secrets, &r.destination.dir)?;
    let uid = r.mapping_uid();
    let subject = Subject {
        namespace: ns,
        mapping_name: mapping,
        mapping_uid: &uid,
        mapping: &loaded.object.spec,
        model: &r.model.object.spec,
        destination: &r.destination.object.spec,
        action: &r.action,
    };
    sent(&subject, key, wh.as_ref(), dest.as_ref()).await.map_err(|e| LocalError::Usage(format!("Mapping {mapping}: {e}")))
}

/// The report for a person: what was read and mapped, each request and
/// reply, and the outcome with what to do about it.
pub fn text(r: &TestReport) -> String {
    let o = &r.outcome;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Test record of Mapping {}/{}: key {:?} of Model {}, to Destination {} ({}), action {}",
        r.namespace, r.mapping, o.key, r.model, r.destination, r.destination_type, r.action
    );
    if let Some(row) = &o.row {
        let _ = writeln!(out, "Row:     {}", serde_json::Value::Object(row.clone()));
    }
    if let Some(payload) = &o.payload {
        let _ = writeln!(out, "Payload: {payload}");
    }
    let many = o.exchanges.len() > 1;
    for (i, e) in o.exchanges.iter().enumerate() {
        let n = if many { format!(" {}", i + 1) } else { String::new() };
        exchange_text(&mut out, &n, e);
    }
    let v = &o.result;
    let said = match (&v.code, &v.message) {
        (Some(code), Some(message)) => format!(" ({code}): {message}"),
        _ => String::new(),
    };
    let _ = writeln!(out);
    let _ = match v.outcome {
        Outcome::Accepted => writeln!(out, "Accepted: the destination took the record."),
        Outcome::Rejected => writeln!(out, "Rejected{said}"),
        Outcome::Unavailable => writeln!(out, "Not delivered{said}"),
    };
    if let Some(action) = &v.recommended_action {
        let _ = writeln!(out, "  Recommended action: {action}");
    }
    let _ = writeln!(out, "No sync state changed: the next sync finds this row as it would have without this test.");
    out
}

fn exchange_text(out: &mut String, n: &str, e: &Exchange) {
    let q = &e.request;
    let _ = writeln!(out, "\nRequest{n}: {} {}", q.method, q.target);
    for h in &q.headers {
        let _ = writeln!(out, "  {}: {}", h.name, h.value);
    }
    body_text(out, &q.body);
    match (&e.reply, &e.error) {
        (Some(reply), _) => {
            let _ = writeln!(out, "Reply{n}: {}", reply.status);
            body_text(out, &reply.body);
        }
        (None, Some(error)) => {
            let _ = writeln!(out, "Reply{n}: none ({error})");
        }
        (None, None) => {
            let _ = writeln!(out, "Reply{n}: none");
        }
    }
}

/// A body indented under its request or reply: JSON pretty-printed.
fn body_text(out: &mut String, body: &serde_json::Value) {
    let text = match body {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}
