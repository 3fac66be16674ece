//! Recording events.k8s.io/v1 Events, the in-cluster notification channel.
//!
//! kube-runtime's `Recorder` folds every Event of one reason and action on
//! one object into the first one's series, keeping the first note: four
//! Syncs' outcomes read as `PartiallySuccessful (x4)` with the first Sync's
//! counts. Here an Event repeats into a series only when it says the same
//! thing (same note and related object), as the kubelet's aggregation does;
//! each Sync's outcome is its own Event, with the Sync as `related`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::Mutex;

use super::naming;

/// How long a repeat joins the series of the Event it repeats.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How often the keys of series that ended are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Longest note the API server accepts (events.k8s.io/v1 caps it at 1 kB).
const MAX_NOTE: usize = 1000;

/// One Event to record.
#[derive(Clone, Debug)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: String,
    pub action: String,
    pub note: String,
    /// A second object the Event is about (the Sync, on its Mapping's Events).
    pub related: Option<ObjectReference>,
}

/// What makes two Events the same: everything but the time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    regarding: Ident,
    related: Option<Ident>,
    warning: bool,
    reason: String,
    action: String,
    note: String,
}

type Ident = (Option<String>, Option<String>, Option<String>, Option<String>);

fn ident(r: &ObjectReference) -> Ident {
    (r.kind.clone(), r.namespace.clone(), r.name.clone(), r.uid.clone())
}

struct Recorded {
    name: String,
    count: i32,
    at: Instant,
}

/// The Event last recorded with one key, behind a lock of its own.
type Slot = Arc<Mutex<Option<Recorded>>>;

/// Recent Events by key, and when the ones whose series ended were last
/// forgotten.
struct Recent {
    slots: HashMap<Key, Slot>,
    swept: Instant,
}

pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    recent: std::sync::Mutex<Recent>,
}

impl EventRecorder {
    pub fn new(client: Client, controller: &str, instance: &str) -> EventRecorder {
        let recent = Recent { slots: HashMap::new(), swept: Instant::now() };
        EventRecorder { client, controller: controller.into(), instance: instance.into(), recent: std::sync::Mutex::new(recent) }
    }

    /// The slot of `key`. Series that ended are forgotten every few
    /// seconds, not on every call: a thousand Syncs a minute leave tens of
    /// thousands of keys within the series window.
    fn slot(&self, key: Key) -> Slot {
        // A panic elsewhere cannot leave the map half-written.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.swept.elapsed() >= SWEEP_EVERY {
            recent.swept = Instant::now();
            recent.slots.retain(|_, slot| match slot.try_lock() {
                Ok(r) => r.as_ref().is_some_and(|r| r.at.elapsed() < SERIES_WINDOW),
                // Being recorded right now.
                Err(_) => true,
            });
        }
        recent.slots.entry(key).or_default().clone()
    }

    /// Records `spec` about `regarding`: a new Event, or the next count of
    /// the series of the same Event recorded in the last few minutes.
    pub async fn publish(&self, regarding: &ObjectReference, spec: &EventSpec) -> Result<(), kube::Error> {
        let mut spec = spec.clone();
        spec.note = truncate(&spec.note, MAX_NOTE);
        let ns = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let key = Key {
            regarding: ident(regarding),
            related: spec.related.as_ref().map(ident),
            warning: spec.warning,
            reason: spec.reason.clone(),
            action: spec.action.clone(),
            note: spec.note.clone(),
        };
        let now = Timestamp::now();
        // The key's own lock, held across the call: two reconciles recording
        // the same Event would otherwise both create it. Events that say
        // different things never wait for each other (one lock for all made
        // a thousand Mappings' reconciles at a tick queue up behind it).
        let slot = self.slot(key);
        let mut recorded = slot.lock().await;
        if let Some(r) = recorded.as_mut().filter(|r| r.at.elapsed() < SERIES_WINDOW) {
            let count = r.count + 1;
            let patch = json!({ "series": EventSeries { count, last_observed_time: MicroTime(now) } });
            match api.patch(&r.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    r.count = count;
                    r.at = Instant::now();
                    return Ok(());
                }
                // Gone (expired or deleted): start again with a new Event.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let base = regarding.name.clone().unwrap_or_else(|| self.controller.clone());
        let name = naming::fit(&format!("{base}.{:x}", now.as_nanosecond()), 253);
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(ns), ..Default::default() },
            action: Some(spec.action.clone()),
            reason: Some(spec.reason.clone()),
            note: Some(spec.note.clone()),
            type_: Some(if spec.warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: spec.related.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        *recorded = Some(Recorded { name, count: 1, at: Instant::now() });
        Ok(())
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, marked when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        let note = "é".repeat(700);
        let cut = super::truncate(&note, 1000);
        assert!(cut.len() <= 1000 && cut.ends_with("..."), "{}", cut.len());
        assert_eq!(super::truncate("short", 1000), "short");
    }
}
