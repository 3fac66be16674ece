//! `Model`: a SQL query against a Source.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, ObjectRef};

/// A SQL query whose rows are the records to sync, identified by a primary key column.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "retl.dev",
    version = "v1alpha1",
    kind = "Model",
    namespaced,
    status = "ModelStatus",
    category = "retl",
    doc = "A SQL query against a Source whose rows are the records to sync.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceRef.name"),
    printcolumn(name = "Primary Key", type_ = "string", json_path = ".spec.primaryKey"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// The Source (in the same namespace) the query runs against.
    pub source_ref: ObjectRef,
    /// The SQL query, run as given inside the warehouse (wrapped as a
    /// subquery, never edited). One row per record.
    pub query: String,
    /// The column that identifies a record across syncs. Must be unique and
    /// not null; rows that break this are failed records, not a failed sync.
    pub primary_key: String,
}

/// Observed state of a Model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// The columns the query returns, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ModelColumn>,
    /// `Ready` says whether the query is valid and returns the primary key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One column the model's query returns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelColumn {
    /// Column name.
    pub name: String,
    /// The warehouse's name for the column's type, as far as it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
}
