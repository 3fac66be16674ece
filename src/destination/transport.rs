//! The one HTTP transport every HTTP destination type sends through.
//!
//! It owns what all of them share: the client and its timeouts, the rate
//! limit and the bound on requests in flight, headers (credentials from
//! Secrets included), retries with exponential backoff honouring
//! `Retry-After`, and masking of secret values in everything a reply or an
//! error carries back. A destination type only encodes a batch into a
//! request body and reads the reply ([`Read`]): 408, 429 and 5xx replies,
//! timeouts and broken connections never reach it, they are retried here.
//!
//! Whatever the spec says, the transport stays within [`limits`]: a
//! backoff or a retry count of `u32::MAX` must not abort the process or
//! keep a sync waiting for weeks.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::Semaphore;

use super::{DestinationError, exchange};
use crate::mask::Masker;
use crate::warehouse::SecretValues;

/// The bounds the runtime keeps to, whatever value a spec carries.
pub mod limits {
    use std::time::Duration;

    /// Most records per request (a larger `batchSize` is taken as this).
    pub const MAX_BATCH_SIZE: usize = 10_000;
    /// Most requests in flight at once.
    pub const MAX_IN_FLIGHT: usize = 64;
    /// Most retries of one request inside a sync.
    pub const MAX_RETRIES: usize = 20;
    /// Longest first backoff delay.
    pub const MAX_INITIAL_BACKOFF: Duration = Duration::from_secs(10);
    /// Longest delay between two attempts (before jitter).
    pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
    /// Longest `Retry-After` honoured.
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
    /// Longest time one request is retried inside a sync; after that its
    /// records are retried on later syncs.
    pub const MAX_RETRY_TIME: Duration = Duration::from_secs(15 * 60);
    /// Longest time one request may take.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
}

/// The knobs every HTTP destination type offers, as its spec has them
/// (`None`: the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Knobs {
    pub timeout_seconds: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub requests_per_second: Option<u32>,
    pub max_retries: Option<u32>,
    pub initial_backoff_millis: Option<u32>,
}

/// What a destination type makes of one reply the transport did not
/// retry on its own: `Ok` its reading, `Err` why the reply shows nothing
/// was applied (the request is then retried like a 5xx).
pub type Read<'a, T> = &'a (dyn Fn(StatusCode, &str) -> Result<T, String> + Sync);

pub struct HttpTransport {
    name: String,
    client: reqwest::Client,
    url: Url,
    method: Method,
    headers: HeaderMap,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Requests in flight, whichever batch they belong to.
    slots: Semaphore,
    max_in_flight: usize,
    pub(crate) max_retries: usize,
    initial_backoff: Duration,
    /// How long one request may be retried, in all.
    pub(crate) max_retry_time: Duration,
    /// Masks the secret values this transport sends (raw, and as the
    /// headers carry them) wherever a reply or an error echoes them.
    masker: Masker,
    /// Headers whose values are credentials: shown masked in a recorded
    /// [`exchange`](super::exchange), whatever their length.
    secret_headers: Vec<HeaderName>,
}

/// A failed attempt worth retrying.
struct Retry {
    message: String,
    retry_after: Option<Duration>,
}

impl HttpTransport {
    /// A transport for `destination`; `headers` go with every request, and
    /// those marked sensitive are masked in replies, as every value in
    /// `secrets` is.
    pub fn new(
        destination: &str,
        url: Url,
        method: Method,
        mut headers: HeaderMap,
        knobs: Knobs,
        secrets: &SecretValues,
    ) -> Result<Self, DestinationError> {
        let config = |message: String| DestinationError::Config { destination: destination.to_string(), message };
        crate::install_crypto_provider();
        let timeout = Duration::from_secs(knobs.timeout_seconds.unwrap_or(30).max(1) as u64).min(limits::MAX_TIMEOUT);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client ({})", e.without_url())))?;
        // Headers marked sensitive carry credentials: masked as they are
        // sent too (`Basic <base64 of key:>` is no form of the key itself).
        let sent: Vec<String> = headers.values().filter(|v| v.is_sensitive()).filter_map(|v| v.to_str().ok().map(str::to_string)).collect();
        let masker = Masker::from_values(secrets.values().map(String::as_str).chain(sent.iter().map(String::as_str)));
        let secret_headers = headers.iter().filter(|(_, v)| v.is_sensitive()).map(|(n, _)| n.clone()).collect();
        for value in headers.values_mut() {
            value.set_sensitive(true);
        }
        let max_in_flight = (knobs.max_in_flight.unwrap_or(4) as usize).clamp(1, limits::MAX_IN_FLIGHT);
        Ok(HttpTransport {
            name: destination.to_string(),
            client,
            url,
            method,
            headers,
            limiter: knobs.requests_per_second.and_then(NonZeroU32::new).map(|rps| RateLimiter::direct(Quota::per_second(rps))),
            slots: Semaphore::new(max_in_flight),
            max_in_flight,
            max_retries: (knobs.max_retries.unwrap_or(5) as usize).min(limits::MAX_RETRIES),
            initial_backoff: Duration::from_millis(knobs.initial_backoff_millis.unwrap_or(500) as u64).min(limits::MAX_INITIAL_BACKOFF),
            max_retry_time: limits::MAX_RETRY_TIME,
            masker,
            secret_headers,
        })
    }

