//! Argo CD health checks (argocd/health/*.lua), run in gopher-lua (Argo
//! CD's own Lua 5.1 runtime, built from the Go module proxy) against
//! objects read back from a real kube-apiserver in each state, and the
//! ConfigMap snippet users paste (argocd/argocd-cm.yaml), which must hold
//! exactly those scripts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use testcluster::{Namespace, TestCluster};

/// Which script answers for which kind.
const CHECKS: [(&str, &str); 6] = [
    ("Sync", "sync.lua"),
    ("Mapping", "mapping.lua"),
    ("Source", "ready.lua"),
    ("Model", "ready.lua"),
    ("Destination", "ready.lua"),
    ("SyncAlert", "ready.lua"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `argocd-cm` data that installs every check.
fn config_map() -> String {
    let mut out = String::from(
        "# Argo CD health checks for retl's kinds: merge into the argocd-cm ConfigMap\n\
         # (generated from argocd/health/*.lua: `RETL_UPDATE_DOCS=1 cargo test --test argocd`).\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n  labels:\n    app.kubernetes.io/part-of: argocd\ndata:\n",
    );
    for (kind, file) in CHECKS {
        let script = std::fs::read_to_string(repo().join("argocd/health").join(file)).unwrap();
        out.push_str(&format!("  resource.customizations.health.retl.dev_{kind}: |\n"));
        for line in script.lines() {
            out.push_str(&if line.is_empty() { "\n".to_string() } else { format!("    {line}\n") });
        }
    }
    out
}

#[test]
fn the_config_map_holds_exactly_the_checks() {
    let path = repo().join("argocd/argocd-cm.yaml");
    let expected = config_map();
    if std::env::var_os("RETL_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(on_disk, expected, "argocd/argocd-cm.yaml is out of date: `RETL_UPDATE_DOCS=1 cargo test --test argocd`");
    let parsed: Value = serde_yaml_ng::from_str(&on_disk).expect("the snippet is YAML");
    assert_eq!(parsed["data"].as_object().map(|d| d.len()), Some(6));
}

fn glua() -> &'static PathBuf {
    static GLUA: OnceLock<PathBuf> = OnceLock::new();
    GLUA.get_or_init(|| testcluster::go_tool::GLUA.path().unwrap_or_else(|e| panic!("no glua: {e}")))
}

/// A JSON value as a Lua table constructor, as Argo CD hands objects to
/// its scripts (null is nil; arrays count from 1).
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!("{{{}}}", o.iter().map(|(k, v)| format!("[{k:?}] = {}", lua(v))).collect::<Vec<_>>().join(", ")),
    }
}

/// What the health check of `kind` says of `obj`: (status, message).
fn health(kind: &str, obj: &Value) -> (String, String) {
    let file = CHECKS.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f).unwrap();
    let script = repo().join("argocd/health").join(file);
    let tmp = tempfile::tempdir().unwrap();
    let harness = tmp.path().join("run.lua");
    std::fs::write(
        &harness,
        format!(
            "obj = {}\nlocal check = assert(loadfile({:?}))\nlocal hs = check()\nprint(hs.status)\nprint(hs.message or \"\")\n",
            lua(obj),
            script.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(glua()).arg(&harness).output().expect("glua runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{kind}: {}{}", text, String::from_utf8_lossy(&out.stderr));
    let mut lines = text.lines();
    (lines.next().unwrap_or_default().to_string(), lines.next().unwrap_or_default().to_string())
}

fn cluster() -> &'static TestCluster {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let cluster = TestCluster::shared(Arc::new(|_image: &str| None));
    INSTALLED.get_or_init(|| {
        let dir = repo().join("crds").display().to_string();
        let out = cluster.kubectl().run(&["apply", "--server-side", "-f", &dir], None).expect("kubectl runs");
        assert!(out.success(), "applying crds/: {}", out.stderr);
        let out =
            cluster.kubectl().run(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None).expect("kubectl runs");
        assert!(out.success(), "{}", out.stderr);
    });
    cluster
}

/// Applies `yaml`, sets `status` through the status subresource, and reads
/// the object back as the API server serves it.
fn captured(ns: &Namespace, kind: &str, name: &str, yaml: &str, status: Value) -> Value {
    ns.apply_yaml(yaml).expect("applies");
    let plural = format!("{}s", kind.to_lowercase());
    if !status.is_null() {
        let patch = serde_json::json!({ "status": status }).to_string();
        let out = ns.kubectl(&["patch", &plural, name, "--subresource=status", "--type=merge", "-p", &patch]).unwrap();
        assert!(out.success(), "{}", out.stderr);
    }
    ns.kubectl_json(&["get", &plural, name]).unwrap()
}

