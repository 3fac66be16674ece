//! A test cluster: the test API server with retl's CRDs, the test kubelet
//! running sync Jobs as `retl worker` processes, the real `retl operator`,
//! an HTTP sink as the destination and a SQLite warehouse.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use testkit::sink::Sink;
use testkube::{Harness, wait_until};
use testkube::{Kubelet, Process};

pub fn retl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_retl"))
}

pub struct Cluster {
    pub h: Harness,
    pub sink: Sink,
    pub kubelet: Kubelet,
    pub operator: Arc<Process>,
    /// Directory of the manifests (for `retl sql`).
    pub manifests: PathBuf,
    /// Syncs already returned by `wait_finished`.
    seen: std::sync::Mutex<Vec<String>>,
}

pub struct Setup<'a> {
    pub rows: u32,
    /// Extra lines under the Mapping's spec (indented two spaces).
    pub mapping_spec: &'a str,
    /// Extra keys of the Destination's `http` settings, as `, key: value`.
    pub http_extra: &'a str,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup { rows: 25, mapping_spec: "", http_extra: "" }
    }
}

impl Cluster {
    pub async fn start(setup: Setup<'_>) -> Cluster {
        let h = Harness::start().await.expect("test API server");
        h.apply_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")).await.expect("CRDs apply");
        let sink = Sink::start().await.unwrap();
        let kubelet = h.start_kubelet(|_image| Some(retl()));
        let operator = spawn_operator(&h, &["--leader-lease", "none"]);
        let manifests = h.dir().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let yaml = manifests_yaml(&manifests, &setup, &sink.url());
        std::fs::write(manifests.join("all.yaml"), &yaml).unwrap();
        h.apply_yaml(&yaml).expect("manifests apply");
        let c = Cluster { h, sink, kubelet, operator, manifests, seen: Default::default() };
        c.wait_ready("mapping", "users-api").await;
        c
    }

    pub async fn wait_ready(&self, kind: &str, name: &str) {
        let ok = wait_until(Duration::from_secs(30), || async { self.condition(kind, name, "Ready").as_deref() == Some("True") }).await;
        assert!(ok, "{kind} {name} becomes Ready:\n{}\n{}", self.yaml(kind, name), self.operator.logs());
    }

    pub fn condition(&self, kind: &str, name: &str, type_: &str) -> Option<String> {
        let obj = self.h.kubectl_json(&["get", kind, name]).ok()?;
        obj["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
    }

    pub fn reason(&self, kind: &str, name: &str, type_: &str) -> (String, String) {
        let obj = self.h.kubectl_json(&["get", kind, name]).unwrap_or_default();
        let c = obj["status"]["conditions"].as_array().and_then(|l| l.iter().find(|c| c["type"] == type_).cloned()).unwrap_or_default();
        (c["reason"].as_str().unwrap_or_default().to_string(), c["message"].as_str().unwrap_or_default().to_string())
    }

    pub fn yaml(&self, kind: &str, name: &str) -> String {
        self.h.kubectl(&["get", kind, name, "-o", "yaml"]).map(|o| o.stdout).unwrap_or_default()
    }

    /// The Syncs, oldest first.
    pub fn syncs(&self) -> Vec<Value> {
        let list = self.h.kubectl_json(&["get", "syncs", "--sort-by=.metadata.creationTimestamp"]).unwrap_or_default();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    pub fn annotate(&self, kind: &str, name: &str, kv: &str) {
        self.h.kubectl_ok(&["annotate", "--overwrite", kind, name, kv]).expect("annotate");
    }

    /// Waits until `n` Syncs exist and all have finished; returns the one
    /// not returned before (creation times have only second resolution).
    pub async fn wait_finished(&self, n: usize) -> Value {
        let ok = wait_until(Duration::from_secs(60), || async {
            let s = self.syncs();
            s.len() == n && s.iter().all(is_finished)
        })
        .await;
        assert!(ok, "{n} finished Syncs:\n{}\n{}", self.h.kubectl(&["get", "syncs"]).unwrap().stdout, self.operator.logs());
        let mut seen = self.seen.lock().unwrap();
        let new = self.syncs().into_iter().find(|s| !seen.iter().any(|n| s["metadata"]["name"] == n.as_str())).expect("a new Sync");
        seen.push(new["metadata"]["name"].as_str().unwrap_or_default().to_string());
        new
    }

    /// Waits until a Sync whose name starts with `prefix` has finished.
    pub async fn wait_finished_named(&self, prefix: &str) -> Value {
        let found = std::sync::Mutex::new(None);
        let ok = wait_until(Duration::from_secs(60), || {
            let hit =
                self.syncs().into_iter().find(|s| s["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(prefix)) && is_finished(s));
            let done = hit.is_some();
            *found.lock().unwrap() = hit;
            async move { done }
        })
        .await;
        assert!(ok, "a finished Sync named {prefix}*:\n{}", self.h.kubectl(&["get", "syncs"]).unwrap().stdout);
        let s = found.into_inner().unwrap().unwrap_or_default();
        self.seen.lock().unwrap().push(s["metadata"]["name"].as_str().unwrap_or_default().to_string());
        s
    }

    /// The name of the one running (not finished) Sync, once there is one.
    pub async fn running(&self) -> String {
        let mut name = String::new();
        let found = wait_until(Duration::from_secs(30), || {
            let found = self.syncs().into_iter().find(|s| !is_finished(s));
            if let Some(s) = &found {
                name = s["metadata"]["name"].as_str().unwrap_or_default().to_string();
            }
            async move { found.is_some() }
        })
        .await;
        assert!(found, "a running Sync");
        name
    }

    /// Runs SQL against the warehouse with `retl sql`.
    pub fn sql(&self, statement: &str) {
        let out = std::process::Command::new(retl())
            .args(["sql", "-f"])
            .arg(&self.manifests)
            .args(["--source", "wh", statement])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

pub fn is_finished(sync: &Value) -> bool {
    matches!(sync["status"]["phase"].as_str(), Some("Successful" | "PartiallySuccessful" | "Failed" | "Canceled"))
}

pub fn spawn_operator(h: &Harness, extra: &[&str]) -> Arc<Process> {
    let mut args = vec!["operator", "--metrics-addr", "127.0.0.1:0", "--worker-image", "retl:test"];
    args.extend_from_slice(extra);
    h.spawn(retl(), &args).expect("operator")
}

pub fn count(sync: &Value, path: &str) -> u64 {
    sync.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

fn manifests_yaml(dir: &Path, s: &Setup<'_>, sink_url: &str) -> String {
    let seed = dir.join("seed.sql");
    std::fs::write(&seed, testkit::seed::users_sql(s.rows)).unwrap();
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
  http: {{url: "{sink_url}", batchSize: 10, maxInFlight: 1{http_extra}}}
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
{mapping_spec}"#,
        db = db.display(),
        seed = seed.display(),
        http_extra = s.http_extra,
        mapping_spec = s.mapping_spec,
    )
}
