//! The Model controller: validates the query against its Source without
//! reading data; the columns go into status, and the primary key must be
//! among them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use serde_json::json;

use super::context::Context;
use super::error::ControllerError;
use super::{secrets, status};
use crate::api::conditions::reason;
use crate::api::{Model, ModelColumn, Source};
use crate::warehouse::WarehouseError;

pub async fn reconcile(model: Arc<Model>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let ns = model.namespace().unwrap_or_default();
    let name = model.name_any();
    let old = model.status.clone().unwrap_or_default();
    let (ready, columns) = match describe(&ctx.client, &ns, &model).await {
        Ok(cols) => (Ok(format!("the query returns {} columns", cols.len())), cols),
        Err(e) => (Err(e), old.columns.clone()),
    };
    let api: Api<Model> = Api::namespaced(ctx.client.clone(), &ns);
    let extra = json!({ "columns": columns });
    let old_extra = json!({ "columns": old.columns });
    let as_map = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    status::write_ready(&api, model.as_ref(), &old.conditions, ready, as_map(extra), as_map(old_extra))
        .await
        .map_err(ControllerError::api("update status of", "Model", &name))?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn describe(client: &kube::Client, ns: &str, model: &Model) -> Result<Vec<ModelColumn>, (&'static str, String)> {
    let source_name = &model.spec.source_ref.name;
    let sources: Api<Source> = Api::namespaced(client.clone(), ns);
    let source = sources
        .get_opt(source_name)
        .await
        .map_err(|e| (reason::REFERENCE_NOT_FOUND, secrets::short(&e)))?
        .ok_or_else(|| (reason::REFERENCE_NOT_FOUND, format!("Source {source_name:?} does not exist in namespace {ns:?}")))?;
    let values = secrets::read(client, ns, &crate::warehouse::secret_refs(&source.spec)).await?;
    let warehouse =
        crate::warehouse::connect(source_name, &source.spec, &values, Path::new(".")).await.map_err(|e| (e.reason(), e.to_string()))?;
    let columns = warehouse.describe(&model.spec.query).await.map_err(|e| (e.reason(), e.to_string()))?;
    if !columns.iter().any(|c| c.name == model.spec.primary_key) {
        let e = WarehouseError::MissingPrimaryKey {
            column: model.spec.primary_key.clone(),
            columns: columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
        };
        return Err((e.reason(), e.to_string()));
    }
    Ok(columns.into_iter().map(|c| ModelColumn { name: c.name, type_name: c.type_name }).collect())
}
