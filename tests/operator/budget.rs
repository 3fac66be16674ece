//! A Destination's shared budget: three Mappings feed one Destination with
//! `maxConcurrentSyncs: 2` and a rate limit of 4 requests a second. At most
//! two of their Syncs run at once (the third waits, Pending with reason
//! WaitingForDestination), and the sink, which counts requests per second,
//! never sees the Destination's rate exceeded by more than clock jitter.

use std::time::{Duration, Instant};

use testcluster::wait_until;

use super::cluster::{Cluster, Setup, is_finished};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destinations_budget_holds_across_its_mappings() {
    let c = Cluster::start(Setup { rows: 8, ..Setup::default() }).await;
    let mut yaml = format!(
        "apiVersion: retl.dev/v1alpha1\nkind: Destination\nmetadata: {{name: shared}}\nspec:\n  type: http\n  \
         http: {{url: \"{}\", batchSize: 1, maxInFlight: 1}}\n  maxConcurrentSyncs: 2\n  rateLimit: {{requestsPerSecond: 4}}\n  \
         actions: [{{name: upsert, fields: [{{name: id, type: string, required: true}}, {{name: email, type: string}}]}}]\n",
        c.sink.url()
    );
    let mappings = ["feed-a", "feed-b", "feed-c"];
    for m in mappings {
        yaml += &format!(
            "---\napiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {{name: {m}}}\nspec: {{modelRef: {{name: users}}, \
             destinationRef: {{name: shared}}, action: upsert, fields: [{{to: id, from: id}}, {{to: email, from: email}}]}}\n"
        );
    }
    c.ns.apply_yaml(&yaml).unwrap();
    for m in mappings {
        c.wait_ready("mapping", m).await;
    }
    let started = Instant::now();
    for m in mappings {
        c.annotate("mapping", m, "retl.dev/sync-now=1");
    }

    // Watch the three Syncs until they finish: how many ran at once, and whether one was seen waiting.
    let mut most_running = 0;
    let mut waiting = None;
    let done = wait_until(Duration::from_secs(120), || {
        let syncs = c.syncs();
        let running = syncs.iter().filter(|s| s["status"]["phase"] == "InProgress").count();
        most_running = most_running.max(running);
        if let Some(w) = syncs.iter().find(|s| s["status"]["phase"] == "Pending" && s["status"]["jobName"].is_null()) {
            let cond = w["status"]["conditions"].as_array().and_then(|l| l.iter().find(|x| x["type"] == "Admitted").cloned());
            waiting = waiting.take().or(cond);
        }
        let finished = syncs.len() == 3 && syncs.iter().all(is_finished);
        async move { finished }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(done, "the three Syncs finish:\n{}", c.state());
    for s in c.syncs() {
        assert_eq!(s["status"]["phase"], "Successful", "{s:#}");
    }
    assert!(most_running <= 2, "at most maxConcurrentSyncs at once, saw {most_running}:\n{}", c.state());
    let waiting = waiting.unwrap_or_else(|| panic!("the third Sync waits visibly:\n{}", c.state()));
    assert_eq!((waiting["status"].as_str(), waiting["reason"].as_str()), (Some("False"), Some("WaitingForDestination")), "{waiting:#}");
    assert!(waiting["message"].as_str().unwrap().contains("at most 2 Syncs at a time"), "{waiting:#}");

    // 3 × 8 requests at 4 a second in all: each of the two running Syncs gets 2 a second.
    assert_eq!(c.sink.requests(), 24);
    let per_second = c.sink.max_requests_per_second();
    assert!(per_second <= 4 + 2, "at most 4 requests a second (+1 of jitter per running Sync), saw {per_second}");
    assert!(elapsed >= Duration::from_secs(5), "24 requests at 4 a second take about 6 s, not {elapsed:?}");
}
