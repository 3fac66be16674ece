//! Safety cases (issue 11): secrets never echo, replies that cannot be read
//! are not success, runaway templates and bad values fail one record.

use std::sync::Arc;

use base64::Engine as _;
use retl::api::{HttpDestination, HttpHeader, HttpReplies, SecretKeyRef, SyncPhase, SyncTrigger};
use retl::destination::Destination;
use retl::engine::{Quiet, SyncReport, run_sync};
use retl::warehouse::{HistoryFilter, SecretValues, StateScope};
use tokio_util::sync::CancellationToken;

use super::fixture::Fixture;
use super::support::{Env, action, assert_adds_up};

const SECRET: &str = "Bearer s3cr3t-t0ken-9f2c";

fn destination(http: &HttpDestination, secrets: &SecretValues) -> Arc<dyn Destination> {
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
    retl::destination::build("sink", &spec, secrets, std::path::Path::new(".")).expect("destination")
}

async fn sync_with(env: &Env, dest: Arc<dyn Destination>) -> SyncReport {
    let ctx = env.context(&env.mapping(), SyncTrigger::Manual, None);
    let r = run_sync(&ctx, env.wh.as_ref(), dest, &Quiet, &CancellationToken::new()).await;
    assert_adds_up(&r);
    r
}

/// The forms of the secret a careless server echoes: as sent (its token
/// also inside the URL-encoded form) and base64.
pub fn secret_forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec!["s3cr3t-t0ken-9f2c".to_string(), b64.encode(SECRET), b64.encode("s3cr3t-t0ken-9f2c")]
}

/// A state table of the test's Mapping, qualified for the fixture's dialect.
fn state_table(env: &Env, name: &str) -> String {
    let id = StateScope::from_uid(&env.mapping_uid).id;
    let schema = &env.fx.source.state_schema;
    let table = if name == "sync_runs" { name.to_string() } else { format!("{name}_{id}") };
    match env.fx.name {
        "sqlite" => format!("\"{schema}_{table}\""),
        "postgres" => format!("\"{schema}\".\"{table}\""),
        _ => format!("`{schema}`.`{table}`"),
    }
}

pub async fn secrets_never_echo(fx: Fixture) {
    let env = Env::new(fx, 6).await;
    let mut secrets = SecretValues::new();
    secrets.insert(("api-token".into(), "token".into()), SECRET.into());
    let mut http = env.http.clone();
    http.max_retries = Some(1);
    http.headers = vec![HttpHeader {
        name: "Authorization".into(),
        value: None,
        value_from: Some(SecretKeyRef { name: "api-token".into(), key: "token".into() }),
    }];
    let dest = destination(&http, &secrets);
    env.sink.set(|b| {
        b.echo_headers = true;
        b.reject_keys.insert("2".into());
    });
    let mut reports = vec![sync_with(&env, dest.clone()).await];
    assert_eq!(reports[0].phase, SyncPhase::PartiallySuccessful, "{:#?}", reports[0]);
    for status in [401, 500] {
        env.exec(&format!("UPDATE {{users}} SET name = 'status {status}'")).await;
        env.sink.set(|b| b.always_status = Some(status));
        reports.push(sync_with(&env, dest.clone()).await);
    }
    assert_eq!(env.sink.headers()[0]["authorization"], SECRET, "the header was sent");
    let codes: Vec<&str> = reports.iter().flat_map(|r| r.errors.iter().map(|e| e.code.as_str())).collect();
    assert_eq!(codes, ["INVALID_RECORD", "HTTP_401", "DESTINATION_UNAVAILABLE"]);
    let shown = format!("{reports:?}");
    assert!(shown.matches("***").count() >= 3, "the echoes arrived, masked: {shown}");

    let runs =
        env.wh.runs(&HistoryFilter { mapping_uids: vec![StateScope::from_uid(&env.mapping_uid).id], ..Default::default() }).await.unwrap();
    let runs: Vec<&str> = runs.iter().map(|r| r.status_json.as_str()).collect();
    let (log, pending, sync_runs) = (state_table(&env, "records"), state_table(&env, "pending"), state_table(&env, "sync_runs"));
    let mut hits = Vec::new();
    for form in secret_forms() {
        if shown.contains(&form) || runs.iter().any(|r| r.contains(&form)) {
            hits.push(format!("{form} in a report"));
        }
        let like = format!("'%{form}%'");
        for (table, columns) in
            [(&log, ["error", "payload", "code"]), (&pending, ["last_error", "last_code", "k"]), (&sync_runs, ["status_json"; 3])]
        {
            let wh = columns.iter().map(|c| format!("{c} LIKE {like}")).collect::<Vec<_>>().join(" OR ");
            let n = env.wh.execute(&format!("DELETE FROM {table} WHERE {wh}")).await.unwrap();
            if n > 0 {
                hits.push(format!("{form} in {n} rows of {table}"));
            }
        }
    }
    assert!(hits.is_empty(), "the secret shows: {hits:?}");
}

