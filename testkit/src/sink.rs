//! A real HTTP server that accepts retl's batch format
//! (`{"action", "records": [{"key", "operation", "payload"}]}`) and answers
//! with per-record results (`{"results": [{"key", "ok", "code", "message"}]}`),
//! with switches a test flips to make it behave like a difficult API:
//! reject given records, answer 429/5xx, refuse everything, stall, or drop
//! the connection without answering.

use std::collections::{BTreeMap, HashSet, VecDeque};
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
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// How the sink answers. Change it any time with [`Sink::set`].
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Records with these keys are rejected with code `INVALID_RECORD`.
    pub reject_keys: HashSet<String>,
    /// Reply with per-record `results` (default) or with an empty 200 body
    /// (all-or-nothing).
    pub per_record_results: bool,
    /// The next requests are answered with these statuses, one each, and
    /// nothing they carry is accepted (e.g. `[429, 503]`).
    pub fail_next: VecDeque<u16>,
    /// Every request is answered with this status and nothing is accepted
    /// (e.g. 401 for refused credentials).
    pub always_status: Option<u16>,
    /// The next N connections are dropped right after the request arrives.
    pub drop_next_connections: u32,
    /// Each request waits this long before it is answered.
    pub stall: Option<Duration>,
    /// Each request's records are accepted at once, and the answer then
    /// waits this long: a sender killed meanwhile delivered them without
    /// knowing it.
    pub hang_after_accept: Option<Duration>,
    /// Answer 200 with a body that is not JSON, accepting nothing (a proxy's
    /// error page, a half-written reply).
    pub garble_replies: bool,
    /// Add this many results for keys the batch did not carry.
    pub extra_results: usize,
    /// Echo the request's headers (as sent, base64 and URL-encoded) in
    /// error bodies and in each rejected record's message, as careless APIs
    /// do.
    pub echo_headers: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            reject_keys: HashSet::new(),
            per_record_results: true,
            fail_next: VecDeque::new(),
            always_status: None,
            drop_next_connections: 0,
            stall: None,
            hang_after_accept: None,
            garble_replies: false,
            extra_results: 0,
            echo_headers: false,
        }
    }
}

/// A record the sink accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub action: String,
    pub key: String,
    pub operation: String,
    pub payload: Value,
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    accepted: Vec<Received>,
    requests: u64,
    dropped: u64,
    rejected: u64,
    headers: Vec<BTreeMap<String, String>>,
    in_flight: u64,
    max_in_flight: u64,
    /// When each answered request arrived.
    arrivals: Vec<std::time::Instant>,
}

