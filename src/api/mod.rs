//! The custom resources of retl (group `retl.dev`, version `v1alpha1`), one
//! file per kind. These types are the contract with users: every field has a
//! doc comment because it becomes the CRD description that `kubectl explain`
//! shows.

// kube's derive takes several `printcolumn(...)`/`selectable` attributes, which
// clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

mod common;
pub mod conditions;
mod destination;
mod mapping;
mod model;
pub mod reference;
mod source;
mod sync;
mod sync_alert;

pub use crate::record::ChangeKind;
pub use common::*;
pub use destination::*;
pub use mapping::*;
pub use model::*;
pub use source::*;
pub use sync::*;
pub use sync_alert::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every retl resource.
pub const GROUP: &str = "retl.dev";
/// API version of every retl resource.
pub const VERSION: &str = "v1alpha1";

/// Every CRD of retl, in the order `retl crds` prints them.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    [Source::crd(), Destination::crd(), Model::crd(), Mapping::crd(), Sync::crd(), SyncAlert::crd()]
        .into_iter()
        .map(without_null_in_enums)
        .collect()
}

/// schemars lists `null` among the values of an optional enum; kubectl's
/// validation against the server's OpenAPI refuses such a CRD (`unknown
/// object type "nil" in ...enum`), and an absent field needs no `null`.
fn without_null_in_enums(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(values)) = map.get_mut("enum") {
                    values.retain(|x| !x.is_null());
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else { return crd };
    strip(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

/// The CRDs as one multi-document YAML stream, as `retl crds` prints them and
/// as `crds/` holds them (one file per CRD, see [`crd_file_name`]).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(crd)
}

/// File name of a CRD under `crds/`, e.g. `syncs.retl.dev.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default())
}
