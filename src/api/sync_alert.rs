//! `SyncAlert`: who hears about failed and partially successful syncs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::mapping::RETRY_WINDOW_RULE;
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
    printcolumn(name = "Channels", type_ = "string", json_path = ".status.channelNames"),
    printcolumn(name = "Recipients", type_ = "string", json_path = ".status.recipientList"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Last Alert", type_ = "date", json_path = ".status.lastAlertTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SyncAlertSpec {
    /// Mappings whose Syncs are watched, by label; empty selects every
    /// Mapping in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_selector: Option<LabelSelector>,
    /// Outcomes that raise an alert: `Failed`, `PartiallySuccessful` and
    /// `Recovered` (the first Successful sync after a Failed or partially
    /// successful one); default all three.
    // Not `on`: YAML 1.1 readers (kubectl) read that key as the boolean `true`.
    #[serde(default = "default_outcomes")]
    #[schemars(length(min = 1))]
    pub outcomes: Vec<AlertOutcome>,
    /// While a Mapping keeps failing, at most one alert per this interval
    /// (the first failure alerts at once; the next alert says how many
    /// failures came since). Default `1h`. A duration: whole numbers, each
    /// with a unit `s`, `m`, `h`, `d` or `w` (`30m`, `1h`, `1d`).
    #[serde(default = "default_repeat_interval")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = [{
        "rule": RETRY_WINDOW_RULE,
        "message": "repeatInterval is a positive duration: whole numbers of at most 6 digits, each with a unit s, m, h, d or w, such as 30m, 1h or 1d",
    }]))]
    pub repeat_interval: String,
    /// Post to a Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    /// Send an e-mail through an SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
}

fn default_outcomes() -> Vec<AlertOutcome> {
    vec![AlertOutcome::Failed, AlertOutcome::PartiallySuccessful, AlertOutcome::Recovered]
}

fn default_repeat_interval() -> String {
    "1h".to_string()
}

/// An outcome that raises an alert.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum AlertOutcome {
    /// The sync failed.
    Failed,
    /// Some records were accepted and some rejected.
    PartiallySuccessful,
    /// The first Successful sync after a Failed or partially successful one.
    Recovered,
}

impl std::fmt::Display for AlertOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlertOutcome::Failed => "Failed",
            AlertOutcome::PartiallySuccessful => "PartiallySuccessful",
            AlertOutcome::Recovered => "Recovered",
        })
    }
}

/// A Slack incoming webhook (a Slack app's "Incoming Webhooks" feature).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackChannel {
    /// Secret key holding the webhook URL (it is a credential: its path
    /// carries the token).
    pub webhook_url_secret_ref: SecretKeyRef,
    /// Channel name shown in the alert, e.g. `#data-alerts` (the webhook
    /// itself decides where the message goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    pub channel: Option<String>,
}

/// E-mail through an SMTP server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailChannel {
    /// Recipient addresses (the "active email addresses" of this alert).
    #[schemars(length(min = 1, max = 50))]
    pub to: Vec<String>,
    /// Sender address, e.g. `retl <alerts@example.com>`.
    pub from: String,
    /// SMTP server host, e.g. `smtp.gmail.com` or `email-smtp.eu-west-1.amazonaws.com`.
    #[schemars(length(min = 1, max = 253))]
    pub smtp_host: String,
    /// SMTP server port (default 587 for `starttls`, 465 for `tls`, 25 for `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub smtp_port: Option<u16>,
    /// How the connection is secured: `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub smtp_tls: SmtpTls,
    /// Secret key holding the SMTP user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the SMTP password (or an app password / SES SMTP
    /// credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding PEM certificates to trust besides the public
    /// roots, for a relay with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
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

/// Observed state of a SyncAlert: who receives it, what was delivered, and
/// (per Mapping) where alerting stands, so that a restarted operator
/// neither repeats nor loses an alert.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncAlertStatus {
    /// `Ready` says whether every channel is configured and delivering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The channels alerts go to, e.g. `slack,email,events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_names: Option<String>,
    /// Who receives the alerts: the e-mail addresses and the Slack channel
    /// (the "active email addresses").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// `recipients`, comma-separated, for `kubectl get syncalerts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_list: Option<String>,
    /// When the last alert was delivered on any channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alert_time: Option<Time>,
    /// The last delivery on each channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<ChannelDelivery>,
    /// Where alerting stands for each selected Mapping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<MappingAlertState>,
}

/// The last delivery on one channel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDelivery {
    /// `slack`, `email` or `events`.
    pub channel: String,
    /// The Sync the last alert was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// The outcome it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AlertOutcome>,
    /// When it was delivered (or given up on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Why the last delivery failed, if it did: a reason word such as
    /// `WebhookNotFound` or `SmtpAuthenticationFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What went wrong and what to fix (no credentials in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Alerting state of one Mapping, kept across syncs and restarts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingAlertState {
    /// The Mapping's name.
    pub mapping: String,
    /// The last finished Sync considered; later ones are still to consider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
    /// Its completion time (Syncs are considered in completion order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completion_time: Option<Time>,
    /// Every Sync considered that completed in that same second. Completion
    /// times are whole seconds, and Syncs that end in one second are not
    /// ordered by name: one that ends after another may have a smaller name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_second_syncs: Vec<String>,
    /// The failures in a row, while the last sync was not Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<AlertEpisode>,
    /// An alert claimed but not yet confirmed on these channels: written
    /// before sending, so that an operator killed mid-delivery does not
    /// send it again (at most once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending: Option<PendingAlert>,
}

/// Failures of a Mapping in a row.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertEpisode {
    /// When the first of them finished.
    pub since: Option<Time>,
    /// How many syncs failed or partly failed in a row.
    pub failures: u32,
    /// When the last alert of this episode went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alert_time: Option<Time>,
    /// The outcome of the last alert of this episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alert_outcome: Option<AlertOutcome>,
    /// Failures since that alert that were held back by `repeatInterval`.
    #[serde(default)]
    pub held_back: u32,
}

/// An alert in delivery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingAlert {
    /// The Sync it is about.
    pub sync: String,
    /// The outcome it reports.
    pub outcome: Option<AlertOutcome>,
    /// Channels not yet confirmed.
    pub channels: Vec<String>,
}
