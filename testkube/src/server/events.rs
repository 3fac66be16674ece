//! Events are stored once, in core/v1 form, and served by both `v1` and
//! `events.k8s.io/v1` with the field renames of the real conversion
//! (k8s.io/kubernetes/pkg/apis/events/v1/conversion.go).

use serde_json::Value;

const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(mut obj: Value, from_core: bool) -> Value {
    if let Some(m) = obj.as_object_mut() {
        for (core, ev) in RENAMES {
            let (a, b) = if from_core { (core, ev) } else { (ev, core) };
            if let Some(v) = m.remove(*a) {
                m.insert(b.to_string(), v);
            }
        }
    }
    obj
}

pub fn core_to_events_v1(obj: Value) -> Value {
    rename(obj, true)
}

pub fn events_v1_to_core(obj: Value) -> Value {
    rename(obj, false)
}
