//! `kubectl retl`: the retl binary installed as `kubectl-retl` on PATH,
//! found and run by the real kubectl against the real control plane: the
//! sync overview with its filters, and sync-now, reset, replay and cancel
//! with `--wait`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::cluster::{Cluster, Setup, cluster, retl};

/// `kubectl ARGS` with `kubectl-retl` on PATH.
fn kubectl(c: &Cluster, args: &[&str]) -> (i32, String) {
    let bin: PathBuf = c.ns.dir().join("plugin-bin");
    if !bin.join("kubectl-retl").exists() {
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(retl(), bin.join("kubectl-retl")).unwrap();
    }
    let k = cluster().kubectl();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(&k.program)
        .args(args)
        .env("KUBECONFIG", &k.kubeconfig)
        .env("KUBECACHEDIR", &k.cache_dir)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .output()
        .expect("kubectl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_retl_shows_the_overview_and_runs_requests() {
    let c = Cluster::start(Setup::default()).await;
    let ns = c.ns.name().to_string();
    let (code, out) = kubectl(&c, &["plugin", "list"]);
    assert!(code == 0 && out.contains("kubectl-retl"), "kubectl finds the plugin: {out}");

    c.sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    let (code, out) = kubectl(&c, &["retl", "sync-now", "users-api", "-n", &ns, "--wait", "90s"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("finished PartiallySuccessful"), "{out}");

    let (code, out) = kubectl(&c, &["retl", "overview", "-n", &ns]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        ["DESTINATION", "MAPPING", "MODEL", "SOURCE", "ACTION", "MAPPING", "STATUS", "LATEST", "SYNC", "STARTED"],
        "{out}"
    );
    assert_eq!(lines[1][..7], ["api", "users-api", "users", "wh", "upsert", "Enabled", "PartiallySuccessful"], "{out}");
    println!("--- kubectl retl overview -n {ns}\n{out}");

    let (_, out) = kubectl(&c, &["retl", "overview", "-n", &ns, "--status", "Failed"]);
    assert!(out.contains("No Mappings found"), "{out}");
    let (_, out) = kubectl(&c, &["retl", "overview", "-n", &ns, "--mapping-status", "enabled", "--model", "users", "--since", "1h"]);
    assert!(out.contains("users-api"), "{out}");
    let (code, out) = kubectl(&c, &["retl", "overview", "-A", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let row = json["items"].as_array().unwrap().iter().find(|r| r["namespace"] == ns.as_str()).cloned().unwrap();
    assert_eq!((row["source"].as_str(), row["status"].as_str()), (Some("wh"), Some("PartiallySuccessful")), "{row:#}");

    // A reset, waited for; the next sync sends everything again.
    let (code, out) = kubectl(&c, &["retl", "reset", "users-api", "-n", &ns, "--wait", "60s"]);
    assert!(code == 0 && out.contains("the reset was handled"), "{out}");
    c.sink.set(|b| b.reject_keys.clear());
    let (code, out) = kubectl(&c, &["retl", "sync-now", "users-api", "-n", &ns, "--wait", "90s"]);
    assert!(code == 0 && out.contains("finished Successful"), "{out}");
    let latest = c.syncs().last().cloned().unwrap();
    assert_eq!(latest["status"]["extracted"]["added"], 25, "{latest:#}");

    // A replay of that sync, and a cancel of a slow one.
    let name = latest["metadata"]["name"].as_str().unwrap().to_string();
    let (code, out) = kubectl(&c, &["retl", "replay", &name, "-n", &ns, "--wait", "90s"]);
    assert!(code == 0 && out.contains(&format!("Sync {name}-replay-")) && out.contains("finished Successful"), "{out}");
    c.sink.set(|b| b.stall = Some(Duration::from_millis(300)));
    c.sql("UPDATE users SET email = 'x' || email");
    let (code, out) = kubectl(&c, &["retl", "sync-now", "users-api", "-n", &ns]);
    assert_eq!(code, 0, "{out}");
    let running = c.running().await;
    let (code, out) = kubectl(&c, &["retl", "cancel", &running, "-n", &ns, "--wait", "90s"]);
    assert!(code == 0 && out.contains("finished Canceled"), "{out}");

    // Every Sync of the Mapping, newest first.
    let (code, out) = kubectl(&c, &["retl", "history", "users-api", "-n", &ns]);
    assert_eq!(code, 0, "{out}");
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..3], ["NAME", "TRIGGER", "STATUS"], "{out}");
    assert_eq!(rows.len(), 1 + c.syncs().len(), "{out}");
    assert_eq!((rows[1][0], rows[1][2]), (running.as_str(), "Canceled"), "newest first: {out}");
    assert!(rows.iter().any(|r| r[0].starts_with(&format!("{name}-replay-")) && r[1] == "Replay"), "{out}");

    // A Mapping that does not exist: the API server's answer, exit 2.
    let (code, out) = kubectl(&c, &["retl", "sync-now", "nope", "-n", &ns]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot annotate Mapping") && out.contains("NotFound"), "{out}");
}
