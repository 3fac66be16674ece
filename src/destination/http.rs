//! `http`: batches of records as JSON to any HTTP API.
//!
//! Request body: `{"action": "...", "records": [{"key", "operation", "payload"}]}`.
//! A reply whose JSON body has a `results` array is attributed record by
//! record: by `key` when the items carry one, else by position; an item is
//! accepted when `"ok": true` and rejected otherwise (with its `code` and
//! `message`). A reply without `results` accepts (2xx) or rejects (other
//! statuses) the whole batch. 408, 429 and 5xx replies, timeouts and broken
//! connections are retried with exponential backoff (honouring
//! `Retry-After`) inside the sync; when retries run out the batch is
//! reported as undeliverable and its records are retried on later syncs.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::{Delivery, Destination, DestinationError, OutRecord, WireRecord};
use crate::api::{self, HttpMethod};
use crate::engine::codes;
use crate::warehouse::SecretValues;

pub struct HttpDestination {
    name: String,
    client: reqwest::Client,
    url: Url,
    method: Method,
    headers: HeaderMap,
    batch_size: usize,
    max_in_flight: usize,
    limiter: Option<DefaultDirectRateLimiter>,
    max_retries: usize,
    initial_backoff: Duration,
}

/// A failed attempt worth retrying.
struct Retry {
    message: String,
    retry_after: Option<Duration>,
}

impl HttpDestination {
    pub fn new(name: &str, s: &api::HttpDestination, secrets: &SecretValues) -> Result<Self, DestinationError> {
        let config = |message: String| DestinationError::Config { destination: name.to_string(), message };
        let url = Url::parse(&s.url).map_err(|e| config(format!("spec.http.url is not a valid URL ({e})")))?;
        let mut headers = HeaderMap::new();
        for h in &s.headers {
            let value = match (&h.value, &h.value_from) {
                (Some(v), None) => v.clone(),
                (None, Some(r)) => secrets
                    .get(&(r.name.clone(), r.key.clone()))
                    .cloned()
                    .ok_or_else(|| DestinationError::MissingSecret { name: r.name.clone(), key: r.key.clone() })?,
                _ => return Err(config(format!("header {:?} needs exactly one of value and valueFrom", h.name))),
            };
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| config(format!("{:?} is not a valid header name", h.name)))?;
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| config(format!("the value of header {name} is not valid in HTTP")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        crate::install_crypto_provider();
        let timeout = Duration::from_secs(s.timeout_seconds.unwrap_or(30).max(1) as u64);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client ({})", e.without_url())))?;
        let limiter = s.requests_per_second.and_then(NonZeroU32::new).map(|rps| RateLimiter::direct(Quota::per_second(rps)));
        Ok(HttpDestination {
            name: name.to_string(),
            client,
            url,
            method: match s.method {
                Some(HttpMethod::Put) => Method::PUT,
                Some(HttpMethod::Patch) => Method::PATCH,
                _ => Method::POST,
            },
            headers,
            batch_size: s.batch_size.unwrap_or(100).max(1) as usize,
            max_in_flight: s.max_in_flight.unwrap_or(4).max(1) as usize,
            limiter,
            max_retries: s.max_retries.unwrap_or(5) as usize,
            initial_backoff: Duration::from_millis(s.initial_backoff_millis.unwrap_or(500) as u64),
        })
    }

    /// The URL without credentials, for messages.
    fn safe_url(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.to_string()
    }

    async fn attempt(&self, body: &bytes::Bytes, batch: &[OutRecord]) -> Result<Vec<Delivery>, Retry> {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        let response = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| Retry { message: describe(&e), retry_after: None })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(|e| Retry { message: describe(&e), retry_after: None })?;
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
            return Err(Retry { message: format!("HTTP {status}: {}", snippet(&text)), retry_after });
        }
        if let Some(deliveries) = attribute(&text, batch) {
            return Ok(deliveries);
        }
        if status.is_success() {
            return Ok(vec![Delivery::Accepted; batch.len()]);
        }
        let rejected =
            Delivery::Rejected { code: format!("HTTP_{}", status.as_u16()), message: format!("HTTP {status}: {}", snippet(&text)) };
        Ok(vec![rejected; batch.len()])
    }
}

