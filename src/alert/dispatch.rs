//! Delivering one alert on the channels still to deliver it on, each on
//! its own: a channel that fails never holds back another.

use super::channels::{EMAIL, SLACK, Targets};
use super::delivery::{DeliveryError, RetryPolicy};
use super::email::OutgoingEmail;
use super::ledger::Notice;
use super::message::{self, SyncSummary};

/// How one channel's delivery went.
#[derive(Debug)]
pub struct Delivered {
    pub channel: &'static str,
    pub result: Result<(), DeliveryError>,
}

/// Delivers `n` on those of `channels` that `targets` has (Slack and
/// e-mail; the caller writes the Event). `alert` names the SyncAlert
/// (`namespace/name`), so that the e-mail's Message-ID is the same for the
/// same alert, whoever sends it.
pub async fn deliver(
    client: &reqwest::Client,
    targets: &Targets,
    channels: &[String],
    alert: &str,
    n: &Notice,
    s: &SyncSummary,
    retry: &RetryPolicy,
) -> Vec<Delivered> {
    let wanted = |c: &str| channels.iter().any(|x| x == c);
    let slack = async {
        let t = targets.slack.as_ref().filter(|_| wanted(SLACK))?;
        let payload = message::slack_payload(n, s, t.channel.as_deref());
        Some(Delivered { channel: SLACK, result: super::slack::post(client, &t.webhook_url, &payload, retry).await })
    };
    let email = async {
        let t = targets.email.as_ref().filter(|_| wanted(EMAIL))?;
        let mail = OutgoingEmail {
            from: t.from.clone(),
            to: t.to.clone(),
            subject: message::subject(n, s),
            text: message::text(n, s),
            html: message::html(n, s),
            message_id: message_id(alert, n, s, &t.from),
        };
        Some(Delivered { channel: EMAIL, result: super::email::send(&t.server, &mail, retry).await })
    };
    let (a, b) = futures::join!(slack, email);
    a.into_iter().chain(b).collect()
}

/// `<hash.outcome@domain-of-from>`: one id per alert, sync and outcome.
fn message_id(alert: &str, n: &Notice, s: &SyncSummary, from: &str) -> String {
    let id = format!("{alert}/{}/{}/{}", s.namespace, n.sync, n.outcome);
    let domain = from.rsplit('@').next().map(|d| d.trim_end_matches('>').trim()).filter(|d| !d.is_empty() && !d.contains(' '));
    format!("<{:016x}.{}@{}>", xxhash_rust::xxh3::xxh3_64(id.as_bytes()), n.outcome, domain.unwrap_or("retl.invalid"))
}
