//! Watches: a chunked stream of JSON lines `{"type": ..., "object": ...}`.
//!
//! - no resourceVersion or "0": synthetic ADDED events for current objects, then changes;
//! - resourceVersion N: every change after N replayed from history, or a single
//!   ERROR event with a 410 Expired Status when N is older than the history
//!   (HTTP 200 then the ERROR event, as kube-apiserver answers with or without
//!   the watch cache since kubernetes/kubernetes#25369; message as the cacher's
//!   `NewResourceExpired("too old resource version: N (M)")`);
//! - `allowWatchBookmarks=true`: BOOKMARK events (kind, apiVersion and
//!   metadata.resourceVersion only) every `bookmark_interval`;
//! - `sendInitialEvents=true`: initial ADDED events followed by a BOOKMARK
//!   annotated `k8s.io/initial-events-end: "true"`;
//! - selectors are applied to both the old and new object, so an object that
//!   stops matching is sent as DELETED and one that starts matching as ADDED;
//! - `timeoutSeconds` ends the stream.

use super::Shared;
use super::errors::ApiError;
use super::objects::to_served;
use super::registry::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Change, EventType};
use super::table::{self, IncludeObject};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub struct WatchParams {
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub namespace: Option<String>,
    pub table: Option<IncludeObject>,
}

struct Filter {
    rt: Arc<ResourceType>,
    p: WatchParams,
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        if let Some(ns) = &self.p.namespace
            && o["metadata"]["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        let served = to_served(&self.rt, o.clone());
        self.p.labels.matches(&served) && self.p.fields.matches(&served)
    }

    fn line(&self, ty: &str, obj: &Value) -> Bytes {
        let served = to_served(&self.rt, obj.clone());
        let object = match self.p.table {
            Some(inc) => table::table(&self.rt, &[served], json!({"resourceVersion": obj["metadata"]["resourceVersion"]}), inc, true),
            None => served,
        };
        let mut s = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        s.push(b'\n');
        Bytes::from(s)
    }

    /// The event a change produces for this watch, if any.
    fn event(&self, c: &Change) -> Option<Bytes> {
        if c.storage != self.rt.storage_key() {
            return None;
        }
        let now = self.matches(&c.object);
        let before = c.prev.as_ref().map(|p| self.matches(p)).unwrap_or(false);
        let ty = match c.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if before || now => "DELETED",
            _ => return None,
        };
        Some(self.line(ty, &c.object))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut s = serde_json::to_vec(
            &json!({"type": "BOOKMARK", "object": {"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta}}),
        )
        .unwrap_or_default();
        s.push(b'\n');
        Bytes::from(s)
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut s = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

/// Starts a watch; fails early (before the stream) only on a malformed resourceVersion.
pub fn start(shared: Arc<Shared>, rt: Arc<ResourceType>, p: WatchParams) -> Result<Response, ApiError> {
    let start_rv = match p.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?),
    };
    let bookmark_every = shared.config.bookmark_interval;
    let filter = Filter { rt, p };
    let (initial, rx, mut last_rv) = {
        let st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let rx = st.tx.subscribe();
        let mut lines = vec![];
        let mut expired = false;
        match start_rv {
            Some(n) if filter.p.send_initial_events => {
                let _ = n;
            }
            Some(n) if n < st.compacted_rv => {
                lines.push(error_line(&ApiError::expired(format!("too old resource version: {n} ({})", st.compacted_rv))));
                expired = true;
            }
            Some(n) => {
                for c in st.history.iter().filter(|c| c.rv > n) {
                    if let Some(l) = filter.event(c) {
                        lines.push(l);
                    }
                }
            }
            None => {}
        }
        if !expired && (start_rv.is_none() || filter.p.send_initial_events) {
            for o in st.list(&filter.rt.storage_key()) {
                if filter.matches(o) {
                    lines.push(filter.line("ADDED", o));
                }
            }
            if filter.p.send_initial_events && filter.p.bookmarks {
                lines.push(filter.bookmark(st.rv, true));
            }
        }
        (if expired { Err(lines) } else { Ok(lines) }, rx, st.rv)
    };
    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let timeout = filter.p.timeout.unwrap_or(Duration::from_secs(1800));
    tokio::spawn(async move {
        let lines = match initial {
            Ok(l) => l,
            Err(l) => {
                for x in l {
                    let _ = tx.send(Ok(x)).await;
                }
                return;
            }
        };
        for l in lines {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        let mut rx: broadcast::Receiver<Arc<Change>> = rx;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(bookmark_every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick(), if filter.p.bookmarks => {
                    if tx.send(Ok(filter.bookmark(last_rv, false))).await.is_err() { return; }
                }
                msg = rx.recv() => match msg {
                    Ok(c) => {
                        if c.rv <= last_rv { continue; }
                        last_rv = c.rv;
                        if let Some(l) = filter.event(&c)
                            && tx.send(Ok(l)).await.is_err() { return; }
                    }
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(out));
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(body)
        .expect("response"))
}
