//! deploy/: `kubectl kustomize deploy/` renders, and its RBAC rules cover
//! every API call the operator and the worker make in a broad end-to-end
//! run, and nothing more. The calls come from the test API server's audit
//! log, told apart by the user agent each component sends.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::cluster::{Cluster, Setup, spawn_operator};

type Rule = (String, String, String); // (group, resource[/subresource], verb)

fn rendered() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let out = std::process::Command::new("kubectl").args(["kustomize"]).arg(&dir).output().expect("kubectl is required");
    assert!(out.status.success(), "kubectl kustomize deploy/: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn rules_of(docs: &[Value], role: &str) -> BTreeSet<Rule> {
    let r = docs.iter().find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == role).expect("role");
    let mut out = BTreeSet::new();
    for rule in r["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for res in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    out.insert((g.as_str().unwrap().into(), res.as_str().unwrap().into(), v.as_str().unwrap().into()));
                }
            }
        }
    }
    out
}

#[test]
fn deploy_renders_with_everything_needed() {
    let docs = rendered();
    let kinds: BTreeSet<String> = docs.iter().map(|d| d["kind"].as_str().unwrap_or_default().to_string()).collect();
    for k in ["CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"] {
        assert!(kinds.contains(k), "{k} in {kinds:?}");
    }
    let d = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][0], "operator");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(docs.iter().filter(|d| d["kind"] == "CustomResourceDefinition").count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_covers_exactly_the_calls_made() {
    let c = Cluster::start(Setup {
        rows: 60,
        mapping_spec: "  successfulSyncsHistoryLimit: 1\n",
        http_extra: ", headers: [{name: X-Token, valueFrom: {name: api-token, key: token}}]",
    })
    .await;
    c.h.apply_yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: api-token, namespace: default}\nstringData: {token: t0k3n}\n").unwrap();
    c.h.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: retl-system}\n").unwrap();
    c.operator.kill();
    let _leader = spawn_operator(&c.h, &["--leader-lease", "retl-system/retl", "--identity", "a"]);
    c.sink.set(|b| {
        b.reject_keys.insert("2".into());
    });
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let first = c.wait_finished(1).await;
    let first = first["metadata"]["name"].as_str().unwrap().to_string();
    // A second apart: creation times have one-second resolution, and the
    // history limit keeps Syncs created in the same second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.annotate("sync", &first, "retl.dev/replay=1");
    c.wait_finished_named(&format!("{first}-replay-")).await;
    let h = &c;
    assert!(
        testkube::wait_until(Duration::from_secs(20), || async { h.syncs().len() == 1 }).await,
        "history limit 1 deletes the older Sync"
    );
    c.sink.set(|b| b.stall = Some(Duration::from_millis(200)));
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let running = c.running().await;
    c.annotate("sync", &running, "retl.dev/cancel=1");
    c.wait_finished_named(&running).await;
    // Long enough for the leader to renew its Lease (every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;

    let docs = rendered();
    let audit = c.h.server().audit();
    for (agent, role) in [("retl-operator", "retl-operator"), ("retl-worker", "retl-worker")] {
        let seen: BTreeSet<Rule> = audit
            .iter()
            .filter(|e| e.user_agent.starts_with(agent))
            .map(|e| {
                let res = if e.subresource.is_empty() { e.resource.clone() } else { format!("{}/{}", e.resource, e.subresource) };
                (e.group.clone(), res, e.verb.clone())
            })
            .collect();
        assert!(!seen.is_empty(), "{agent} made calls");
        let allowed = rules_of(&docs, role);
        let missing: Vec<&Rule> = seen.difference(&allowed).collect();
        assert!(missing.is_empty(), "{role} lacks rules for calls {agent} made: {missing:?}");
        // Granted for a path this run does not take: deleting the Job of a
        // Sync canceled before its worker started (sync_plan's unit tests).
        let not_exercised: BTreeSet<Rule> = [("batch".to_string(), "jobs".to_string(), "delete".to_string())].into();
        let unused: Vec<&Rule> = allowed.difference(&seen).filter(|r| !not_exercised.contains(*r)).collect();
        assert!(unused.is_empty(), "{role} grants what {agent} never does: {unused:?}");
    }
}
