//! charts/retl with the real helm (v3.22.0, built from the Go module proxy
//! by testcluster::helm) and the real control plane: the chart lints, each
//! values file in charts/retl/ci renders objects the API server accepts,
//! the chart rendered with ci/deploy-values.yaml is deploy/ object by
//! object, its alerts use the metrics the operator exports, and
//! docs/helm-values.md is values.schema.json. Its own test binary, so its
//! control plane runs no other operator (install.rs: `helm install`).

#[allow(dead_code)]
#[path = "operator/cluster.rs"]
mod cluster;

#[path = "helm/install.rs"]
mod install;
#[path = "helm/values.rs"]
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use testcluster::TestCluster;

pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/retl")
}

/// The helm binary, built on first use (or `$RETL_HELM`).
fn helm_program() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| testcluster::helm::helm().unwrap_or_else(|e| panic!("no helm: {e}")))
}

/// What one helm run printed.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// helm with its own config, cache and data directories, so that nothing
/// of the user's ~/.config/helm is read or written.
pub fn helm(args: &[&str], kubeconfig: Option<&Path>) -> Ran {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir().expect("a temp dir")).path();
    let mut cmd = Command::new(helm_program());
    cmd.args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_KUBECONTEXT");
    match kubeconfig {
        Some(k) => cmd.env("KUBECONFIG", k),
        None => cmd.env("KUBECONFIG", home.join("no-cluster")),
    };
    let out = cmd.output().expect("helm runs");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// `helm template retl charts/retl -n NAMESPACE` with these values files
/// (relative to the chart) and extra arguments; panics with helm's message.
pub fn template(namespace: &str, values: &[&str], extra: &[&str]) -> String {
    let chart = chart().display().to_string();
    let files: Vec<String> = values.iter().map(|v| chart.clone() + "/" + v).collect();
    let mut args = vec!["template", "retl", &chart, "-n", namespace];
    for f in &files {
        args.extend(["-f", f]);
    }
    args.extend(extra);
    let out = helm(&args, None);
    assert!(out.ok, "helm {}: {}", args.join(" "), out.stderr);
    out.stdout
}

pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|d: &Value| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

#[test]
fn the_chart_lints_strictly_with_every_values_file() {
    let chart = chart().display().to_string();
    let out = helm(&["lint", "--strict", &chart], None);
    assert!(out.ok, "helm lint --strict: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("1 chart(s) linted, 0 chart(s) failed"), "{}", out.stdout);
    for file in ["ci/deploy-values.yaml", "ci/ha-values.yaml", "ci/teams-values.yaml"] {
        let values = format!("{chart}/{file}");
        let out = helm(&["lint", "--strict", &chart, "-f", &values], None);
        assert!(out.ok, "helm lint --strict -f {file}: {}{}", out.stdout, out.stderr);
    }
}

#[test]
fn values_the_chart_does_not_know_are_refused_with_a_reason() {
    let chart = chart().display().to_string();
    let out = helm(&["template", "retl", &chart, "--set", "replica=3"], None);
    assert!(!out.ok, "a misspelt key renders: {}", out.stdout);
    assert!(out.stderr.contains("replica"), "the message names the key: {}", out.stderr);
    let out = helm(&["template", "retl", &chart, "--set", "metrics.serviceMonitor.interval=soon"], None);
    assert!(!out.ok && out.stderr.contains("interval"), "a duration that is none: {}", out.stderr);
    let out = helm(&["template", "retl", &chart, "--set", "leaderElection.lease=none"], None);
    assert!(!out.ok && out.stderr.contains("leader election"), "two replicas without a Lease: {}", out.stderr);
    let out = helm(&["template", "retl", &chart, "--set", "leaderElection.lease=none", "--set", "replicas=1"], None);
    assert!(out.ok, "one replica without a Lease: {}", out.stderr);
}

/// `100000.0` as `100000`: kustomize re-encodes the CRDs' whole-number
/// floats as integers, which the API server reads as the same number.
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 1e15 {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Drops what Helm adds and kustomize does not (tests/helm/values.rs
/// HELM_LABELS), so that the rest must be equal.
fn normalised(mut doc: Value) -> Value {
    whole_numbers(&mut doc);
    // pointer_mut, not doc["metadata"]["labels"]: IndexMut inserts a null.
    if let Some(labels) = doc.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        for l in values::HELM_LABELS {
            labels.remove(l);
        }
        if labels.is_empty() {
            doc["metadata"].as_object_mut().unwrap().remove("labels");
        }
    }
    doc
}

fn by_identity(docs: Vec<Value>) -> BTreeMap<String, Value> {
    docs.into_iter()
        .map(|d| {
            let m = &d["metadata"];
            let id = format!(
                "{} {}/{}",
                d["kind"].as_str().unwrap_or("?"),
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap_or("?")
            );
            (id, normalised(d))
        })
        .collect()
}

/// The first lines where two pretty-printed objects differ, with context.
fn difference(a: &Value, b: &Value) -> String {
    let (a, b) = (serde_json::to_string_pretty(a).unwrap(), serde_json::to_string_pretty(b).unwrap());
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let first = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)).unwrap_or(0);
    let from = first.saturating_sub(4);
    let show = |l: &[&str]| l.iter().skip(from).take(10).map(|s| format!("    {s}")).collect::<Vec<_>>().join("\n");
    format!("  deploy/ (kubectl kustomize) at line {first}:\n{}\n  chart (helm template):\n{}", show(&a), show(&b))
}

