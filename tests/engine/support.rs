//! A test environment: a warehouse fixture with a `users` table, a real HTTP
//! sink as the destination, and helpers to run syncs through the engine.

use std::path::Path;
use std::sync::Arc;

use retl::api::{Action, ActionField, FieldMapping, FieldType, HttpDestination, MappingSpec, ModelSpec, ObjectRef, SyncPhase, SyncTrigger};
use retl::destination::Destination;
use retl::engine::{Quiet, SyncContext, SyncReport, run_sync};
use retl::warehouse::{self, Warehouse};
use testkit::sink::Sink;
use tokio_util::sync::CancellationToken;

use super::fixture::Fixture;

pub struct Env {
    pub fx: Fixture,
    pub sink: Sink,
    pub wh: Box<dyn Warehouse>,
    pub mapping_uid: String,
    pub http: HttpDestination,
    pub model: ModelSpec,
    syncs: std::sync::atomic::AtomicU32,
}

/// The action the tests map to: two required fields and an optional one.
pub fn action() -> Action {
    let field = |name: &str, type_: FieldType, required: bool| ActionField {
        name: name.into(),
        type_,
        required,
        properties: None,
        description: None,
    };
    Action {
        name: "upsertContact".into(),
        description: None,
        fields: vec![
            field("userId", FieldType::String, true),
            field("email", FieldType::String, true),
            field("name", FieldType::String, false),
            field("plan", FieldType::String, false),
        ],
    }
}

pub fn map(to: &str, from: &str) -> FieldMapping {
    FieldMapping { to: to.into(), from: Some(from.into()), ..Default::default() }
}

impl Env {
    /// A fresh environment with `n` users (ids 1..=n, emails uN@example.com).
    pub async fn new(fx: Fixture, n: u32) -> Env {
        let wh = warehouse::connect(fx.name, &fx.source, &fx.secrets, Path::new("."))
            .await
            .unwrap_or_else(|e| panic!("{}: cannot connect: {e}", fx.name));
        let sink = Sink::start().await.expect("sink");
        let users = fx.table("users");
        wh.execute(&format!("CREATE TABLE {users} (id INTEGER PRIMARY KEY, email VARCHAR(200), name VARCHAR(200), plan VARCHAR(50))"))
            .await
            .expect("create users");
        let env = Env {
            mapping_uid: uuid::Uuid::new_v4().to_string(),
            http: HttpDestination {
                url: sink.url(),
                method: None,
                headers: vec![],
                batch_size: Some(10),
                timeout_seconds: Some(5),
                max_in_flight: Some(2),
                requests_per_second: None,
                max_retries: Some(3),
                initial_backoff_millis: Some(10),
                replies: None,
            },
            model: ModelSpec {
                source_ref: ObjectRef { name: "warehouse".into() },
                query: format!("SELECT id, email, name, plan FROM {users}"),
                primary_key: "id".into(),
            },
            fx,
            sink,
            wh,
            syncs: Default::default(),
        };
        if n > 0 {
            env.insert(1..=n).await;
        }
        env
    }

    pub async fn insert(&self, ids: impl IntoIterator<Item = u32>) {
        let values: Vec<String> = ids.into_iter().map(|i| format!("({i}, 'u{i}@example.com', 'User {i}', 'free')")).collect();
        self.exec(&format!("INSERT INTO {} (id, email, name, plan) VALUES {}", self.fx.table("users"), values.join(", "))).await;
    }

    pub async fn exec(&self, sql: &str) {
        let sql = sql.replace("{users}", &self.fx.table("users"));
        self.wh.execute(&sql).await.unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.fx.name));
    }

    /// The default Mapping: userId, email, name; sends added, updated, deleted.
    pub fn mapping(&self) -> MappingSpec {
        serde_json::from_value(serde_json::json!({
            "modelRef": {"name": "users"},
            "destinationRef": {"name": "sink"},
            "action": "upsertContact",
            "send": ["added", "updated", "deleted"],
            "fields": [
                {"to": "userId", "from": "id"},
                {"to": "email", "from": "email"},
                {"to": "name", "from": "name"},
            ],
        }))
        .expect("mapping")
    }

    pub fn context(&self, mapping: &MappingSpec, trigger: SyncTrigger, replay_of: Option<&str>) -> SyncContext {
        let n = self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SyncContext {
            namespace: "default".into(),
            sync_name: format!("users-sync-{n}"),
            mapping_name: "users".into(),
            mapping_uid: self.mapping_uid.clone(),
            mapping: mapping.clone(),
            model_name: "users".into(),
            model: self.model.clone(),
            destination_name: "sink".into(),
            action: action(),
            trigger,
            replay_of: replay_of.map(str::to_string),
            lock_wait: retl::engine::DEFAULT_LOCK_WAIT,
            rate_share: Default::default(),
        }
    }

    pub fn destination(&self) -> Arc<dyn Destination> {
        self.destination_with(&self.http)
    }

    pub fn destination_with(&self, http: &HttpDestination) -> Arc<dyn Destination> {
        let spec = retl::api::DestinationSpec {
            type_: retl::api::DestinationType::Http,
            http: Some(http.clone()),
            file: None,
            segment: None,
            postgres: None,
            mysql: None,
            actions: vec![action()],
            max_concurrent_syncs: None,
            rate_limit: None,
        };
        retl::destination::build("sink", &spec, &Default::default(), Path::new(".")).expect("destination")
    }

    /// Runs one sync and checks that its counts add up.
    pub async fn sync(&self, mapping: &MappingSpec) -> (String, SyncReport) {
        self.sync_as(mapping, SyncTrigger::Manual, None).await
    }

    pub async fn sync_as(&self, mapping: &MappingSpec, trigger: SyncTrigger, replay_of: Option<&str>) -> (String, SyncReport) {
        let ctx = self.context(mapping, trigger, replay_of);
        let report = run_sync(&ctx, self.wh.as_ref(), self.destination(), &Quiet, &CancellationToken::new()).await;
        assert_adds_up(&report);
        (ctx.sync_name, report)
    }
}

/// The invariants a user relies on in every Sync's status.
pub fn assert_adds_up(r: &SyncReport) {
    let e = &r.extracted;
    let l = &r.loaded;
    assert_eq!(e.total, e.added + e.updated + e.deleted + e.unchanged, "extracted total adds up: {r:#?}");
    assert_eq!(e.added + e.updated + e.deleted, l.succeeded + l.failed + l.skipped, "every change is accounted for: {r:#?}");
    assert_eq!(l.succeeded, l.new + l.updated + l.deleted, "succeeded splits into new/updated/deleted: {r:#?}");
    assert!(l.expired <= l.skipped);
    assert_eq!(l.skipped, r.skipped.iter().map(|s| s.count).sum::<u64>(), "each skip says why: {r:#?}");
    assert_eq!(l.failed, r.errors.iter().map(|e| e.count).sum::<u64>(), "errors group every failure: {r:#?}");
    assert!(r.failed_records.len() <= 10 && r.failed_records.len() as u64 <= l.failed);
    assert!(r.phase.is_finished());
    match r.phase {
        SyncPhase::Successful => assert_eq!(l.failed, 0),
        SyncPhase::PartiallySuccessful => assert!(l.failed > 0 && l.succeeded > 0),
        _ => {}
    }
}
