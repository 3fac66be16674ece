//! The cluster the benchmark runs on, set up as the end-to-end tests set
//! theirs up (tests/operator/cluster.rs): the real control plane
//! (testcluster), deploy/'s CRDs and RBAC applied server-side, a namespace
//! with the workers' ServiceAccount bound to `retl-worker`, the real `retl
//! operator` running as deploy/'s `retl-operator` ServiceAccount, and one
//! Source (SQLite), Model and Destination (a local HTTP sink) shared by N
//! Mappings on `* * * * *`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use retl::api::{Mapping, Model};
use serde_json::Value;
use testcluster::{Namespace, Process, TestCluster};

use crate::Error;

/// The image of the operator's workers; the test kubelet runs this binary for it.
pub const IMAGE: &str = "ghcr.io/retl/retl:bench";

/// The control plane, with deploy/ applied (its Deployment left out: the
/// benchmark runs the operator itself, as the tests do).
pub fn cluster() -> Result<&'static TestCluster, Error> {
    let me = std::env::current_exe()?;
    let images: testcluster::ImageMap = Arc::new(move |image: &str| (image == IMAGE).then(|| me.clone()));
    let cluster = TestCluster::shared(images);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let out = cluster.kubectl().run(&["kustomize", &dir.display().to_string()], None)?;
    if !out.success() {
        return Err(format!("kubectl kustomize deploy/: {}", out.stderr).into());
    }
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out.stdout)
        .map(serde::Deserialize::deserialize)
        .collect::<Result<Vec<Value>, _>>()?
        .into_iter()
        .filter(|d| d["kind"] != "Deployment")
        .collect();
    let list = serde_json::to_string(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs}))?;
    let out = cluster.kubectl().run(&["apply", "--server-side", "--field-manager=retl-bench", "-f", "-"], Some(&list))?;
    if !out.success() {
        return Err(format!("applying deploy/: {}", out.stderr).into());
    }
    let out = cluster.kubectl().run(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None)?;
    if !out.success() {
        return Err(format!("CRDs not established: {}", out.stderr).into());
    }
    Ok(cluster)
}

/// A namespace for the Mappings, with the workers' ServiceAccount as the README says.
pub fn namespace(cluster: &'static TestCluster) -> Result<Namespace, Error> {
    let ns = cluster.namespace("bench");
    ns.kubectl_ok(&["create", "serviceaccount", "retl-worker"])?;
    let sa = format!("{}:retl-worker", ns.name());
    ns.kubectl_ok(&["create", "rolebinding", "retl-worker", "--clusterrole=retl-worker", "--serviceaccount", &sa])?;
    Ok(ns)
}

/// `retl operator` as deploy/'s ServiceAccount, watching every namespace
/// (deploy/'s default), without leader election (one replica).
pub async fn operator(ns: &Namespace, retl: &Path, job_ttl_seconds: u32) -> Arc<Process> {
    let ttl = job_ttl_seconds.to_string();
    let args = ["operator", "--worker-image", IMAGE, "--metrics-addr", "127.0.0.1:0", "--leader-lease", "none", "--job-ttl-seconds", &ttl];
    ns.spawn_as("retl-system", "retl-operator", retl, &args, &[]).await
}

/// The Source, Model and Destination every Mapping shares.
pub fn shared_manifests(dir: &Path, sink_url: &str) -> Result<String, Error> {
    std::fs::create_dir_all(dir)?;
    let seed = dir.join("seed.sql");
    std::fs::write(&seed, testkit::seed::users_sql(3))?;
    let db = dir.join("wh.db");
    Ok(format!(
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
  http: {{url: "{sink_url}", batchSize: 10, maxInFlight: 1}}
  actions:
    - name: upsert
      fields: [{{name: id, type: string, required: true}}, {{name: email, type: string}}]
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: users}}
spec: {{sourceRef: {{name: wh}}, primaryKey: id, query: "SELECT id, email FROM users"}}
"#,
        db = db.display(),
        seed = seed.display(),
    ))
}

/// N Mappings on a one-minute schedule, as one List. Two successful Syncs
/// are kept (the default is 10) so that the steady state, a Sync created
/// and one deleted per Mapping and minute, begins at the third tick.
pub fn mappings(n: usize) -> Result<String, Error> {
    let items: Vec<Value> = (0..n).map(mapping).collect();
    Ok(serde_json::to_string(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))?)
}

/// The `i`th of those Mappings.
pub fn mapping(i: usize) -> Value {
    serde_json::json!({
        "apiVersion": "retl.dev/v1alpha1",
        "kind": "Mapping",
        "metadata": {"name": format!("m{i:04}")},
        "spec": {
            "modelRef": {"name": "users"},
            "destinationRef": {"name": "api"},
            "action": "upsert",
            "fields": [{"to": "id", "from": "id"}, {"to": "email", "from": "email"}],
            "schedule": "* * * * *",
            "successfulSyncsHistoryLimit": 2,
            "failedSyncsHistoryLimit": 2,
        },
    })
}

/// Applies `manifest` server-side, as a GitOps tool would.
pub fn apply(ns: &Namespace, manifest: &str) -> Result<(), Error> {
    let out = ns.kubectl_stdin(&["apply", "--server-side", "--field-manager=retl-bench", "-f", "-"], manifest)?;
    if !out.success() {
        return Err(format!("kubectl apply: {}", out.stderr).into());
    }
    Ok(())
}

fn ready(conditions: &[retl::api::Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until the Model is Ready (its Source connected, its columns known).
pub async fn wait_model(client: &kube::Client, ns: &str, timeout: Duration) -> Result<(), Error> {
    let models: Api<Model> = Api::namespaced(client.clone(), ns);
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Some(m) = models.get_opt("users").await?
            && m.status.as_ref().is_some_and(|s| ready(&s.conditions))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("the Model did not become Ready".into())
}

/// Waits until every Mapping is Ready with its next tick scheduled; how many are.
pub async fn wait_mappings(client: &kube::Client, ns: &str, n: usize, timeout: Duration) -> Result<usize, Error> {
    let mappings: Api<Mapping> = Api::namespaced(client.clone(), ns);
    let end = Instant::now() + timeout;
    let mut scheduled = 0;
    while Instant::now() < end {
        let list = mappings.list(&ListParams::default()).await?;
        scheduled =
            list.items.iter().filter(|m| m.status.as_ref().is_some_and(|s| ready(&s.conditions) && s.next_schedule_time.is_some())).count();
        if scheduled >= n {
            return Ok(scheduled);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(scheduled)
}

/// The operator binary: `--retl PATH`, else the one cargo built with this
/// benchmark (the bench profile, i.e. release).
pub fn retl_binary(arg: Option<&str>) -> PathBuf {
    arg.map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_retl")))
}
