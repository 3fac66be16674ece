//! The operator end to end: the real `retl operator` and `retl worker`
//! binaries and the real `kubectl` 1.34, on a real control plane
//! (kube-apiserver, etcd, kube-controller-manager, kube-scheduler; see
//! testcluster/), with the test kubelet running each sync's Job pod as a
//! local process. The operator and the workers run as deploy/'s
//! ServiceAccounts, so RBAC applies to every call they make.

mod alerts;
mod budget;
mod cluster;
mod crds;
mod events;
mod gitops;
mod large_status;
mod leader;
mod lifecycle;
mod long_names;
mod plugin;
mod rbac;
mod segment;
mod warehouses;

use std::time::Duration;

use cluster::{Cluster, Setup, count, is_finished};
use testcluster::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_runs_a_job_and_kubectl_shows_the_sync() {
    let c = Cluster::start(Setup::default()).await;
    c.annotate("mapping", "users-api", "retl.dev/sync-now=first");
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    assert_eq!(c.sink.latest().len(), 25);
    let name = s["metadata"]["name"].as_str().unwrap().to_string();
    assert!(s["status"]["jobName"].is_string());
    for l in ["retl.dev/mapping=users-api", "retl.dev/model=users", "retl.dev/destination=api", "retl.dev/status=successful"] {
        let (k, v) = l.split_once('=').unwrap();
        assert_eq!(s["metadata"]["labels"][k], v, "label {l}");
    }
    assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Mapping");

    let rows = c.ns.kubectl(&["get", "syncs"]).unwrap().table();
    assert_eq!(
        rows[0],
        ["NAME", "MAPPING", "STATUS", "STARTED", "DURATION", "EXTRACTED", "ADDED", "UPDATED", "DELETED", "LOADED", "FAILED", "AGE"]
    );
    assert_eq!(&rows[1][1..3], ["users-api", "Successful"]);
    assert_eq!(&rows[1][5..11], ["25", "25", "0", "0", "25", "0"]);
    let waited = c.ns.kubectl(&["wait", "--for=jsonpath={.status.phase}=Successful", &format!("sync/{name}"), "--timeout=5s"]).unwrap();
    assert!(waited.success(), "{}", waited.stderr);
    let complete = c.ns.kubectl(&["wait", "--for=condition=Complete", &format!("sync/{name}"), "--timeout=5s"]).unwrap();
    assert!(complete.success(), "{}", complete.stderr);
    let mapping = c.ns.kubectl(&["get", "mappings"]).unwrap().table();
    assert_eq!(mapping[0], ["NAME", "MODEL", "DESTINATION", "ACTION", "ENABLED", "READY", "SCHEDULE", "LAST SYNC", "LAST STATUS", "AGE"]);

    // The same token again does nothing; a new one syncs once more (nothing changed).
    c.annotate("mapping", "users-api", "retl.dev/sync-now=first");
    c.annotate("mapping", "users-api", "retl.dev/sync-now=second");
    let s = c.wait_finished(2).await;
    assert_eq!((count(&s, "/status/extracted/unchanged"), count(&s, "/status/loaded/succeeded")), (25, 0));
    let by_phase = c.ns.kubectl(&["get", "syncs", "--field-selector", "status.phase=Successful", "-o", "name"]).unwrap();
    assert_eq!(by_phase.stdout.lines().count(), 2, "{}", by_phase.stderr);
    let failed = c.ns.kubectl(&["get", "syncs", "-l", "retl.dev/status=failed", "-o", "name"]).unwrap();
    assert_eq!(failed.stdout.trim(), "");

    // A Sync made by hand runs too, and gets its labels and owner.
    c.sql("UPDATE users SET email = 'hand@example.com' WHERE id = 1");
    c.ns.apply_yaml("apiVersion: retl.dev/v1alpha1\nkind: Sync\nmetadata: {name: by-hand}\nspec: {mappingRef: {name: users-api}}\n")
        .unwrap();
    let s = c.wait_finished_named("by-hand").await;
    assert_eq!((s["status"]["phase"].as_str(), count(&s, "/status/extracted/updated")), (Some("Successful"), 1), "{s:#}");
    assert_eq!(s["metadata"]["labels"]["retl.dev/model"], "users");
    assert_eq!(s["metadata"]["ownerReferences"][0]["name"], "users-api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_are_reported_announced_and_retried() {
    let c = Cluster::start(Setup::default()).await;
    c.sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "PartiallySuccessful", "{s:#}");
    let f = &s["status"]["failedRecords"][0];
    assert_eq!((f["key"].as_str(), f["code"].as_str()), (Some("3"), Some("INVALID_RECORD")));
    assert!(f["recommendedAction"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(f["payload"]["email"], "u3@example.com");
    let name = s["metadata"]["name"].as_str().unwrap();
    let events = c.ns.kubectl(&["get", "events", "--field-selector", &format!("involvedObject.name={name}"), "-o", "json"]).unwrap();
    let events: serde_json::Value = serde_json::from_str(&events.stdout).unwrap_or_default();
    let warning = events["items"].as_array().into_iter().flatten().find(|e| e["reason"] == "PartiallySuccessful");
    assert!(warning.is_some_and(|e| e["type"] == "Warning"), "a Warning Event: {events:#}");

    c.sink.set(|b| b.reject_keys.clear());
    c.sql("UPDATE users SET email = 'fixed3@example.com' WHERE id = 3");
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let s = c.wait_finished(2).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    assert_eq!(count(&s, "/status/extracted/retried"), 1);
    assert_eq!(c.sink.latest()["3"].payload["email"], "fixed3@example.com", "retried with current values");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_happens_once_and_replay_resends_a_sync() {
    let c = Cluster::start(Setup::default()).await;
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let first = c.wait_finished(1).await;
    let first_name = first["metadata"]["name"].as_str().unwrap().to_string();

    c.annotate("mapping", "users-api", "retl.dev/reset=r1");
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let s = c.wait_finished(2).await;
    assert_eq!(s["spec"]["trigger"], "Reset");
    assert_eq!(count(&s, "/status/extracted/added"), 25, "after a reset everything is sent as added: {s:#}");
    c.annotate("mapping", "users-api", "retl.dev/reset=r1");
    c.annotate("mapping", "users-api", "retl.dev/sync-now=3");
    let s = c.wait_finished(3).await;
    assert_eq!(count(&s, "/status/extracted/added"), 0, "the same reset token does nothing again");

    c.sql("UPDATE users SET email = 'now1@example.com' WHERE id = 1");
    c.annotate("sync", &first_name, "retl.dev/replay=p1");
    let s = c.wait_finished(4).await;
    assert_eq!(s["spec"]["trigger"], "Replay");
    assert_eq!(s["spec"]["replayOf"], first_name.as_str());
    assert!(s["metadata"]["name"].as_str().unwrap().starts_with(&format!("{first_name}-replay-")));
    assert_eq!(count(&s, "/status/extracted/total"), 25, "{s:#}");
    assert_eq!(c.sink.latest()["1"].payload["email"], "now1@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_its_sync_and_nothing_is_lost() {
    let c = Cluster::start(Setup { rows: 300, ..Default::default() }).await;
    c.sink.set(|b| b.stall = Some(Duration::from_millis(40)));
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let sink = &c.sink;
    assert!(wait_until(Duration::from_secs(30), || async { sink.received().len() >= 40 }).await);
    let running = c.running().await;
    c.kill_worker(&running).await;
    let s = c.wait_finished(1).await;
    assert_eq!((s["status"]["phase"].as_str(), s["status"]["reason"].as_str()), (Some("Failed"), Some("WorkerDied")), "{s:#}");
    let e = &s["status"]["extracted"];
    let l = &s["status"]["loaded"];
    let changes = e["added"].as_u64().unwrap() + e["updated"].as_u64().unwrap() + e["deleted"].as_u64().unwrap();
    let accounted = l["succeeded"].as_u64().unwrap() + l["failed"].as_u64().unwrap() + l["skipped"].as_u64().unwrap();
    assert_eq!(changes, accounted, "counts add up on a dead worker's Sync: {s:#}");

    c.sink.set(|b| b.stall = None);
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let s = c.wait_finished(2).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    assert_eq!(c.sink.latest().len(), 300, "every record ends up delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_sync_and_deadlines_fail_it() {
    let c = Cluster::start(Setup { rows: 300, mapping_spec: "  activeDeadlineSeconds: 60\n", ..Default::default() }).await;
    c.sink.set(|b| b.stall = Some(Duration::from_millis(150)));
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let sink = &c.sink;
    assert!(wait_until(Duration::from_secs(30), || async { sink.received().len() >= 20 }).await);
    let name = c.running().await;
    c.annotate("sync", &name, "retl.dev/cancel=c1");
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "Canceled", "{s:#}");
    let loaded = count(&s, "/status/loaded/succeeded");
    assert!((20..300).contains(&loaded), "stopped at a batch boundary after {loaded}");

    // A deadline shorter than the sync: the Job is stopped and the Sync fails.
    let patch = r#"{"spec":{"activeDeadlineSeconds":2}}"#;
    c.ns.kubectl_ok(&["patch", "mapping", "users-api", "--type=merge", "-p", patch]).unwrap();
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let s = c.wait_finished(2).await;
    assert_eq!((s["status"]["phase"].as_str(), s["status"]["reason"].as_str()), (Some("Failed"), Some("DeadlineExceeded")), "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_mappings_and_forbid_start_nothing_extra() {
    let c = Cluster::start(Setup { rows: 100, mapping_spec: "  schedule: \"@every 1s\"\n  enabled: false\n", ..Default::default() }).await;
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(c.syncs().is_empty(), "a disabled Mapping starts nothing");
    let m = c.ns.kubectl_json(&["get", "mapping", "users-api"]).unwrap();
    assert_eq!(m["status"]["lastHandledSyncNow"], "1", "the request is still handled, once");

    // Enabled, every second, with syncs that take longer than that: never two at once.
    c.sink.set(|b| b.stall = Some(Duration::from_millis(150)));
    c.ns.kubectl_ok(&["patch", "mapping", "users-api", "--type=merge", "-p", r#"{"spec":{"enabled":true}}"#]).unwrap();
    let mut seen_running = 0;
    for _ in 0..40 {
        let running = c.syncs().iter().filter(|s| !is_finished(s)).count();
        assert!(running <= 1, "concurrencyPolicy Forbid: {}", c.ns.kubectl(&["get", "syncs"]).unwrap().stdout);
        seen_running = seen_running.max(running);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen_running, 1, "the schedule did start syncs");
    let events = c.ns.kubectl(&["get", "events", "--field-selector", "involvedObject.name=users-api,reason=SyncSkipped"]).unwrap();
    assert!(events.stdout.contains("Forbid") || events.stdout.contains("SyncSkipped"), "{}{}", events.stdout, events.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_references_and_models_say_why_and_start_no_job() {
    let c = Cluster::start(Setup::default()).await;
    c.ns.apply_yaml(
        "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {name: orphan}\n\
         spec: {modelRef: {name: nope}, destinationRef: {name: api}, action: upsert}\n",
    )
    .unwrap();
    c.ns.apply_yaml(
        "apiVersion: retl.dev/v1alpha1\nkind: Model\nmetadata: {name: broken}\n\
         spec: {sourceRef: {name: wh}, primaryKey: id, query: \"SELEC oops\"}\n",
    )
    .unwrap();
    let h = &c;
    assert!(wait_until(Duration::from_secs(20), || async { h.condition("mapping", "orphan", "Ready").as_deref() == Some("False") }).await);
    let (reason, message) = c.reason("mapping", "orphan", "Ready");
    assert_eq!(reason, "ReferenceNotFound");
    assert!(message.contains("Model \"nope\" does not exist"), "{message}");
    assert!(wait_until(Duration::from_secs(20), || async { h.condition("model", "broken", "Ready").as_deref() == Some("False") }).await);
    let (reason, message) = c.reason("model", "broken", "Ready");
    assert_eq!(reason, "QueryFailed", "{message}");
    c.annotate("mapping", "orphan", "retl.dev/sync-now=1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(c.syncs().is_empty(), "no Sync, no Job");
    assert!(c.operator.exit_code().is_none(), "no crash: {}", c.operator.logs());
}

/// `retl operator --log-format json`: one JSON object per line, and each
/// reconcile's outcome logged once with the namespace, kind and name of
/// its object, so a log collector can find everything about one Mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_logs_are_json_lines_that_name_their_object() {
    let c = Cluster::start(Setup::default()).await;
    c.operator.kill();
    let operator = cluster::spawn_operator(&c.ns, &["--leader-lease", "none", "--log-format", "json"]).await;
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let s = c.wait_finished(1).await;
    let sync = s["metadata"]["name"].as_str().unwrap().to_string();
    let h = &operator;
    let about = |kind: &str, name: &str| {
        let (kind, name, ns) = (kind.to_string(), name.to_string(), c.ns.name().to_string());
        move |l: &serde_json::Value| l["kind"] == kind.as_str() && l["name"] == name.as_str() && l["namespace"] == ns.as_str()
    };
    let logged = wait_until(Duration::from_secs(20), || async {
        let lines: Vec<serde_json::Value> = h.logs().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        lines.iter().any(about("Mapping", "users-api")) && lines.iter().any(about("Sync", &sync))
    })
    .await;
    let logs = operator.logs();
    assert!(logged, "reconciles of the Mapping and the Sync are logged with their object:\n{logs}");
    let not_json: Vec<&str> = logs.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err()).collect();
    assert!(not_json.is_empty(), "every line is JSON: {not_json:#?}");
    let help = std::process::Command::new(cluster::retl()).args(["operator", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--log-format"), "documented in --help");
}
