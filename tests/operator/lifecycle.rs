//! The operator's own lifecycle and the conditions people read: metrics and
//! health, graceful shutdown, a restart in the middle of a sync, SIGTERM
//! and a deleted Job under a running worker, worker pods that cannot start,
//! references across namespaces, mappings that do not fit, and an
//! unreachable destination.

use std::time::Duration;

use testcluster::wait_until;

use super::cluster::{Cluster, Setup, count, metrics_addr, spawn_operator, worker_namespace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_graceful_shutdown() {
    let c = Cluster::start(Setup::default()).await;
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    c.wait_finished(1).await;
    let addr = metrics_addr(&c.operator.logs()).unwrap_or_else(|| panic!("the operator logs its metrics address:\n{}", c.operator.logs()));
    retl::install_crypto_provider();
    let get = |path: &str| {
        let url = format!("http://{addr}{path}");
        async move { reqwest::get(url).await.unwrap() }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    assert_eq!(get("/readyz").await.status(), 200);
    let h = &c;
    let scraped = wait_until(Duration::from_secs(10), || async {
        let body = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        body.contains(&format!(r#"retl_syncs_total{{namespace="{}",mapping="users-api",outcome="Successful"}} 1"#, h.ns.name()))
            && body.contains(r#"retl_records_total{outcome="succeeded"} 25"#)
            && body.contains("retl_sync_duration_seconds_count 1")
            && body.contains("retl_reconciles_total")
            && body.contains("retl_running_syncs 0")
            && h.operator.exit_code().is_none()
    })
    .await;
    assert!(scraped, "{}", reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap());

    let code = c.operator.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "SIGTERM stops the operator cleanly: {}", c.operator.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_picks_up_a_running_sync() {
    let c = Cluster::start(Setup { rows: 200, ..Default::default() }).await;
    c.sink.set(|b| b.stall = Some(Duration::from_millis(30)));
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let running = c.running().await;
    c.operator.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = spawn_operator(&c.ns, &["--leader-lease", "none"]).await;
    let s = c.wait_finished(1).await;
    assert_eq!(s["metadata"]["name"], running.as_str(), "no duplicate Sync");
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}\n{}", again.logs());
    assert_eq!(c.sink.latest().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_say_what_is_wrong() {
    let c = Cluster::start(Setup::default()).await;
    let h = &c;
    // A Mapping in another namespace cannot use the Model of this one.
    let team_b = worker_namespace("team-b");
    c.operator.kill();
    let _operator = spawn_operator(&c.ns, &["--namespace", team_b.name(), "--leader-lease", "none"]).await;
    team_b
        .apply_yaml(
            "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {name: users-api}\n\
             spec: {modelRef: {name: users}, destinationRef: {name: api}, action: upsert}\n",
        )
        .unwrap();
    let m = wait_until(Duration::from_secs(20), || async {
        let m = team_b.kubectl_json(&["get", "mapping", "users-api"]).unwrap_or_default();
        m["status"]["conditions"][0]["status"] == "False"
    })
    .await;
    assert!(m);
    let m = team_b.kubectl_json(&["get", "mapping", "users-api"]).unwrap();
    let msg = m["status"]["conditions"][0]["message"].as_str().unwrap();
    let expected = format!("does not exist in namespace \"{}\"", team_b.name());
    assert!(msg.contains(&expected) && msg.contains("never cross namespaces"), "{msg}");

    // A field from a column the model does not return.
    let patch = r#"{"spec":{"fields":[{"to":"id","from":"id"},{"to":"email","from":"mail"}]}}"#;
    c.ns.kubectl_ok(&["patch", "mapping", "users-api", "--type=merge", "-p", patch]).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async { h.condition("mapping", "users-api", "Ready").as_deref() == Some("False") }).await
    );
    let (reason, message) = c.reason("mapping", "users-api", "Ready");
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("\"mail\""), "{message}");

    // An unreachable destination.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let patch = format!(r#"{{"spec":{{"http":{{"url":"http://{closed}/x"}}}}}}"#);
    c.ns.kubectl_ok(&["patch", "destination", "api", "--type=merge", "-p", &patch]).unwrap();
    assert!(wait_until(Duration::from_secs(20), || async { h.condition("destination", "api", "Ready").as_deref() == Some("False") }).await);
    let (reason, message) = c.reason("destination", "api", "Ready");
    assert_eq!(reason, "DestinationUnreachable", "{message}");
    assert!(message.contains("cannot connect"), "{message}");

    // The Mapping's status shows its latest sync; the model its columns.
    let model = c.ns.kubectl_json(&["get", "model", "users"]).unwrap();
    assert_eq!(model["status"]["columns"][1]["name"], "email");
    assert_eq!(count(&model, "/status/observedGeneration"), 1);
}

/// The Events about object `name` with `reason`, as "reason: message" lines.
fn events(c: &Cluster, name: &str, reason: &str) -> String {
    let selector = format!("involvedObject.name={name},reason={reason}");
    let list = c.ns.kubectl_json(&["get", "events", "--field-selector", &selector]).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{}: {}\n", e["reason"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_pod_that_cannot_start_fails_its_sync_with_the_pods_message() {
    // A ServiceAccount that does not exist: the Job controller cannot create the pod.
    let c =
        Cluster::start(Setup { mapping_spec: "  serviceAccountName: nobody\n  startupDeadlineSeconds: 5\n", ..Default::default() }).await;
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let sync = c.running().await;
    let job = c.job_of(&sync).await;
    let said =
        wait_until(Duration::from_secs(30), || async { events(&c, &job, "FailedCreate").contains("serviceaccount \"nobody\" not found") })
            .await;
    assert!(said, "the Job's FailedCreate Event says why: {}\n{}", events(&c, &job, "FailedCreate"), c.state());
    let s = c.wait_finished(1).await;
    assert_eq!((s["status"]["phase"].as_str(), s["status"]["reason"].as_str()), (Some("Failed"), Some("WorkerNotStarted")), "{s:#}");
    let message = s["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("serviceaccount \"nobody\" not found") && message.contains("startupDeadlineSeconds (5)"), "{message}");
    assert_eq!(c.sink.requests(), 0, "nothing was sent");
    let h = &c;
    let gone = wait_until(Duration::from_secs(30), || async { h.ns.kubectl(&["get", "job", &job]).is_ok_and(|o| !o.success()) }).await;
    assert!(gone, "the Job is deleted, so that its pod cannot start later:\n{}", c.state());

    // An image no node can pull: the pod waits with ErrImagePull; the Sync says so.
    c.ns.kubectl_ok(&["patch", "mapping", "users-api", "--type=merge", "-p", r#"{"spec":{"serviceAccountName":null}}"#]).unwrap();
    c.operator.kill();
    let _operator = spawn_operator(&c.ns, &["--leader-lease", "none", "--worker-image", "registry.invalid/retl:1"]).await;
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let sync = c.running().await;
    let job = c.job_of(&sync).await;
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let waiting = wait_until(Duration::from_secs(30), || async {
        let pods = c.ns.kubectl_json(&["get", "pods", "-l", &selector]).unwrap_or_default();
        pods["items"][0]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    })
    .await;
    assert!(waiting, "the worker pod waits with ErrImagePull:\n{}", c.state());
    let s = c.wait_finished(2).await;
    assert_eq!((s["status"]["phase"].as_str(), s["status"]["reason"].as_str()), (Some("Failed"), Some("WorkerNotStarted")), "{s:#}");
    let message = s["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ErrImagePull") && message.contains("registry.invalid/retl:1"), "{message}");
    assert_eq!(c.sink.requests(), 0, "nothing was sent");
}

/// How many terminal Events (success, partial success, failure, cancel) Sync `name` got.
fn terminal_events(c: &Cluster, name: &str) -> u64 {
    let list = c.ns.kubectl_json(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")]).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| matches!(e["reason"].as_str(), Some("Successful" | "PartiallySuccessful" | "SyncFailed" | "Canceled")))
        .map(|e| e["series"]["count"].as_u64().unwrap_or(1))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_sync_gracefully_and_a_finished_sync_stays_finished() {
    let c = Cluster::start(Setup { rows: 300, ..Default::default() }).await;
    // A slow destination (30 batches of 150 ms), so that each sync is still running when it is stopped.
    c.sink.set(|b| b.stall = Some(Duration::from_millis(150)));
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let sync = c.running().await;
    let job = c.job_of(&sync).await;
    let pod = c.running_pod(&job).await;
    let sink = &c.sink;
    assert!(wait_until(Duration::from_secs(30), || async { sink.received().len() >= 30 }).await);
    // A drain or eviction deletes the pod: SIGTERM, then the grace period.
    c.ns.kubectl_ok(&["delete", "pod", &pod, "--wait=false"]).unwrap();
    let s = c.wait_finished(1).await;
    assert_eq!((s["status"]["phase"].as_str(), s["status"]["reason"].as_str()), (Some("Failed"), Some("Terminated")), "{s:#}");
    let e = &s["status"]["extracted"];
    let l = &s["status"]["loaded"];
    let changes = count(&s, "/status/extracted/added") + count(&s, "/status/extracted/updated") + count(&s, "/status/extracted/deleted");
    assert_eq!(
        changes,
        count(&s, "/status/loaded/succeeded") + count(&s, "/status/loaded/failed") + count(&s, "/status/loaded/skipped"),
        "{e} {l}"
    );
    assert!((30..300).contains(&count(&s, "/status/loaded/succeeded")), "stopped at a batch boundary: {l}");
    assert_eq!(c.kubelet().signals(c.ns.name(), &pod), ["SIGTERM"], "it stopped within the grace period");
    let failed = wait_until(Duration::from_secs(30), || async {
        let j = c.ns.kubectl_json(&["get", "job", &job]).unwrap_or_default();
        j["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Failed" && c["status"] == "True")
    })
    .await;
    assert!(failed, "the worker exits non-zero for a Failed sync, so its Job is Failed:\n{}", c.state());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = c.ns.kubectl_json(&["get", "sync", &sync]).unwrap();
    assert_eq!(again["status"]["reason"], "Terminated", "a finished Sync stays finished: {again:#}");
    assert_eq!(terminal_events(&c, &sync), 1, "exactly one terminal Event");

    // The Job deleted under a running worker: the controller fails the Sync
    // first; the worker, stopping on SIGTERM, leaves it as it is.
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let sync = c.running().await;
    let job = c.job_of(&sync).await;
    let pod = c.running_pod(&job).await;
    let before = c.sink.received().len();
    assert!(wait_until(Duration::from_secs(30), || async { sink.received().len() >= before + 20 }).await);
    c.ns.kubectl_ok(&["delete", "job", &job, "--wait=false"]).unwrap();
    let s = c.wait_finished(2).await;
    assert_eq!(s["status"]["reason"], "WorkerDied", "{s:#}");
    assert!(s["status"]["message"].as_str().unwrap().contains("Job was deleted"));
    // The garbage collector deleted the pod; its kubelet sent SIGTERM (the
    // worker stopped within its grace period) and finished the deletion.
    let ns = c.ns.name().to_string();
    let kubelet = c.kubelet();
    assert!(wait_until(Duration::from_secs(40), || async { kubelet.pid(&ns, &pod).is_none() }).await, "the worker stops");
    assert_eq!(kubelet.signals(&ns, &pod), ["SIGTERM"], "SIGTERM, and no SIGKILL needed");
    let gone = wait_until(Duration::from_secs(30), || async { c.ns.kubectl(&["get", "pod", &pod]).is_ok_and(|o| !o.success()) }).await;
    assert!(gone, "the pod is gone: {}", c.state());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = c.ns.kubectl_json(&["get", "sync", &sync]).unwrap();
    assert_eq!((after["status"]["phase"].as_str(), after["status"]["reason"].as_str()), (Some("Failed"), Some("WorkerDied")), "{after:#}");
    assert_eq!(terminal_events(&c, &sync), 1, "exactly one terminal Event");
    assert!(kubelet.logs(&ns, &pod).contains("finished by someone else"), "the worker saw it: {}", kubelet.logs(&ns, &pod));

    c.sink.set(|b| b.stall = None);
    c.annotate("mapping", "users-api", "retl.dev/sync-now=3");
    let s = c.wait_finished(3).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    assert_eq!(c.sink.latest().len(), 300, "every record delivered in the end");
    // One increment of retl_syncs_total per Sync, however it finished.
    let metrics = c.metrics().await;
    for (outcome, n) in [("Failed", 2), ("Successful", 1)] {
        let line = format!(r#"retl_syncs_total{{namespace="{}",mapping="users-api",outcome="{outcome}"}} {n}"#, c.ns.name());
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
}
