//! `kubectl retl`: the retl binary installed as `kubectl-retl` on PATH,
//! found and run by the real kubectl against the real control plane: the
//! sync overview with its filters, sync-now, reset, replay and cancel with
//! `--wait`, every failed record of a Sync from a PostgreSQL Source's
//! record log, and one test record of a Mapping, both with the user's own RBAC.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::cluster::{Cluster, Setup, cluster, retl};
use super::warehouses::{run_sql, server_url};

/// `kubectl ARGS` with `kubectl-retl` on PATH.
fn kubectl(c: &Cluster, args: &[&str]) -> (i32, String) {
    kubectl_with(c, &cluster().kubectl().kubeconfig, args)
}

/// `kubectl ARGS` with `kubectl-retl` on PATH, as the user of `kubeconfig`.
fn kubectl_with(c: &Cluster, kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    let bin: PathBuf = c.ns.dir().join("plugin-bin");
    if !bin.join("kubectl-retl").exists() {
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(retl(), bin.join("kubectl-retl")).unwrap();
    }
    let k = cluster().kubectl();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(&k.program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", &k.cache_dir)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .output()
        .expect("kubectl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_retl_shows_the_overview_and_runs_requests() {
    let c = Cluster::start(Setup::default()).await;
    let ns = c.ns.name().to_string();
    let (code, out) = kubectl(&c, &["plugin", "list"]);
    assert!(code == 0 && out.contains("kubectl-retl"), "kubectl finds the plugin: {out}");

    c.sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    let (code, out) = kubectl(&c, &["retl", "sync-now", "users-api", "-n", &ns, "--wait", "90s"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("finished PartiallySuccessful"), "{out}");

    let (code, out) = kubectl(&c, &["retl", "overview", "-n", &ns]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        ["DESTINATION", "MAPPING", "MODEL", "SOURCE", "ACTION", "MAPPING", "STATUS", "LATEST", "SYNC", "STARTED"],
        "{out}"
    );
    assert_eq!(lines[1][..7], ["api", "users-api", "users", "wh", "upsert", "Enabled", "PartiallySuccessful"], "{out}");
    println!("--- kubectl retl overview -n {ns}\n{out}");

    let (_, out) = kubectl(&c, &["retl", "overview", "-n", &ns, "--status", "Failed"]);
    assert!(out.contains("No Mappings found"), "{out}");
    let (_, out) = kubectl(&c, &["retl", "overview", "-n", &ns, "--mapping-status", "enabled", "--model", "users", "--since", "1h"]);
    assert!(out.contains("users-api"), "{out}");
    let (code, out) = kubectl(&c, &["retl", "overview", "-A", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let row = json["items"].as_array().unwrap().iter().find(|r| r["namespace"] == ns.as_str()).cloned().unwrap();
    assert_eq!((row["source"].as_str(), row["status"].as_str()), (Some("wh"), Some("PartiallySuccessful")), "{row:#}");

    // A reset, waited for; the next sync sends everything again.
    let (code, out) = kubectl(&c, &["retl", "reset", "users-api", "-n", &ns, "--wait", "60s"]);
    assert!(code == 0 && out.contains("the reset was handled"), "{out}");
    c.sink.set(|b| b.reject_keys.clear());
    let (code, out) = kubectl(&c, &["retl", "sync-now", "users-api", "-n", &ns, "--wait", "90s"]);
    assert!(code == 0 && out.contains("finished Successful"), "{out}");
    let latest = c.syncs().last().cloned().unwrap();
    assert_eq!(latest["status"]["extracted"]["added"], 25, "{latest:#}");

    // A replay of that sync, and a cancel of a slow one.
    let name = latest["metadata"]["name"].as_str().unwrap().to_string();
    let (code, out) = kubectl(&c, &["retl", "replay", &name, "-n", &ns, "--wait", "90s"]);
    assert!(code == 0 && out.contains(&format!("Sync {name}-replay-")) && out.contains("finished Successful"), "{out}");
    // Slow enough that the cancel lands before the sync ends, even on a loaded machine.
    c.sink.set(|b| b.stall = Some(Duration::from_secs(2)));
    c.sql("UPDATE users SET email = 'x' || email");
    let (code, out) = kubectl(&c, &["retl", "sync-now", "users-api", "-n", &ns]);
    assert_eq!(code, 0, "{out}");
    let running = c.running().await;
    let (code, out) = kubectl(&c, &["retl", "cancel", &running, "-n", &ns, "--wait", "90s"]);
    assert!(code == 0 && out.contains("finished Canceled"), "{out}");

    // Every Sync of the Mapping, newest first.
    let (code, out) = kubectl(&c, &["retl", "history", "users-api", "-n", &ns]);
    assert_eq!(code, 0, "{out}");
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..3], ["NAME", "TRIGGER", "STATUS"], "{out}");
    assert_eq!(rows.len(), 1 + c.syncs().len(), "{out}");
    assert_eq!((rows[1][0], rows[1][2]), (running.as_str(), "Canceled"), "newest first: {out}");
    assert!(rows.iter().any(|r| r[0].starts_with(&format!("{name}-replay-")) && r[1] == "Replay"), "{out}");

    // A Mapping that does not exist: the API server's answer, exit 2.
    let (code, out) = kubectl(&c, &["retl", "sync-now", "nope", "-n", &ns]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot annotate Mapping") && out.contains("NotFound"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_retl_records_pages_every_failed_record_with_the_users_rbac() {
    let url = server_url("RETL_TEST_POSTGRES_URL");
    let schema = format!("e2e_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let create = format!("CREATE TABLE {schema}.people (id bigint PRIMARY KEY, email text)");
    let fill = format!("INSERT INTO {schema}.people SELECT i, 'p' || i || '@example.com' FROM generate_series(1, 30) i");
    run_sql(&url, &[&format!("CREATE SCHEMA {schema}"), &create, &fill]).await;
    // The Destination sends a header from a Secret, which `test-record` prints masked.
    let c = Cluster::start(Setup {
        http_extra: ", headers: [{name: Authorization, valueFrom: {name: api-token, key: token}}]",
        extra_yaml: "---\napiVersion: v1\nkind: Secret\nmetadata: {name: api-token}\nstringData: {token: Bearer plugin-t0ken-5ecret}\n",
        ..Setup::default()
    })
    .await;
    let ns = c.ns.name().to_string();
    c.ns.apply_yaml(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: warehouse}}
stringData: {{url: "{url}"}}
---
apiVersion: retl.dev/v1alpha1
kind: Source
metadata: {{name: pg}}
spec: {{type: postgres, stateSchema: {schema}_state, postgres: {{urlSecretRef: {{name: warehouse, key: url}}}}}}
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: people}}
spec: {{sourceRef: {{name: pg}}, primaryKey: id, query: "SELECT id, email FROM {schema}.people"}}
---
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {{name: people-api}}
spec: {{modelRef: {{name: people}}, destinationRef: {{name: api}}, action: upsert, fields: [{{to: id, from: id}}, {{to: email, from: email}}]}}
"#
    ))
    .unwrap();
    c.wait_ready("mapping", "people-api").await;
    c.sink.set(|b| b.reject_keys.extend((1..=15).map(|k| k.to_string())));
    let (code, out) = kubectl(&c, &["retl", "sync-now", "people-api", "-n", &ns, "--wait", "90s"]);
    assert!(code == 0 && out.contains("finished PartiallySuccessful"), "{out}");
    let sync = c.syncs().into_iter().find(|s| s["spec"]["mappingRef"]["name"] == "people-api").unwrap();
    let name = sync["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(sync["status"]["failedRecords"].as_array().unwrap().len(), 10, "the status keeps 10 samples: {sync:#}");

    // Every one of the 15, over two pages, each with its error, payload and recommended action.
    let (code, out) = kubectl(&c, &["retl", "records", &name, "-n", &ns, "--limit", "10"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("Sync {ns}/{name}: failed records 1-10 of 15")), "{out}");
    assert!(out.contains(&format!("Next page: kubectl retl records {name} -n {ns} --limit 10 --offset 10")), "{out}");
    assert_eq!(out.matches("Recommended action: ").count(), 10, "{out}");
    println!("--- kubectl retl records {name} -n {ns} --limit 10\n{out}");
    let (code, out) = kubectl(&c, &["retl", "records", &name, "-n", &ns, "--limit", "10", "--offset", "10", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let page: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((page["total"].as_u64(), page["items"].as_array().map(Vec::len)), (Some(15), Some(5)), "{page:#}");
    let (_, first) = kubectl(&c, &["retl", "records", &name, "-n", &ns, "-o", "json"]);
    let all: serde_json::Value = serde_json::from_str(&first).unwrap();
    let mut keys: Vec<u64> = all["items"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap().parse().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, (1..=15).collect::<Vec<_>>(), "{all:#}");
    let item = &all["items"][0];
    assert_eq!((item["code"].as_str(), item["operation"].as_str()), (Some("INVALID_RECORD"), Some("added")), "{item:#}");
    assert!(
        item["payload"]["email"].as_str().unwrap().ends_with("@example.com") && item["message"].as_str().unwrap().contains("not valid")
    );
    assert!(!out.contains(&url) && !first.contains(&url), "the warehouse URL (a Secret) is never printed");

    // One test record, from this machine with the user's credentials: no Sync is created.
    let syncs = c.syncs().len();
    let (code, out) = kubectl(&c, &["retl", "test-record", "people-api", "-n", &ns, "--key", "20"]);
    assert_eq!(code, 0, "{out}");
    println!("--- kubectl retl test-record people-api -n {ns} --key 20\n{out}");
    assert!(out.contains(&format!("Test record of Mapping {ns}/people-api: key \"20\" of Model people")), "{out}");
    assert!(out.contains("authorization: Bearer ***") && out.contains("Reply: HTTP 200 OK") && out.contains("Accepted"), "{out}");
    assert!(!out.contains("plugin-t0ken-5ecret") && !out.contains(&url), "{out}");
    let (code, out) = kubectl(&c, &["retl", "test-record", "people-api", "-n", &ns, "--key", "5"]);
    assert!(code == 1 && out.contains("Rejected (INVALID_RECORD)"), "the sink still rejects 1-15: {out}");
    let (code, out) = kubectl(&c, &["retl", "test-record", "people-api", "-n", &ns, "--key", "31"]);
    assert!(code == 2 && out.contains("no row whose primary key (id) is \"31\""), "{out}");
    assert_eq!(c.syncs().len(), syncs, "test-record creates no Sync");

    // A user who may read Syncs and the objects they refer to, but not Secrets.
    c.ns.apply_yaml(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: viewer}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: retl-viewer}\n\
         rules: [{apiGroups: [retl.dev], resources: [syncs, mappings, models, sources, destinations], verbs: [get, list]}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: retl-viewer}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: retl-viewer}\n\
         subjects: [{kind: ServiceAccount, name: viewer}]\n",
    )
    .unwrap();
    let dir = c.ns.dir().join("viewer");
    let tc = cluster();
    testcluster::credentials::issue(&tc.client(), tc.endpoint(), &ns, "viewer", None, &dir).await.unwrap();
    let (code, out) = kubectl_with(&c, &dir.join("kubeconfig"), &["retl", "records", &name, "-n", &ns]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot read the credentials of Source") && out.contains("Forbidden"), "{out}");
    assert!(out.contains("you need `get` on that Secret") && !out.contains(&url), "{out}");
    let (code, out) = kubectl_with(&c, &dir.join("kubeconfig"), &["retl", "test-record", "people-api", "-n", &ns]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot read the credentials of Source") && out.contains("Forbidden"), "{out}");
    assert!(out.contains("`kubectl retl test-record` reads them with your own RBAC: you need `get` on that Secret"), "{out}");
    let (code, out) = kubectl_with(&c, &dir.join("kubeconfig"), &["retl", "overview", "-n", &ns]);
    assert!(code == 0 && out.contains("people-api"), "the overview needs no Secret: {out}");
    run_sql(&url, &[&format!("DROP SCHEMA {schema} CASCADE"), &format!("DROP SCHEMA IF EXISTS {schema}_state CASCADE")]).await;
}
