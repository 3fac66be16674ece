//! SyncAlerts in a local run (`retl run -f DIR`), with the same messages and
//! rules as in the operator: a Slack webhook and a real SMTP server receive
//! one alert per outcome, failures in a row are throttled, the success after
//! them recovers, and a bad SyncAlert is refused with what to fix.

use std::path::Path;
use std::process::{Command, Output};

use testkit::sink::Sink;
use testkit::slack::SlackWebhook;
use testkit::smtp::{Options, SmtpServer};

use super::{http_setup, text};

fn alert_yaml(smtp: &SmtpServer, extra: &str) -> String {
    format!(
        r##"apiVersion: retl.dev/v1alpha1
kind: SyncAlert
metadata: {{name: team}}
spec:
  slack:
    webhookUrlSecretRef: {{name: alerting, key: slack-url}}
  email:
    to: [oncall@example.com]
    from: retl@example.com
    smtpHost: "{host}"
    smtpPort: {port}
    smtpTls: none
{extra}"##,
        host = smtp.host(),
        port = smtp.port()
    )
}

/// `retl run -f .` with the webhook URL in the environment, as a local run
/// takes Secrets; off the async runtime that serves the webhook.
async fn run(dir: &Path, slack_url: &str) -> Output {
    let (dir, url) = (dir.to_path_buf(), slack_url.to_string());
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_retl"))
            .args(["run", "-f", "."])
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("RETL_SECRET_ALERTING_SLACK_URL", url)
            .output()
            .expect("run retl")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_alerts_once_per_outcome_and_recovers() {
    let sink = Sink::start().await.unwrap();
    let slack = SlackWebhook::start().await.unwrap();
    let smtp = SmtpServer::start(Options::default()).await.expect("an SMTP server");
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 5, &sink.url(), "");
    std::fs::write(tmp.path().join("alert.yaml"), alert_yaml(&smtp, "")).unwrap();
    let subjects = || smtp.messages().unwrap().iter().map(|m| m.subject.clone().unwrap_or_default()).collect::<Vec<_>>();

    sink.set(|b| {
        b.reject_keys.insert("3".into());
    });
    let first = run(tmp.path(), &slack.url()).await;
    let out = text(&first);
    assert!(first.status.success(), "a partial success exits 0: {out}");
    assert!(out.contains("SyncAlert team: PartiallySuccessful: Sync users-api-"), "the in-app notice is printed: {out}");
    assert_eq!(subjects(), ["[retl] Partially successful: users-api (default)"]);
    assert_eq!(slack.messages().len(), 1);
    // Only the rejected record is retried, and rejected again: Failed.
    let second = run(tmp.path(), &slack.url()).await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert_eq!(subjects().len(), 2);
    // The same failure again, within repeatInterval (1h): held back.
    let third = run(tmp.path(), &slack.url()).await;
    assert!(!text(&third).contains("SyncAlert team:"), "{}", text(&third));
    assert_eq!((subjects().len(), slack.messages().len()), (2, 2));
    // Fixed: recovered.
    sink.set(|b| b.reject_keys.clear());
    let fourth = run(tmp.path(), &slack.url()).await;
    assert!(fourth.status.success(), "{}", text(&fourth));
    assert_eq!(
        subjects(),
        ["[retl] Partially successful: users-api (default)", "[retl] Failed: users-api (default)", "[retl] Recovered: users-api (default)",]
    );
    let texts: Vec<String> = slack.messages().iter().map(|m| m.payload["text"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(texts.len(), 3);
    assert!(texts[2].contains("succeeded after 3 failed or partially successful sync(s)"), "{}", texts[2]);
    // As received (run with --nocapture to read them; docs/alerts.md shows them).
    eprintln!("--- e-mail as received:\n{}", String::from_utf8_lossy(&smtp.messages().unwrap()[1].raw));
    eprintln!("--- Slack payload as received:\n{:#}", slack.messages()[1].payload);
    let mail = &smtp.messages().unwrap()[1];
    let body = mail.text.clone().unwrap_or_default();
    assert!(body.contains("retl history -f . --mapping users-api --details"), "how to see more: {body}");
    assert!(mail.html.as_deref().is_some_and(|h| h.contains("users-api")), "{mail:#?}");
    // The alert book survives between runs, next to the manifests.
    let book = std::fs::read_to_string(tmp.path().join(".retl/alerts/default.team.json")).expect("the alert book");
    for o in [&first, &second, &third, &fourth] {
        assert!(!text(o).contains(slack.token()), "the webhook token is never printed");
    }
    assert!(!book.contains(slack.token()), "nor kept in the book");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sync_alert_is_refused_with_what_to_fix_before_anything_is_sent() {
    let sink = Sink::start().await.unwrap();
    let smtp = SmtpServer::start(Options::default()).await.expect("an SMTP server");
    let cases: [(&str, &str, &str); 5] = [
        ("", "not-a-url", "is not"),
        ("", "", "RETL_SECRET_ALERTING_SLACK_URL"),
        ("  outcomes: [Failed, Sometimes]\n", "http://127.0.0.1:9/hook", "Sometimes"),
        ("  repeatInterval: soon\n", "http://127.0.0.1:9/hook", "repeatInterval"),
        ("  mappingSelector: {matchExpressions: [{key: team, operator: Maybe}]}\n", "http://127.0.0.1:9/hook", "mappingSelector"),
    ];
    for (extra, url, says) in cases {
        let tmp = tempfile::tempdir().unwrap();
        http_setup(tmp.path(), 3, &sink.url(), "");
        std::fs::write(tmp.path().join("alert.yaml"), alert_yaml(&smtp, extra)).unwrap();
        let (dir, url2) = (tmp.path().to_path_buf(), url.to_string());
        let o = tokio::task::spawn_blocking(move || {
            let mut c = Command::new(env!("CARGO_BIN_EXE_retl"));
            c.args(["run", "-f", "."]).current_dir(dir).env_remove("RUST_LOG");
            if !url2.is_empty() {
                c.env("RETL_SECRET_ALERTING_SLACK_URL", url2);
            }
            c.output().expect("run retl")
        })
        .await
        .unwrap();
        let out = text(&o);
        assert!(!o.status.success(), "{extra:?} {url:?}: refused: {out}");
        assert!(out.contains(says), "{extra:?} {url:?}: says {says:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    let empty_to = alert_yaml(&smtp, "").replace("to: [oncall@example.com]", "to: []");
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 3, &sink.url(), "");
    std::fs::write(tmp.path().join("alert.yaml"), empty_to).unwrap();
    let o = run(tmp.path(), "http://127.0.0.1:9/hook").await;
    assert!(!o.status.success() && text(&o).contains("spec.email.to"), "{}", text(&o));
    assert!(sink.received().is_empty(), "nothing was synced");
}
