//! What a destination sent and what came back, for one test record
//! (`retl test`, `kubectl retl test-record`).
//!
//! Recording is off unless a caller runs a send inside [`recorded`]: then
//! every destination type notes each exchange it has where it has it (the
//! HTTP transport each attempt with its method, URL, headers, body and
//! reply; `file` the lines it appended; the table types each row's
//! statement and what the server said). The recorder is task-local, so
//! that neither the [`Destination`](super::Destination) trait nor any
//! type's constructor grows a parameter that only this command uses, and
//! a sync (which never records) pays one failed lookup per request.
//!
//! Whoever notes an exchange masks it first: a header from a Secret shows
//! as `***` (after its scheme, as `Bearer ***`), and replies are masked as
//! everything else a destination says is.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

/// One request and its reply.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exchange {
    pub request: Sent,
    /// What came back; `None` when nothing did (see `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    /// Why no reply came (a refused connection, a timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What was sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    /// `POST`, `APPEND`, `UPSERT`, `DELETE`.
    pub method: String,
    /// A URL, a file, or a table.
    pub target: String,
    /// HTTP headers as sent, secret values masked; empty for other types.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// The body: JSON when it is JSON, else its text.
    pub body: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// What the destination answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// `HTTP 200 OK`, `written`, `refused`.
    pub status: String,
    /// The reply's body: JSON when it is JSON, else its text (empty when none).
    pub body: Value,
}

/// A body as shown: parsed when it is JSON, so that it prints as data.
pub fn body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

type Log = Arc<Mutex<Vec<Exchange>>>;

tokio::task_local! {
    static RECORDER: Log;
}

/// Runs `work` with recording on; returns its output and every exchange
/// noted meanwhile, in order. Work spawned onto other tasks is not seen.
pub async fn recorded<F: std::future::Future>(work: F) -> (F::Output, Vec<Exchange>) {
    let log = Log::default();
    let output = RECORDER.scope(log.clone(), work).await;
    let exchanges = std::mem::take(&mut *log.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    (output, exchanges)
}

/// Whether exchanges are being recorded (inside [`recorded`]).
pub fn recording() -> bool {
    RECORDER.try_with(|_| ()).is_ok()
}

/// Notes an exchange when recording is on; `make` runs only then.
pub fn note(make: impl FnOnce() -> Exchange) {
    let _ = RECORDER.try_with(|log| log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(make()));
}

/// A secret header's value as shown: its scheme (`Bearer`, `Basic`) and
/// the mask, never any part of the credentials.
pub fn masked_header(value: &str) -> String {
    match value.trim().split_once(char::is_whitespace) {
        Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphabetic()) => format!("{scheme} {}", crate::mask::MASK),
        _ => crate::mask::MASK.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(n: u32) -> Exchange {
        Exchange {
            request: Sent { method: "POST".into(), target: format!("t{n}"), headers: vec![], body: Value::Null },
            reply: None,
            error: None,
        }
    }

    #[tokio::test]
    async fn only_work_inside_recorded_is_noted() {
        note(|| exchange(0));
        assert!(!recording());
        let (out, seen) = recorded(async {
            assert!(recording());
            note(|| exchange(1));
            tokio::task::yield_now().await;
            note(|| exchange(2));
            7
        })
        .await;
        assert_eq!(out, 7);
        assert_eq!(seen.iter().map(|e| e.request.target.as_str()).collect::<Vec<_>>(), ["t1", "t2"]);
    }

    #[test]
    fn secret_headers_keep_only_their_scheme() {
        assert_eq!(masked_header("Bearer s3cr3t"), "Bearer ***");
        assert_eq!(masked_header("Basic d2s6"), "Basic ***");
        assert_eq!(masked_header("abc"), "***");
        assert_eq!(masked_header("a:b c"), "***", "no scheme: nothing of it shows");
        assert_eq!(body("{\"ok\":true}"), serde_json::json!({"ok": true}));
        assert_eq!(body("OK"), Value::String("OK".into()));
    }
}
