//! The SyncAlert controller: tells people about the Syncs of the Mappings a
//! SyncAlert selects, by Slack, e-mail and Events.
//!
//! A pipeline per reconcile: read the SyncAlert fresh (its status is the
//! alert book), validate its channels, gather the finished Syncs, then per
//! Sync: claim (status write), deliver, confirm (status write). Status
//! writes carry the resourceVersion read, so a stale writer fails instead
//! of losing a claim. An operator killed between claim and confirm does
//! not send that alert again (at most once per Sync, channel and outcome).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::alert_gather;
use super::context::Context;
use super::error::ControllerError;
use super::mapping_plan::PlannedEvent;
use super::secrets;
use super::status::set_condition;
use crate::alert::book::{self, EventChannel};
use crate::alert::channels::{self, Targets};
use crate::alert::delivery::RetryPolicy;
use crate::alert::ledger::{Notice, Policy};
use crate::alert::message::SyncSummary;
use crate::api::conditions::{READY, reason};
use crate::api::{AlertOutcome, SyncAlert, SyncAlertStatus};

/// Re-checked this often (a Secret's value may change without an event).
const RECHECK: Duration = Duration::from_secs(300);

pub async fn reconcile(cached: Arc<SyncAlert>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<SyncAlert> = Api::namespaced(ctx.client.clone(), &ns);
    // The cache may be older than this controller's own last write.
    let Some(mut alert) = api.get_opt(&name).await.map_err(ControllerError::api("read", "SyncAlert", &name))? else {
        return Ok(Action::await_change());
    };
    let old = alert.status.clone().unwrap_or_default();
    let mut status = old.clone();
    book::describe(&alert.spec, &mut status);

    let (policy, targets) = match validate(&ctx, &ns, &alert).await {
        Ok(v) => v,
        Err((why, msg)) => {
            if set_ready(&mut status, &alert, Err((why, &msg))) {
                ctx.event(&alert.object_ref(&()), &PlannedEvent { warning: true, reason: why.into(), message: msg }, "Validate", None)
                    .await;
            }
            if status != old {
                write(&api, &mut alert, &status).await?;
            }
            return Ok(Action::requeue(RECHECK));
        }
    };
    if alert.metadata.generation != old.observed_generation {
        // A changed spec starts from a clean slate of delivery errors.
        status.deliveries.iter_mut().for_each(|d| (d.reason, d.error) = (None, None));
    }
    book::abandon_unconfirmed(&mut status);

    let created = alert.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
    let id = format!("{ns}/{name}");
    let reference = alert.object_ref(&());
    for c in alert_gather::gather(&ctx.client, &ns, &policy.selector).await? {
        let Some(notice) = book::claim(&mut status, &alert.spec, &policy, &c.mapping, created, &c.finished) else { continue };
        write(&api, &mut alert, &status).await?;
        let events = KubeEvents { ctx: &ctx, alert: reference.clone(), sync: c.sync_ref.clone() };
        book::deliver(&mut status, &c.mapping, &id, &notice, &c.summary, &targets, &ctx.http, &RetryPolicy::default(), &events).await;
        write(&api, &mut alert, &status).await?;
    }
    let ready = book::ready(&status);
    let ready = match &ready {
        Ok(m) => Ok(m.as_str()),
        Err((r, m)) => Err((r.as_str(), m.as_str())),
    };
    set_ready(&mut status, &alert, ready);
    if Some(&status) != alert.status.as_ref() {
        write(&api, &mut alert, &status).await?;
    }
    Ok(Action::requeue(RECHECK))
}

async fn validate(ctx: &Context, ns: &str, alert: &SyncAlert) -> Result<(Policy, Targets), (&'static str, String)> {
    let policy = Policy::of(&alert.spec).map_err(|m| (reason::INVALID_SPEC, m))?;
    let values = secrets::read(&ctx.client, ns, &channels::secret_refs(&alert.spec)).await?;
    let targets = channels::resolve(&alert.spec, &values).map_err(|p| (reason::INVALID_SPEC, p.join("; ")))?;
    Ok((policy, targets))
}

fn set_ready(status: &mut SyncAlertStatus, alert: &SyncAlert, ready: Result<&str, (&str, &str)>) -> bool {
    let generation = alert.metadata.generation;
    status.observed_generation = generation;
    let (ok, why, msg) = match ready {
        Ok(m) => (true, "Ready", m),
        Err((r, m)) => (false, r, m),
    };
    set_condition(&mut status.conditions, READY, ok, why, msg, generation, Timestamp::now())
}

/// Writes the whole status, conditional on the SyncAlert's resourceVersion:
/// a write based on an older read fails (and the reconcile retries)
/// instead of losing a claim.
async fn write(api: &Api<SyncAlert>, alert: &mut SyncAlert, status: &SyncAlertStatus) -> Result<(), ControllerError> {
    let name = alert.name_any();
    alert.status = Some(status.clone());
    *alert = api.replace_status(&name, &PostParams::default(), alert).await.map_err(ControllerError::api(
        "update status of",
        "SyncAlert",
        &name,
    ))?;
    Ok(())
}

/// The Events channel: Events on the SyncAlert, with the Sync as `related`.
struct KubeEvents<'a> {
    ctx: &'a Context,
    alert: ObjectReference,
    sync: ObjectReference,
}

#[async_trait]
impl EventChannel for KubeEvents<'_> {
    async fn alert(&self, n: &Notice, _s: &SyncSummary, note: &str) {
        let e = PlannedEvent { warning: n.outcome != AlertOutcome::Recovered, reason: format!("Sync{}", n.outcome), message: note.into() };
        self.ctx.event(&self.alert, &e, "Alert", Some(&self.sync)).await;
    }

    async fn not_delivered(&self, _n: &Notice, _s: &SyncSummary, reason: &str, message: &str) {
        let e = PlannedEvent { warning: true, reason: reason.into(), message: message.into() };
        self.ctx.event(&self.alert, &e, "Alert", Some(&self.sync)).await;
    }
}
