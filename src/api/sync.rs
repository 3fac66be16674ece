//! `Sync`: one run of one Mapping.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, ObjectRef};

/// One run of one Mapping, like a Job of a CronJob. Created by the Mapping's
/// schedule, by a request annotation, or by hand with `spec.mappingRef`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "retl.dev",
    version = "v1alpha1",
    kind = "Sync",
    namespaced,
    status = "SyncStatus",
    category = "retl",
    doc = "One run of one Mapping: what was extracted, loaded and rejected.",
    printcolumn(name = "Mapping", type_ = "string", json_path = ".spec.mappingRef.name"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Started", type_ = "date", json_path = ".status.startTime"),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(name = "Extracted", type_ = "integer", json_path = ".status.extracted.total"),
    printcolumn(name = "Added", type_ = "integer", json_path = ".status.extracted.added"),
    printcolumn(name = "Updated", type_ = "integer", json_path = ".status.extracted.updated"),
    printcolumn(name = "Deleted", type_ = "integer", json_path = ".status.extracted.deleted"),
    printcolumn(name = "Loaded", type_ = "integer", json_path = ".status.loaded.succeeded"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.loaded.failed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".status.phase",
    selectable = ".spec.mappingRef.name"
)]
#[serde(rename_all = "camelCase")]
pub struct SyncSpec {
    /// The Mapping (same namespace) this Sync runs.
    pub mapping_ref: ObjectRef,
    /// Why the sync runs: `Schedule`, `Manual` (default), `Reset` or `Replay`.
    #[serde(default)]
    pub trigger: SyncTrigger,
    /// For a `Replay`: the Sync whose extracted records are sent again, with
    /// the values the model returns now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

/// Why a sync runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SyncTrigger {
    Schedule,
    #[default]
    Manual,
    Reset,
    Replay,
}

/// Phase of a sync.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SyncPhase {
    Pending,
    InProgress,
    Successful,
    PartiallySuccessful,
    Failed,
    Canceled,
}

impl SyncPhase {
    /// A finished sync never changes again.
    pub fn is_finished(self) -> bool {
        !matches!(self, SyncPhase::Pending | SyncPhase::InProgress)
    }
    /// The value of the `retl.dev/status` label: lower case, e.g. `failed`.
    pub fn label_value(self) -> &'static str {
        match self {
            SyncPhase::Pending => "pending",
            SyncPhase::InProgress => "inprogress",
            SyncPhase::Successful => "successful",
            SyncPhase::PartiallySuccessful => "partiallysuccessful",
            SyncPhase::Failed => "failed",
            SyncPhase::Canceled => "canceled",
        }
    }
    /// The phase as written in status (`PartiallySuccessful`).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncPhase::Pending => "Pending",
            SyncPhase::InProgress => "InProgress",
            SyncPhase::Successful => "Successful",
            SyncPhase::PartiallySuccessful => "PartiallySuccessful",
            SyncPhase::Failed => "Failed",
            SyncPhase::Canceled => "Canceled",
        }
    }
    /// Parses a phase written either way (`PartiallySuccessful` or `partiallysuccessful`).
    pub fn parse(s: &str) -> Option<SyncPhase> {
        let lower = s.to_ascii_lowercase().replace(['-', '_', ' '], "");
        [
            SyncPhase::Pending,
            SyncPhase::InProgress,
            SyncPhase::Successful,
            SyncPhase::PartiallySuccessful,
            SyncPhase::Failed,
            SyncPhase::Canceled,
        ]
        .into_iter()
        .find(|p| p.label_value() == lower)
    }
}

