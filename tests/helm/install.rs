//! `helm install` of charts/retl on the real control plane, as the README
//! says: the chart's operator (run by the test kubelet as the chart's
//! `retl-operator` ServiceAccount) syncs a Mapping in a namespace of
//! `workerNamespaces` through a worker that runs as the chart's
//! `retl-worker` account, and a `helm upgrade` that replaces the operator
//! while the sync runs leaves it finishing; `helm uninstall` then removes
//! the operator and leaves the CRDs and the user's objects, as Helm does
//! with `crds/`.

use std::time::Duration;

use testcluster::{TestCluster, wait_until};
use testkit::sink::Sink;

use super::{chart, cluster, helm};

/// A port nothing listens on: pods share the host's network here
/// (testcluster/README.md), so the chart's 8080 may be taken.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_syncs_with_the_charts_accounts_and_uninstall_keeps_crds_and_mappings() {
    let cluster = TestCluster::shared(cluster::images());
    let kubeconfig = Some(cluster.kubeconfig());
    let admin = |args: &[&str]| {
        let out = cluster.kubectl().run(args, None).unwrap();
        assert!(out.success(), "kubectl {}: {}", args.join(" "), out.stderr);
        out.stdout
    };
    let ns = cluster.namespace("team-helm");
    let chart = chart().display().to_string();
    // Recreate: an old and a new operator Pod would both bind the metrics
    // port on this host network.
    let settings =
        format!("image.tag=test,replicas=1,strategy.type=Recreate,metrics.port={},workerNamespaces={{{}}}", free_port(), ns.name());
    let install = ["install", "retl", &chart, "-n", "retl-helm", "--create-namespace", "--set", &settings, "--wait", "--timeout", "180s"];
    let out = helm(&install, kubeconfig);
    assert!(out.ok, "helm install: {}{}\n{}", out.stdout, out.stderr, admin(&["get", "pods", "-A", "-o", "wide"]));
    assert!(out.stdout.contains("STATUS: deployed"), "{}", out.stdout);

    let sink = Sink::start().await.unwrap();
    let yaml = cluster::manifests_yaml(ns.dir(), &cluster::Setup { rows: 300, ..Default::default() }, &sink.url());
    ns.apply_yaml(&yaml).unwrap();
    let operator_pods = || admin(&["get", "pods", "-n", "retl-helm", "-o", "wide"]);
    let ready = wait_until(Duration::from_secs(60), || async {
        let m = ns.kubectl_json(&["get", "mapping", "users-api"]).unwrap_or_default();
        m["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
    .await;
    assert!(ready, "the Mapping becomes Ready:\n{}", operator_pods());
    // A slow destination (30 batches of 1 s), so that the sync outlasts the upgrade.
    sink.set(|b| b.stall = Some(Duration::from_secs(1)));
    ns.kubectl_ok(&["annotate", "mapping", "users-api", "retl.dev/sync-now=1"]).unwrap();
    let running = wait_until(Duration::from_secs(60), || async { sink.received().len() >= 20 }).await;
    assert!(running, "the sync sends: {}", operator_pods());
    let before = admin(&["get", "pods", "-n", "retl-helm", "-o", "name"]);
    let upgrade = ["upgrade", "retl", &chart, "-n", "retl-helm", "--reuse-values", "--set", "podAnnotations.example\\.com/upgraded=yes"];
    let out = helm(&[&upgrade[..], &["--wait", "--timeout", "120s"]].concat(), kubeconfig);
    assert!(out.ok, "helm upgrade: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("REVISION: 2"), "{}", out.stdout);
    let after = admin(&["get", "pods", "-n", "retl-helm", "-o", "name"]);
    assert_ne!(before, after, "the upgrade replaced the operator's Pod");
    assert!(sink.received().len() < 300, "the sync still ran when the new operator came up");
    let done = wait_until(Duration::from_secs(120), || async {
        let syncs = ns.kubectl_json(&["get", "syncs"]).unwrap_or_default();
        syncs["items"].as_array().into_iter().flatten().any(cluster::is_finished)
    })
    .await;
    let syncs = ns.kubectl_json(&["get", "syncs"]).unwrap();
    assert!(done, "a finished Sync: {syncs:#}\n{}", operator_pods());
    let s = &syncs["items"][0];
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    assert_eq!(sink.latest().len(), 300, "every record delivered");

    // Both ran as the chart's accounts, the worker with the operator's image.
    let job = s["status"]["jobName"].as_str().unwrap();
    let pods = ns.kubectl_json(&["get", "pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]).unwrap();
    assert_eq!(pods["items"][0]["spec"]["serviceAccountName"], "retl-worker");
    assert_eq!(pods["items"][0]["spec"]["containers"][0]["image"], "ghcr.io/retl/retl:test");
    let users: std::collections::BTreeSet<String> =
        cluster.audit().iter().filter_map(|e| e["user"]["username"].as_str().map(String::from)).collect();
    assert!(users.contains("system:serviceaccount:retl-helm:retl-operator"), "{users:?}");
    assert!(users.contains(&format!("system:serviceaccount:{}:retl-worker", ns.name())), "{users:?}");

    let out = helm(&["uninstall", "retl", "-n", "retl-helm", "--wait", "--timeout", "120s"], kubeconfig);
    assert!(out.ok, "helm uninstall: {}{}", out.stdout, out.stderr);
    let gone = wait_until(Duration::from_secs(60), || async {
        cluster.kubectl().run(&["get", "deployment", "retl-operator", "-n", "retl-helm"], None).is_ok_and(|o| !o.success())
    })
    .await;
    assert!(gone, "the operator is removed: {}", operator_pods());
    let crds = admin(&["get", "crds", "-o", "name"]);
    assert_eq!(crds.lines().filter(|l| l.ends_with(".retl.dev")).count(), 6, "helm never deletes crds/: {crds}");
    ns.kubectl_ok(&["get", "mapping", "users-api"]).expect("the Mapping stays");
    ns.kubectl_ok(&["get", "sync", s["metadata"]["name"].as_str().unwrap()]).expect("its Syncs stay");
}
