//! A real HTTP server that speaks Segment's batch tracking API and holds
//! senders to its contract: `POST /v1/batch` with
//! `{"batch": [message, ...]}`, HTTP basic auth with the write key as user
//! name and an empty password (401 otherwise), at most 500,000 bytes a
//! request, 2,500 messages and 32,000 bytes a message, and 400 for a
//! malformed message (no userId and no anonymousId, an unknown type, a
//! track without event, a group without groupId, an alias without userId
//! and previousId, a timestamp that is not RFC 3339). A refused request
//! accepts none of its messages, as Segment's does. Accepted messages are
//! deduplicated by `messageId`, and everything is recorded for tests to
//! check. Switches make it answer 429 with `Retry-After`, refuse given
//! users' messages (rules a sender cannot know), or stall after accepting.
//! A 401 echoes the Authorization header it got, as careless APIs do.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Most bytes of one request.
pub const MAX_REQUEST_BYTES: usize = 500_000;
/// Most bytes of one message.
pub const MAX_MESSAGE_BYTES: usize = 32_000;
/// Most messages of one request.
pub const MAX_MESSAGES: usize = 2_500;
const TYPES: [&str; 6] = ["identify", "track", "group", "page", "screen", "alias"];

/// How the server answers beyond the contract. Change it with [`SegmentServer::set`].
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// The next requests are answered 429 with this `Retry-After` (seconds), one each.
    pub throttle_next: VecDeque<u64>,
    /// The next requests are answered with these statuses, one each.
    pub fail_next: VecDeque<u16>,
    /// A request carrying a message of one of these userIds is refused
    /// with 400, as for a rule the sender cannot check for itself.
    pub refuse_user_ids: HashSet<String>,
    /// Messages are accepted at once, and the answer then waits this long:
    /// a sender killed meanwhile delivered them without knowing it.
    pub hang_after_accept: Option<Duration>,
}

/// One request as the server answered it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    pub status: u16,
    pub bytes: usize,
    pub messages: usize,
    /// The reply's message (for refusals).
    pub reply: String,
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    /// Accepted messages, one per messageId, in arrival order.
    messages: Vec<Value>,
    seen: HashSet<String>,
    /// Every messageId of every accepted request, duplicates included.
    ids: Vec<String>,
    duplicates: u64,
    answered: Vec<Answered>,
}

/// A running server; it stops when dropped.
pub struct SegmentServer {
    addr: SocketAddr,
    write_key: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SegmentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SegmentServer {
    /// Starts a server on an ephemeral port of 127.0.0.1 that takes `write_key`.
    pub async fn start(write_key: &str) -> std::io::Result<SegmentServer> {
        SegmentServer::start_on("127.0.0.1:0", write_key).await
    }

    /// Starts a server on the given address.
    pub async fn start_on(addr: &str, write_key: &str) -> std::io::Result<SegmentServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, auth) = (state.clone(), format!("Basic {}", base64(format!("{write_key}:").as_bytes())));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (state, auth) = (shared.clone(), auth.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), auth.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(SegmentServer { addr, write_key: write_key.to_string(), state, task })
    }

    /// The URL to put in a Destination's `spec.segment.baseUrl`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn write_key(&self) -> &str {
        &self.write_key
    }

    /// Changes how the server answers from now on.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut lock(&self.state).behaviour);
    }

    /// Accepted messages, each messageId once, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.state).messages.clone()
    }

    /// Every messageId of every accepted request, duplicates included.
    pub fn message_ids(&self) -> Vec<String> {
        lock(&self.state).ids.clone()
    }

    /// Accepted messages whose messageId had been accepted before.
    pub fn duplicates(&self) -> u64 {
        lock(&self.state).duplicates
    }

    /// Every request answered, in order.
    pub fn answered(&self) -> Vec<Answered> {
        lock(&self.state).answered.clone()
    }

    /// Forgets what was received (not the messageIds seen: dedup goes on).
    pub fn clear(&self) {
        let mut s = lock(&self.state);
        s.messages.clear();
        s.ids.clear();
        s.duplicates = 0;
        s.answered.clear();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn handle(state: Arc<Mutex<State>>, auth: String, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == hyper::Method::HEAD || req.method() == hyper::Method::GET {
        return Ok(reply(StatusCode::OK, json!({"success": true}), None));
    }
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/batch" {
        return Ok(reply(StatusCode::NOT_FOUND, json!({"success": false, "message": "not found"}), None));
    }
    let sent = req.headers().get(hyper::header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let json_body = req.headers().get(hyper::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, json!({"success": false, "message": "cannot read body"}), None)),
    };
    let (status, message, retry_after, hang) = {
        let mut s = lock(&state);
        let verdict = judge(&mut s, sent.as_deref(), &auth, json_body, &body);
        let (status, message, retry_after, count) = match verdict {
            Ok(batch) => {
                let count = batch.len();
                for m in batch {
                    let id = m["messageId"].as_str().unwrap_or_default().to_string();
                    s.ids.push(id.clone());
                    if id.is_empty() || s.seen.insert(id) {
                        s.messages.push(m);
                    } else {
                        s.duplicates += 1;
                    }
                }
                (StatusCode::OK, String::new(), None, count)
            }
            Err((status, message, retry_after)) => (status, message, retry_after, 0),
        };
        s.answered.push(Answered { status: status.as_u16(), bytes: body.len(), messages: count, reply: message.clone() });
        (status, message, retry_after, if status == StatusCode::OK { s.behaviour.hang_after_accept } else { None })
    };
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    let body = if status == StatusCode::OK { json!({"success": true}) } else { json!({"success": false, "message": message}) };
    Ok(reply(status, body, retry_after))
}

