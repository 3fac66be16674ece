//! `Destination`: where records go, and the actions it accepts.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, SecretKeyRef, ServerSource};

/// Where records go. A Destination declares its actions, and each action the
/// fields its payload carries (a `segment` Destination has its actions built
/// in); Mappings map model columns onto those fields.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "retl.dev",
    version = "v1alpha1",
    kind = "Destination",
    namespaced,
    status = "DestinationStatus",
    shortname = "dest",
    category = "retl",
    doc = "Where records go (an HTTP API, a Segment-compatible tracking API, a JSON-lines file, ...) and the actions it accepts.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DestinationSpec {
    /// Kind of destination: `http` (a webhook or any JSON API), `segment`
    /// (a Segment-compatible batch tracking API), `postgres` or `mysql`
    /// (upserts into a table of PostgreSQL or MySQL/MariaDB) or `file`
    /// (JSON lines, for local runs and debugging). The settings go in the
    /// field of the same name.
    #[serde(rename = "type")]
    pub type_: DestinationType,
    /// Settings of an `http` destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpDestination>,
    /// Settings of a `file` destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileDestination>,
    /// Settings of a `segment` destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentDestination>,
    /// Settings of a `postgres` destination: a table in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<TableDestination>,
    /// Settings of a `mysql` destination: a table in MySQL or MariaDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<TableDestination>,
    /// The actions this destination accepts; a Mapping names one. A
    /// `segment` destination has its actions and their fields built in
    /// (docs/destinations.md): leave this out, or list some of them to
    /// allow only those, or to make a built-in field `required` or fix the
    /// `properties` of an object field.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Most Syncs of this Destination's Mappings that run at once (default:
    /// no limit; 1 with a `rateLimit`). Others stay Pending with reason
    /// `WaitingForDestination` until one finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_syncs: Option<u32>,
    /// The rate all of this Destination's Mappings together may send at.
    /// Each running Sync gets an equal share: the rate divided by
    /// `maxConcurrentSyncs`, so the sum never exceeds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A Destination's shared rate limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Most records per second over all Syncs (1 to 1000000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub records_per_second: Option<u32>,
    /// Most requests (batches) per second over all Syncs (1 to 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: Option<u32>,
}

impl DestinationSpec {
    /// How many Syncs of this Destination may run at once, if limited.
    pub fn sync_slots(&self) -> Option<u32> {
        self.max_concurrent_syncs.or(self.rate_limit.as_ref().map(|_| 1))
    }
}

/// Kind of destination.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    Http,
    File,
    Segment,
    Postgres,
    Mysql,
}

/// One action of a destination (for example `identify` or `upsertContact`):
/// the payload it expects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// Name of the action, unique within the destination.
    pub name: String,
    /// What the action does, for people reading the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The fields of the action's payload.
    #[serde(default)]
    pub fields: Vec<ActionField>,
}

/// One field of an action's payload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionField {
    /// Name of the field in the payload.
    pub name: String,
    /// Type of the value: `string`, `number`, `integer`, `boolean`, `object`,
    /// `array` (of objects), `datetime` (RFC 3339 text) or `any`.
    #[serde(rename = "type", default = "default_field_type")]
    pub type_: FieldType,
    /// A record without a value for this field is rejected before sending.
    #[serde(default)]
    pub required: bool,
    /// For `object` and `array` fields: the only properties the destination
    /// accepts (of the object, or of each element). A record whose value has
    /// another property is rejected before sending, naming the property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Vec<String>>,
    /// What the field means, for people reading the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_field_type() -> FieldType {
    FieldType::Any
}

/// Type of an action field.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    Datetime,
    Any,
}

/// An HTTP JSON API. Each request carries one batch:
/// `{"action": ..., "records": [{"key": ..., "operation": "upsert"|"delete", "payload": {...}}]}`.
/// A reply `{"results": [{"key": ..., "ok": true|false, "code": ..., "message": ...}]}`
/// is attributed record by record; any other 2xx reply accepts the whole
/// batch, and any other 4xx rejects it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpDestination {
    /// URL the batches are sent to.
    pub url: String,
    /// HTTP method: `POST` (default), `PUT` or `PATCH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// Extra request headers, for example an `Authorization` header from a Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    /// Records per request (default 100; 1 to 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_size: Option<u32>,
    /// Seconds one request may take before it counts as timed out (default 30; 1 to 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u32>,
    /// Requests in flight at once (default 4; 1 to 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub max_in_flight: Option<u32>,
    /// Most requests per second (default: no limit; 1 to 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: Option<u32>,
    /// Retries of a request answered 429 or 5xx, timed out or cut off,
    /// with exponential backoff, inside one sync (default 5; 0 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub max_retries: Option<u32>,
    /// First backoff delay in milliseconds, doubled on each retry (default
    /// 500; 1 to 600000, ten minutes); a `Retry-After` reply header takes
    /// precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600_000))]
    pub initial_backoff_millis: Option<u32>,
    /// How the destination answers a batch. `batch` (default): a 2xx reply
    /// with a `results` array is read record by record, and any other 2xx
    /// reply accepts the whole batch. `perRecord`: the destination always
    /// answers with one result per record, so a 2xx reply without a valid
    /// `results` array of the batch's length has applied nothing that retl
    /// can tell, and the batch is retried like a 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<HttpReplies>,
}

