//! A SyncAlert's channels, resolved: Secret values read, addresses and
//! URLs checked. What is wrong comes back as one message per problem that
//! says what to fix, for the `Ready` condition (operator) or the load
//! error (`retl run`).

use super::email::{SmtpServer, check_address};
use super::slack::check_webhook_url;
use crate::api::{SecretKeyRef, SmtpTls, SyncAlertSpec};
use crate::warehouse::SecretValues;

/// The Slack channel, ready to post to.
#[derive(Clone)]
pub struct SlackTarget {
    pub webhook_url: String,
    pub channel: Option<String>,
}

/// The e-mail channel, ready to send through.
#[derive(Clone)]
pub struct EmailTarget {
    pub server: SmtpServer,
    pub from: String,
    pub to: Vec<String>,
}

/// Every channel a SyncAlert has besides Events (always on).
#[derive(Clone, Default)]
pub struct Targets {
    pub slack: Option<SlackTarget>,
    pub email: Option<EmailTarget>,
}

/// Channel names, as status and the deliveries list them.
pub const SLACK: &str = "slack";
pub const EMAIL: &str = "email";
pub const EVENTS: &str = "events";

/// The channels of `spec`, Events last.
pub fn names(spec: &SyncAlertSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if spec.slack.is_some() {
        out.push(SLACK);
    }
    if spec.email.is_some() {
        out.push(EMAIL);
    }
    out.push(EVENTS);
    out
}

/// Who receives the alerts: the e-mail addresses, then the Slack channel.
pub fn recipients(spec: &SyncAlertSpec) -> Vec<String> {
    let mut out: Vec<String> = spec.email.iter().flat_map(|e| e.to.iter().cloned()).collect();
    if let Some(s) = &spec.slack {
        out.push(format!("slack:{}", s.channel.as_deref().unwrap_or("(the webhook's channel)")));
    }
    out
}

/// The Secret keys `spec` refers to.
pub fn secret_refs(spec: &SyncAlertSpec) -> Vec<SecretKeyRef> {
    let mut out = Vec::new();
    if let Some(s) = &spec.slack {
        out.push(s.webhook_url_secret_ref.clone());
    }
    if let Some(e) = &spec.email {
        out.extend([&e.username_secret_ref, &e.password_secret_ref, &e.ca_secret_ref].into_iter().flatten().cloned());
    }
    out
}

/// Resolves the channels, or says everything that is wrong with them.
pub fn resolve(spec: &SyncAlertSpec, secrets: &SecretValues) -> Result<Targets, Vec<String>> {
    let mut problems = Vec::new();
    let value = |r: &SecretKeyRef, problems: &mut Vec<String>| -> Option<String> {
        let v = secrets.get(&(r.name.clone(), r.key.clone())).cloned();
        if v.is_none() {
            problems.push(format!("Secret {:?} key {:?} is missing: create it", r.name, r.key));
        }
        v
    };
    let mut targets = Targets::default();
    if let Some(s) = &spec.slack {
        let r = &s.webhook_url_secret_ref;
        if let Some(url) = value(r, &mut problems) {
            match check_webhook_url(url.trim()) {
                Ok(()) => targets.slack = Some(SlackTarget { webhook_url: url.trim().to_string(), channel: s.channel.clone() }),
                Err(why) => problems.push(format!(
                    "spec.slack: the webhook URL in Secret {:?} key {:?} {why}; put the incoming-webhook URL of your Slack app there",
                    r.name, r.key
                )),
            }
        }
    }
    if let Some(e) = &spec.email {
        let before = problems.len();
        if e.to.is_empty() {
            problems.push("spec.email.to is empty: list at least one recipient address".into());
        }
        for (field, addr) in std::iter::once(("from", &e.from)).chain(e.to.iter().map(|a| ("to", a))) {
            if let Err(why) = check_address(addr) {
                problems.push(format!("spec.email.{field}: {addr:?} is not an e-mail address ({why})"));
            }
        }
        let username = e.username_secret_ref.as_ref().and_then(|r| value(r, &mut problems));
        let password = e.password_secret_ref.as_ref().and_then(|r| value(r, &mut problems));
        if e.username_secret_ref.is_some() != e.password_secret_ref.is_some() {
            problems.push("spec.email: set both usernameSecretRef and passwordSecretRef, or neither".into());
        }
        let ca = e.ca_secret_ref.as_ref().and_then(|r| value(r, &mut problems)).map(String::into_bytes);
        if problems.len() == before {
            let port = e.smtp_port.unwrap_or(match e.smtp_tls {
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            });
            let server = SmtpServer {
                host: e.smtp_host.clone(),
                port,
                tls: e.smtp_tls,
                credentials: username.zip(password),
                extra_root_certificate_pem: ca,
            };
            targets.email = Some(EmailTarget { server, from: e.from.clone(), to: e.to.clone() });
        }
    }
    if problems.is_empty() { Ok(targets) } else { Err(problems) }
}
