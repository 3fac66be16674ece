//! The http destination's bounds: whatever a spec says, no batch waits for
//! weeks, retries forever or allocates without bound.

use std::time::{Duration, Instant};

use backon::BackoffBuilder;

use super::*;
use crate::api::ChangeKind;

fn spec(url: &str) -> api::HttpDestination {
    serde_json::from_value(serde_json::json!({"url": url})).expect("spec")
}

fn rec(key: &str) -> OutRecord {
    OutRecord { key: key.into(), kind: ChangeKind::Added, payload: serde_json::json!({}).into(), id: format!("id-{key}") }
}

#[test]
fn the_largest_values_a_spec_can_carry_are_capped() {
    let mut s = spec("http://127.0.0.1:9/batch");
    s.batch_size = Some(u32::MAX);
    s.max_in_flight = Some(u32::MAX);
    s.max_retries = Some(u32::MAX);
    s.initial_backoff_millis = Some(u32::MAX);
    s.timeout_seconds = Some(u32::MAX);
    let d = HttpDestination::new("d", &s, &SecretValues::new()).expect("destination");
    assert_eq!(
        (d.batch_size(), d.max_in_flight(), d.transport.max_retries),
        (limits::MAX_BATCH_SIZE, limits::MAX_IN_FLIGHT, limits::MAX_RETRIES)
    );
    let delays: Vec<Duration> = d.transport.backoff().build().collect();
    assert_eq!(delays.len(), limits::MAX_RETRIES);
    // Jitter adds at most the delay itself.
    assert!(delays[0] <= 2 * limits::MAX_INITIAL_BACKOFF, "first retry after {:?}", delays[0]);
    assert!(delays.iter().all(|d| *d <= 2 * limits::MAX_BACKOFF), "{delays:?}");
}

#[tokio::test]
async fn a_batch_is_retried_for_a_bounded_time_only() {
    let sink = testkit::sink::Sink::start().await.expect("sink");
    sink.set(|b| b.always_status = Some(503));
    let mut s = spec(&sink.url());
    s.max_retries = Some(u32::MAX);
    s.initial_backoff_millis = Some(50);
    let mut d = HttpDestination::new("d", &s, &SecretValues::new()).expect("destination");
    d.transport.max_retry_time = Duration::from_secs(2);
    let started = Instant::now();
    let err = d.send("a", &[rec("1")]).await.expect_err("always 503");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert!(sink.requests() >= 3, "it did retry: {}", sink.requests());
}
