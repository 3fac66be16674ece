//! A test cluster: the real control plane of this test binary (testcluster)
//! with retl's CRDs and deploy/'s RBAC, one namespace per test with the
//! workers' ServiceAccount, the real `retl operator` running as deploy/'s
//! `retl-operator` ServiceAccount, Jobs run by the test kubelet as `retl
//! worker` processes with `retl-worker`'s credentials, an HTTP sink as the
//! destination and a SQLite warehouse.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use testcluster::{Namespace, Process, TestCluster, wait_until};
use testkit::sink::Sink;

pub fn retl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_retl"))
}

/// The image of the operator and its workers in these tests.
pub const IMAGE: &str = "ghcr.io/retl/retl:test";

/// retl's images run the retl binary under test; any other image cannot be pulled.
pub fn images() -> testcluster::ImageMap {
    Arc::new(|image: &str| (image.starts_with("ghcr.io/retl/retl:") || image.starts_with("retl:")).then(retl))
}

/// deploy/ rendered by kubectl's kustomize, one document each.
pub fn rendered_deploy() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let out = TestCluster::shared(images()).kubectl().run(&["kustomize", &dir.display().to_string()], None).expect("kubectl runs");
    assert!(out.success(), "kubectl kustomize deploy/: {}", out.stderr);
    serde_yaml_ng::Deserializer::from_str(&out.stdout).map(|d| serde::Deserialize::deserialize(d).expect("YAML")).collect()
}

/// The control plane, with deploy/'s CRDs, namespace, ServiceAccount and
/// RBAC applied once (server-side); its Deployment is left out, since each
/// test runs an operator of its own, watching only its namespace.
pub fn cluster() -> &'static TestCluster {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let cluster = TestCluster::shared(images());
    INSTALLED.get_or_init(|| {
        let docs: Vec<Value> = rendered_deploy().into_iter().filter(|d| d["kind"] != "Deployment").collect();
        let json = serde_json::to_string(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs})).unwrap();
        let out = cluster.kubectl().run(&["apply", "--server-side", "--field-manager=retl-tests", "-f", "-"], Some(&json)).unwrap();
        assert!(out.success(), "applying deploy/: {}", out.stderr);
        let out = cluster.kubectl().run(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None).unwrap();
        assert!(out.success(), "{}", out.stderr);
    });
    cluster
}

/// The name of the running test (its thread's name), for its namespace.
fn test_name() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("test");
    name.rsplit("::").next().unwrap_or(name).replace('_', "-")
}

pub struct Cluster {
    pub ns: Namespace,
    pub sink: Sink,
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
    /// More manifests, applied with the others (Secrets they refer to).
    pub extra_yaml: &'a str,
    /// Whether `start` waits for the Mapping to be Ready (else for its
    /// Ready condition, whatever it says).
    pub ready_at_start: bool,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup { rows: 25, mapping_spec: "", http_extra: "", extra_yaml: "", ready_at_start: true }
    }
}

/// A namespace set up as the README says for Mappings: the workers' ServiceAccount bound to `retl-worker`.
pub fn worker_namespace(name: &str) -> Namespace {
    let ns = cluster().namespace(name);
    add_worker_account(&ns);
    ns
}

/// `kubectl create serviceaccount retl-worker` and its RoleBinding, as the README says.
pub fn add_worker_account(ns: &Namespace) {
    ns.kubectl_ok(&["create", "serviceaccount", "retl-worker"]).expect("worker service account");
    let sa = format!("{}:retl-worker", ns.name());
    ns.kubectl_ok(&["create", "rolebinding", "retl-worker", "--clusterrole=retl-worker", "--serviceaccount", &sa]).expect("rolebinding");
}

/// The address of an operator's /metrics, from its log.
pub fn metrics_addr(logs: &str) -> Option<String> {
    let line = logs.lines().find(|l| l.contains("serving /metrics"))?;
    let at = line.find("addr=")? + 5;
    Some(line[at..].split_whitespace().next()?.trim_matches('"').to_string())
}

