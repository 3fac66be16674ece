//! The operator with real warehouse servers: a PostgreSQL Source synced to an
//! HTTP destination through Jobs, and a MariaDB Source whose password is
//! wrong. The servers come from scripts/test (RETL_TEST_POSTGRES_URL,
//! RETL_TEST_MYSQL_URL).

use std::time::Duration;

use testcluster::wait_until;

use super::cluster::{Cluster, Setup, count};

pub(super) fn server_url(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test, which finds or starts the test servers and sets it"))
}

pub(super) async fn run_sql(url: &str, statements: &[&str]) {
    let wh_type = if url.starts_with("mysql") { "mysql" } else { "postgres" };
    let spec: retl::api::SourceSpec = serde_json::from_value(serde_json::json!({
        "type": wh_type,
        wh_type: {"urlSecretRef": {"name": "s", "key": "url"}},
    }))
    .unwrap();
    let secrets = [(("s".to_string(), "url".to_string()), url.to_string())].into();
    let wh = retl::warehouse::connect("setup", &spec, &secrets, std::path::Path::new(".")).await.unwrap();
    for s in statements {
        wh.execute(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_model_syncs_through_jobs() {
    let url = server_url("RETL_TEST_POSTGRES_URL");
    let schema = format!("e2e_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    run_sql(
        &url,
        &[
            &format!("CREATE SCHEMA {schema}"),
            &format!("CREATE TABLE {schema}.customers (id bigint PRIMARY KEY, email text, mrr numeric(10,2), attrs jsonb)"),
            &format!(
                "INSERT INTO {schema}.customers SELECT i, 'c' || i || '@example.com', i * 1.25, jsonb_build_object('tier', 'gold') FROM generate_series(1, 40) i"
            ),
        ],
    )
    .await;
    let c = Cluster::start(Setup::default()).await;
    c.ns.apply_yaml(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: warehouse}}
stringData: {{url: "{url}"}}
---
apiVersion: retl.dev/v1alpha1
kind: Source
metadata: {{name: pg}}
spec:
  type: postgres
  stateSchema: {schema}_state
  postgres: {{urlSecretRef: {{name: warehouse, key: url}}}}
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: customers}}
spec: {{sourceRef: {{name: pg}}, primaryKey: id, query: "SELECT id, email, mrr, attrs FROM {schema}.customers"}}
---
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {{name: customers-api}}
spec:
  modelRef: {{name: customers}}
  destinationRef: {{name: api}}
  action: upsert
  fields: [{{to: id, from: id}}, {{to: email, from: email}}]
"#
    ))
    .unwrap();
    c.wait_ready("source", "pg").await;
    c.wait_ready("model", "customers").await;
    c.wait_ready("mapping", "customers-api").await;
    let model = c.ns.kubectl_json(&["get", "model", "customers"]).unwrap();
    let cols: Vec<&str> = model["status"]["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["id", "email", "mrr", "attrs"]);

    c.annotate("mapping", "customers-api", "retl.dev/sync-now=1");
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    assert_eq!((count(&s, "/status/extracted/added"), count(&s, "/status/loaded/succeeded")), (40, 40));
    assert_eq!(c.sink.latest()["7"].payload["email"], "c7@example.com");

    run_sql(&url, &[&format!("UPDATE {schema}.customers SET email = 'new@example.com' WHERE id <= 4")]).await;
    c.annotate("mapping", "customers-api", "retl.dev/sync-now=2");
    let s = c.wait_finished(2).await;
    assert_eq!((count(&s, "/status/extracted/updated"), count(&s, "/status/extracted/unchanged")), (4, 36), "{s:#}");
    let name = s["metadata"]["name"].as_str().unwrap();
    let waited = c.ns.kubectl(&["wait", "--for=jsonpath={.status.phase}=Successful", &format!("sync/{name}"), "--timeout=10s"]).unwrap();
    assert!(waited.success(), "{}", waited.stderr);
    let logs = [("workers", c.worker_logs()), ("operator", c.operator.logs())];
    run_sql(&url, &[&format!("DROP SCHEMA {schema} CASCADE"), &format!("DROP SCHEMA IF EXISTS {schema}_state CASCADE")]).await;
    // The second worker's CREATE ... IF NOT EXISTS got PostgreSQL NOTICEs
    // ("relation ... already exists, skipping"): at the default level they
    // are not logged, by the workers or the operator.
    assert!(logs[0].1.contains(&format!("Sync {}/{name}: Successful", c.ns.name())), "the workers' output is read: {}", logs[0].1);
    for (who, logs) in logs {
        assert!(!logs.contains("already exists, skipping") && !logs.contains("sqlx::postgres::notice"), "the {who} log NOTICEs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_condition_and_no_job() {
    let url = server_url("RETL_TEST_MYSQL_URL");
    let user = format!("retl_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    run_sql(&url, &[&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'right-password'")]).await;
    let rest = url.trim_start_matches("mysql://");
    let hostport_db = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
    let (hostport, db) = hostport_db.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    let c = Cluster::start(Setup::default()).await;
    c.ns.apply_yaml(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: mysql-login}}
