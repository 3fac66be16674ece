//! Leader election between operator replicas, with deploy/'s RBAC: the
//! Lease lives in the operator's namespace (retl-system); only the leader
//! reconciles; on SIGTERM it releases the Lease and a standby takes over at
//! once; a leader that could not renew within its renew deadline stops; a
//! replica that cannot read its Lease is not ready.

use std::time::{Duration, Instant};

use testcluster::Process;

use super::cluster::{Cluster, Setup, metrics_addr, spawn_operator};

async fn readyz(p: &Process) -> u16 {
    let addr = metrics_addr(&p.logs()).unwrap_or_else(|| panic!("no metrics address:\n{}", p.logs()));
    retl::install_crypto_provider();
    reqwest::get(format!("http://{addr}/readyz")).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_schedules_and_a_stopping_leader_hands_over_at_once() {
    let c = Cluster::start(Setup::default()).await;
    c.operator.kill();
    let lease_name = c.ns.name().to_string();
    let lease = format!("retl-system/{lease_name}");
    let a = spawn_operator(&c.ns, &["--leader-lease", &lease, "--identity", "replica-a"]).await;
    assert!(a.wait_for_log("leading", Duration::from_secs(20)), "{}", a.logs());
    let b = spawn_operator(&c.ns, &["--leader-lease", &lease, "--identity", "replica-b"]).await;
    assert!(b.wait_for_log("another replica leads", Duration::from_secs(20)), "{}", b.logs());
    assert_eq!(readyz(&b).await, 200, "a standby that takes part in the election is ready");
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    c.wait_finished(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.syncs().len(), 1, "exactly one Sync for one request");
    let admin = c.ns.kubectl_json(&["get", "lease", &lease_name, "-n", "retl-system"]).unwrap();
    assert_eq!(admin["spec"]["holderIdentity"], "replica-a");
    assert_eq!(admin["spec"]["leaseDurationSeconds"], 15);

    // SIGTERM: the leader stops its controllers and releases the Lease, so
    // the standby leads at its next retry (2 s), not after the 15 s expiry.
    let stopped = Instant::now();
    assert_eq!(a.terminate(Duration::from_secs(10)), Some(0), "{}", a.logs());
    assert!(a.logs().contains("released the Lease"), "{}", a.logs());
    assert!(b.wait_for_log("leading", Duration::from_secs(20)), "{}", b.logs());
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(10), "the standby took over after {took:?}: {}", b.logs());
    let admin = c.ns.kubectl_json(&["get", "lease", &lease_name, "-n", "retl-system"]).unwrap();
    assert_eq!(admin["spec"]["holderIdentity"], "replica-b");
    c.annotate("mapping", "users-api", "retl.dev/sync-now=2");
    let s = c.wait_finished(2).await;
    assert_eq!(s["status"]["phase"], "Successful", "the new leader syncs: {s:#}");

    // A Lease this replica may not read (deploy/ grants Leases only in
    // retl-system): it cannot take part, says why, and is not ready.
    let elsewhere = format!("{}/retl", c.ns.name());
    let d = spawn_operator(&c.ns, &["--leader-lease", &elsewhere, "--identity", "replica-d"]).await;
    assert!(d.wait_for_log("cannot read the Lease", Duration::from_secs(20)), "{}", d.logs());
    assert_eq!(readyz(&d).await, 503, "not ready while it cannot take part in the election");
    assert!(!d.logs().contains("leading"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_past_its_renew_deadline_stops_and_a_standby_takes_over() {
    let c = Cluster::start(Setup::default()).await;
    c.operator.kill();
    let lease = format!("retl-system/{}", c.ns.name());
    let a = spawn_operator(&c.ns, &["--leader-lease", &lease, "--identity", "replica-a"]).await;
    assert!(a.wait_for_log("leading", Duration::from_secs(20)), "{}", a.logs());
    let b = spawn_operator(&c.ns, &["--leader-lease", &lease, "--identity", "replica-b"]).await;
    assert!(b.wait_for_log("another replica leads", Duration::from_secs(20)), "{}", b.logs());

    // The leader stalls for 12 s: past its 10 s renew deadline, short of
    // the 15 s lease. Awake, it stops reconciling and exits (its
    // Deployment starts it again as a standby) rather than go on leading.
    a.freeze();
    tokio::time::sleep(Duration::from_secs(12)).await;
    a.thaw();
    assert!(a.wait_for_log("not renewed within the renew deadline", Duration::from_secs(10)), "{}", a.logs());
    let exited = testcluster::wait_until(Duration::from_secs(15), || async { a.exit_code().is_some() }).await;
    assert!(exited, "{}", a.logs());
    assert_ne!(a.exit_code(), Some(0), "it exits with an error: {}", a.logs());
    assert!(!a.logs().contains("released the Lease"), "a Lease it may no longer hold is not released: {}", a.logs());

    // The standby saw the Lease unchanged for 15 s by its own clock.
    assert!(b.wait_for_log("leading", Duration::from_secs(20)), "{}", b.logs());
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
}
