//! deploy/ installed as a user installs it, through their own kustomize
//! overlay, on the real control plane: `kubectl apply --server-side -k` of
//! an overlay that puts retl in namespace `data-platform` and pins the
//! image tag `v0.3.1`. The installed operator (its Deployment's pods, run
//! by the test kubelet as the overlay's `retl-operator` ServiceAccount)
//! elects a leader with a Lease in its own namespace and syncs a Mapping
//! through a Job that runs the same image as `retl-worker`. Its own test
//! binary, so its control plane runs no other operator, and only the
//! pinned image can be pulled: a worker left on `:latest` would not start.

#[allow(dead_code)]
#[path = "operator/cluster.rs"]
mod cluster;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use testcluster::{TestCluster, wait_until};
use testkit::sink::Sink;

const IMAGE: &str = "ghcr.io/retl/retl:v0.3.1";

/// `to`, relative to directory `from` (kustomize takes only relative paths).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let ups = from.components().filter(|c| matches!(c, Component::Normal(_))).count();
    let mut out: PathBuf = std::iter::repeat_n("..", ups).collect();
    out.extend(to.components().filter(|c| matches!(c, Component::Normal(_))));
    out
}

/// A user's overlay of deploy/: another namespace, a pinned image tag, and
/// the one change pods here need (they share the host's network, so two
/// replicas cannot both bind :8080; testcluster/README.md).
fn overlay(dir: &Path) -> PathBuf {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    let kustomization = format!(
        r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: data-platform
resources:
  - {deploy}
images:
  - name: ghcr.io/retl/retl
    newTag: v0.3.1
patches:
  - patch: |
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: retl-operator}}
      spec:
        template:
          spec:
            containers:
              - name: operator
                env:
                  - {{name: RETL_METRICS_ADDR, value: "127.0.0.1:0"}}
"#,
        deploy = relative(&overlay, &deploy).display()
    );
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    overlay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_of_deploy_installs_with_kubectl_and_its_operator_syncs_a_mapping() {
    let cluster = TestCluster::shared(Arc::new(|image: &str| (image == IMAGE).then(cluster::retl)));
    let admin = |args: &[&str]| {
        let out = cluster.kubectl().run(args, None).unwrap();
        assert!(out.success(), "kubectl {}: {}", args.join(" "), out.stderr);
        out.stdout
    };
    let version: serde_json::Value = serde_json::from_str(&admin(&["version", "-o", "json"])).unwrap();
    let server = version["serverVersion"]["gitVersion"].as_str().unwrap_or_default();
    assert!(server.starts_with("v1.34."), "kubectl version reports Server {server}");

    let scratch = tempfile::tempdir().unwrap();
    let overlay = overlay(scratch.path());
    let applied = admin(&["apply", "--server-side", "-k", &overlay.display().to_string()]);
    assert!(applied.contains("deployment.apps/retl-operator serverside-applied"), "{applied}");
    admin(&["rollout", "status", "-n", "data-platform", "deployment/retl-operator", "--timeout=120s"]);
    let ready = wait_until(Duration::from_secs(60), || async {
        let d = cluster.kubectl().run(&["get", "deployment", "retl-operator", "-n", "data-platform", "-o", "json"], None).unwrap();
        let d: serde_json::Value = serde_json::from_str(&d.stdout).unwrap_or_default();
        d["status"]["readyReplicas"] == 2
    })
    .await;
    assert!(ready, "both replicas ready (leader and standby): {}", admin(&["get", "pods", "-n", "data-platform", "-o", "wide"]));

    // A namespace for Mappings, set up as the README says.
    let ns = cluster.namespace("team-a");
    cluster::add_worker_account(&ns);
    let sink = Sink::start().await.unwrap();
    let yaml = cluster::manifests_yaml(ns.dir(), &cluster::Setup::default(), &sink.url());
    ns.apply_yaml(&yaml).unwrap();
    let ready = wait_until(Duration::from_secs(60), || async {
        let m = ns.kubectl_json(&["get", "mapping", "users-api"]).unwrap_or_default();
        m["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
    .await;
    let operator_pods =
        || cluster.kubectl().run(&["get", "pods", "-n", "data-platform", "-o", "wide"], None).map(|o| o.stdout).unwrap_or_default();
    assert!(ready, "the Mapping becomes Ready:\n{}", operator_pods());

    ns.kubectl_ok(&["annotate", "mapping", "users-api", "retl.dev/sync-now=1"]).unwrap();
    let done = wait_until(Duration::from_secs(90), || async {
        let syncs = ns.kubectl_json(&["get", "syncs"]).unwrap_or_default();
        syncs["items"].as_array().into_iter().flatten().any(cluster::is_finished)
    })
    .await;
    let syncs = ns.kubectl_json(&["get", "syncs"]).unwrap();
    assert!(done, "a finished Sync: {syncs:#}\n{}", operator_pods());
    let s = &syncs["items"][0];
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    assert_eq!(sink.latest().len(), 25, "every record delivered");

    // The worker ran the operator's image as retl-worker, the operator as
    // the overlay's retl-operator; the Lease is in the operator's namespace.
    let job = s["status"]["jobName"].as_str().unwrap();
    let pods = ns.kubectl_json(&["get", "pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]).unwrap();
    assert_eq!(pods["items"][0]["spec"]["serviceAccountName"], "retl-worker");
    assert_eq!(pods["items"][0]["spec"]["containers"][0]["image"], IMAGE, "the worker image follows the operator's");
    let users: std::collections::BTreeSet<String> =
        cluster.audit().iter().filter_map(|e| e["user"]["username"].as_str().map(String::from)).collect();
    assert!(users.contains("system:serviceaccount:data-platform:retl-operator"), "{users:?}");
    assert!(users.contains(&format!("system:serviceaccount:{}:retl-worker", ns.name())), "{users:?}");
    let lease: serde_json::Value =
        serde_json::from_str(&admin(&["get", "lease", "retl-operator", "-n", "data-platform", "-o", "json"])).unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    assert!(holder.starts_with("retl-operator-"), "a replica of the Deployment leads: {holder}");
    let leases = admin(&["get", "leases", "-A", "-o", "name"]);
    assert_eq!(leases.lines().filter(|l| l.contains("retl-operator")).count(), 1, "no Lease elsewhere: {leases}");
}
