//! The alert book: a SyncAlert's status as the record of which Syncs were
//! considered and what was delivered where. The operator keeps it in the
//! SyncAlert's status, `retl run` in a file; both follow the same steps:
//! [`claim`] (persist), [`deliver`] (persist), so that an alert cut off
//! between the two is never sent twice ([`abandon_unconfirmed`]).

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::channels::{self, EVENTS, Targets};
use super::delivery::RetryPolicy;
use super::ledger::{self, Finished, Notice, Policy};
use super::message::{self, SyncSummary};
use crate::api::{AlertOutcome, ChannelDelivery, MappingAlertState, PendingAlert, SyncAlertSpec, SyncAlertStatus};

/// Where the always-on Events channel goes: Kubernetes Events in the
/// operator, the terminal in a local run.
#[async_trait]
pub trait EventChannel: Send + Sync {
    /// The alert itself (`warning` for Failed and PartiallySuccessful).
    async fn alert(&self, n: &Notice, s: &SyncSummary, note: &str);
    /// A channel that could not deliver it.
    async fn not_delivered(&self, n: &Notice, s: &SyncSummary, reason: &str, message: &str);
}

/// The status fields that describe the spec: channels and recipients.
pub fn describe(spec: &SyncAlertSpec, status: &mut SyncAlertStatus) {
    status.channel_names = Some(channels::names(spec).join(","));
    status.recipients = channels::recipients(spec);
    status.recipient_list = Some(status.recipients.join(", ")).filter(|s| !s.is_empty());
}

/// An alert claimed before a stop that came before its confirmation: its
/// channels say so, and it is not sent again.
pub fn abandon_unconfirmed(status: &mut SyncAlertStatus) {
    let claimed: Vec<PendingAlert> = status.mappings.iter_mut().filter_map(|m| m.sending.take()).collect();
    for p in claimed {
        for c in &p.channels {
            let why = "not confirmed: delivery of this alert was cut off (the operator or run stopped); it is not sent again, so that nobody gets it twice";
            record(status, c, &p.sync, p.outcome, Some(("DeliveryNotConfirmed", why.into())));
        }
    }
}

/// Considers a finished Sync of `mapping`. When it raises an alert, the
/// alert is claimed on every channel (persist the status before
/// [`deliver`]). `created` is when alerting began for this book: Syncs
/// that finished before it are history, not news.
pub fn claim(
    status: &mut SyncAlertStatus,
    spec: &SyncAlertSpec,
    policy: &Policy,
    mapping: &str,
    created: Timestamp,
    f: &Finished,
) -> Option<Notice> {
    let state = state_of(&mut status.mappings, mapping, created);
    if !ledger::is_new(state, f) {
        return None;
    }
    let notice = ledger::consider(state, policy, f)?;
    let channels = channels::names(spec).iter().map(|c| c.to_string()).collect();
    state.sending = Some(PendingAlert { sync: notice.sync.clone(), outcome: Some(notice.outcome), channels });
    Some(notice)
}

/// Delivers a claimed alert on its channels, records each outcome and
/// clears the claim (persist the status afterwards).
#[allow(clippy::too_many_arguments)]
pub async fn deliver(
    status: &mut SyncAlertStatus,
    mapping: &str,
    alert_id: &str,
    n: &Notice,
    s: &SyncSummary,
    targets: &Targets,
    http: &reqwest::Client,
    retry: &RetryPolicy,
    events: &dyn EventChannel,
) {
    let claimed = status.mappings.iter().find(|m| m.mapping == mapping).and_then(|m| m.sending.clone());
    let channels = claimed.map(|p| p.channels).unwrap_or_default();
    // The in-cluster notice first: it is quick, and it is there even when
    // a slow channel's delivery is cut off.
    events.alert(n, s, &message::event_note(n, s)).await;
    record(status, EVENTS, &n.sync, Some(n.outcome), None);
    let results = super::dispatch::deliver(http, targets, &channels, alert_id, n, s, retry).await;
    for d in results {
        let error = d.result.as_ref().err().map(|e| (e.reason(), e.to_string()));
        if let Err(e) = &d.result {
            let message = format!("alert about Sync {} not delivered by {}: {e}", n.sync, d.channel);
            events.not_delivered(n, s, e.reason(), &message).await;
        }
        record(status, d.channel, &n.sync, Some(n.outcome), error);
    }
    status.last_alert_time = Some(Time(Timestamp::now()));
    if let Some(m) = status.mappings.iter_mut().find(|m| m.mapping == mapping) {
        m.sending = None;
    }
}

/// `Ready`: every channel delivered its last alert (or has not had one);
/// else the reason and message of the first that did not.
pub fn ready(status: &SyncAlertStatus) -> Result<String, (String, String)> {
    match status.deliveries.iter().find(|d| d.error.is_some()) {
        None => Ok(format!("alerts go to {}", status.channel_names.clone().unwrap_or_default())),
        Some(d) => Err((
            d.reason.clone().unwrap_or_else(|| "AlertDeliveryFailed".into()),
            format!("the last alert on channel {} was not delivered: {}", d.channel, d.error.clone().unwrap_or_default()),
        )),
    }
}

fn state_of<'a>(list: &'a mut Vec<MappingAlertState>, mapping: &str, created: Timestamp) -> &'a mut MappingAlertState {
    let i = match list.iter().position(|m| m.mapping == mapping) {
        Some(i) => i,
        None => {
            list.push(MappingAlertState { mapping: mapping.into(), last_completion_time: Some(Time(created)), ..Default::default() });
            list.len() - 1
        }
    };
    &mut list[i]
}

fn record(status: &mut SyncAlertStatus, channel: &str, sync: &str, outcome: Option<AlertOutcome>, error: Option<(&str, String)>) {
    let (reason, error) = error.map(|(r, e)| (Some(r.to_string()), Some(e))).unwrap_or_default();
    let time = Some(Time(Timestamp::now()));
    let entry = ChannelDelivery { channel: channel.into(), sync: Some(sync.into()), outcome, time, reason, error };
    match status.deliveries.iter_mut().find(|d| d.channel == channel) {
        Some(d) => *d = entry,
        None => status.deliveries.push(entry),
    }
}