#[async_trait]
impl Destination for HttpDestination {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    async fn check(&self) -> Result<(), DestinationError> {
        // Any HTTP answer (even 404 or 405) shows the endpoint is reachable;
        // only transport errors count.
        self.client.head(self.url.clone()).headers(self.headers.clone()).send().await.map(|_| ()).map_err(|e| {
            DestinationError::Unavailable { destination: self.name.clone(), message: format!("{} ({})", describe(&e), self.safe_url()) }
        })
    }

    async fn send(&self, action: &str, batch: &[OutRecord]) -> Result<Vec<Delivery>, DestinationError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            action: &'a str,
            records: Vec<WireRecord<'a>>,
        }
        let body = Body { action, records: batch.iter().map(WireRecord::from).collect() };
        let body = bytes::Bytes::from(
            serde_json::to_vec(&body)
                .map_err(|e| DestinationError::Config { destination: self.name.clone(), message: format!("cannot encode batch: {e}") })?,
        );
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.max_retries)
            .with_jitter();
        let attempts = self.max_retries + 1;
        (|| self.attempt(&body, batch))
            .retry(backoff)
            .adjust(|e: &Retry, planned| planned.map(|p| e.retry_after.map_or(p, |ra| ra.min(Duration::from_secs(300)))))
            .notify(|e: &Retry, wait| tracing::debug!(destination = %self.name, error = %e.message, ?wait, "retrying batch"))
            .await
            .map_err(|e| DestinationError::Unavailable {
                destination: self.name.clone(),
                message: format!("{} after {attempts} attempts ({})", e.message, self.safe_url()),
            })
    }
}

/// Reads per-record results from a reply body, if it has them.
fn attribute(text: &str, batch: &[OutRecord]) -> Option<Vec<Delivery>> {
    let value: Value = serde_json::from_str(text).ok()?;
    let results = value.get("results")?.as_array()?;
    let by_key = results.iter().all(|r| r.get("key").is_some());
    let missing = || Delivery::Rejected {
        code: codes::NO_RESULT.to_string(),
        message: "the destination's reply has no result for this record".to_string(),
    };
    Some(if by_key {
        let map: std::collections::HashMap<String, &Value> = results.iter().map(|r| (key_text(&r["key"]), r)).collect();
        batch.iter().map(|rec| map.get(&rec.key).map_or_else(missing, |r| delivery(r))).collect()
    } else {
        (0..batch.len()).map(|i| results.get(i).map_or_else(missing, delivery)).collect()
    })
}

fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn delivery(item: &Value) -> Delivery {
    if item.get("ok").and_then(Value::as_bool) == Some(true) {
        return Delivery::Accepted;
    }
    Delivery::Rejected {
        code: item.get("code").and_then(Value::as_str).unwrap_or(codes::REJECTED).to_string(),
        message: item.get("message").and_then(Value::as_str).unwrap_or("the destination rejected the record without a message").to_string(),
    }
}

/// A transport error in words, without the URL (it may carry credentials).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the reply"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() { kind.to_string() } else { format!("{kind}: {cause}") }
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None if t.is_empty() => "(empty reply)".to_string(),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ChangeKind;

    fn rec(key: &str) -> OutRecord {
        OutRecord { key: key.into(), kind: ChangeKind::Added, payload: serde_json::json!({}) }
    }

    #[test]
    fn replies_are_attributed_by_key_then_by_position() {
        let batch = [rec("1"), rec("2"), rec("3")];
        let by_key = attribute(r#"{"results":[{"key":"2","ok":false,"code":"BAD","message":"no"},{"key":1,"ok":true}]}"#, &batch).unwrap();
        assert_eq!(by_key[0], Delivery::Accepted);
        assert_eq!(by_key[1], Delivery::Rejected { code: "BAD".into(), message: "no".into() });
        assert!(matches!(&by_key[2], Delivery::Rejected { code, .. } if code == codes::NO_RESULT));
        let by_pos = attribute(r#"{"results":[{"ok":true},{"ok":false}]}"#, &batch).unwrap();
        assert_eq!(by_pos[0], Delivery::Accepted);
        assert!(matches!(&by_pos[1], Delivery::Rejected { code, .. } if code == codes::REJECTED));
        assert!(attribute("not json", &batch).is_none());
    }
}
