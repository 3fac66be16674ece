//! `kubectl retl test-record MAPPING [--key K]`: one row of a Mapping's
//! model, mapped and sent to its Destination, with the request and the
//! reply printed; no sync state changes and no Sync is created.
//!
//! It runs where kubectl runs, not in the cluster: it reads the Mapping,
//! its Model, Source and Destination, and their Secrets, with the user's
//! own kubeconfig, then reaches the warehouse and the destination from
//! this machine, as `kubectl retl records` reaches the warehouse. So it
//! needs the network paths a worker has, and a user who may not read those
//! Secrets gets the API server's refusal and which Secret to ask for,
//! never a partial test.

use std::path::Path;

use kube::Client;
use kube::api::Api;

use super::PluginError;
use crate::api::{Destination, Mapping, Model, Source};
use crate::local::test_record::{Subject, TestReport, sent};

fn api_error(what: String) -> impl FnOnce(kube::Error) -> PluginError {
    move |e| PluginError::Api { what, detail: crate::controller::secrets::short(&e) }
}

/// Reads the Secrets of `kind` `ns/name`; a refusal says what to ask for.
async fn secrets(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    refs: &[crate::api::SecretKeyRef],
) -> Result<crate::warehouse::SecretValues, PluginError> {
    crate::controller::secrets::read(client, ns, refs).await.map_err(|(_, message)| PluginError::Api {
        what: format!("cannot read the credentials of {kind} {ns}/{name}"),
        detail: format!("{message}; `kubectl retl test-record` reads them with your own RBAC: you need `get` on that Secret"),
    })
}

/// Tests one record of Mapping `ns/mapping`.
pub async fn test(client: &Client, ns: &str, mapping_name: &str, key: Option<&str>) -> Result<TestReport, PluginError> {
    let mapping: Mapping = Api::namespaced(client.clone(), ns)
        .get(mapping_name)
        .await
        .map_err(api_error(format!("cannot read Mapping {ns}/{mapping_name}")))?;
    let spec = &mapping.spec;
    let (model_name, destination_name) = (&spec.model_ref.name, &spec.destination_ref.name);
    let model: Model =
        Api::namespaced(client.clone(), ns).get(model_name).await.map_err(api_error(format!("cannot read Model {ns}/{model_name}")))?;
    let source_name = &model.spec.source_ref.name;
    let source: Source =
        Api::namespaced(client.clone(), ns).get(source_name).await.map_err(api_error(format!("cannot read Source {ns}/{source_name}")))?;
    let destination: Destination = Api::namespaced(client.clone(), ns)
        .get(destination_name)
        .await
        .map_err(api_error(format!("cannot read Destination {ns}/{destination_name}")))?;
    let action = crate::destination::find_action(destination_name, &destination.spec, &spec.action)
        .map_err(|detail| PluginError::Api { what: format!("Mapping {ns}/{mapping_name}"), detail })?;
    let mut all = secrets(client, ns, "Source", source_name, &crate::warehouse::secret_refs(&source.spec)).await?;
    let for_destination = crate::destination::secret_refs(&destination.spec);
    all.extend(secrets(client, ns, "Destination", destination_name, &for_destination).await?);

    let wh = crate::warehouse::connect(source_name, &source.spec, &all, Path::new(".")).await.map_err(|e| PluginError::Api {
        what: format!("cannot reach the warehouse of Source {ns}/{source_name} from this machine"),
        detail: e.to_string(),
    })?;
    let dest = crate::destination::build(destination_name, &destination.spec, &all, Path::new("."))
        .map_err(|e| PluginError::Api { what: format!("Destination {ns}/{destination_name}"), detail: e.to_string() })?;
    let uid = mapping.metadata.uid.clone().unwrap_or_default();
    let subject = Subject {
        namespace: ns,
        mapping_name,
        mapping_uid: &uid,
        mapping: spec,
        model: &model.spec,
        destination: &destination.spec,
        action: &action,
    };
    sent(&subject, key, wh.as_ref(), dest.as_ref())
        .await
        .map_err(|e| PluginError::Api { what: format!("cannot test Mapping {ns}/{mapping_name}"), detail: e.to_string() })
}
