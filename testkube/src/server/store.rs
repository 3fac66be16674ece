//! In-memory object storage: one cluster-wide resourceVersion counter, a
//! bounded history of changes for watches, and a broadcast channel that
//! wakes watchers. Everything is guarded by one mutex (no await inside).

use super::registry::Registry;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One stored change.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub storage: String,
    pub kind: EventType,
    /// The object after the change (for Deleted: the last state, with the deletion's resourceVersion).
    pub object: Value,
    /// The object before the change (None for Added).
    pub prev: Option<Value>,
}

/// (namespace or "", name)
pub type Key = (String, String);

pub struct State {
    pub rv: u64,
    pub registry: Registry,
    pub objects: BTreeMap<String, BTreeMap<Key, Value>>,
    pub history: VecDeque<Arc<Change>>,
    pub history_limit: usize,
    /// Watches can start from any resourceVersion >= this one.
    pub compacted_rv: u64,
    pub tx: broadcast::Sender<Arc<Change>>,
}

pub fn key_of(obj: &Value) -> Key {
    let m = &obj["metadata"];
    (m["namespace"].as_str().unwrap_or("").to_string(), m["name"].as_str().unwrap_or("").to_string())
}

impl State {
    pub fn new(history_limit: usize, tx: broadcast::Sender<Arc<Change>>) -> Self {
        State {
            rv: 1,
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit,
            compacted_rv: 1,
            tx,
        }
    }

    pub fn get(&self, storage: &str, key: &Key) -> Option<&Value> {
        self.objects.get(storage).and_then(|m| m.get(key))
    }

    /// Stores `obj` (creating or replacing), assigns the next resourceVersion, records and broadcasts the change.
    pub fn put(&mut self, storage: &str, mut obj: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let key = key_of(&obj);
        let prev = self.objects.entry(storage.to_string()).or_default().insert(key, obj.clone());
        let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
        self.record(Change { rv, storage: storage.into(), kind, object: obj.clone(), prev });
        obj
    }

    /// Removes the object for good, recording a DELETED change.
    pub fn remove(&mut self, storage: &str, key: &Key) -> Option<Value> {
        let prev = self.objects.get_mut(storage)?.remove(key)?;
        self.rv += 1;
        let rv = self.rv;
        let mut obj = prev.clone();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        self.record(Change { rv, storage: storage.into(), kind: EventType::Deleted, object: obj.clone(), prev: Some(prev) });
        Some(obj)
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        let _ = self.tx.send(change);
    }

    /// Forgets all history, like an etcd compaction: watches from older versions get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    pub fn list(&self, storage: &str) -> Vec<&Value> {
        self.objects.get(storage).map(|m| m.values().collect()).unwrap_or_default()
    }
}
