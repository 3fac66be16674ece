//! The Destination controller: is it reachable (without sending a record)?

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::context::Context;
use super::error::ControllerError;
use super::{secrets, status};
use crate::api::Destination;
use crate::api::conditions::reason;

pub async fn reconcile(dest: Arc<Destination>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let ns = dest.namespace().unwrap_or_default();
    let name = dest.name_any();
    let ready = check(&ctx.client, &ns, &dest).await;
    let api: Api<Destination> = Api::namespaced(ctx.client.clone(), &ns);
    let old = dest.status.clone().unwrap_or_default();
    status::write_ready(&api, dest.as_ref(), &old.conditions, ready, Default::default(), Default::default())
        .await
        .map_err(ControllerError::api("update status of", "Destination", &name))?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn check(client: &kube::Client, ns: &str, dest: &Destination) -> Result<String, (&'static str, String)> {
    let refs = crate::destination::secret_refs(&dest.spec);
    let values = secrets::read(client, ns, &refs).await?;
    let d = crate::destination::build(&dest.name_any(), &dest.spec, &values, Path::new("."))
        .map_err(|e| (reason::INVALID_SPEC, e.to_string()))?;
    d.check().await.map_err(|e| (reason::DESTINATION_UNREACHABLE, e.to_string()))?;
    Ok("reachable".into())
}