stringData: {{password: wrong-password}}
---
apiVersion: retl.dev/v1alpha1
kind: Source
metadata: {{name: my}}
spec:
  type: mysql
  mysql: {{host: "{host}", port: {port}, database: "{db}", user: "{user}", passwordSecretRef: {{name: mysql-login, key: password}}, connectTimeoutSeconds: 5}}
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: things}}
spec: {{sourceRef: {{name: my}}, primaryKey: id, query: "SELECT 1 AS id"}}
---
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {{name: things-api}}
spec: {{modelRef: {{name: things}}, destinationRef: {{name: api}}, action: upsert, fields: [{{to: id, from: id}}]}}
"#
    ))
    .unwrap();
    let h = &c;
    assert!(wait_until(Duration::from_secs(30), || async { h.condition("source", "my", "Ready").as_deref() == Some("False") }).await);
    let (reason, message) = c.reason("source", "my", "Ready");
    assert_eq!(reason, "WarehouseUnreachable", "{message}");
    assert!(message.to_lowercase().contains("password") || message.to_lowercase().contains("denied"), "says why: {message}");
    assert!(!message.contains("wrong-password"), "no secret in the condition: {message}");
    c.annotate("mapping", "things-api", "retl.dev/sync-now=1");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        c.syncs().iter().all(|s| s["spec"]["mappingRef"]["name"] != "things-api"),
        "no Sync and no Job for a Mapping whose Source cannot connect"
    );
    assert!(c.operator.exit_code().is_none(), "no crash loop");
    run_sql(&url, &[&format!("DROP USER '{user}'@'%'")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_example_applies_and_syncs() {
    let url = server_url("RETL_TEST_POSTGRES_URL");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres");
    let seed = std::fs::read_to_string(dir.join("seed.sql")).unwrap();
    run_sql(&url, &[&seed]).await;
    let c = Cluster::start(Setup::default()).await;
    let applied = c.ns.kubectl(&["apply", "-f", &dir.display().to_string()]).unwrap();
    assert!(applied.success(), "{}", applied.stderr);
    // Point the example at this machine's test server and at the sink.
    c.ns.kubectl_ok(&["patch", "secret", "warehouse", "--type=merge", "-p", &format!(r#"{{"stringData":{{"url":"{url}"}}}}"#)]).unwrap();
    let use_url = r#"{"spec":{"postgres":{"urlSecretRef":{"name":"warehouse","key":"url"}}}}"#;
    c.ns.kubectl_ok(&["patch", "source", "warehouse", "--type=merge", "-p", use_url]).unwrap();
    let to_sink = format!(r#"{{"spec":{{"http":{{"url":"{}"}}}}}}"#, c.sink.url());
    c.ns.kubectl_ok(&["patch", "destination", "crm", "--type=merge", "-p", &to_sink]).unwrap();
    c.wait_ready("mapping", "users-to-crm").await;
    c.annotate("mapping", "users-to-crm", "retl.dev/sync-now=1");
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    let ada = &c.sink.latest()["1"].payload;
    assert_eq!(ada["traits"], serde_json::json!({"plan": "pro", "mrr": 49.0, "company": "Analytical Engines", "seats": 5}), "{ada}");
    let at: jiff::Timestamp = ada["signedUpAt"].as_str().unwrap().parse().expect("RFC 3339");
    assert_eq!(at, "2024-01-05T09:30:00Z".parse::<jiff::Timestamp>().unwrap());
}
