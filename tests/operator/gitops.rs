//! GitOps without drift: manifests applied with `kubectl apply
//! --server-side` (as Argo CD and Flux apply them), a sync requested from
//! Git by a token annotation, the operator writing status: `kubectl diff
//! --server-side` on the same files then shows nothing, and applying them
//! again starts nothing. The same after a reset token comes from Git.

use std::time::Duration;

use super::cluster::{Cluster, Setup};

/// The manifests with the Mapping's annotations set to `annotations`.
fn with_annotations(c: &Cluster, annotations: &str) -> std::path::PathBuf {
    let original = std::fs::read_to_string(c.manifests.join("all.yaml")).unwrap();
    let changed =
        original.replace("metadata: {name: users-api}", &format!("metadata: {{name: users-api, annotations: {{{annotations}}}}}"));
    assert_ne!(original, changed, "the Mapping is in the manifests");
    let dir = c.manifests.join("git");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("all.yaml"), changed).unwrap();
    dir
}

fn apply(c: &Cluster, dir: &std::path::Path, force: bool) {
    let dir = dir.display().to_string();
    let mut args = vec!["apply", "--server-side", "--field-manager=gitops", "-f", &dir];
    if force {
        args.push("--force-conflicts");
    }
    let out = c.ns.kubectl(&args).unwrap();
    assert!(out.success(), "{}", out.stderr);
}

/// `kubectl diff --server-side`: what would change (empty when nothing).
fn diff(c: &Cluster, dir: &std::path::Path) -> String {
    let out = c.ns.kubectl(&["diff", "--server-side", "--field-manager=gitops", "-f", &dir.display().to_string()]).unwrap();
    assert!(out.code == 0 || out.code == 1, "kubectl diff failed: {}", out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_from_git_the_operators_writes_are_no_drift_and_reapplying_starts_nothing() {
    let c = Cluster::start(Setup::default()).await;
    let git = with_annotations(&c, "retl.dev/sync-now: git-1");
    // The GitOps tool takes the objects over from the first (client-side) apply, once.
    apply(&c, &git, true);
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    // The operator has written status on every kind, labels on the Sync.
    c.wait_ready("source", "wh").await;
    assert_eq!(diff(&c, &git), "", "the operator's writes are not drift");
    apply(&c, &git, false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.syncs().len(), 1, "re-applying the same token starts nothing");

    // A reset token from Git: handled once, and no drift after it either.
    let git = with_annotations(&c, "retl.dev/sync-now: git-1, retl.dev/reset: reset-1");
    apply(&c, &git, false);
    let h = &c;
    let handled = testcluster::wait_until(Duration::from_secs(30), || async {
        let m = h.ns.kubectl_json(&["get", "mapping", "users-api"]).unwrap_or_default();
        m["status"]["lastHandledReset"] == "reset-1"
    })
    .await;
    assert!(handled, "the reset is handled: {}", c.yaml("mapping", "users-api"));
    assert_eq!(diff(&c, &git), "", "no drift after the reset");
    apply(&c, &git, false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.syncs().len(), 1, "re-applying starts nothing");
    // The next sync sends everything again, as a reset promises.
    let git = with_annotations(&c, "retl.dev/sync-now: git-2, retl.dev/reset: reset-1");
    apply(&c, &git, false);
    let s = c.wait_finished(2).await;
    assert_eq!(s["status"]["extracted"]["added"], 25, "{s:#}");
    assert_eq!(diff(&c, &git), "");
}
