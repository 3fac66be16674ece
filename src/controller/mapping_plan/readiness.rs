//! Whether a Mapping is ready, from what it refers to, decided without a
//! client. Two kinds of problem: one that makes a sync impossible (a missing
//! reference, fields that do not fit) blocks Syncs; a reference that is not
//! ready (a Source that cannot connect now) makes the Mapping not ready but
//! still lets Syncs run, so that a sync that fails does so with the real
//! error, counted and alerted on like any failed sync.

use crate::api::conditions::{self, reason};
use crate::api::{Condition, Destination, Model, Source};

/// Why a Mapping is not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: String,
    pub message: String,
    /// Whether Syncs cannot start until it is fixed.
    pub blocks_syncs: bool,
}

impl Problem {
    /// A problem no sync can get past.
    pub fn blocking(reason: &str, message: impl Into<String>) -> Problem {
        Problem { reason: reason.into(), message: message.into(), blocks_syncs: true }
    }
}

/// The first of the Model, its Source and the Destination that is not
/// ready, named, with its own reason and message.
pub fn references(model: &Model, source: Option<&Source>, dest: &Destination) -> Option<Problem> {
    let model_conditions = model.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let source_conditions = source.and_then(|s| s.status.as_ref()).map(|s| s.conditions.as_slice()).unwrap_or_default();
    let dest_conditions = dest.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let source_name = &model.spec.source_ref.name;
    let named = [
        ("Source", source_name.as_str(), source.map(|_| source_conditions)),
        ("Model", model.metadata.name.as_deref().unwrap_or_default(), Some(model_conditions)),
        ("Destination", dest.metadata.name.as_deref().unwrap_or_default(), Some(dest_conditions)),
    ];
    named.into_iter().find_map(|(kind, name, conditions)| not_ready(kind, name, conditions))
}

fn not_ready(kind: &str, name: &str, conditions: Option<&[Condition]>) -> Option<Problem> {
    let problem = |message: String| Some(Problem { reason: reason::REFERENCE_NOT_READY.into(), message, blocks_syncs: false });
    let Some(conditions) = conditions else {
        return problem(format!("{kind} {name:?} does not exist; create it in the Mapping's namespace"));
    };
    match conditions.iter().find(|c| c.type_ == conditions::READY) {
        None => problem(format!("{kind} {name:?} has not been checked yet")),
        Some(c) if c.status == "True" => None,
        Some(c) => problem(format!("{kind} {name:?} is not ready ({}): {}", c.reason, c.message)),
    }
}