/// `retl operator` as deploy/'s ServiceAccount, watching only `ns`.
pub async fn spawn_operator(ns: &Namespace, extra: &[&str]) -> Arc<Process> {
    let mut args = vec!["operator", "--namespace", ns.name(), "--metrics-addr", "127.0.0.1:0"];
    if !extra.contains(&"--worker-image") {
        args.extend(["--worker-image", IMAGE]);
    }
    args.extend_from_slice(extra);
    ns.spawn_as("retl-system", "retl-operator", &retl(), &args, &[]).await
}

impl Cluster {
    pub async fn start(setup: Setup<'_>) -> Cluster {
        let ns = worker_namespace(&test_name());
        let sink = Sink::start().await.unwrap();
        let operator = spawn_operator(&ns, &["--leader-lease", "none"]).await;
        let manifests = ns.dir().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let yaml = manifests_yaml(&manifests, &setup, &sink.url());
        std::fs::write(manifests.join("all.yaml"), &yaml).unwrap();
        ns.apply_yaml(&yaml).expect("manifests apply");
        let c = Cluster { ns, sink, operator, manifests, seen: Default::default() };
        if setup.ready_at_start {
            c.wait_ready("mapping", "users-api").await;
        } else {
            let h = &c;
            let said = wait_until(Duration::from_secs(30), || async { h.condition("mapping", "users-api", "Ready").is_some() }).await;
            assert!(said, "the Mapping gets a Ready condition: {}", c.yaml("mapping", "users-api"));
        }
        c
    }

    /// The operator's /metrics, as Prometheus scrapes it.
    pub async fn metrics(&self) -> String {
        let addr = metrics_addr(&self.operator.logs()).unwrap_or_else(|| panic!("no metrics address in:\n{}", self.operator.logs()));
        retl::install_crypto_provider();
        reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap()
    }

    pub fn kubelet(&self) -> &testcluster::Kubelet {
        cluster().kubelet()
    }

    pub async fn wait_ready(&self, kind: &str, name: &str) {
        let ok = wait_until(Duration::from_secs(30), || async { self.condition(kind, name, "Ready").as_deref() == Some("True") }).await;
        assert!(ok, "{kind} {name} becomes Ready:\n{}\n{}", self.yaml(kind, name), self.operator.logs());
    }