#[test]
fn deploy_is_the_chart_rendered_with_the_deploy_values() {
    let fix = "deploy/ is the chart rendered with charts/retl/ci/deploy-values.yaml \
               (`helm template retl charts/retl -n retl-system --include-crds -f charts/retl/ci/deploy-values.yaml`, \
               less Helm's own labels, plus deploy/namespace.yaml): change the two together";
    let chart = by_identity(documents(&template("retl-system", &["ci/deploy-values.yaml"], &["--include-crds"])));
    // helm makes the release namespace (`--create-namespace`); deploy/ has to.
    let deploy = by_identity(cluster::rendered_deploy().into_iter().filter(|d| d["kind"] != "Namespace").collect());
    let only =
        |a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>| a.keys().filter(|k| !b.contains_key(*k)).cloned().collect::<Vec<_>>();
    assert!(only(&deploy, &chart).is_empty(), "only in deploy/: {:?}\n{fix}", only(&deploy, &chart));
    assert!(only(&chart, &deploy).is_empty(), "only in the chart: {:?}\n{fix}", only(&chart, &deploy));
    for (id, d) in &deploy {
        assert!(d == &chart[id], "{id} differs:\n{}\n{fix}", difference(d, &chart[id]));
    }
    assert!(deploy.len() >= 12, "CRDs, accounts, RBAC and the Deployment: {:?}", deploy.keys());
}

/// `kubectl apply --dry-run=server` of one rendering: the real API server
/// validates every object (schemas, RBAC rules, PDB, NetworkPolicy).
fn accepted_by_the_api_server(cluster: &TestCluster, yaml: &str) -> String {
    let out = cluster.kubectl().run(&["apply", "--dry-run=server", "-f", "-"], Some(yaml)).unwrap();
    assert!(out.success(), "kubectl apply --dry-run=server refused it: {}\n{yaml}", out.stderr);
    out.stdout
}

#[test]
fn every_values_file_renders_what_the_api_server_accepts() {
    let cluster = TestCluster::shared(cluster::images());
    // Dry runs need the namespaces they write into.
    for ns in ["retl-dry", "team-a", "team-b"] {
        let _ = cluster.kubectl().run(&["create", "namespace", ns], None);
    }

    let yaml = template("retl-dry", &[], &["--include-crds"]);
    let applied = accepted_by_the_api_server(cluster, &yaml);
    assert!(applied.contains("deployment.apps/retl-operator created (server dry run)"), "{applied}");
    let docs = documents(&yaml);
    let d = find(&docs, "Deployment", "retl-operator").expect("the Deployment");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(pod["containers"][0]["image"], format!("ghcr.io/retl/retl:{}", env!("CARGO_PKG_VERSION")), "image.tag is appVersion");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(find(&docs, "PodDisruptionBudget", "retl-operator").is_some(), "two replicas get a PDB");
    assert!(find(&docs, "Service", "retl-operator-metrics").is_some(), "the metrics Service");
    assert!(!yaml.contains("monitoring.coreos.com"), "no Prometheus Operator objects by default");

    let yaml = template("retl-dry", &["ci/ha-values.yaml"], &[]);
    accepted_by_the_api_server(cluster, &yaml);
    let docs = documents(&yaml);
    let d = find(&docs, "Deployment", "retl-operator").unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["template"]["spec"]["topologySpreadConstraints"].as_array().map(Vec::len), Some(2));
    assert_eq!(d["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(find(&docs, "PodDisruptionBudget", "retl-operator").unwrap()["spec"]["maxUnavailable"], 1);

    let yaml = template("retl-dry", &["ci/teams-values.yaml"], &[]);
    accepted_by_the_api_server(cluster, &yaml);
    let docs = documents(&yaml);
    let d = find(&docs, "Deployment", "retl-operator").unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example.com/data/retl:v0.3.1");
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    assert!(find(&docs, "PodDisruptionBudget", "retl-operator").is_none(), "one replica: no PDB");
    assert!(find(&docs, "NetworkPolicy", "retl-operator").is_some());
    for ns in ["team-a", "team-b"] {
        let bound = docs.iter().any(|d| {
            d["kind"] == "RoleBinding"
                && d["metadata"]["namespace"] == ns
                && d["roleRef"]["name"] == "retl-worker"
                && d["subjects"][0]["name"] == "retl-worker"
        });
        let account = docs.iter().any(|d| d["kind"] == "ServiceAccount" && d["metadata"]["namespace"] == ns);
        assert!(bound && account, "{ns} gets the workers' account and binding");
    }

    // With the Prometheus Operator's CRDs (from its Go module) installed, the
    // ServiceMonitor and PrometheusRule are accepted against their schemas.
    install_prometheus_operator_crds(cluster);
    let yaml = template("retl-dry", &[], &["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true"]);
    let applied = accepted_by_the_api_server(cluster, &yaml);
    for created in
        ["servicemonitor.monitoring.coreos.com/retl-operator created", "prometheusrule.monitoring.coreos.com/retl-operator created"]
    {
        assert!(applied.contains(created), "{applied}");
    }
}

/// The ServiceMonitor and PrometheusRule CRDs, as the Prometheus Operator ships them.
fn install_prometheus_operator_crds(cluster: &TestCluster) {
    let dir = testcluster::go_tool::PROMETHEUS_OPERATOR.dir().unwrap_or_else(|e| panic!("{e}")).join("example/prometheus-operator-crd");
    for crd in ["servicemonitors", "prometheusrules"] {
        let file = dir.join(format!("monitoring.coreos.com_{crd}.yaml"));
        let out = cluster.kubectl().run(&["apply", "--server-side", "--force-conflicts", "-f", &file.display().to_string()], None).unwrap();
        assert!(out.success(), "{}", out.stderr);
        let name = format!("crd/{crd}.monitoring.coreos.com");
        let out = cluster.kubectl().run(&["wait", "--for=condition=Established", &name, "--timeout=60s"], None).unwrap();
        assert!(out.success(), "{}", out.stderr);
    }
}
