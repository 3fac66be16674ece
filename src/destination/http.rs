//! `http`: batches of records as JSON to any HTTP API.
//!
//! Request body: `{"action": "...", "records": [{"key", "operation", "payload"}]}`.
//! A reply whose JSON body has a `results` array is attributed record by
//! record: by `key` when the items carry one, else by position; an item is
//! accepted when `"ok": true` and rejected otherwise (with its `code` and
//! `message`). A reply without `results` accepts (2xx) or rejects (other
//! statuses) the whole batch, unless the destination declared
//! `replies: perRecord` (see [`super::reply`]). 408, 429 and 5xx replies,
//! replies that cannot be read, timeouts and broken connections are retried
//! with exponential backoff (honouring `Retry-After`) inside the sync; when
//! retries run out the batch is reported as undeliverable and its records
//! are retried on later syncs.
//!
//! Whatever the spec says, the runtime stays within [`limits`]: a batch
//! size, a backoff or a retry count of `u32::MAX` must not abort the
//! process or keep a sync waiting for weeks.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};

use super::{Delivery, Destination, DestinationError, OutRecord, WireRecord, reply};
use crate::api::{self, HttpMethod, HttpReplies};
use crate::mask::Masker;
use crate::warehouse::SecretValues;

/// The bounds the runtime keeps to, whatever value a spec carries.
pub mod limits {
    use std::time::Duration;

    /// Most records per request (a larger `batchSize` is taken as this).
    pub const MAX_BATCH_SIZE: usize = 10_000;
    /// Most requests in flight at once.
    pub const MAX_IN_FLIGHT: usize = 64;
    /// Most retries of one batch inside a sync.
    pub const MAX_RETRIES: usize = 20;
    /// Longest first backoff delay.
    pub const MAX_INITIAL_BACKOFF: Duration = Duration::from_secs(10);
    /// Longest delay between two attempts (before jitter).
    pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
    /// Longest `Retry-After` honoured.
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
    /// Longest time one batch is retried inside a sync; after that its
    /// records are retried on later syncs.
    pub const MAX_RETRY_TIME: Duration = Duration::from_secs(15 * 60);
    /// Longest time one request may take.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
}

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
    /// How long one batch may be retried, in all.
    max_retry_time: Duration,
    replies: HttpReplies,
    /// Masks the secret values this destination sends wherever the
    /// destination's replies or errors echo them.
    masker: Masker,
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
        let timeout = Duration::from_secs(s.timeout_seconds.unwrap_or(30).max(1) as u64).min(limits::MAX_TIMEOUT);
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
            batch_size: (s.batch_size.unwrap_or(100) as usize).clamp(1, limits::MAX_BATCH_SIZE),
            max_in_flight: (s.max_in_flight.unwrap_or(4) as usize).clamp(1, limits::MAX_IN_FLIGHT),
            limiter,
            max_retries: (s.max_retries.unwrap_or(5) as usize).min(limits::MAX_RETRIES),
            initial_backoff: Duration::from_millis(s.initial_backoff_millis.unwrap_or(500) as u64).min(limits::MAX_INITIAL_BACKOFF),
            max_retry_time: limits::MAX_RETRY_TIME,
            replies: s.replies.unwrap_or_default(),
            masker: Masker::new(secrets),
        })
    }

    /// The delays between attempts: exponential from the first backoff,
    /// each at most [`limits::MAX_BACKOFF`] before jitter.
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(limits::MAX_BACKOFF)
            .with_max_times(self.max_retries)
            .with_jitter()
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
            .map_err(|e| Retry { message: self.masker.owned(describe(&e)), retry_after: None })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(|e| Retry { message: self.masker.owned(describe(&e)), retry_after: None })?;
        // Masked here, where the reply enters retl: every message, code and
        // log line below is made from the masked text.
        let text = self.masker.owned(text);
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
            return Err(Retry { message: format!("HTTP {status}: {}", snippet(&text)), retry_after });
        }
        match reply::read(&text, batch, self.replies) {
            Ok(Some(deliveries)) => return Ok(deliveries),
            Ok(None) => {}
            // A 2xx that cannot be read applied nothing retl can tell: not a success.
            Err(why) if status.is_success() => {
                return Err(Retry {
                    message: format!("HTTP {status} with a reply that cannot be read ({why}): {}", snippet(&text)),
                    retry_after,
                });
            }
            // A refusal whose body cannot be read still refuses the whole batch.
            Err(_) => {}
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
            let message = self.masker.owned(format!("{} ({})", describe(&e), self.safe_url()));
            DestinationError::Unavailable { destination: self.name.clone(), message }
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
        let started = std::time::Instant::now();
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        (|| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.attempt(&body, batch)
        })
        .retry(self.backoff())
        .adjust(|e: &Retry, planned| {
            let wait = planned.map(|p| e.retry_after.map_or(p, |ra| ra.min(limits::MAX_RETRY_AFTER)))?;
            // Past the retry time, the batch waits for the next sync instead.
            (started.elapsed() + wait <= self.max_retry_time).then_some(wait)
        })
        .notify(|e: &Retry, wait| tracing::debug!(destination = %self.name, error = %e.message, ?wait, "retrying batch"))
        .await
        .map_err(|e| DestinationError::Unavailable {
            destination: self.name.clone(),
            message: format!(
                "{} after {} attempts in {}s ({})",
                e.message,
                attempts.load(std::sync::atomic::Ordering::Relaxed),
                started.elapsed().as_secs(),
                self.safe_url()
            ),
        })
    }
}

/// A transport error in words, without the URL (it may carry credentials).
pub(crate) fn describe(e: &reqwest::Error) -> String {
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
mod tests;

/// A `Retry-After` header in seconds (the form APIs use for 429 and 503).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}
