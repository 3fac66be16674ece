//! SyncAlerts on a real control plane: a Failed and a PartiallySuccessful
//! sync each raise one alert per channel (Slack webhook, e-mail through a
//! real SMTP server, an Event), a burst of failures is throttled, the
//! success after them raises one Recovered notice, a killed operator sends
//! nothing twice, and no credential shows in status, Events or logs.

use std::time::Duration;

use serde_json::Value;
use testcluster::wait_until;
use testkit::slack::{Answer, SlackWebhook};
use testkit::smtp::{Options, SmtpServer, Tls};

use super::cluster::{Cluster, Setup, spawn_operator};

const SMTP_USER: &str = "alerts@example.com";
const SMTP_PASSWORD: &str = "smtp-pa55-word-77";

/// Slack and SMTP servers, and the Secrets and SyncAlert that use them.
struct Channels {
    slack: SlackWebhook,
    smtp: SmtpServer,
}

impl Channels {
    async fn start() -> Channels {
        let slack = SlackWebhook::start().await.expect("a Slack webhook server");
        let opts = Options { tls: Tls::Starttls, credentials: Some((SMTP_USER.into(), SMTP_PASSWORD.into())), ..Default::default() };
        let smtp = SmtpServer::start(opts).await.expect("an SMTP server");
        Channels { slack, smtp }
    }

    /// The Secrets and a SyncAlert `team` (every Mapping, every outcome).
    fn yaml(&self, spec_extra: &str) -> String {
        let ca = serde_json::to_string(self.smtp.ca_pem().expect("a CA")).unwrap();
        format!(
            r##"
---
apiVersion: v1
kind: Secret
metadata: {{name: alerting}}
stringData:
  slack-url: "{url}"
  smtp-user: "{SMTP_USER}"
  smtp-password: "{SMTP_PASSWORD}"
  smtp-ca: {ca}
---
apiVersion: retl.dev/v1alpha1
kind: SyncAlert
metadata: {{name: team}}
spec:
  slack:
    webhookUrlSecretRef: {{name: alerting, key: slack-url}}
    channel: "#data-alerts"
  email:
    to: [oncall@example.com, data@example.com]
    from: "retl <retl@example.com>"
    smtpHost: "{host}"
    smtpPort: {port}
    smtpTls: starttls
    usernameSecretRef: {{name: alerting, key: smtp-user}}
    passwordSecretRef: {{name: alerting, key: smtp-password}}
    caSecretRef: {{name: alerting, key: smtp-ca}}
{spec_extra}"##,
            url = self.slack.url(),
            host = self.smtp.host(),
            port = self.smtp.port(),
        )
    }

    fn slack_texts(&self) -> Vec<String> {
        self.slack.messages().iter().map(|m| m.payload["text"].as_str().unwrap_or_default().to_string()).collect()
    }

    fn subjects(&self) -> Vec<String> {
        self.smtp.messages().expect("the received mail").iter().map(|m| m.subject.clone().unwrap_or_default()).collect()
    }
}

/// The SyncAlert's Events (oldest first).
fn alert_events(c: &Cluster) -> Vec<Value> {
    let list = c.ns.kubectl_json(&["get", "events", "--field-selector", "involvedObject.kind=SyncAlert"]).unwrap_or_default();
    let mut items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_string());
    items
}

fn reasons(c: &Cluster) -> Vec<String> {
    alert_events(c).iter().map(|e| e["reason"].as_str().unwrap_or_default().to_string()).collect()
}

/// Runs a sync now and waits for it; returns its name and phase.
async fn sync(c: &Cluster, token: &str, n: usize) -> (String, String) {
    c.annotate("mapping", "users-api", &format!("retl.dev/sync-now={token}"));
    let s = c.wait_finished(n).await;
    (s["metadata"]["name"].as_str().unwrap().to_string(), s["status"]["phase"].as_str().unwrap().to_string())
}