/// A running sink; it stops when dropped.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// Starts a sink on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Sink> {
        Sink::start_on("127.0.0.1:0").await
    }

    /// Starts a sink on the given address.
    pub async fn start_on(addr: &str) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let drop_it = {
                    let mut s = lock(&shared);
                    let d = s.behaviour.drop_next_connections > 0;
                    if d {
                        s.behaviour.drop_next_connections -= 1;
                        s.dropped += 1;
                    }
                    d
                };
                if drop_it {
                    // Read the start of the request, then close without answering.
                    let mut buf = [0u8; 1024];
                    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
                    drop(stream);
                    continue;
                }
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Sink { addr, state, task })
    }

    /// The URL to put in a Destination's `spec.http.url`.
    pub fn url(&self) -> String {
        format!("http://{}/batch", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how the sink answers from now on.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut lock(&self.state).behaviour);
    }

    /// Every record accepted so far, in arrival order (a record sent twice shows twice).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).accepted.clone()
    }

    /// The last accepted payload of each key (`null` for a delete).
    pub fn latest(&self) -> BTreeMap<String, Received> {
        let mut out = BTreeMap::new();
        for r in lock(&self.state).accepted.iter() {
            out.insert(r.key.clone(), r.clone());
        }
        out
    }

    /// Requests answered so far (dropped connections not included).
    pub fn requests(&self) -> u64 {
        lock(&self.state).requests
    }

    /// Records rejected so far (by key, status or refusal).
    pub fn rejected(&self) -> u64 {
        lock(&self.state).rejected
    }

    /// Connections dropped so far.
    pub fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> u64 {
        lock(&self.state).max_in_flight
    }

    /// The most requests that arrived within any one second (a sliding window).
    pub fn max_requests_per_second(&self) -> usize {
        let arrivals = lock(&self.state).arrivals.clone();
        let window = Duration::from_secs(1);
        (0..arrivals.len()).map(|i| arrivals[i..].iter().take_while(|t| t.duration_since(arrivals[i]) < window).count()).max().unwrap_or(0)
    }

    /// Headers of every request so far (names lower case).
    pub fn headers(&self) -> Vec<BTreeMap<String, String>> {
        lock(&self.state).headers.clone()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        let mut s = lock(&self.state);
        s.accepted.clear();
        s.requests = 0;
        s.rejected = 0;
        s.dropped = 0;
        s.headers.clear();
        s.max_in_flight = 0;
        s.arrivals.clear();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == hyper::Method::HEAD || req.method() == hyper::Method::GET {
        return Ok(reply(StatusCode::OK, Bytes::new()));
    }
    let headers: BTreeMap<String, String> =
        req.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, Bytes::from_static(b"cannot read body"))),
    };
    let stall = {
        let mut s = lock(&state);
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.arrivals.push(std::time::Instant::now());
        s.behaviour.stall
    };
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    lock(&state).in_flight -= 1;
    let batch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, Bytes::from(format!("invalid JSON: {e}")))),
    };
    let action = batch["action"].as_str().unwrap_or_default().to_string();
    let records = batch["records"].as_array().cloned().unwrap_or_default();
    // The lock is let go before the answer waits (it is not held across an await).
    let (body, hang) = {
        let mut s = lock(&state);
        s.requests += 1;
        let echo = if s.behaviour.echo_headers { echo(&headers) } else { String::new() };
        s.headers.push(headers);
        let forced = s.behaviour.fail_next.pop_front().or(s.behaviour.always_status);
        if let Some(code) = forced {
            s.rejected += records.len() as u64;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(reply(status, Bytes::from(format!("{{\"error\":\"forced status {code}\"{echo}}}"))));
        }
        if s.behaviour.garble_replies {
            s.rejected += records.len() as u64;
            return Ok(reply(StatusCode::OK, Bytes::from_static(b"<html><body>upstream busy, try later</body></html>")));
        }
        let mut results = Vec::with_capacity(records.len());
        for r in records {
            let key = match &r["key"] {
                Value::String(k) => k.clone(),
                other => other.to_string(),
            };
            if s.behaviour.reject_keys.contains(&key) {
                s.rejected += 1;
                let message = format!("record {key} is not valid here{echo}");
                results.push(json!({"key": key, "ok": false, "code": "INVALID_RECORD", "message": message}));
            } else {
                results.push(json!({"key": key, "ok": true}));
                let operation = r["operation"].as_str().unwrap_or_default().to_string();
                s.accepted.push(Received { action: action.clone(), key, operation, payload: r["payload"].clone() });
            }
        }
        for i in 0..s.behaviour.extra_results {
            results.push(json!({"key": format!("not-sent-{i}"), "ok": true}));
        }
        let body = if s.behaviour.per_record_results { json!({"results": results}).to_string() } else { String::new() };
        (body, s.behaviour.hang_after_accept)
    };
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    Ok(reply(StatusCode::OK, Bytes::from(body)))
}

/// The headers as a careless API echoes them: each value as sent, in
/// base64 and URL-encoded.
fn echo(headers: &BTreeMap<String, String>) -> String {
    let text: Vec<String> =
        headers.iter().map(|(k, v)| format!("{k}: {v} (base64 {}, url {})", base64(v.as_bytes()), url_encode(v))).collect();
    format!(", \"headers\": {}", Value::from(text.join("; ")))
}

fn base64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}