type Refusal = (StatusCode, String, Option<u64>);

/// The request's messages if the contract and the switches accept it.
fn judge(s: &mut State, sent: Option<&str>, auth: &str, json_body: bool, body: &[u8]) -> Result<Vec<Value>, Refusal> {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message, None);
    if let Some(seconds) = s.behaviour.throttle_next.pop_front() {
        return Err((StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded".into(), Some(seconds)));
    }
    if let Some(code) = s.behaviour.fail_next.pop_front() {
        return Err((StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), format!("forced status {code}"), None));
    }
    if sent != Some(auth) {
        // As careless APIs do, the refusal echoes the credentials it got.
        let message =
            format!("invalid write key (got Authorization: {}); send it as basic auth, the key as user name", sent.unwrap_or("none"));
        return Err((StatusCode::UNAUTHORIZED, message, None));
    }
    if !json_body {
        return Err(bad("content type must be application/json".into()));
    }
    if body.len() > MAX_REQUEST_BYTES {
        return Err(bad(format!("request is {} bytes, more than {MAX_REQUEST_BYTES}", body.len())));
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Some(batch) = parsed.get("batch").and_then(Value::as_array) else {
        return Err(bad("the body has no \"batch\" array".into()));
    };
    if batch.len() > MAX_MESSAGES {
        return Err(bad(format!("{} messages in one request, more than {MAX_MESSAGES}", batch.len())));
    }
    for (i, m) in batch.iter().enumerate() {
        malformed(m, &s.behaviour.refuse_user_ids).map_err(|why| bad(format!("batch[{i}]: {why}")))?;
    }
    Ok(batch.clone())
}

/// Why one message breaks the contract.
fn malformed(m: &Value, refused: &HashSet<String>) -> Result<(), String> {
    let size = m.to_string().len();
    if size > MAX_MESSAGE_BYTES {
        return Err(format!("message is {size} bytes, more than {MAX_MESSAGE_BYTES}"));
    }
    let text = |k: &str| m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let kind = text("type").unwrap_or_default();
    if !TYPES.contains(&kind) {
        return Err(format!("unknown type {kind:?}"));
    }
    if text("userId").is_none() && text("anonymousId").is_none() {
        return Err("no_user_anon_id: a message needs a userId or an anonymousId".into());
    }
    let needs = match kind {
        "track" => &["event"][..],
        "group" => &["groupId"][..],
        "alias" => &["userId", "previousId"][..],
        _ => &[][..],
    };
    if let Some(missing) = needs.iter().find(|k| text(k).is_none()) {
        return Err(format!("a {kind} needs {missing}"));
    }
    if let Some(t) = m.get("timestamp")
        && !t.as_str().is_some_and(rfc3339)
    {
        return Err(format!("timestamp {t} is not an ISO 8601 date-time"));
    }
    if let Some(user) = text("userId")
        && refused.contains(user)
    {
        return Err(format!("user {user:?} is not accepted here"));
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    let zone = rest.as_bytes();
    rest == "Z" || rest == "z" || (zone.len() == 6 && matches!(zone[0], b'+' | b'-') && zone[3] == b':')
}

fn base64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

fn reply(status: StatusCode, body: Value, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    if let Some(s) = retry_after {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(s));
    }
    r
}
