//! One sync of the benchmark's model, in a child process that reports its
//! time and its own peak RSS.

use std::path::Path;
use std::time::Instant;

use retl::api::{DestinationSpec, MappingSpec, ModelSpec, SecretKeyRef, ServerSource, SourceSpec, SourceType, SqliteSource, SyncTrigger};
use retl::engine::{Quiet, SyncContext, run_sync};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::wh::{Kind, STATE_SCHEMA};
use super::{Error, IN_FLIGHT};

/// What a child reports.
pub struct SyncResult {
    pub secs: f64,
    pub sent: u64,
    pub rss_kb: u64,
}

/// Runs one sync of `table` at `location` (a server's URL, or `sqlite:PATH`)
/// as Mapping `uid`, in batches of `batch`, in a child process.
pub fn spawn(location: &str, table: &str, uid: &str, sink: &str, batch: u32) -> Result<SyncResult, Error> {
    let v = super::proc::run_child(&["--child-sync", location, table, uid, sink, &batch.to_string()])?;
    Ok(SyncResult {
        secs: v["secs"].as_f64().unwrap_or_default(),
        sent: v["sent"].as_u64().unwrap_or_default(),
        rss_kb: v["rss_kb"].as_u64().unwrap_or_default(),
    })
}

/// The child: connect, sync, print `RESULT {json}`.
pub async fn child(args: &[String]) -> Result<(), Error> {
    let [location, table, uid, sink, batch] = args else { return Err("usage: --child-sync LOCATION TABLE UID SINK BATCH".into()) };
    let batch: u32 = batch.parse()?;
    let mut secrets = retl::warehouse::SecretValues::new();
    secrets.insert(("bench".into(), "url".into()), location.clone());
    let server = ServerSource { url_secret_ref: Some(SecretKeyRef { name: "bench".into(), key: "url".into() }), ..Default::default() };
    let kind = Kind::of_url(location);
    let source = SourceSpec {
        type_: match kind {
            Kind::Postgres => SourceType::Postgres,
            Kind::Mysql => SourceType::Mysql,
            Kind::Sqlite => SourceType::Sqlite,
        },
        sqlite: (kind == Kind::Sqlite).then(|| SqliteSource { path: location.trim_start_matches("sqlite:").to_string(), seed_file: None }),
        postgres: (kind == Kind::Postgres).then(|| server.clone()),
        mysql: (kind == Kind::Mysql).then_some(server),
        state_schema: STATE_SCHEMA.into(),
    };
    let warehouse = retl::warehouse::connect("bench", &source, &secrets, Path::new(".")).await?;
    let destination: DestinationSpec = serde_json::from_value(json!({
        "type": "http",
        "http": {"url": sink, "batchSize": batch, "maxInFlight": IN_FLIGHT, "timeoutSeconds": 60},
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
    println!("RESULT {}", json!({"secs": secs, "sent": report.loaded.succeeded, "rss_kb": super::proc::peak_rss_kb()}));
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