    /// Requests in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Any HTTP answer (even 404 or 405) shows the endpoint is reachable;
    /// only transport errors count.
    pub async fn check(&self) -> Result<(), DestinationError> {
        self.client.head(self.url.clone()).headers(self.headers.clone()).send().await.map(|_| ()).map_err(|e| {
            let message = self.masker.owned(format!("{} ({})", describe(&e), self.safe_url()));
            DestinationError::Unavailable { destination: self.name.clone(), message }
        })
    }

    /// Sends `body` (JSON) until a reply is read, retrying 408, 429, 5xx,
    /// transport errors and what `read` refuses; `Err` when retries ran out.
    pub async fn send<T>(&self, body: bytes::Bytes, read: Read<'_, T>) -> Result<T, DestinationError> {
        let started = Instant::now();
        let attempts = AtomicUsize::new(0);
        (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(&body, read)
        })
        .retry(self.backoff())
        .adjust(|e: &Retry, planned| {
            let wait = planned.map(|p| e.retry_after.map_or(p, |ra| ra.min(limits::MAX_RETRY_AFTER)))?;
            // Past the retry time, the records wait for the next sync instead.
            (started.elapsed() + wait <= self.max_retry_time).then_some(wait)
        })
        .notify(|e: &Retry, wait| tracing::debug!(destination = %self.name, error = %e.message, ?wait, "retrying request"))
        .await
        .map_err(|e| DestinationError::Unavailable {
            destination: self.name.clone(),
            message: format!(
                "{} after {} attempts in {}s ({})",
                e.message,
                attempts.load(Ordering::Relaxed),
                started.elapsed().as_secs(),
                self.safe_url()
            ),
        })
    }

    /// The delays between attempts: exponential from the first backoff,
    /// each at most [`limits::MAX_BACKOFF`] before jitter.
    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(limits::MAX_BACKOFF)
            .with_max_times(self.max_retries)
            .with_jitter()
    }

    async fn attempt<T>(&self, body: &bytes::Bytes, read: Read<'_, T>) -> Result<T, Retry> {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        // The semaphore is never closed.
        let _slot = self.slots.acquire().await.map_err(|e| Retry { message: e.to_string(), retry_after: None })?;
        let masked = |e: reqwest::Error| {
            let message = self.masker.owned(describe(&e));
            exchange::note(|| self.exchange(body, None, Some(&message)));
            Retry { message, retry_after: None }
        };
        let response = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(masked)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(masked)?;
        // Masked here, where the reply enters retl: every message, code and
        // log line made from it is made from the masked text.
        let text = self.masker.owned(text);
        exchange::note(|| self.exchange(body, Some((status, &text)), None));
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
            return Err(Retry { message: format!("HTTP {status}: {}", snippet(&text)), retry_after });
        }
        read(status, &text).map_err(|message| Retry { message, retry_after })
    }

    /// One attempt as a person reads it (recorded for a test record only):
    /// secret headers and echoes of secret values masked.
    fn exchange(&self, body: &[u8], reply: Option<(StatusCode, &str)>, error: Option<&str>) -> exchange::Exchange {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some(crate::mask::MASK));
        }
        let mut headers: Vec<exchange::Header> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let text = String::from_utf8_lossy(value.as_bytes());
                let value =
                    if self.secret_headers.contains(name) { exchange::masked_header(&text) } else { self.masker.apply(&text).into_owned() };
                exchange::Header { name: name.to_string(), value }
            })
            .collect();
        headers.push(exchange::Header { name: CONTENT_TYPE.to_string(), value: "application/json".into() });
        exchange::Exchange {
            request: exchange::Sent {
                method: self.method.to_string(),
                target: self.masker.apply(url.as_str()).into_owned(),
                headers,
                body: exchange::body(&self.masker.apply(&String::from_utf8_lossy(body))),
            },
            reply: reply.map(|(status, text)| exchange::Reply { status: format!("HTTP {status}"), body: exchange::body(text) }),
            error: error.map(str::to_string),
        }
    }

    /// The URL without credentials, for messages.
    fn safe_url(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.to_string()
    }
}

/// A request header; `secret` when its value comes from a Secret (it is
/// then masked wherever a reply echoes it).
pub fn header(destination: &str, name: &str, value: &str, secret: bool) -> Result<(HeaderName, HeaderValue), DestinationError> {
    let config = |message: String| DestinationError::Config { destination: destination.to_string(), message };
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| config(format!("{name:?} is not a valid header name")))?;
    let mut value = HeaderValue::from_str(value).map_err(|_| config(format!("the value of header {name} is not valid in HTTP")))?;
    value.set_sensitive(secret);
    Ok((name, value))
}

/// HTTP basic auth: `Authorization: Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> (HeaderName, HeaderValue) {
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{password}"));
    // Base64 is always a valid header value.
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    (AUTHORIZATION, value)
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

/// The start of a reply, for messages.
pub fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None if t.is_empty() => "(empty reply)".to_string(),
        None => t.to_string(),
    }
}

/// A `Retry-After` header in seconds (the form APIs use for 429 and 503).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}
