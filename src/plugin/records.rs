//! `kubectl retl records SYNC`: every failed record of a Sync, read from the
//! record log in the warehouse, a page at a time. A Sync's status keeps at
//! most 10 samples, cut short; the log has each record's full error and
//! payload.
//!
//! The warehouse is reached as the Sync's worker reaches it: Sync → Mapping
//! (its UID names the state tables) → Model → Source, and the Source's
//! Secrets, all read with the user's own kubeconfig. A user who may read
//! Syncs but not Secrets gets the API server's refusal and what to ask for.

use std::path::Path;

use kube::Client;
use kube::api::Api;

use super::PluginError;
use crate::api::{Mapping, Model, Source, Sync};
use crate::local::records::{RecordsPage, read_page};
use crate::warehouse::{self, StateScope};

fn api_error(what: String) -> impl FnOnce(kube::Error) -> PluginError {
    move |e| PluginError::Api { what, detail: crate::controller::secrets::short(&e) }
}

/// Reads one page: `limit` failed records of Sync `ns/sync` after `offset`.
pub async fn page(client: &Client, ns: &str, sync: &str, offset: u64, limit: u64) -> Result<RecordsPage, PluginError> {
    let s: Sync = Api::namespaced(client.clone(), ns).get(sync).await.map_err(api_error(format!("cannot read Sync {ns}/{sync}")))?;
    let mapping_name = &s.spec.mapping_ref.name;
    let mapping: Mapping = Api::namespaced(client.clone(), ns)
        .get(mapping_name)
        .await
        .map_err(api_error(format!("cannot read Mapping {ns}/{mapping_name} of Sync {sync}")))?;
    let model_name = &mapping.spec.model_ref.name;
    let model: Model =
        Api::namespaced(client.clone(), ns).get(model_name).await.map_err(api_error(format!("cannot read Model {ns}/{model_name}")))?;
    let source_name = &model.spec.source_ref.name;
    let source: Source =
        Api::namespaced(client.clone(), ns).get(source_name).await.map_err(api_error(format!("cannot read Source {ns}/{source_name}")))?;
    let secrets = crate::controller::secrets::read(client, ns, &warehouse::secret_refs(&source.spec)).await.map_err(|(_, message)| {
        PluginError::Api {
            what: format!("cannot read the credentials of Source {ns}/{source_name}"),
            detail: format!("{message}; `kubectl retl records` reads the warehouse with your own RBAC: you need `get` on that Secret"),
        }
    })?;
    let wh = warehouse::connect(source_name, &source.spec, &secrets, Path::new(".")).await.map_err(|e| PluginError::Api {
        what: format!("cannot reach the warehouse of Source {ns}/{source_name}"),
        detail: e.to_string(),
    })?;
    let scope = StateScope::from_uid(mapping.metadata.uid.as_deref().unwrap_or_default());
    read_page(wh.as_ref(), &scope, ns, sync, offset, limit).await.map_err(|e| PluginError::Api {
        what: format!("cannot read the record log of Sync {ns}/{sync} in Source {ns}/{source_name}"),
        detail: e.to_string(),
    })
}
