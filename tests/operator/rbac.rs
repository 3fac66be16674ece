//! deploy/'s RBAC, enforced by the real API server: the operator and the
//! workers run as its ServiceAccounts in every test of this binary. Here:
//! deploy/ renders; its rules cover every API call the two accounts made in
//! a broad run and nothing more (calls read from kube-apiserver's audit
//! log); and `kubectl auth can-i --list` for each account equals the list
//! documented in the README, so a rule added or removed is noticed.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::cluster::{Cluster, Setup, cluster, rendered_deploy, spawn_operator};

type Rule = (String, String, String); // (group, resource[/subresource], verb)

/// The rules of ClusterRole `role` and of the Role of that name (the
/// operator's, in its own namespace), together.
fn rules_of(docs: &[Value], role: &str) -> BTreeSet<Rule> {
    let roles = docs.iter().filter(|d| (d["kind"] == "ClusterRole" || d["kind"] == "Role") && d["metadata"]["name"] == role);
    let mut out = BTreeSet::new();
    for rule in roles.flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default()) {
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
    let docs = rendered_deploy();
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

/// (group, resource[/subresource], verb) of every resource request `user` made, from the audit log.
fn calls_of(user: &str) -> BTreeSet<Rule> {
    cluster()
        .audit()
        .iter()
        .filter(|e| e["user"]["username"] == user && e["objectRef"].is_object())
        .map(|e| {
            let o = &e["objectRef"];
            let res = o["resource"].as_str().unwrap_or_default();
            let res = match o["subresource"].as_str() {
                Some(sub) => format!("{res}/{sub}"),
                None => res.to_string(),
            };
            (o["apiGroup"].as_str().unwrap_or_default().to_string(), res, e["verb"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_covers_exactly_the_calls_made() {
    let c = Cluster::start(Setup {
        rows: 60,
        mapping_spec: "  successfulSyncsHistoryLimit: 1\n",
        http_extra: ", headers: [{name: X-Token, valueFrom: {name: api-token, key: token}}]",
        // A SyncAlert (Events only) hears of the partial sync below.
        extra_yaml: "---\napiVersion: v1\nkind: Secret\nmetadata: {name: api-token}\nstringData: {token: t0k3n}\n\
                     ---\napiVersion: retl.dev/v1alpha1\nkind: SyncAlert\nmetadata: {name: in-app}\nspec: {}\n",
        ..Default::default()
    })
    .await;
    c.operator.kill();
    let lease = format!("retl-system/{}", c.ns.name());
    let _leader = spawn_operator(&c.ns, &["--leader-lease", &lease, "--identity", "a"]).await;
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
        testcluster::wait_until(Duration::from_secs(20), || async { h.syncs().len() == 1 }).await,
        "history limit 1 deletes the older Sync"
    );
    c.sink.set(|b| b.stall = Some(Duration::from_millis(200)));
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let running = c.running().await;
    c.annotate("sync", &running, "retl.dev/cancel=1");
    c.wait_finished_named(&running).await;
    // Long enough for the leader to renew its Lease (every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The operator watches only its own Jobs (a label selector), not every Job.
    let operator = "system:serviceaccount:retl-system:retl-operator";
    let job_watches: Vec<String> = cluster()
        .audit()
        .iter()
        .filter(|e| e["user"]["username"] == operator && e["objectRef"]["resource"] == "jobs")
        .filter(|e| matches!(e["verb"].as_str(), Some("list" | "watch")))
        .filter_map(|e| e["requestURI"].as_str().map(String::from))
        .collect();
    assert!(!job_watches.is_empty(), "the operator watches Jobs");
    let unselected: Vec<&String> = job_watches.iter().filter(|u| !u.contains("labelSelector=retl.dev%2Fsync")).collect();
    assert!(unselected.is_empty(), "Job lists and watches without the Sync label selector: {unselected:?}");

    let docs = rendered_deploy();
    let worker = format!("system:serviceaccount:{}:retl-worker", c.ns.name());
    for (user, role) in [("system:serviceaccount:retl-system:retl-operator", "retl-operator"), (worker.as_str(), "retl-worker")] {
        let seen = calls_of(user);
        assert!(!seen.is_empty(), "{user} made calls");
        let allowed = rules_of(&docs, role);
        let missing: Vec<&Rule> = seen.difference(&allowed).collect();
        assert!(missing.is_empty(), "{role} lacks rules for calls {user} made: {missing:?}");
        // Granted for paths this run does not take: deleting the Job of a
        // Sync canceled before its worker started, reading why a worker
        // did not start (sync_plan's unit tests;
        // lifecycle::a_worker_pod_that_cannot_start_...), and reading the
        // operator's own Pod for the worker image (tests/install.rs; here
        // the image is given), and counting a repeated Event into its
        // series (events::each_syncs_outcome_...).
        let not_exercised: BTreeSet<Rule> = [
            ("batch", "jobs", "delete"),
            ("", "pods", "list"),
            ("", "events", "list"),
            ("", "pods", "get"),
            ("events.k8s.io", "events", "patch"),
        ]
        .map(|(g, r, v)| (g.into(), r.into(), v.into()))
        .into();
        let unused: Vec<&Rule> = allowed.difference(&seen).filter(|r| !not_exercised.contains(*r)).collect();
        assert!(unused.is_empty(), "{role} grants what {user} never does: {unused:?}");
    }
}

/// The block of the README that follows `marker`, inside a ``` fence.
fn documented(marker: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find(marker).unwrap_or_else(|| panic!("README.md has a {marker} block"));
    let fence = readme[start..].find("```").map(|i| start + i).unwrap();
    let body = readme[fence..].split_once('\n').map(|(_, b)| b).unwrap_or_default();
    body[..body.find("```").unwrap_or(body.len())].to_string()
}

/// The table's rows with runs of spaces folded, sorted (kubectl's row order is not part of the contract).
fn normalized(table: &str) -> Vec<String> {
    let mut rows: Vec<String> = table
        .lines()
        .filter(|l| !l.starts_with("$ "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    rows.sort();
    rows
}

#[test]
fn each_account_can_do_exactly_what_the_readme_lists() {
    let ns = super::cluster::worker_namespace("can-i");
    let worker = format!("system:serviceaccount:{}:retl-worker", ns.name());
    let operator = "system:serviceaccount:retl-system:retl-operator";
    for (account, namespace, marker) in [
        (operator, ns.name(), "<!-- can-i: retl-operator -->"),
        (operator, "retl-system", "<!-- can-i: retl-operator -n retl-system -->"),
        (worker.as_str(), ns.name(), "<!-- can-i: retl-worker -->"),
    ] {
        let out = ns.kubectl_ok(&["auth", "can-i", "--list", &format!("--as={account}"), "-n", namespace]).unwrap();
        assert_eq!(
            normalized(&out),
            normalized(&documented(marker)),
            "`kubectl auth can-i --list --as={account}` differs from README.md's list ({marker}); update deploy/ or the README:\n{out}"
        );
    }
}