/// Waits until `check` holds, for up to a minute.
async fn eventually(what: &str, c: &Cluster, check: impl Fn() -> bool) {
    let ok = wait_until(Duration::from_secs(60), || async { check() }).await;
    assert!(ok, "{what}\n--- SyncAlert:\n{}\n--- operator:\n{}", c.yaml("syncalert", "team"), c.operator.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_alerts_once_per_channel_a_burst_is_throttled_and_the_success_recovers() {
    let ch = Channels::start().await;
    let c = Cluster::start(Setup { extra_yaml: &ch.yaml(""), ..Default::default() }).await;
    c.wait_ready("syncalert", "team").await;

    // A partially successful sync: one alert on each channel.
    c.sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    let (partial, phase) = sync(&c, "1", 1).await;
    assert_eq!(phase, "PartiallySuccessful");
    eventually("one Slack message and one e-mail", &c, || ch.slack.messages().len() == 1 && ch.subjects().len() == 1).await;
    let ns = c.ns.name();
    assert_eq!(ch.subjects(), [format!("[retl] Partially successful: users-api ({ns})")]);

    // Then only the rejected record is retried, and rejected again: Failed.
    let (failed, phase) = sync(&c, "2", 2).await;
    assert_eq!(phase, "Failed");
    eventually("a second alert, for the failure", &c, || ch.slack.messages().len() == 2 && ch.subjects().len() == 2).await;
    // Failed again, twice, within repeatInterval (1h): held back.
    sync(&c, "3", 3).await;
    sync(&c, "4", 4).await;
    // Fixed: the next sync succeeds, and closes the episode.
    c.sink.set(|b| b.reject_keys.clear());
    let (recovered, phase) = sync(&c, "5", 5).await;
    assert_eq!(phase, "Successful");
    eventually("a Recovered alert", &c, || ch.slack.messages().len() == 3 && ch.subjects().len() == 3).await;
    let h = &c;
    assert!(wait_until(Duration::from_secs(20), || async { reasons(h).len() >= 3 }).await);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Exactly these alerts, in this order, on every channel.
    assert_eq!(
        ch.subjects(),
        [
            format!("[retl] Partially successful: users-api ({ns})"),
            format!("[retl] Failed: users-api ({ns})"),
            format!("[retl] Recovered: users-api ({ns})"),
        ]
    );
    let texts = ch.slack_texts();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(texts[0].contains(&format!("Sync {partial} of Mapping users-api was partially successful")), "{}", texts[0]);
    assert!(texts[1].contains(&format!("Sync {failed} of Mapping users-api failed")), "{}", texts[1]);
    assert!(texts[2].contains(&format!("Sync {recovered} of Mapping users-api succeeded after 4 failed")), "{}", texts[2]);
    assert_eq!(reasons(&c), ["SyncPartiallySuccessful", "SyncFailed", "SyncRecovered"], "{:#?}", alert_events(&c));
    let related: Vec<Value> = alert_events(&c).iter().map(|e| e["related"]["name"].clone()).collect();
    assert_eq!(related, [partial.as_str(), failed.as_str(), recovered.as_str()].map(Value::from));

    // The e-mail, as received: envelope, headers, both parts.
    let mail = ch.smtp.messages().unwrap();
    let first = &mail[0];
    assert!(first.tls, "sent over STARTTLS");
    assert_eq!(first.user.as_deref(), Some(SMTP_USER), "logged in");
    assert_eq!(first.rcpt_tos, ["oncall@example.com", "data@example.com"]);
    assert!(first.message_id.as_deref().is_some_and(|id| id.contains("@example.com")), "{first:#?}");
    assert!(first.date.is_some(), "{first:#?}");
    let text = first.text.clone().unwrap_or_default();
    let html = first.html.clone().unwrap_or_default();
    for part in [&text, &html] {
        assert!(part.contains(&partial) && part.contains("users from Source wh") && part.contains("api, action upsert"), "{part}");
        assert!(part.contains("24 succeeded, 1 failed"), "{part}");
        assert!(part.contains(&format!("kubectl describe sync {partial} -n {ns}")), "{part}");
    }
    // The Slack payload is what an incoming webhook takes.
    let payload = &ch.slack.messages()[0].payload;
    assert_eq!(payload["channel"], "#data-alerts");
    assert!(payload["blocks"].as_array().is_some_and(|b| !b.is_empty()), "{payload:#}");

    // Who receives them, and how the last delivery went.
    let out = c.ns.kubectl(&["get", "syncalerts"]).unwrap();
    let header = out.stdout.lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(header, "NAME OUTCOMES CHANNELS RECIPIENTS READY LAST ALERT AGE", "{}", out.stdout);
    assert!(out.stdout.contains("slack,email,events") && out.stdout.contains("oncall@example.com, data@example.com"), "{}", out.stdout);
    let alert = c.ns.kubectl_json(&["get", "syncalert", "team"]).unwrap();
    let deliveries = alert["status"]["deliveries"].as_array().cloned().unwrap_or_default();
    assert_eq!(deliveries.len(), 3, "{alert:#}");
    assert!(deliveries.iter().all(|d| d["sync"] == recovered.as_str() && d["error"].is_null()), "{alert:#}");

    // No credential anywhere a person or a log collector reads.
    let events = serde_json::to_string(&alert_events(&c)).unwrap();
    for (place, text) in [("status", c.yaml("syncalert", "team")), ("Events", events), ("operator log", c.operator.logs())] {
        assert!(!text.contains(ch.slack.token()), "the webhook token in the {place}");
        assert!(!text.contains(SMTP_PASSWORD), "the SMTP password in the {place}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_channel_says_what_to_fix_and_never_holds_back_the_others() {
    let ch = Channels::start().await;
    // The Secret comes later: first the SyncAlert names a missing one.
    let yaml = ch.yaml("").replace("name: alerting, key", "name: alerting-later, key");
    let c = Cluster::start(Setup { extra_yaml: &yaml, ..Default::default() }).await;
    let h = &c;
    assert!(wait_until(Duration::from_secs(30), || async { h.condition("syncalert", "team", "Ready").is_some() }).await);
    let (reason, message) = c.reason("syncalert", "team", "Ready");
    assert_eq!(reason, "SecretNotFound", "{message}");
    assert!(message.contains("alerting-later"), "{message}");

    // The Secret appears: Ready follows (the Secret is watched).
    let secret = c.ns.kubectl_json(&["get", "secret", "alerting"]).unwrap();
    let mut copy =
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "alerting-later"}, "data": secret["data"]});
    copy["type"] = "Opaque".into();
    c.ns.apply_yaml(&copy.to_string()).expect("the Secret applies");
    c.wait_ready("syncalert", "team").await;

    // The webhook is gone (404): Slack fails for good, e-mail still goes out,
    // and the sync's own result is what it is.
    ch.slack.script([Answer::no_service()]);
    c.sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    let (_, phase) = sync(&c, "1", 1).await;
    assert_eq!(phase, "PartiallySuccessful", "alerts never change a sync's result");
    eventually("the e-mail goes out", &c, || ch.subjects().len() == 1).await;
    let h = &c;
    assert!(wait_until(Duration::from_secs(30), || async { h.reason("syncalert", "team", "Ready").0 == "WebhookNotFound" }).await);
    let (_, message) = c.reason("syncalert", "team", "Ready");
    assert!(message.contains("slack"), "{message}");
    assert!(!message.contains(ch.slack.token()), "{message}");
    assert_eq!(c.condition("syncalert", "team", "Ready").as_deref(), Some("False"));
    assert!(reasons(&c).contains(&"WebhookNotFound".to_string()), "an Event says so: {:#?}", alert_events(&c));
    assert_eq!(ch.slack.messages().len(), 0);
    assert_eq!(ch.slack.attempts().len(), 1, "a 404 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_operator_sends_no_alert_twice() {
    let ch = Channels::start().await;
    let c = Cluster::start(Setup { extra_yaml: &ch.yaml(""), ..Default::default() }).await;
    c.wait_ready("syncalert", "team").await;
    // Slack keeps the operator waiting (Retry-After) while it is killed.
    ch.slack.script([Answer::RateLimited { retry_after_secs: 20 }]);
    c.sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    let (_, phase) = sync(&c, "1", 1).await;
    assert_eq!(phase, "PartiallySuccessful");
    eventually("the operator is delivering", &c, || !ch.slack.attempts().is_empty()).await;
    c.operator.kill();
    let restarted = spawn_operator(&c.ns, &["--leader-lease", "none"]).await;
    let h = &c;
    let noted = wait_until(Duration::from_secs(60), || async {
        let a = h.ns.kubectl_json(&["get", "syncalert", "team"]).unwrap_or_default();
        a["status"]["deliveries"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["channel"] == "slack" && d["reason"] == "DeliveryNotConfirmed"))
    })
    .await;
    assert!(noted, "the cut-off delivery is noted: {}\n--- restarted operator:\n{}", c.yaml("syncalert", "team"), restarted.logs());
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(ch.slack.messages().len(), 0, "not sent again after the restart");
    assert!(ch.subjects().len() <= 1, "the e-mail at most once: {:?}", ch.subjects());
    assert_eq!(reasons(&c).iter().filter(|r| *r == "SyncPartiallySuccessful").count(), 1, "{:#?}", alert_events(&c));
}
