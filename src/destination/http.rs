//! `http`: batches of records as JSON to any HTTP API, in retl's own format.
//!
//! Request body: `{"action": "...", "records": [{"key", "operation", "payload"}]}`.
//! A reply whose JSON body has a `results` array is attributed record by
//! record: by `key` when the items carry one, else by position; an item is
//! accepted when `"ok": true` and rejected otherwise (with its `code` and
//! `message`). A reply without `results` accepts (2xx) or rejects (other
//! statuses) the whole batch, unless the destination declared
//! `replies: perRecord` (see [`super::reply`]). Retries, timeouts, the rate
//! limit and headers are the [`transport`](super::transport)'s.

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};

use super::transport::{self, HttpTransport, Knobs, snippet};
use super::{Delivery, Destination, DestinationError, Kind, OutRecord, reply};
use crate::api::{self, DestinationSpec, HttpMethod, HttpReplies, SecretKeyRef};
use crate::warehouse::SecretValues;

pub use super::transport::limits;
// The Slack alert channel shares these.
pub(crate) use super::transport::{describe, retry_after};

/// The `http` type.
pub struct Http;

impl Kind for Http {
    fn build(&self, name: &str, spec: &DestinationSpec, secrets: &SecretValues, _: &std::path::Path) -> super::Built {
        let settings = spec.http.as_ref().ok_or_else(|| super::missing_settings(name, "http"))?;
        Ok(std::sync::Arc::new(HttpDestination::new(name, settings, secrets)?))
    }

    fn secret_refs(&self, spec: &DestinationSpec) -> Vec<SecretKeyRef> {
        spec.http.iter().flat_map(|h| h.headers.iter().filter_map(|x| x.value_from.clone())).collect()
    }
}

pub struct HttpDestination {
    transport: HttpTransport,
    batch_size: usize,
    replies: HttpReplies,
}

impl HttpDestination {
    pub fn new(name: &str, s: &api::HttpDestination, secrets: &SecretValues) -> Result<Self, DestinationError> {
        let config = |message: String| DestinationError::Config { destination: name.to_string(), message };
        let url = Url::parse(&s.url).map_err(|e| config(format!("spec.http.url is not a valid URL ({e})")))?;
        let mut headers = HeaderMap::new();
        for h in &s.headers {
            let value = match (&h.value, &h.value_from) {
                (Some(v), None) => v,
                (None, Some(r)) => secrets
                    .get(&(r.name.clone(), r.key.clone()))
                    .ok_or_else(|| DestinationError::MissingSecret { name: r.name.clone(), key: r.key.clone() })?,
                _ => return Err(config(format!("header {:?} needs exactly one of value and valueFrom", h.name))),
            };
            let (name, value) = transport::header(name, &h.name, value, h.value_from.is_some())?;
            headers.insert(name, value);
        }
        let method = match s.method {
            Some(HttpMethod::Put) => Method::PUT,
            Some(HttpMethod::Patch) => Method::PATCH,
            _ => Method::POST,
        };
        let knobs = Knobs {
            timeout_seconds: s.timeout_seconds,
            max_in_flight: s.max_in_flight,
            requests_per_second: s.requests_per_second,
            max_retries: s.max_retries,
            initial_backoff_millis: s.initial_backoff_millis,
        };
        Ok(HttpDestination {
            transport: HttpTransport::new(name, url, method, headers, knobs, secrets)?,
            batch_size: (s.batch_size.unwrap_or(100) as usize).clamp(1, limits::MAX_BATCH_SIZE),
            replies: s.replies.unwrap_or_default(),
        })
    }

    /// What one reply says about `batch`; `Err` when it shows nothing was
    /// applied that retl can tell (the request is retried).
    fn read(&self, status: StatusCode, text: &str, batch: &[OutRecord]) -> Result<Vec<Delivery>, String> {
        match reply::read(text, batch, self.replies) {
            Ok(Some(deliveries)) => return Ok(deliveries),
            Ok(None) => {}
            // A 2xx that cannot be read applied nothing retl can tell: not a success.
            Err(why) if status.is_success() => {
                return Err(format!("HTTP {status} with a reply that cannot be read ({why}): {}", snippet(text)));
            }
            // A refusal whose body cannot be read still refuses the whole batch.
            Err(_) => {}
        }
        if status.is_success() {
            return Ok(vec![Delivery::Accepted; batch.len()]);
        }
        let rejected =
            Delivery::Rejected { code: format!("HTTP_{}", status.as_u16()), message: format!("HTTP {status}: {}", snippet(text)) };
        Ok(vec![rejected; batch.len()])
    }
}

#[async_trait]
impl Destination for HttpDestination {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn max_in_flight(&self) -> usize {
        self.transport.max_in_flight()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        self.transport.check().await
    }

    async fn send(&self, action: &str, batch: &[OutRecord]) -> Result<Vec<Delivery>, DestinationError> {
        let body = bytes::Bytes::from(super::encode_batch(action, batch));
        self.transport.send(body, &|status, text| self.read(status, text, batch)).await
    }
}

#[cfg(test)]
mod tests;
