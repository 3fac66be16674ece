//! `SyncAlert`: who hears about failed and partially successful syncs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, SecretKeyRef};

/// Sends alerts about the outcomes of the Syncs of selected Mappings by Slack
/// and e-mail. Kubernetes Events (the in-app channel) are always written.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "retl.dev",
    version = "v1alpha1",
    kind = "SyncAlert",
    namespaced,
    status = "SyncAlertStatus",
    category = "retl",
    doc = "Who hears about failed and partially successful syncs, and how.",
    printcolumn(name = "Outcomes", type_ = "string", json_path = ".spec.outcomes"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SyncAlertSpec {
    /// Mappings whose Syncs are watched, by label; empty selects every
    /// Mapping in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_selector: Option<LabelSelector>,
    /// Outcomes that raise an alert: `Failed`, `PartiallySuccessful` (default both).
    // Not `on`: YAML 1.1 readers (kubectl) read that key as the boolean `true`.
    #[serde(default = "default_outcomes")]
    pub outcomes: Vec<AlertOutcome>,
    /// Post to a Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    /// Send an e-mail through an SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
}

fn default_outcomes() -> Vec<AlertOutcome> {
    vec![AlertOutcome::Failed, AlertOutcome::PartiallySuccessful]
}

/// An outcome that raises an alert.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AlertOutcome {
    Failed,
    PartiallySuccessful,
}

/// A Slack incoming webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackChannel {
    /// Secret key holding the webhook URL (it is a credential).
    pub webhook_url_secret_ref: SecretKeyRef,
    /// Channel name shown in the message, e.g. `#data-alerts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// E-mail through an SMTP server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailChannel {
    /// Recipient addresses (the "active email addresses" of this alert).
    pub to: Vec<String>,
    /// Sender address.
    pub from: String,
    /// SMTP server host.
    pub smtp_host: String,
    /// SMTP server port (default 587).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_tls: Option<String>,
    /// Secret key holding the SMTP user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// How the SMTP connection is secured.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587: Gmail, SES, most providers); refused if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (a relay on localhost or inside the cluster only).
    None,
}

/// Observed state of a SyncAlert.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncAlertStatus {
    /// `Ready` says whether the channels are configured correctly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
