//! The operator end to end: the real `retl operator` and `retl worker`
//! binaries and the real `kubectl`, against the test API server (testkube),
//! with the test kubelet running each sync's Job as a local process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use testkit::sink::Sink;
use testkube::{Harness, wait_until};

fn retl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_retl"))
}

fn crds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")
}

/// Manifests of a SQLite warehouse with `rows` users and a Mapping to the sink.
fn manifests(dir: &Path, rows: u32, sink_url: &str) -> String {
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, 'u{i}@example.com')")).collect();
    let seed = dir.join("seed.sql");
    std::fs::write(&seed, format!("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);\nINSERT INTO users VALUES {};\n", values.join(","))).unwrap();
    let db = dir.join("wh.db");
    format!(
        r#"apiVersion: retl.dev/v1alpha1
kind: Source
metadata: {{name: wh, namespace: default}}
spec: {{type: sqlite, sqlite: {{path: "{db}", seedFile: "{seed}"}}}}
---
apiVersion: retl.dev/v1alpha1
kind: Destination
metadata: {{name: api, namespace: default}}
spec:
  type: http
  http: {{url: "{sink_url}", batchSize: 10}}
  actions:
    - name: upsert
      fields: [{{name: id, type: string, required: true}}, {{name: email, type: string}}]
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: users, namespace: default}}
spec: {{sourceRef: {{name: wh}}, primaryKey: id, query: "SELECT id, email FROM users"}}
---
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {{name: users-api, namespace: default}}
spec:
  modelRef: {{name: users}}
  destinationRef: {{name: api}}
  action: upsert
  fields: [{{to: id, from: id}}, {{to: email, from: email}}]
"#,
        db = db.display(),
        seed = seed.display()
    )
}

fn condition(obj: &Value, type_: &str) -> Option<String> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).and_then(|c| c["status"].as_str().map(String::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_runs_a_job_and_kubectl_shows_the_sync() {
    let h = Harness::start().await.expect("test API server");
    h.apply_dir(crds()).await.expect("CRDs apply");
    let sink = Sink::start().await.unwrap();
    let _kubelet = h.start_kubelet(|_image| Some(retl()));
    let op = h
        .spawn(retl(), &["operator", "--leader-lease", "none", "--metrics-addr", "127.0.0.1:0", "--worker-image", "retl:test"])
        .expect("operator");
    h.apply_yaml(&manifests(h.dir(), 25, &sink.url())).expect("manifests apply");

    let ready = wait_until(Duration::from_secs(30), || async {
        let m = h.kubectl_json(&["get", "mapping", "users-api"]).unwrap_or_default();
        condition(&m, "Ready").as_deref() == Some("True")
    })
    .await;
    assert!(ready, "the Mapping becomes Ready: {}\n{}", h.kubectl(&["get", "mapping", "users-api", "-o", "yaml"]).unwrap().stdout, op.logs());

    h.kubectl_ok(&["annotate", "mapping", "users-api", "retl.dev/sync-now=first"]).unwrap();
    let done = wait_until(Duration::from_secs(60), || async {
        let list = h.kubectl_json(&["get", "syncs", "-l", "retl.dev/mapping=users-api"]).unwrap_or_default();
        list["items"].as_array().is_some_and(|i| i.len() == 1 && i[0]["status"]["phase"] == "Successful")
    })
    .await;
    assert!(done, "a Sync ran to Successful:\n{}\n{}", h.kubectl(&["get", "syncs", "-o", "yaml"]).unwrap().stdout, op.logs());
    assert_eq!(sink.latest().len(), 25);

    let table = h.kubectl(&["get", "syncs"]).unwrap();
    let rows = table.table();
    assert_eq!(rows[0], ["NAME", "MAPPING", "STATUS", "STARTED", "DURATION", "EXTRACTED", "ADDED", "UPDATED", "DELETED", "LOADED", "FAILED", "AGE"]);
    assert_eq!(&rows[1][1..3], ["users-api", "Successful"]);
    assert_eq!(&rows[1][5..11], ["25", "25", "0", "0", "25", "0"]);

    // Re-applying the same token does nothing; a new one syncs again (nothing changed: 0 loaded).
    h.kubectl_ok(&["annotate", "--overwrite", "mapping", "users-api", "retl.dev/sync-now=first"]).unwrap();
    h.kubectl_ok(&["annotate", "--overwrite", "mapping", "users-api", "retl.dev/sync-now=second"]).unwrap();
    let two = wait_until(Duration::from_secs(60), || async {
        let list = h.kubectl_json(&["get", "syncs", "-l", "retl.dev/status=successful"]).unwrap_or_default();
        list["items"].as_array().is_some_and(|i| i.len() == 2)
    })
    .await;
    assert!(two, "exactly one more Sync: {}", h.kubectl(&["get", "syncs"]).unwrap().stdout);
    let by_phase = h.kubectl(&["get", "syncs", "--field-selector", "status.phase=Successful", "-o", "name"]).unwrap();
    assert_eq!(by_phase.stdout.lines().count(), 2, "{}", by_phase.stderr);
    let failed = h.kubectl(&["get", "syncs", "-l", "retl.dev/status=failed", "-o", "name"]).unwrap();
    assert_eq!(failed.stdout.trim(), "");
}
