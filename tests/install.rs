//! deploy/ installed as a user installs it, on the real control plane:
//! `kubectl apply --server-side -k deploy/`, then the installed operator
//! (its Deployment's pods, run by the test kubelet as deploy/'s
//! `retl-operator` ServiceAccount) syncs a Mapping through a Job that runs
//! as `retl-worker`. Its own test binary, so its control plane runs no other
//! operator.

#[allow(dead_code)]
#[path = "operator/cluster.rs"]
mod cluster;

use std::path::Path;
use std::time::Duration;

use testcluster::{TestCluster, wait_until};
use testkit::sink::Sink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_installs_with_kubectl_and_its_operator_syncs_a_mapping() {
    let cluster = TestCluster::shared(cluster::images());
    let admin = |args: &[&str]| {
        let out = cluster.kubectl().run(args, None).unwrap();
        assert!(out.success(), "kubectl {}: {}", args.join(" "), out.stderr);
        out.stdout
    };
    let version: serde_json::Value = serde_json::from_str(&admin(&["version", "-o", "json"])).unwrap();
    let server = version["serverVersion"]["gitVersion"].as_str().unwrap_or_default();
    assert!(server.starts_with("v1.34."), "kubectl version reports Server {server}");

    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let applied = admin(&["apply", "--server-side", "-k", &deploy.display().to_string()]);
    assert!(applied.contains("deployment.apps/retl-operator serverside-applied"), "{applied}");
    // Pods here share the host's network: two replicas cannot both bind
    // :8080 (testcluster/README.md), so the metrics port is the one change.
    admin(&["set", "env", "-n", "retl-system", "deployment/retl-operator", "RETL_METRICS_ADDR=127.0.0.1:0"]);
    admin(&["rollout", "status", "-n", "retl-system", "deployment/retl-operator", "--timeout=120s"]);

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
        || cluster.kubectl().run(&["get", "pods", "-n", "retl-system", "-o", "wide"], None).map(|o| o.stdout).unwrap_or_default();
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

    // The worker ran as retl-worker, the operator as retl-operator.
    let job = s["status"]["jobName"].as_str().unwrap();
    let pods = ns.kubectl_json(&["get", "pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]).unwrap();
    assert_eq!(pods["items"][0]["spec"]["serviceAccountName"], "retl-worker");
    let users: std::collections::BTreeSet<String> =
        cluster.audit().iter().filter_map(|e| e["user"]["username"].as_str().map(String::from)).collect();
    assert!(users.contains("system:serviceaccount:retl-system:retl-operator"), "{users:?}");
    assert!(users.contains(&format!("system:serviceaccount:{}:retl-worker", ns.name())), "{users:?}");
    let lease: serde_json::Value =
        serde_json::from_str(&admin(&["get", "lease", "retl-operator", "-n", "retl-system", "-o", "json"])).unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    assert!(holder.starts_with("retl-operator-"), "a replica of the Deployment leads: {holder}");
}