/// How an http destination answers a batch.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HttpReplies {
    /// Per-record `results` when the reply has them; any other 2xx accepts the batch.
    #[default]
    Batch,
    /// Always one result per record; a 2xx reply without them is retried.
    PerRecord,
}

/// HTTP method of an http destination.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Post,
    Put,
    Patch,
}

/// One request header; exactly one of `value` and `valueFrom`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Literal value (not for credentials: use `valueFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value taken from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretKeyRef>,
}

/// A JSON-lines file: one line per delivered record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileDestination {
    /// Path of the file, appended to. In a local run a relative path is
    /// relative to the directory of the manifest.
    pub path: String,
    /// Records per write (default 500; 1 to 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub batch_size: Option<u32>,
}

/// A Segment-compatible batch tracking API (Segment, or an API that speaks
/// its `/v1/batch` format, such as RudderStack's). Each request carries up
/// to `batchSize` messages and at most 500,000 bytes, each message at most
/// 32,000 bytes; the write key goes as HTTP basic auth. Deletes are
/// skipped (reason `DeletesNotSupported`): Segment deletes users through
/// its separate regulations API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentDestination {
    /// Base URL of the tracking API; batches go to `<baseUrl>/v1/batch`
    /// (default `https://api.segment.io`; EU workspaces use
    /// `https://events.eu1.segmentapis.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The Secret key that holds the source's write key.
    pub write_key_secret_ref: SecretKeyRef,
    /// Messages per request (default 100; 1 to 2500, the API's limit).
    /// Fewer go when 500,000 bytes are reached first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2500))]
    pub batch_size: Option<u32>,
    /// Seconds one request may take before it counts as timed out (default 30; 1 to 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u32>,
    /// Requests in flight at once (default 4; 1 to 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub max_in_flight: Option<u32>,
    /// Most requests per second (default: no limit; 1 to 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: Option<u32>,
    /// Retries of a request answered 429 or 5xx, timed out or cut off,
    /// with exponential backoff, inside one sync (default 5; 0 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub max_retries: Option<u32>,
    /// First backoff delay in milliseconds, doubled on each retry (default
    /// 500; 1 to 600000); a `Retry-After` reply header takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600_000))]
    pub initial_backoff_millis: Option<u32>,
}

/// A table in PostgreSQL or MySQL/MariaDB. Added and updated records are
/// upserted by key, deleted ones deleted; each batch is one transaction, and
/// a row the server refuses (a constraint, a value that does not fit) fails
/// alone with the server's message while the rest of its batch lands. The
/// connection settings (and their Secrets) are those of a Source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableDestination {
    /// How to reach the server: the same settings as a Source's.
    #[serde(flatten)]
    pub connection: ServerSource,
    /// Name of the table the records go to.
    #[schemars(length(min = 1, max = 128))]
    pub table: String,
    /// Schema (PostgreSQL) or database (MySQL) of the table. Default: the
    /// connection's current schema (the first of its `search_path`) or database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub schema: Option<String>,
    /// The column that holds the Model's primary key (default `id`). It
    /// needs a unique index (a PRIMARY KEY will do): upserts and deletes find
    /// their row by it. Its value is always the record's key, never a mapped
    /// field, so no action may have a field of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub key_column: Option<String>,
    /// SQL type of the key column when retl creates the table: `string`
    /// (default; `text` in PostgreSQL, `VARCHAR(255)` in MySQL) or `integer`
    /// (`bigint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<TableKeyType>,
    /// Create the table when it does not exist (default false): the key
    /// column as its primary key and one column per field of the actions,
    /// typed after the field. An existing table is never altered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_table: bool,
    /// Records per transaction (default 500; 1 to 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_size: Option<u32>,
    /// Transactions in flight at once, each on its own connection (default 2; 1 to 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub max_in_flight: Option<u32>,
}

/// SQL type of a table destination's key column when retl creates the table.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TableKeyType {
    #[default]
    String,
    Integer,
}

/// Observed state of a Destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStatus {
    /// `Ready` says whether the destination is reachable; its message says why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
