//! The benchmark's HTTP sink: speaks retl's batch format like
//! `testkit::sink::Sink` (parses every batch, answers per record), but only
//! counts what it accepted (records and request bytes) and keeps the last
//! batch as a sample, so that its own memory stays flat at millions of
//! records. It runs in its own process, so that it shares neither memory nor
//! a runtime with the sync being measured.

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the sink has taken so far.
#[derive(Default)]
struct Tally {
    records: AtomicU64,
    bytes: AtomicU64,
    /// The last batch's body, as it came.
    last: Mutex<Bytes>,
}

/// Serves until killed; prints `http://ADDR/batch` first. A GET of
/// `/count` answers `{"records": N, "bytes": B}` accepted so far; a GET of
/// `/sample` answers the last batch's body.
pub async fn serve() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout();
    writeln!(out, "http://{}/batch", listener.local_addr()?)?;
    out.flush()?;
    let accepted = Arc::new(Tally::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(accepted.clone(), req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(tally: Arc<Tally>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == hyper::Method::GET {
        let body = if req.uri().path() == "/sample" {
            tally.last.lock().map(|b| b.clone()).unwrap_or_default()
        } else {
            let (records, bytes) = (tally.records.load(Ordering::Relaxed), tally.bytes.load(Ordering::Relaxed));
            Bytes::from(json!({"records": records, "bytes": bytes}).to_string())
        };
        return Ok(Response::new(Full::new(body)));
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(batch) = serde_json::from_slice::<Value>(&body) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let records = batch["records"].as_array().map(Vec::as_slice).unwrap_or_default();
    let results: Vec<Value> = records.iter().map(|r| json!({"key": r["key"], "ok": true})).collect();
    tally.records.fetch_add(records.len() as u64, Ordering::Relaxed);
    tally.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    if let Ok(mut last) = tally.last.lock() {
        *last = body.clone();
    }
    Ok(Response::new(Full::new(Bytes::from(json!({"results": results}).to_string()))))
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}
