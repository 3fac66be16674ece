//! A real HTTP server that plays a Slack incoming webhook
//! (`POST /services/T000/B000/<token>`): it checks each message as Slack
//! does and answers as Slack does (200 `ok`; 400 `invalid_payload`,
//! `no_text` or `invalid_blocks`; 404 `no_service` for an unknown token),
//! records what it received and when, and can be told to answer the next
//! requests otherwise: 429 with `Retry-After`, 5xx, 404, or an error page
//! that echoes the webhook URL as careless proxies do.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// Slack's limits that a message can run into.
const MAX_BLOCKS: usize = 50;
const MAX_SECTION_TEXT: usize = 3000;

/// An answer for one request, instead of checking and accepting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 429 `rate_limited` with `Retry-After: <seconds>`.
    RateLimited { retry_after_secs: u64 },
    /// This status with this body, as Slack's plain-text errors are
    /// (`500 internal_error`, `404 no_service`, `410 channel_is_archived`).
    Status { status: u16, body: String },
    /// This status with a body that quotes the URL the request was sent to
    /// (and its token, plain and percent-encoded).
    EchoUrl { status: u16 },
}

impl Answer {
    pub fn server_error() -> Answer {
        Answer::Status { status: 500, body: "internal_error".to_string() }
    }

    /// What Slack answers for a webhook that was removed.
    pub fn no_service() -> Answer {
        Answer::Status { status: 404, body: "no_service".to_string() }
    }
}

/// One request, whatever it was answered.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub at: Instant,
    pub status: u16,
    /// The body as JSON, if it was.
    pub payload: Option<Value>,
}

/// A message the webhook accepted.
#[derive(Clone, Debug)]
pub struct Message {
    pub at: Instant,
    pub payload: Value,
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    attempts: Vec<Attempt>,
    messages: Vec<Message>,
}

/// A running webhook; it stops when dropped.
pub struct SlackWebhook {
    addr: SocketAddr,
    token: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlackWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlackWebhook {
    /// Starts a webhook on an ephemeral port of 127.0.0.1, with a token of
    /// its own.
    pub async fn start() -> std::io::Result<SlackWebhook> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let token = format!("{:024x}", rand_u128() & ((1u128 << 96) - 1));
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, path) = (state.clone(), format!("/services/T000/B000/{token}"));
        let base = format!("http://{addr}");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (state, path, base) = (shared.clone(), path.clone(), base.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), path.clone(), base.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(SlackWebhook { addr, token, state, task })
    }

    /// The webhook URL (a secret, as a real one is).
    pub fn url(&self) -> String {
        format!("http://{}/services/T000/B000/{}", self.addr, self.token)
    }

    /// The secret part of the URL.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The next requests get these answers, one each, before anything else.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        lock(&self.state).script.extend(answers);
    }

    /// Every message accepted, in arrival order.
    pub fn messages(&self) -> Vec<Message> {
        lock(&self.state).messages.clone()
    }

    /// Every request, in arrival order, with what it was answered.
    pub fn attempts(&self) -> Vec<Attempt> {
        lock(&self.state).attempts.clone()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Random enough for a test token, without a dependency.
fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut out = 0u128;
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default());
        out = (out << 64) | u128::from(h.finish());
    }
    out
}

async fn handle(state: Arc<Mutex<State>>, path: String, base: String, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let right_path = req.uri().path() == path;
    let method_ok = req.method() == hyper::Method::POST;
    let json_body =
        req.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    let uri = req.uri().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let payload: Option<Value> = serde_json::from_slice(&body).ok();
    let mut s = lock(&state);
    let (status, text, retry_after) = if !right_path {
        (404, "no_service".to_string(), None)
    } else if let Some(answer) = s.script.pop_front() {
        match answer {
            Answer::RateLimited { retry_after_secs } => (429, "rate_limited".to_string(), Some(retry_after_secs)),
            Answer::Status { status, body } => (status, body, None),
            Answer::EchoUrl { status } => {
                let url = format!("{base}{uri}");
                (status, format!("invalid_token: the request to {url} (path {}) was refused", url_encode(&uri)), None)
            }
        }
    } else if !method_ok {
        (405, "invalid_method".to_string(), None)
    } else {
        match payload.as_ref().ok_or("invalid_payload").and_then(|p| check(p, json_body)) {
            Ok(()) => (200, "ok".to_string(), None),
            Err(code) => (400, code.to_string(), None),
        }
    };
    let at = Instant::now();
    if status == 200
        && let Some(p) = &payload
    {
        s.messages.push(Message { at, payload: p.clone() });
    }
    s.attempts.push(Attempt { at, status, payload });
    drop(s);
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    if let Some(secs) = retry_after {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(secs));
    }
    Ok(r)
}

/// What Slack checks of a message, with its error codes: a JSON object
/// sent as JSON; `text` a string, not empty (it is the notification's and
/// the fallback's text); `blocks`, if there, an array of at most 50
/// objects each with a `type` string, a section's text at most 3000
/// characters.
fn check(payload: &Value, json_body: bool) -> Result<(), &'static str> {
    let obj = payload.as_object().filter(|_| json_body).ok_or("invalid_payload")?;
    match obj.get("text") {
        None => return Err("no_text"),
        Some(Value::String(t)) if t.trim().is_empty() => return Err("no_text"),
        Some(Value::String(_)) => {}
        Some(_) => return Err("invalid_payload"),
    }
    if let Some(blocks) = obj.get("blocks") {
        let blocks = blocks.as_array().ok_or("invalid_blocks")?;
        if blocks.len() > MAX_BLOCKS {
            return Err("invalid_blocks");
        }
        for b in blocks {
            if !b.get("type").is_some_and(Value::is_string) {
                return Err("invalid_blocks");
            }
            if b["text"]["text"].as_str().is_some_and(|t| t.chars().count() > MAX_SECTION_TEXT) {
                return Err("invalid_blocks");
            }
        }
    }
    Ok(())
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
