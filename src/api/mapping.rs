//! `Mapping`: which model rows go to which destination action, how, and when.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ChangeKind, Condition, ObjectRef};

/// Sends a Model's rows to one action of a Destination, on a schedule or on
/// request. Like a CronJob, it creates Syncs and keeps their history.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "retl.dev",
    version = "v1alpha1",
    kind = "Mapping",
    namespaced,
    status = "MappingStatus",
    shortname = "map",
    category = "retl",
    doc = "Sends a Model's rows to one action of a Destination, on a schedule or on request.",
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.modelRef.name"),
    printcolumn(name = "Destination", type_ = "string", json_path = ".spec.destinationRef.name"),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSync.startTime"),
    printcolumn(name = "Last Status", type_ = "string", json_path = ".status.lastSync.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // The sync overview's filters: `kubectl get mappings --field-selector
    // spec.enabled=false` (mapping status), `status.lastSync.phase=Failed`
    // (latest sync status), by model and by destination.
    selectable = ".spec.enabled",
    selectable = ".status.lastSync.phase",
    selectable = ".spec.modelRef.name",
    selectable = ".spec.destinationRef.name"
)]
#[serde(rename_all = "camelCase")]
pub struct MappingSpec {
    /// The Model (same namespace) whose rows are sent.
    pub model_ref: ObjectRef,
    /// The Destination (same namespace) the records go to.
    pub destination_ref: ObjectRef,
    /// Name of the destination action, one of the Destination's `actions`.
    pub action: String,
    /// Which changes are sent: any of `added`, `updated`, `deleted`
    /// (default `added` and `updated`). Changes not sent still move the
    /// sync state forward and are counted as skipped. When given, it is not
    /// empty (leave it out for the default).
    #[serde(default = "default_send")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.size() > 0",
        "message": "send lists at least one of added, updated or deleted; leave send out for the default (added and updated)",
    }]))]
    pub send: Vec<ChangeKind>,
    /// How each destination field gets its value.
    #[serde(default)]
    pub fields: Vec<FieldMapping>,
    /// Leave out fields (and object properties) whose value is null instead
    /// of sending `null`.
    #[serde(default)]
    pub skip_nulls: bool,
    /// When to sync: a cron expression (`*/15 * * * *`), a macro (`@hourly`,
    /// `@daily`), or an interval (`@every 15m`). Unset: only on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone of a cron `schedule` (default UTC), as in CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `false` stops new syncs (scheduled and requested); running ones finish.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What to do when a sync is due while another of this Mapping runs:
    /// `Forbid` (default: skip the new one), `Allow` (run both) or `Replace`
    /// (cancel the running one).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A scheduled sync that could not start within this many seconds of its
    /// time is skipped (missed ticks inside it run once); at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<i64>,
    /// Finished successful Syncs to keep (default 10; 0 to 1000).
    #[serde(default = "default_history")]
    #[schemars(range(max = 1000))]
    pub successful_syncs_history_limit: u32,
    /// Finished failed Syncs to keep (default 10; 0 to 1000).
    #[serde(default = "default_history")]
    #[schemars(range(max = 1000))]
    pub failed_syncs_history_limit: u32,
    /// How long a rejected record is retried on later syncs; default 14 days.
    /// After it the record is dropped and counted as expired. A positive
    /// duration: whole numbers of at most 6 digits, each followed by a unit
    /// `s`, `m` (minutes), `h`, `d` or `w` (`336h`, `14d`, `1d12h`, `2w`), at
    /// most 32 characters.
    #[serde(default = "default_retry_window")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = [{
        "rule": RETRY_WINDOW_RULE,
        "message": "retryWindow is a positive duration: whole numbers of at most 6 digits, each with a unit s, m, h, d or w, such as 336h, 14d or 1d12h",
    }]))]
    pub retry_window: String,
    /// Checks that stop a sync before anything is sent.
    #[serde(default)]
    pub guards: Guards,
    /// Seconds a sync may run before it is stopped and marked Failed
    /// (the Job's `activeDeadlineSeconds`; default 86400, one day; at most
    /// 2592000, thirty days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2_592_000))]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds a Sync's worker may take to start (its pod created,
    /// scheduled, its image pulled, its container running) before the Sync
    /// fails with reason `WorkerNotStarted` and the pod's own message;
    /// default 300, at most 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86_400))]
    pub startup_deadline_seconds: Option<i64>,
    /// Service account the sync Jobs run as (default: the operator's worker account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// `spec.activeDeadlineSeconds` when it is not set: one day.
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: i64 = 86_400;
/// `spec.startupDeadlineSeconds` when it is not set: five minutes.
pub const DEFAULT_STARTUP_DEADLINE_SECONDS: i64 = 300;

