//! Small types shared by several kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// A reference to another retl object in the same namespace. References never
/// cross namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ObjectRef {
    /// Name of the object, in the same namespace as the referring object.
    pub name: String,
}

/// A reference to one key of a Secret in the same namespace.
///
/// In a local run (`retl run -f DIR`) the value comes from a `Secret` manifest
/// in DIR, or else from the environment variable
/// `RETL_SECRET_<NAME>_<KEY>` (upper case, every other character than A-Z
/// and 0-9 turned into `_`), so credentials never have to be written into
/// files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace.
    pub name: String,
    /// Key inside the Secret's `data` or `stringData`.
    pub key: String,
}

impl SecretKeyRef {
    /// The environment variable that supplies this secret in a local run.
    pub fn env_var_name(&self) -> String {
        let clean =
            |s: &str| -> String { s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect() };
        format!("RETL_SECRET_{}_{}", clean(&self.name), clean(&self.key))
    }
}

/// Shorthand to build a condition. `now` is the transition time; callers that
/// keep an existing condition whose status did not change keep its old time.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation,
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
    }
}

/// Schema of a field that holds any JSON value. Structural schemas need
/// `x-kubernetes-preserve-unknown-fields` for free-form JSON.
pub(crate) fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