fn ready(status: bool, reason: &str, message: &str, generation: i64) -> Value {
    serde_json::json!({"conditions": [{"type": "Ready", "status": if status { "True" } else { "False" }, "reason": reason,
        "message": message, "lastTransitionTime": "2026-12-01T10:00:00Z", "observedGeneration": generation}]})
}

#[test]
fn every_kind_reports_its_health_in_each_state() {
    let ns = cluster().namespace("argocd");
    let sync = |name: &str, status: Value| {
        let yaml =
            format!("apiVersion: retl.dev/v1alpha1\nkind: Sync\nmetadata: {{name: {name}}}\nspec: {{mappingRef: {{name: users}}}}\n");
        health("Sync", &captured(&ns, "Sync", name, &yaml, status))
    };
    assert_eq!(sync("new", Value::Null).0, "Progressing");
    let running = sync("running", serde_json::json!({"phase": "InProgress", "progress": {"extracted": 40, "loaded": 30}}));
    assert_eq!(running, ("Progressing".into(), "syncing: 40 records extracted, 30 loaded".into()));
    let loaded = |succeeded: u64, failed: u64| serde_json::json!({"succeeded": succeeded, "failed": failed, "skipped": 0, "expired": 0, "new": succeeded, "updated": 0, "deleted": 0});
    let ok = sync("ok", serde_json::json!({"phase": "Successful", "loaded": loaded(25, 0)}));
    assert_eq!(ok, ("Healthy".into(), "25 records loaded".into()));
    let partial = sync("partial", serde_json::json!({"phase": "PartiallySuccessful", "loaded": loaded(24, 1)}));
    assert_eq!(partial, ("Degraded".into(), "24 records loaded, 1 rejected".into()));
    let failed = sync("failed", serde_json::json!({"phase": "Failed", "reason": "QueryFailed", "message": "no such table: users"}));
    assert_eq!(failed, ("Degraded".into(), "QueryFailed: no such table: users".into()));
    assert_eq!(sync("canceled", serde_json::json!({"phase": "Canceled"})).0, "Suspended");

    let mapping = |name: &str, enabled: bool, status: Value| {
        let yaml = format!(
            "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec: {{modelRef: {{name: users}}, destinationRef: {{name: crm}}, action: upsert, enabled: {enabled}}}\n"
        );
        health("Mapping", &captured(&ns, "Mapping", name, &yaml, status))
    };
    assert_eq!(mapping("fresh", true, Value::Null).0, "Progressing");
    assert_eq!(mapping("disabled", false, Value::Null).0, "Suspended");
    let mut healthy = ready(true, "Ready", "ready", 1);
    healthy["lastSync"] = serde_json::json!({"name": "healthy-1", "phase": "Successful"});
    assert_eq!(mapping("healthy", true, healthy).0, "Healthy");
    let mut last_failed = ready(true, "Ready", "ready", 1);
    last_failed["lastSync"] = serde_json::json!({"name": "lf-1", "phase": "Failed"});
    assert_eq!(mapping("lf", true, last_failed), ("Degraded".into(), "last sync lf-1 was Failed".into()));
    let broken = mapping("broken", true, ready(false, "ReferenceNotFound", "Model \"users\" does not exist", 1));
    assert_eq!(broken, ("Degraded".into(), "ReferenceNotFound: Model \"users\" does not exist".into()));
    assert_eq!(mapping("stale", true, ready(true, "Ready", "ready", 0)).0, "Progressing", "a status older than the spec");

    for (kind, yaml) in [
        ("Source", "apiVersion: retl.dev/v1alpha1\nkind: Source\nmetadata: {name: wh}\nspec: {type: sqlite, sqlite: {path: wh.db}}\n"),
        ("SyncAlert", "apiVersion: retl.dev/v1alpha1\nkind: SyncAlert\nmetadata: {name: team}\nspec: {}\n"),
    ] {
        let name = if kind == "Source" { "wh" } else { "team" };
        assert_eq!(health(kind, &captured(&ns, kind, name, yaml, Value::Null)).0, "Progressing", "{kind} not yet checked");
        let bad = health(kind, &captured(&ns, kind, name, yaml, ready(false, "SecretNotFound", "Secret \"x\" is missing", 1)));
        assert_eq!(bad, ("Degraded".into(), "SecretNotFound: Secret \"x\" is missing".into()), "{kind}");
        let good = health(kind, &captured(&ns, kind, name, yaml, ready(true, "Ready", "connected", 1)));
        assert_eq!(good, ("Healthy".into(), "connected".into()), "{kind}");
    }
}
