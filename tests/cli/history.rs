//! Past syncs: reset and replay, `retl records` (every failed record of a
//! sync, page by page), and a Destination's rate limit in a local run.

use std::time::{Duration, Instant};

use testkit::sink::Sink;

use super::{http_setup, last_row, quickstart, retl, text};

#[test]
fn reset_and_replay() {
    let (_tmp, dir) = quickstart();
    let first = text(&retl(&dir, &["run", "-f", "."]));
    let first_sync = last_row(&first)["NAME"].clone();
    let reset = text(&retl(&dir, &["run", "-f", ".", "--reset", "users-to-crm"]));
    assert_eq!(last_row(&reset)["ADDED"], "10", "after a reset every record is new: {reset}");
    let again = text(&retl(&dir, &["run", "-f", "."]));
    assert_eq!(last_row(&again)["ADDED"], "2", "a reset happens once: {again}");

    retl(&dir, &["sql", "-f", ".", "--source", "warehouse", "UPDATE users SET name = 'Ada King' WHERE id = 1"]);
    let replay = text(&retl(&dir, &["run", "-f", ".", "--replay", &first_sync]));
    let row = last_row(&replay);
    assert!(row["NAME"].starts_with(&format!("{first_sync}-replay-")), "{replay}");
    assert_eq!(row["EXTRACTED"], "10", "{replay}");
    let delivered = std::fs::read_to_string(dir.join("out/crm.jsonl")).unwrap();
    assert!(delivered.lines().last().is_some() && delivered.contains("Ada King"), "replay sends current values");
    let unknown = retl(&dir, &["run", "-f", ".", "--replay", "no-such-sync"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).contains("no Mapping in these manifests has a sync of that name"));
}

#[test]
fn records_pages_every_failed_record_of_a_past_sync() {
    let (_tmp, dir) = quickstart();
    retl(&dir, &["run", "-f", "."]);
    let history = text(&retl(&dir, &["history", "-f", "."]));
    let sync = history.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_string();

    let first = retl(&dir, &["records", "-f", ".", &sync, "--limit", "1"]);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    assert!(out.contains(&format!("Sync default/{sync}: failed records 1-1 of 2")), "{out}");
    assert!(out.contains("Recommended action:") && out.contains("Payload: {"), "{out}");
    assert!(out.contains(&format!("Next page: retl records -f . {sync} --limit 1 --offset 1")), "{out}");

    let second = retl(&dir, &["records", "-f", ".", &sync, "--limit", "1", "--offset", "1", "-o", "json"]);
    let page: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&second)));
    assert_eq!((page["total"].as_u64(), page["offset"].as_u64(), page.get("nextOffset")), (Some(2), Some(1), None), "{page:#}");
    let both = [&first.stdout[..], &second.stdout[..]].concat();
    let both = String::from_utf8_lossy(&both);
    for code in ["MISSING_REQUIRED_FIELD", "PROPERTY_NOT_ACCEPTED"] {
        assert!(both.contains(code), "each failed record once, over the two pages: {both}");
    }
    let item = &page["items"][0];
    assert!(item["payload"].is_object() && !item["recommendedAction"].as_str().unwrap().is_empty(), "{item:#}");

    let wide = text(&retl(&dir, &["records", "-f", ".", &sync, "-o", "wide"]));
    assert_eq!(wide.lines().count(), 3, "a header and one line per record: {wide}");
    let nope = retl(&dir, &["records", "-f", ".", "no-such-sync"]);
    assert_eq!(nope.status.code(), Some(2), "{}", text(&nope));
    assert!(text(&nope).contains("retl history -f ."), "{}", text(&nope));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_keeps_to_the_destinations_rate_limit() {
    let sink = Sink::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 40, &sink.url(), "  rateLimit: {recordsPerSecond: 20}");
    let started = Instant::now();
    let run = retl(tmp.path(), &["run", "-f", "."]);
    let elapsed = started.elapsed();
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(sink.latest().len(), 40);
    // 4 batches of 10 at 20 records a second: the first at once, then one every half second.
    assert!(elapsed >= Duration::from_millis(1400), "40 records at 20 a second: {elapsed:?}");
    let per_second = sink.max_requests_per_second();
    assert!(per_second <= 3, "2 batches of 10 a second (+1 of jitter), saw {per_second}");
}
