//! A Sync's status stays small however large the rejected records are:
//! etcd refuses objects above 1.5 MiB, and a status write refused for its
//! size would lose the whole outcome (the Sync would end WorkerDied).

use crate::cluster::{Cluster, Setup, count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_rejected_200_kb_records_leave_a_small_status() {
    let c = Cluster::start(Setup::default()).await;
    // 200 000 characters of 'x' in the email of users 1 to 12.
    c.sql("UPDATE users SET email = replace(hex(zeroblob(100000)), '0', 'x') WHERE id <= 12");
    c.sink.set(|b| b.reject_keys.extend((1..=12).map(|k| k.to_string())));
    c.annotate("mapping", "users-api", "retl.dev/sync-now=1");
    let s = c.wait_finished(1).await;
    let name = s["metadata"]["name"].as_str().unwrap_or_default();
    let brief = || format!("{} {}: {}", s["status"]["phase"], s["status"]["reason"], s["status"]["message"]);
    assert_eq!(s["status"]["phase"], "PartiallySuccessful", "{}", brief());
    assert_eq!((count(&s, "/status/loaded/succeeded"), count(&s, "/status/loaded/failed")), (13, 12), "{}", brief());
    let errors = s["status"]["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0]["code"].as_str(), errors[0]["count"].as_u64()), (Some("INVALID_RECORD"), Some(12)));

    let samples = s["status"]["failedRecords"].as_array().cloned().unwrap_or_default();
    assert_eq!(samples.len(), 10);
    for f in &samples {
        assert_eq!(f["payloadTruncated"], true, "{}", f["key"]);
        let start = f["payload"].as_str().unwrap_or_default();
        assert!(start.starts_with(&format!(r#"{{"id":"{}","email":"xxx"#, f["key"].as_str().unwrap_or_default())), "{start:.60}");
        assert!(start.len() < 8 * 1024, "{} bytes of payload", start.len());
    }
    let message = s["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("truncated payload"), "{message}");

    let json = c.ns.kubectl(&["get", "sync", name, "-o", "json"]).unwrap();
    assert!(json.success(), "{}", json.stderr);
    assert!(json.stdout.len() < 256 * 1024, "the Sync is {} bytes as JSON", json.stdout.len());
}
