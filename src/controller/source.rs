//! The Source controller: can retl connect? `Ready` says so, with a reason a
//! person can act on. Re-checked on spec or Secret change and every five minutes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::context::Context;
use super::error::ControllerError;
use super::{secrets, status};
use crate::api::Source;

pub async fn reconcile(source: Arc<Source>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let ns = source.namespace().unwrap_or_default();
    let name = source.name_any();
    let ready = check(&ctx.client, &ns, &source).await;
    let api: Api<Source> = Api::namespaced(ctx.client.clone(), &ns);
    let old = source.status.clone().unwrap_or_default();
    status::write_ready(&api, source.as_ref(), &old.conditions, ready, Default::default(), Default::default())
        .await
        .map_err(ControllerError::api("update status of", "Source", &name))?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn check(client: &kube::Client, ns: &str, source: &Source) -> Result<String, (&'static str, String)> {
    let refs = crate::warehouse::secret_refs(&source.spec);
    let values = secrets::read(client, ns, &refs).await?;
    let warehouse = crate::warehouse::connect(&source.name_any(), &source.spec, &values, Path::new("."))
        .await
        .map_err(|e| (e.reason(), e.to_string()))?;
    warehouse.check().await.map_err(|e| (e.reason(), e.to_string()))?;
    Ok("connected".into())
}