impl std::fmt::Display for SyncPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a sync did. Counts always add up:
/// `extracted.total = added + updated + deleted + unchanged`, and the changes
/// to send (`added + updated + deleted`) = `loaded.succeeded + loaded.failed + loaded.skipped`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// `Pending`, `InProgress`, `Successful`, `PartiallySuccessful`, `Failed` or `Canceled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SyncPhase>,
    /// A machine-readable reason for the phase (e.g. `GuardTripped`, `QueryFailed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, and for a failed sync what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the sync started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// How long it ran, e.g. `1m12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// What the diff against the last delivered state found.
    #[serde(default)]
    pub extracted: ExtractedCounts,
    /// What happened to the records to send.
    #[serde(default)]
    pub loaded: LoadedCounts,
    /// Why records were skipped, with counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkipSummary>,
    /// Up to 10 rejected records, with the payload sent (cut when large, see
    /// `payloadTruncated`) and what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_records: Vec<FailedRecord>,
    /// Rejections grouped by error code: up to 20 codes, and the rest
    /// counted together under `OTHER_ERRORS`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorSummary>,
    /// Records extracted and loaded so far, while the sync runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<SyncProgress>,
    /// The Job that runs (ran) this sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Last `retl.dev/cancel` token handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_cancel: Option<String>,
    /// Last `retl.dev/replay` token handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_replay: Option<String>,
    /// `Complete` (Successful, PartiallySuccessful, Canceled) or `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What the diff found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtractedCounts {
    /// Rows the model returned plus records found deleted.
    pub total: u64,
    /// Rows not delivered before.
    pub added: u64,
    /// Rows whose values changed since they were delivered.
    pub updated: u64,
    /// Records delivered before that the model no longer returns.
    pub deleted: u64,
    /// Rows unchanged since they were delivered.
    pub unchanged: u64,
    /// Of the changes, records that an earlier sync failed to deliver and
    /// that are retried now with their current values.
    pub retried: u64,
}

/// What happened to the records to send.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadedCounts {
    /// Records the destination accepted.
    pub succeeded: u64,
    /// Records rejected (by the destination, or before sending by a check).
    pub failed: u64,
    /// Records not sent: not selected by `send`, or whose retry window ended.
    pub skipped: u64,
    /// Of the skipped: records dropped because their retry window ended.
    pub expired: u64,
    /// Of the succeeded: new records.
    pub new: u64,
    /// Of the succeeded: updated records.
    pub updated: u64,
    /// Of the succeeded: deleted records.
    pub deleted: u64,
}

/// Records skipped for one reason.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkipSummary {
    /// `NotSelected` (the change kind is not in `send`) or `RetryWindowExpired`.
    pub reason: String,
    /// How many records.
    pub count: u64,
    /// What it means.
    pub message: String,
}

/// A rejected record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedRecord {
    /// The record's primary key (empty when the key itself was null; cut
    /// after 1 KiB like `message`).
    pub key: String,
    /// The change: `added`, `updated` or `deleted`.
    pub operation: String,
    /// Error code, e.g. `MISSING_REQUIRED_FIELD` or `HTTP_422` (cut after 128 bytes).
    pub code: String,
    /// The error (cut after 1 KiB, marked with `…` and its full length).
    pub message: String,
    /// What to do about it.
    pub recommended_action: String,
    /// The payload that was (or would have been) sent. A payload of more
    /// than 4 KiB of JSON is kept as a string: the start of its JSON text
    /// (see `payloadTruncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::common::any_json")]
    pub payload: Option<serde_json::Value>,
    /// The payload is not the whole payload sent: it was over 4 KiB of JSON,
    /// so `payload` holds the start of its JSON text, or the samples' 64 KiB
    /// budget was used up, so `payload` is left out. This keeps the Sync far
    /// below etcd's size limit; the record log in the Source's `stateSchema`
    /// has the full payload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub payload_truncated: bool,
}

/// Rejections with one error code.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorSummary {
    /// Error code.
    pub code: String,
    /// Records rejected with it.
    pub count: u64,
    /// The first such error's message (cut after 1 KiB, marked with `…`
    /// and its full length).
    pub message: String,
    /// What to do about it.
    pub recommended_action: String,
}

/// Progress of a running sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    /// Changes found so far.
    pub extracted: u64,
    /// Records sent and answered so far (accepted or rejected).
    pub loaded: u64,
}
