//! One test record (`retl test`, `kubectl retl test-record`) on every
//! warehouse: one row read by key or the first row, exactly as a sync
//! carries it; a key the model lacks or returns twice; the request and the
//! reply recorded; and no sync state changed.

use retl::engine::test_record::{Outcome, TestOutcome, TestRecord};
use retl::engine::{EngineError, codes};
use retl::warehouse::{DiffMode, DiffRequest, HistoryFilter, StateScope};

use super::fixture::Fixture;
use super::support::{Env, action};

impl Env {
    async fn test_record(&self, query: &str, key: Option<&str>) -> Result<TestOutcome, EngineError> {
        let mapping = self.mapping();
        let model = retl::api::ModelSpec { query: query.replace("{users}", &self.fx.table("users")), ..self.model.clone() };
        let test = TestRecord { mapping_uid: &self.mapping_uid, mapping: &mapping, model: &model, action: &action(), key };
        test.run(self.wh.as_ref(), self.destination().as_ref()).await
    }
}

pub async fn a_test_record_sends_one_row_and_changes_no_sync_state(fx: Fixture) {
    let env = Env::new(fx, 5).await;
    let users = "SELECT id, email, name, plan FROM {users}";

    // By key: the row as the warehouse has it, the payload as mapped, and
    // the one request with the sink's reply.
    let t = env.test_record(users, Some("3")).await.unwrap();
    assert_eq!(t.result.outcome, Outcome::Accepted, "{t:#?}");
    assert_eq!(t.key, "3");
    assert_eq!((t.row.as_ref().unwrap()["id"].clone(), t.row.as_ref().unwrap()["email"].clone()), (3.into(), "u3@example.com".into()));
    assert_eq!(t.payload.as_ref().unwrap()["userId"], "3");
    assert_eq!(t.exchanges.len(), 1, "{t:#?}");
    let e = &t.exchanges[0];
    assert_eq!((e.request.method.as_str(), e.request.target.as_str()), ("POST", env.sink.url().as_str()));
    assert_eq!(e.request.body["records"][0]["payload"], *t.payload.as_ref().unwrap(), "the body as sent");
    let reply = e.reply.as_ref().unwrap();
    assert_eq!((reply.status.as_str(), reply.body["results"][0]["ok"].clone()), ("HTTP 200 OK", true.into()), "{e:#?}");

    // The first row: any one of the model's, with its key.
    let first = env.test_record(users, None).await.unwrap();
    assert!((1..=5).any(|k| first.key == k.to_string()), "{first:#?}");
    assert_eq!(first.payload.as_ref().unwrap()["userId"], first.key.as_str());

    // Rejected by the destination: its code and message.
    env.sink.set(|b| {
        b.reject_keys.insert("4".into());
    });
    let t = env.test_record(users, Some("4")).await.unwrap();
    assert_eq!((t.result.outcome, t.result.code.as_deref()), (Outcome::Rejected, Some("INVALID_RECORD")), "{t:#?}");
    assert!(t.result.message.as_deref().unwrap().contains("not valid") && t.result.recommended_action.is_some(), "{t:#?}");
    env.sink.set(|b| b.reject_keys.clear());

    // A key the model lacks; a key it returns twice; a row a sync would reject before sending.
    let missing = env.test_record(users, Some("99")).await.unwrap_err();
    assert!(matches!(missing, EngineError::NoRow(_)) && missing.to_string().contains("\"99\""), "{missing}");
    let twice = env.test_record(&format!("{users} UNION ALL SELECT id, email, name, plan FROM {{users}} WHERE id = 2"), Some("2")).await;
    let twice = twice.unwrap();
    assert_eq!((twice.result.outcome, twice.result.code.as_deref()), (Outcome::Rejected, Some(codes::DUPLICATE_PRIMARY_KEY)));
    assert!(twice.exchanges.is_empty(), "nothing sent: {twice:#?}");
    env.exec("UPDATE {users} SET email = NULL WHERE id = 5").await;
    let unmapped = env.test_record(users, Some("5")).await.unwrap();
    assert_eq!(unmapped.result.code.as_deref(), Some(codes::MISSING_REQUIRED_FIELD), "{unmapped:#?}");
    assert!(unmapped.exchanges.is_empty() && unmapped.payload.is_some(), "{unmapped:#?}");
    env.exec("UPDATE {users} SET email = 'u5@example.com' WHERE id = 5").await;

    // No sync state changed: the first sync still sends every row as added,
    // with the very payloads the test sent, and the history holds it alone.
    let tested = env.sink.latest()["3"].payload.clone();
    env.sink.clear();
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!((r.extracted.added, r.loaded.succeeded), (5, 5), "{r:#?}");
    assert_eq!(env.sink.latest()["3"].payload, tested, "a test record carries what a sync carries");
    let scope = StateScope::from_uid(&env.mapping_uid);
    let runs = env.wh.runs(&HistoryFilter { mapping_uids: vec![scope.id], ..Default::default() }).await.unwrap();
    assert_eq!(runs.len(), 1, "only the sync is in the history: {runs:#?}");

    // The warehouse method itself: by key (two rows at most), first row, none.
    let query = format!("SELECT id, email, name, plan FROM {}", env.fx.table("users"));
    let columns = env.wh.describe(&query).await.unwrap();
    let req = DiffRequest {
        query,
        primary_key: "id".into(),
        columns,
        mode: DiffMode::Normal,
        expire_before_ms: 0,
        stage: String::new(),
        dry_run: true,
    };
    let by_key = env.wh.sample_row(&req, Some("2")).await.unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!((by_key[0].key.as_str(), by_key[0].row.as_ref().unwrap()["name"].clone()), ("2", "User 2".into()));
    assert_eq!(env.wh.sample_row(&req, None).await.unwrap().len(), 1);
    assert!(env.wh.sample_row(&req, Some("2 ")).await.unwrap().is_empty(), "keys match as text, exactly");
    env.exec("DELETE FROM {users}").await;
    assert!(env.wh.sample_row(&req, None).await.unwrap().is_empty());
    let empty = env.test_record(users, None).await.unwrap_err();
    assert!(empty.to_string().contains("no row"), "{empty}");
}
