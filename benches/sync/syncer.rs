//! One sync of the benchmark's model, in a child process that reports its
//! time and its own peak RSS.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use retl::api::{DestinationSpec, MappingSpec, ModelSpec, SecretKeyRef, ServerSource, SourceSpec, SourceType, SyncTrigger};
use retl::engine::{Quiet, SyncContext, run_sync};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{BATCH, Error, IN_FLIGHT};

/// What a child reports.
pub struct SyncResult {
    pub secs: f64,
    pub sent: u64,
    pub rss_mb: u64,
}

/// Runs one sync of `table` as Mapping `uid` in a child process.
pub fn spawn(url: &str, table: &str, uid: &str, sink: &str) -> Result<SyncResult, Error> {
    let out = Command::new(std::env::current_exe()?).args(["--child-sync", url, table, uid, sink]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("the sync child failed: {}{}", text, String::from_utf8_lossy(&out.stderr)))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    Ok(SyncResult {
        secs: v["secs"].as_f64().unwrap_or_default(),
        sent: v["sent"].as_u64().unwrap_or_default(),
        rss_mb: v["rss_kb"].as_u64().unwrap_or_default() / 1024,
    })
}

/// The child: connect, sync, print `RESULT {json}`.
pub async fn child(args: &[String]) -> Result<(), Error> {
    let [url, table, uid, sink] = args else { return Err("usage: --child-sync URL TABLE UID SINK".into()) };
    let mut secrets = retl::warehouse::SecretValues::new();
    secrets.insert(("bench".into(), "url".into()), url.clone());
    // A mysql:// URL runs the same sync on MySQL/MariaDB (a manual check:
    // the benchmark itself seeds and measures PostgreSQL).
    let server = ServerSource { url_secret_ref: Some(SecretKeyRef { name: "bench".into(), key: "url".into() }), ..Default::default() };
    let mysql = url.starts_with("mysql://");
    let source = SourceSpec {
        type_: if mysql { SourceType::Mysql } else { SourceType::Postgres },
        sqlite: None,
        postgres: (!mysql).then(|| server.clone()),
        mysql: mysql.then_some(server),
        state_schema: "retl_bench_state".into(),
    };
    let warehouse = retl::warehouse::connect("bench", &source, &secrets, Path::new(".")).await?;
    let destination: DestinationSpec = serde_json::from_value(json!({
        "type": "http",
        "http": {"url": sink, "batchSize": BATCH, "maxInFlight": IN_FLIGHT, "timeoutSeconds": 60},
        "actions": [action()],
    }))?;
    let destination = retl::destination::build("sink", &destination, &Default::default(), Path::new("."))?;
    let mapping: MappingSpec = serde_json::from_value(json!({
        "modelRef": {"name": "users"},
        "destinationRef": {"name": "sink"},
        "action": "identify",
        "send": ["added", "updated", "deleted"],
        "fields": [
            {"to": "userId", "from": "id"},
            {"to": "email", "from": "email"},
            {"to": "name", "from": "name"},
            {"to": "plan", "from": "plan"},
            {"to": "mrr", "from": "mrr"},
            {"to": "createdAt", "from": "created_at"},
            {"to": "attrs", "from": "attrs"},
        ],
    }))?;
    let ctx = SyncContext {
        namespace: "bench".into(),
        sync_name: format!("{uid}-{}", jiff::Timestamp::now().as_millisecond()),
        mapping_name: "users".into(),
        mapping_uid: uid.clone(),
        mapping,
        model_name: "users".into(),
        model: ModelSpec {
            source_ref: retl::api::ObjectRef { name: "bench".into() },
            query: format!("SELECT id, email, name, plan, mrr, created_at, attrs FROM {table}"),
            primary_key: "id".into(),
        },
        destination_name: "sink".into(),
        action: serde_json::from_value(action())?,
        trigger: SyncTrigger::Manual,
        replay_of: None,
        lock_wait: retl::engine::DEFAULT_LOCK_WAIT,
        rate_share: Default::default(),
    };
    let started = Instant::now();
    let report = run_sync(&ctx, warehouse.as_ref(), destination, &Quiet, &CancellationToken::new()).await;
    let secs = started.elapsed().as_secs_f64();
    if report.loaded.failed > 0 || report.message.is_some() {
        return Err(format!("the sync did not succeed: {:?} {:?}", report.phase, report.message).into());
    }
    println!("RESULT {}", json!({"secs": secs, "sent": report.loaded.succeeded, "rss_kb": peak_rss_kb()}));
    Ok(())
}

fn action() -> serde_json::Value {
    json!({
        "name": "identify",
        "fields": [
            {"name": "userId", "type": "string", "required": true},
            {"name": "email", "type": "string", "required": true},
            {"name": "name", "type": "string"},
            {"name": "plan", "type": "string"},
            {"name": "mrr", "type": "number"},
            {"name": "createdAt", "type": "datetime"},
            {"name": "attrs", "type": "object"},
        ],
    })
}

/// Peak resident set size of this process (`VmHWM`), in KiB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap_or(0)
}
