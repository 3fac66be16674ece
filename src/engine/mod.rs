//! The sync engine: extract → diff → map → load → commit.
//!
//! No Kubernetes here: the operator's worker, the local runner and the tests
//! all hand it a resolved [`SyncContext`], a [`Warehouse`](crate::warehouse::Warehouse)
//! and a [`Destination`](crate::destination::Destination), and get a
//! [`SyncReport`] back. It uses the plain data types of `crate::api` (specs
//! and counts), never a client, an object's metadata or a watch.

mod abandoned;
mod budget;
mod decide;
mod error;
mod guard;
mod load;
mod run;
mod tally;
pub mod test_record;

pub use crate::record::{codes, skip};

pub use abandoned::fail_abandoned_runs;
pub use budget::{Budget, Share};
pub use error::EngineError;
pub use run::{PlanReport, SkipFor, plan_sync, run_sync, run_sync_until};

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::api::{
    Action, ErrorSummary, ExtractedCounts, FailedRecord, LoadedCounts, MappingSpec, ModelSpec, SkipSummary, SyncPhase, SyncTrigger,
};

/// Everything one sync needs, resolved by the caller.
#[derive(Clone, Debug)]
pub struct SyncContext {
    pub namespace: String,
    /// Name of the Sync; unique per namespace.
    pub sync_name: String,
    pub mapping_name: String,
    /// The Mapping's UID: names its state tables.
    pub mapping_uid: String,
    pub mapping: MappingSpec,
    pub model_name: String,
    pub model: ModelSpec,
    pub destination_name: String,
    /// The destination action the Mapping names.
    pub action: Action,
    pub trigger: SyncTrigger,
    /// For a replay: the Sync whose records are sent again.
    pub replay_of: Option<String>,
    /// How long to wait while another sync of the Mapping holds its lock
    /// before giving up as `SyncInProgress` ([`DEFAULT_LOCK_WAIT`]).
    pub lock_wait: std::time::Duration,
    /// This sync's share of its Destination's rate limit.
    pub rate_share: Share,
}

/// How long a sync waits for another sync of its Mapping to finish.
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The outcome of one sync; also what the sync-run table keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub phase: SyncPhase,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub started: Timestamp,
    pub completed: Option<Timestamp>,
    pub extracted: ExtractedCounts,
    pub loaded: LoadedCounts,
    pub skipped: Vec<SkipSummary>,
    pub failed_records: Vec<FailedRecord>,
    pub errors: Vec<ErrorSummary>,
}

impl SyncReport {
    /// A sync that has started and nothing more.
    pub fn started(at: Timestamp) -> SyncReport {
        SyncReport {
            phase: SyncPhase::InProgress,
            reason: None,
            message: None,
            started: at,
            completed: None,
            extracted: ExtractedCounts::default(),
            loaded: LoadedCounts::default(),
            skipped: Vec::new(),
            failed_records: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// A sync that failed before it read anything (a missing reference, an
    /// unreachable warehouse): no counts, a reason and what to do.
    pub fn failed_early(started: Timestamp, reason: &str, message: impl Into<String>) -> SyncReport {
        SyncReport {
            phase: SyncPhase::Failed,
            reason: Some(reason.to_string()),
            message: Some(message.into()),
            completed: Some(Timestamp::now()),
            ..SyncReport::started(started)
        }
    }

    /// A sync stopped at the Mapping's `activeDeadlineSeconds` ends `Failed`
    /// with reason `DeadlineExceeded` (a worker, a local run, and the Sync
    /// controller when it sees the Job's deadline first, all say so). What
    /// was acknowledged is committed; the counts stay as they were kept.
    pub fn deadline_exceeded(&mut self, seconds: i64) {
        self.phase = SyncPhase::Failed;
        self.reason = Some(crate::api::conditions::reason::DEADLINE_EXCEEDED.to_string());
        self.message = Some(format!(
            "the sync ran past the Mapping's activeDeadlineSeconds ({seconds}) and was stopped; {} records accepted and {} rejected before it stopped are committed, and the next sync sends the rest",
            self.loaded.succeeded, self.loaded.failed
        ));
    }

    /// The changes found: what had to be sent, skipped or not.
    pub fn changes(&self) -> u64 {
        self.extracted.added + self.extracted.updated + self.extracted.deleted
    }

    /// Run time, as `kubectl` prints durations (`4s`, `2m13s`, `1h2m`).
    pub fn duration(&self) -> Option<String> {
        let end = self.completed?;
        Some(format_duration(end.duration_since(self.started).as_millis().max(0) as u64))
    }
}

/// `kubectl`-style short duration of a number of milliseconds.
pub fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{}ms", ms),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// How far a running sync got: the diff's counts once it is done, and the
/// outcomes so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub extracted: ExtractedCounts,
    pub loaded: LoadedCounts,
    /// Changes read from the stage so far.
    pub read: u64,
}

impl Progress {
    /// Records sent and answered so far (accepted or rejected).
    pub fn answered(&self) -> u64 {
        self.loaded.succeeded + self.loaded.failed
    }
}

/// Hears how a running sync is getting on (the worker writes it to the
/// Sync's status, the local runner prints it). Called after the diff and
/// after every commit; observers throttle as they need.
#[async_trait]
pub trait Observer: Send + Sync {
    async fn progress(&self, progress: &Progress);
}

/// Lets an observer act at most once per interval (progress arrives after
/// every commit; status writes and printed lines should not).
pub struct Throttle {
    every: std::time::Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Throttle {
    /// Ready at once, then once per `every`.
    pub fn new(every: std::time::Duration) -> Throttle {
        Throttle { every, last: std::sync::Mutex::new(None) }
    }

    /// First ready once `every` has passed from now (quiet for short runs).
    pub fn after(every: std::time::Duration) -> Throttle {
        Throttle { every, last: std::sync::Mutex::new(Some(std::time::Instant::now())) }
    }

    /// Whether the interval has passed since the last `true`.
    pub fn ready(&self) -> bool {
        let Ok(mut last) = self.last.lock() else { return false };
        if last.is_some_and(|t| t.elapsed() < self.every) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }
}

/// An observer that ignores progress.
pub struct Quiet;

#[async_trait]
impl Observer for Quiet {
    async fn progress(&self, _: &Progress) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        let started: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let report = |ms: i64| SyncReport {
            phase: SyncPhase::Successful,
            reason: None,
            message: None,
            started,
            completed: Some(started + jiff::SignedDuration::from_millis(ms)),
            extracted: Default::default(),
            loaded: Default::default(),
            skipped: vec![],
            failed_records: vec![],
            errors: vec![],
        };
        assert_eq!(report(420).duration().unwrap(), "420ms");
        assert_eq!(report(2_500).duration().unwrap(), "2s");
        assert_eq!(report(133_000).duration().unwrap(), "2m13s");
        assert_eq!(report(3_720_000).duration().unwrap(), "1h2m");
    }
}