    pub fn condition(&self, kind: &str, name: &str, type_: &str) -> Option<String> {
        let obj = self.ns.kubectl_json(&["get", kind, name]).ok()?;
        obj["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
    }

    pub fn reason(&self, kind: &str, name: &str, type_: &str) -> (String, String) {
        let obj = self.ns.kubectl_json(&["get", kind, name]).unwrap_or_default();
        let c = obj["status"]["conditions"].as_array().and_then(|l| l.iter().find(|c| c["type"] == type_).cloned()).unwrap_or_default();
        (c["reason"].as_str().unwrap_or_default().to_string(), c["message"].as_str().unwrap_or_default().to_string())
    }

    pub fn yaml(&self, kind: &str, name: &str) -> String {
        self.ns.kubectl(&["get", kind, name, "-o", "yaml"]).map(|o| o.stdout).unwrap_or_default()
    }

    /// The Syncs, oldest first.
    pub fn syncs(&self) -> Vec<Value> {
        let list = self.ns.kubectl_json(&["get", "syncs", "--sort-by=.metadata.creationTimestamp"]).unwrap_or_default();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    pub fn annotate(&self, kind: &str, name: &str, kv: &str) {
        self.ns.kubectl_ok(&["annotate", "--overwrite", kind, name, kv]).expect("annotate");
    }

    /// What to print when a wait fails: the Syncs, Jobs and pods, and the operator's log.
    pub fn state(&self) -> String {
        let get = |what: &str| self.ns.kubectl(&["get", what, "-o", "wide"]).map(|o| o.stdout + &o.stderr).unwrap_or_default();
        format!("{}\n{}\n{}\n--- operator:\n{}", get("syncs"), get("jobs"), get("pods"), self.operator.logs())
    }

    /// Waits until `n` Syncs exist and all have finished; returns the one
    /// not returned before (creation times have only second resolution).
    pub async fn wait_finished(&self, n: usize) -> Value {
        let ok = wait_until(Duration::from_secs(90), || async {
            let s = self.syncs();
            s.len() == n && s.iter().all(is_finished)
        })
        .await;
        assert!(ok, "{n} finished Syncs:\n{}", self.state());
        let mut seen = self.seen.lock().unwrap();
        let new = self.syncs().into_iter().find(|s| !seen.iter().any(|n| s["metadata"]["name"] == n.as_str())).expect("a new Sync");
        seen.push(new["metadata"]["name"].as_str().unwrap_or_default().to_string());
        new
    }

    /// Waits until a Sync whose name starts with `prefix` has finished.
    pub async fn wait_finished_named(&self, prefix: &str) -> Value {
        let found = std::sync::Mutex::new(None);
        let ok = wait_until(Duration::from_secs(90), || {
            let hit =
                self.syncs().into_iter().find(|s| s["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(prefix)) && is_finished(s));
            let done = hit.is_some();
            *found.lock().unwrap() = hit;
            async move { done }
        })
        .await;
        assert!(ok, "a finished Sync named {prefix}*:\n{}", self.state());
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
        assert!(found, "a running Sync:\n{}", self.state());
        name
    }

    /// The Job of Sync `sync`, once the Sync names it.
    pub async fn job_of(&self, sync: &str) -> String {
        let mut job = String::new();
        let named = wait_until(Duration::from_secs(30), || {
            let s = self.ns.kubectl_json(&["get", "sync", sync]).unwrap_or_default();
            job = s["status"]["jobName"].as_str().unwrap_or_default().to_string();
            let found = !job.is_empty();
            async move { found }
        })
        .await;
        assert!(named, "Sync {sync} names its Job:\n{}", self.state());
        job
    }

    /// The name of the worker pod of Job `job` once it runs.
    pub async fn running_pod(&self, job: &str) -> String {
        let mut pod = String::new();
        let ns = self.ns.name().to_string();
        let running = wait_until(Duration::from_secs(30), || {
            let pods = self.ns.kubectl_json(&["get", "pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]).unwrap_or_default();
            pod = pods["items"][0]["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let up = !pod.is_empty() && self.kubelet().pid(&ns, &pod).is_some();
            async move { up }
        })
        .await;
        assert!(running, "a running pod of Job {job}:\n{}", self.state());
        pod
    }

    /// What the workers of this namespace printed, every pod's.
    pub fn worker_logs(&self) -> String {
        let pods = self.ns.kubectl_json(&["get", "pods"]).unwrap_or_default();
        let names = pods["items"].as_array().into_iter().flatten().filter_map(|p| p["metadata"]["name"].as_str());
        names.map(|pod| self.kubelet().logs(self.ns.name(), pod)).collect()
    }

    /// Kills the worker of Sync `sync` with SIGKILL, as a crash would.
    pub async fn kill_worker(&self, sync: &str) {
        let job = self.job_of(sync).await;
        let pod = self.running_pod(&job).await;
        assert!(self.kubelet().kill(self.ns.name(), &pod), "the worker process of {pod} is killed");
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

pub fn count(sync: &Value, path: &str) -> u64 {
    sync.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

pub fn manifests_yaml(dir: &Path, s: &Setup<'_>, sink_url: &str) -> String {
    let seed = dir.join("seed.sql");
    std::fs::write(&seed, testkit::seed::users_sql(s.rows)).unwrap();
    let db = dir.join("wh.db");
    format!(
        r#"apiVersion: retl.dev/v1alpha1
kind: Source
metadata: {{name: wh}}
spec: {{type: sqlite, sqlite: {{path: "{db}", seedFile: "{seed}"}}}}
---
apiVersion: retl.dev/v1alpha1
kind: Destination
metadata: {{name: api}}
spec:
  type: http
  http: {{url: "{sink_url}", batchSize: 10, maxInFlight: 1{http_extra}}}
  actions:
    - name: upsert
      fields: [{{name: id, type: string, required: true}}, {{name: email, type: string}}]
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: users}}
spec: {{sourceRef: {{name: wh}}, primaryKey: id, query: "SELECT id, email FROM users"}}
---
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {{name: users-api}}
spec:
  modelRef: {{name: users}}
  destinationRef: {{name: api}}
  action: upsert
  fields: [{{to: id, from: id}}, {{to: email, from: email}}]
{mapping_spec}{extra}"#,
        db = db.display(),
        seed = seed.display(),
        http_extra = s.http_extra,
        mapping_spec = s.mapping_spec,
        extra = s.extra_yaml,
    )
}