pub async fn replies_that_cannot_be_read_are_not_success(fx: Fixture) {
    let env = Env::new(fx, 20).await;
    let mut per_record = env.http.clone();
    per_record.replies = Some(HttpReplies::PerRecord);
    per_record.max_retries = Some(1);
    let dest = destination(&per_record, &SecretValues::new());
    env.sink.set(|b| b.garble_replies = true);
    let r = sync_with(&env, dest.clone()).await;
    assert_eq!((r.phase, r.loaded.succeeded, r.loaded.failed), (SyncPhase::Failed, 0, 20), "{r:#?}");
    assert_eq!(r.errors[0].code, "DESTINATION_UNAVAILABLE");
    assert!(r.errors[0].message.contains("cannot be read"), "{:?}", r.errors[0]);
    assert!(env.sink.requests() >= 4, "retried like a 5xx: {}", env.sink.requests());

    // More results than records, even from a batch destination: not success.
    env.sink.set(|b| {
        b.garble_replies = false;
        b.extra_results = 1;
    });
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!((r.phase, r.loaded.succeeded, r.loaded.failed), (SyncPhase::Failed, 0, 20), "{r:#?}");
    assert!(r.errors[0].message.contains("11 results for a batch of 10"), "{:?}", r.errors[0]);

    env.sink.set(|b| b.extra_results = 0);
    let r = sync_with(&env, dest).await;
    assert_eq!((r.phase, r.extracted.retried, r.loaded.succeeded), (SyncPhase::Successful, 20, 20), "{r:#?}");
}

pub async fn runaway_templates_and_bad_values_fail_one_record(fx: Fixture) {
    let mut env = Env::new(fx, 0).await;
    env.exec("CREATE TABLE {users}_attrs (id INTEGER PRIMARY KEY, email VARCHAR(200), name VARCHAR(200), attrs VARCHAR(200))").await;
    env.exec(
        "INSERT INTO {users}_attrs (id, email, name, attrs) VALUES (1, 'a@x.io', 'A', '{\"company\":\"Acme\"}'), \
         (2, 'b@x.io', 'B', 'not json'), (3, 'c@x.io', 'loop', '{\"company\":\"Loop\"}'), (4, 'd@x.io', 'D', '{\"company\":\"Beta\"}')",
    )
    .await;
    let not_utf8 = env.fx.name == "sqlite";
    if not_utf8 {
        // SQLite keeps any bytes as TEXT.
        env.exec("INSERT INTO {users}_attrs (id, email, name, attrs) VALUES (5, 'e@x.io', CAST(x'41ff42' AS TEXT), '{}')").await;
    }
    env.model.query = format!("SELECT id, email, name, attrs FROM {}_attrs", env.fx.table("users"));
    let runaway = "{% if row.name == 'loop' %}{% for i in (1..2000000000) %}x{% endfor %}{% endif %}{{ row.attrs.company }}";
    let m: retl::api::MappingSpec = serde_json::from_value(serde_json::json!({
        "modelRef": {"name": "users"}, "destinationRef": {"name": "sink"}, "action": "upsertContact",
        "fields": [
            {"to": "userId", "from": "id"},
            {"to": "email", "from": "email"},
            {"to": "plan", "from": "attrs.company"},
            {"to": "name", "template": runaway},
        ],
    }))
    .unwrap();
    let started = std::time::Instant::now();
    let (_, r) = env.sync(&m).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(r.phase, SyncPhase::PartiallySuccessful, "{r:#?}");
    assert_eq!((r.loaded.succeeded, r.loaded.failed), (2, 2 + u64::from(not_utf8)), "{r:#?}");
    let latest = env.sink.latest();
    assert_eq!(latest["1"].payload["name"], "Acme", "templates read JSON held in text, as paths do");
    assert_eq!(latest["4"].payload["plan"], "Beta");
    let failed = |key: &str| r.failed_records.iter().find(|f| f.key == key).unwrap_or_else(|| panic!("{key} did not fail: {r:#?}"));
    assert_eq!(failed("2").code, "INVALID_VALUE");
    assert!(failed("2").message.contains("\"attrs\"") && failed("2").message.contains("not valid JSON"), "{:?}", failed("2"));
    assert_eq!(failed("3").code, "TEMPLATE_ERROR");
    assert!(failed("3").message.contains("iterations"), "{:?}", failed("3"));
    if not_utf8 {
        assert_eq!(failed("5").code, "UNSUPPORTED_VALUE");
        assert!(failed("5").message.contains("\"name\"") && failed("5").message.contains("UTF-8"), "{:?}", failed("5"));
    }
}

pub async fn the_largest_settings_neither_abort_nor_hang(fx: Fixture) {
    let env = Env::new(fx, 30).await;
    let mut http = env.http.clone();
    http.batch_size = Some(u32::MAX);
    http.max_in_flight = Some(u32::MAX);
    http.max_retries = Some(u32::MAX);
    http.timeout_seconds = Some(u32::MAX);
    http.requests_per_second = Some(u32::MAX);
    let started = std::time::Instant::now();
    let r = sync_with(&env, destination(&http, &SecretValues::new())).await;
    assert_eq!((r.phase, r.loaded.succeeded), (SyncPhase::Successful, 30), "{r:#?}");
    assert_eq!(env.sink.requests(), 1, "one batch: 30 records are well within the largest batch");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

pub async fn replies_without_results_accept_or_reject_the_whole_batch(fx: Fixture) {
    let env = Env::new(fx, 12).await;
    env.sink.set(|b| b.per_record_results = false);
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!((r.phase, r.loaded.succeeded), (SyncPhase::Successful, 12), "a 2xx without results accepts the batch");
    env.exec("UPDATE {users} SET email = 'z@example.com'").await;
    env.sink.set(|b| b.always_status = Some(422));
    let (_, r) = env.sync(&env.mapping()).await;
    assert_eq!((r.phase, r.loaded.failed), (SyncPhase::Failed, 12));
    assert_eq!(r.errors[0].code, "HTTP_422");
    assert!(r.errors[0].message.contains("forced status 422"), "the reply's body is shown: {:?}", r.errors[0]);
}