/// The CEL rule of `spec.retryWindow`: a sequence of `<digits><unit>` spans
/// with at least one non-zero digit. Every value it accepts is one that
/// `humantime::parse_duration` (the engine's parser) reads as the same,
/// positive, whole number of seconds; humantime also reads more (`1.5h`,
/// `14days`, `1M`), which the API server refuses.
pub(crate) const RETRY_WINDOW_RULE: &str = "self.matches('^([0-9]{1,6}[smhdw])+$') && self.matches('[1-9]')";

fn default_send() -> Vec<ChangeKind> {
    vec![ChangeKind::Added, ChangeKind::Updated]
}
fn default_true() -> bool {
    true
}
fn default_history() -> u32 {
    10
}
fn default_retry_window() -> String {
    "336h".to_string()
}

/// Concurrency policy of a Mapping, as in CronJob.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    #[default]
    Forbid,
    Allow,
    Replace,
}

/// Guards stop a sync before anything is sent; the Sync fails with reason
/// `GuardTripped` and says how to proceed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Guards {
    /// Most records one sync may delete in the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deletes: Option<u64>,
    /// Most deletes as a percentage (0-100) of the records delivered so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 0.0 && self <= 100.0",
        "message": "maxDeletePercent is a percentage from 0 to 100",
    }]))]
    pub max_delete_percent: Option<f64>,
    /// Let a sync run when the model returns no rows although records were
    /// delivered before (default false: an empty model stops the sync, so a
    /// broken model cannot wipe a destination).
    #[serde(default)]
    pub allow_empty_model: bool,
}

/// How one destination field gets its value. Set `to` and exactly one of
/// `from`, `value`, `template`, `object` or `array`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// `value` (any JSON) has no type that CEL knows, so `has(self.value)` does
// not compile; through `dyn(self)` the presence test runs on the object as it
// is. A `value: null` counts as unset, as it does for serde.
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.from), has(dyn(self).value), has(self.template), has(self.object), has(self.array)].exists_one(x, x)",
    "message": "each field mapping sets exactly one of from, value, template, object or array",
}]))]
pub struct FieldMapping {
    /// The destination field.
    pub to: String,
    /// A model column, or a path into a JSON column (`attrs.address.city`).
    /// For an object field this sends the whole object ("select object"),
    /// for an array field the whole array of objects ("select array").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A fixed value (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::common::any_json")]
    pub value: Option<serde_json::Value>,
    /// A Liquid template; the row is `row` (`{{ row.first_name | capitalize }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// "Customize object": build the object property by property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Vec<PropertyMapping>>,
    /// "Customize array": pick properties of each element of an array column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayMapping>,
}

/// One property of a customized object or array element. Set `to` and
/// exactly one of `from`, `value` or `template`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// `dyn(self)`: see `FieldMapping`.
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.from), has(dyn(self).value), has(self.template)].exists_one(x, x)",
    "message": "each property sets exactly one of from, value or template",
}]))]
pub struct PropertyMapping {
    /// The property name in the output.
    pub to: String,
    /// In an object: a model column or a path into a JSON column. In an
    /// array: a property (or path) of the element. A property the input
    /// lacks is left out of the output, not sent as null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A fixed value (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::common::any_json")]
    pub value: Option<serde_json::Value>,
    /// A Liquid template; the row is `row`, and in an array the element is `item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// "Customize array": the array column and the properties kept of each element.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArrayMapping {
    /// The model column (or JSON path) holding an array of objects.
    pub from: String,
    /// The properties of each output element.
    pub properties: Vec<PropertyMapping>,
}

/// Observed state of a Mapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingStatus {
    /// The most recent Sync of this Mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<LastSync>,
    /// Time of the last schedule tick a Sync was created for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Time of the next schedule tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Last `retl.dev/sync-now` token handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_sync_now: Option<String>,
    /// Last `retl.dev/reset` token handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reset: Option<String>,
    /// A reset was requested and the next Sync will do it (trigger `Reset`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_pending: bool,
    /// `Ready` says whether the Mapping's references and fields are valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A short summary of a Sync, kept on its Mapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastSync {
    /// Name of the Sync.
    pub name: String,
    /// Its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<super::SyncPhase>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
}
