//! The alert channels against real servers: a Slack incoming webhook (an
//! HTTP server that checks messages as Slack does, testkit::slack) and an
//! SMTP server (aiosmtpd, testkit::smtp), each told to misbehave the way
//! real ones do.

use std::time::Duration;

use retl::alert::delivery::{DeliveryError, RetryPolicy};
use retl::alert::email::{self, OutgoingEmail};
use retl::alert::slack;
use retl::api::SmtpTls;
use serde_json::json;
use testkit::slack::{Answer, SlackWebhook};
use testkit::smtp::{Options, SmtpServer, Tls};

/// Three tries, waiting a few tens of milliseconds between them.
fn quick() -> RetryPolicy {
    RetryPolicy { attempts: 3, first_delay: Duration::from_millis(20), max_delay: Duration::from_millis(100) }
}

fn client() -> reqwest::Client {
    retl::install_crypto_provider();
    reqwest::Client::new()
}

fn alert() -> serde_json::Value {
    json!({
        "text": "Sync customers-29234 failed: the warehouse refused the query",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Sync failed"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*customers* → *crm*: the warehouse refused the query"}}
        ]
    })
}

fn statuses(hook: &SlackWebhook) -> Vec<u16> {
    hook.attempts().iter().map(|a| a.status).collect()
}

/// What a person could see of an error: its text, its debug form, its message.
fn shown(e: &DeliveryError) -> String {
    format!("{e} {e:?} {}", e.message())
}

#[tokio::test]
async fn slack_gets_the_message_once_and_accepts_it() {
    let hook = SlackWebhook::start().await.unwrap();
    slack::post(&client(), &hook.url(), &alert(), &quick()).await.unwrap();
    let messages = hook.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload, alert());
    assert_eq!(statuses(&hook), [200]);
}

#[tokio::test]
async fn slack_rate_limits_are_waited_out_as_slack_asks() {
    let hook = SlackWebhook::start().await.unwrap();
    hook.script([Answer::RateLimited { retry_after_secs: 1 }]);
    slack::post(&client(), &hook.url(), &alert(), &quick()).await.unwrap();
    let attempts = hook.attempts();
    assert_eq!(statuses(&hook), [429, 200]);
    let waited = attempts[1].at - attempts[0].at;
    assert!(waited >= Duration::from_secs(1), "retried {waited:?} after a Retry-After of 1 s");
    assert_eq!(hook.messages().len(), 1);
}

#[tokio::test]
async fn slack_server_errors_are_retried_until_delivered() {
    let hook = SlackWebhook::start().await.unwrap();
    hook.script([Answer::server_error(), Answer::server_error()]);
    slack::post(&client(), &hook.url(), &alert(), &quick()).await.unwrap();
    assert_eq!(statuses(&hook), [500, 500, 200]);
    assert_eq!(hook.messages().len(), 1);
}

#[tokio::test]
async fn slack_down_through_every_try_is_transient() {
    let hook = SlackWebhook::start().await.unwrap();
    hook.script(vec![Answer::server_error(); 3]);
    let err = slack::post(&client(), &hook.url(), &alert(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("SlackUnavailable", false), "{err}");
    assert!(err.message().contains("500 Internal Server Error") && err.message().contains("gave up after 3 attempts"), "{err}");
    assert_eq!(statuses(&hook), [500, 500, 500]);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/services/T000/B000/NoListenerToken99");
    let err = slack::post(&client(), &url, &alert(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("SlackUnavailable", false), "{err}");
    assert!(err.message().starts_with("cannot reach the Slack webhook: cannot connect"), "{err}");
    assert!(!shown(&err).contains("NoListenerToken99"), "{err:?}");
}

#[tokio::test]
async fn a_removed_webhook_is_permanent_and_its_url_is_not_shown() {
    let hook = SlackWebhook::start().await.unwrap();
    hook.script([Answer::no_service()]);
    let err = slack::post(&client(), &hook.url(), &alert(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("WebhookNotFound", true), "{err}");
    assert!(err.message().starts_with("the Slack webhook answered 404 Not Found: no_service; "), "{err}");
    assert!(err.message().contains("create a new incoming webhook"), "{err}");
    assert!(!shown(&err).contains(hook.token()), "{err:?}");
    assert_eq!(statuses(&hook), [404], "not retried");

    // A token Slack does not know (the webhook's URL was mistyped).
    let wrong = hook.url().replace(hook.token(), "MistypedToken12345");
    let err = slack::post(&client(), &wrong, &alert(), &quick()).await.unwrap_err();
    assert_eq!(err.reason(), "WebhookNotFound");
    assert!(!shown(&err).contains("MistypedToken12345"), "{err:?}");
    assert!(hook.messages().is_empty());
}

#[tokio::test]
async fn an_error_page_that_echoes_the_webhook_url_is_masked() {
    let hook = SlackWebhook::start().await.unwrap();
    hook.script([Answer::EchoUrl { status: 403 }]);
    let err = slack::post(&client(), &hook.url(), &alert(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("WebhookRejected", true), "{err}");
    let text = shown(&err);
    assert!(!text.contains(hook.token()) && !text.contains(&hook.url()), "{text}");
    assert!(!text.contains("services%2FT000%2FB000"), "percent-encoded path in {text}");
    assert!(err.message().contains("invalid_token: the request to ***"), "{err}");
}

#[tokio::test]
async fn a_message_slack_cannot_show_is_refused_with_slacks_reason() {
    let hook = SlackWebhook::start().await.unwrap();
    let err = slack::post(&client(), &hook.url(), &json!({"blocks": [{"type": "divider"}]}), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("WebhookRejected", true), "{err}");
    assert!(err.message().contains("400 Bad Request: no_text"), "{err}");
    let err = slack::post(&client(), &hook.url(), &json!({"text": "x", "blocks": [{"text": "no type"}]}), &quick()).await.unwrap_err();
    assert!(err.message().contains("invalid_blocks"), "{err}");
    assert!(hook.messages().is_empty());
}

const USER: &str = "alerts-sender";
const PASSWORD: &str = "c0rrect-h0rse-battery";

async fn smtp_server(tls: Tls, credentials: bool) -> SmtpServer {
    let credentials = credentials.then(|| (USER.to_string(), PASSWORD.to_string()));
    SmtpServer::start(Options { tls, credentials, echo_credentials: true }).await.unwrap()
}

fn settings(server: &SmtpServer, tls: SmtpTls, credentials: Option<(&str, &str)>) -> email::SmtpServer {
    email::SmtpServer {
        host: server.host().to_string(),
        port: server.port(),
        tls,
        credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        extra_root_certificate_pem: server.ca_pem().map(|p| p.as_bytes().to_vec()),
    }
}

fn mail() -> OutgoingEmail {
    OutgoingEmail {
        from: "retl <alerts@example.com>".into(),
        to: vec!["data-team@example.com".into(), "Óscar Ops <ops@example.org>".into()],
        subject: "Sync failed: customers → crm".into(),
        text: "Sync customers-29234 failed: the warehouse refused the query.\nSee kubectl describe sync customers-29234.".into(),
        html: "<p>Sync <b>customers-29234</b> failed: the warehouse refused the query.</p>".into(),
        message_id: "<customers-29234.email@retl.dev>".into(),
    }
}

#[tokio::test]
async fn an_alert_email_arrives_once_over_starttls_after_login() {
    let server = smtp_server(Tls::Starttls, true).await;
    let to = settings(&server, SmtpTls::Starttls, Some((USER, PASSWORD)));
    email::send(&to, &mail(), &quick()).await.unwrap();
    let messages = server.messages().unwrap();
    assert_eq!(messages.len(), 1, "{}", server.log());
    let m = &messages[0];
    assert_eq!(m.rcpt_tos, ["data-team@example.com", "ops@example.org"]);
    assert_eq!(m.mail_from, "alerts@example.com");
    assert!(m.tls, "the login and the message crossed encrypted");
    assert_eq!(m.user.as_deref(), Some(USER));
    assert_eq!(m.subject.as_deref(), Some("Sync failed: customers → crm"));
    assert_eq!(m.message_id.as_deref(), Some("customers-29234.email@retl.dev"));
    assert!(m.date.is_some(), "Date header");
    assert_eq!(m.from, ["alerts@example.com"]);
    assert_eq!(m.to, ["data-team@example.com", "ops@example.org"]);
    assert!(m.content_type.starts_with("multipart/alternative"), "{}", m.content_type);
    let text = m.text.as_deref().unwrap_or_default();
    assert!(text.contains("Sync customers-29234 failed") && text.contains("kubectl describe sync"), "{text}");
    let html = m.html.as_deref().unwrap_or_default();
    assert!(html.contains("<b>customers-29234</b>"), "{html}");
    assert!(m.headers.iter().any(|(k, v)| k == "Auto-Submitted" && v == "auto-generated"), "{:?}", m.headers);
}

#[tokio::test]
async fn an_implicit_tls_server_gets_the_message() {
    let server = smtp_server(Tls::Implicit, true).await;
    email::send(&settings(&server, SmtpTls::Tls, Some((USER, PASSWORD))), &mail(), &quick()).await.unwrap();
    let messages = server.messages().unwrap();
    assert_eq!(messages.len(), 1, "{}", server.log());
    assert!(messages[0].tls);
}

#[tokio::test]
async fn a_plain_relay_gets_the_message_and_a_bad_address_is_named() {
    let server = smtp_server(Tls::None, false).await;
    let to = settings(&server, SmtpTls::None, None);
    email::send(&to, &mail(), &quick()).await.unwrap();
    let messages = server.messages().unwrap();
    assert_eq!(messages.len(), 1, "{}", server.log());
    assert!(!messages[0].tls);

    let mut bad = mail();
    bad.to.push("ops.example.org".into());
    let err = email::send(&to, &bad, &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("InvalidAddress", true), "{err}");
    assert!(err.message().contains("\"ops.example.org\" is not an e-mail address"), "{err}");
    assert_eq!(server.messages().unwrap().len(), 1, "nothing sent");
}

#[tokio::test]
async fn a_451_is_retried_and_the_message_arrives_once() {
    let server = smtp_server(Tls::Starttls, true).await;
    server.reject_next(451, 1).await.unwrap();
    email::send(&settings(&server, SmtpTls::Starttls, Some((USER, PASSWORD))), &mail(), &quick()).await.unwrap();
    assert_eq!(server.messages().unwrap().len(), 1);
    assert_eq!(server.stats().await.unwrap().rejected, 1);
}

#[tokio::test]
async fn a_550_is_permanent() {
    let server = smtp_server(Tls::Starttls, true).await;
    server.reject_next(550, 1).await.unwrap();
    let err = email::send(&settings(&server, SmtpTls::Starttls, Some((USER, PASSWORD))), &mail(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("SmtpRejected", true), "{err}");
    assert!(err.message().contains("answered 550: 5.7.1 Message refused by policy"), "{err}");
    assert!(server.messages().unwrap().is_empty());
    assert_eq!(server.stats().await.unwrap().rejected, 1, "not retried");
}

#[tokio::test]
async fn a_refused_login_is_permanent_and_shows_no_credentials() {
    // The server echoes what it was sent in its 535 reply.
    let server = smtp_server(Tls::Starttls, true).await;
    let wrong = "Wr0ng-pa55word-here";
    let err = email::send(&settings(&server, SmtpTls::Starttls, Some((USER, wrong))), &mail(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("SmtpAuthenticationFailed", true), "{err}");
    assert!(err.message().contains("answered 535"), "{err}");
    let text = shown(&err);
    for secret in [wrong, USER, PASSWORD] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("***"), "the echo is masked, not dropped: {text}");
    assert_eq!(server.stats().await.unwrap().auth_failures, 1, "not retried");
    assert!(server.messages().unwrap().is_empty());
}

#[tokio::test]
async fn a_server_that_wants_a_login_says_so_when_none_is_set() {
    let server = smtp_server(Tls::Starttls, true).await;
    let err = email::send(&settings(&server, SmtpTls::Starttls, None), &mail(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("SmtpAuthenticationFailed", true), "{err}");
    assert!(err.message().contains("answered 530") && err.message().contains("set usernameSecretRef and passwordSecretRef"), "{err}");
    assert!(server.messages().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_transient_after_every_try() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let to = email::SmtpServer {
        host: "127.0.0.1".into(),
        port: closed.port(),
        tls: SmtpTls::Starttls,
        credentials: Some((USER.into(), PASSWORD.into())),
        extra_root_certificate_pem: None,
    };
    let err = email::send(&to, &mail(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("SmtpUnreachable", false), "{err}");
    assert!(err.message().contains(&format!("127.0.0.1:{}", closed.port())), "{err}");
    assert!(err.message().contains("gave up after 3 attempts"), "{err}");
}

#[tokio::test]
async fn starttls_is_required_when_asked_for() {
    let server = smtp_server(Tls::None, false).await;
    let err = email::send(&settings(&server, SmtpTls::Starttls, None), &mail(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("SmtpStarttlsUnavailable", true), "{err}");
    assert!(err.message().contains("does not offer STARTTLS") && err.message().contains("smtpTls: tls"), "{err}");
    assert!(server.messages().unwrap().is_empty());
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let server = smtp_server(Tls::Starttls, true).await;
    let mut to = settings(&server, SmtpTls::Starttls, Some((USER, PASSWORD)));
    to.extra_root_certificate_pem = None;
    let err = email::send(&to, &mail(), &quick()).await.unwrap_err();
    assert_eq!((err.reason(), err.is_permanent()), ("SmtpTlsFailed", true), "{err}");
    assert!(err.message().to_lowercase().contains("certificate"), "{err}");
    assert!(server.messages().unwrap().is_empty());
    assert_eq!(server.stats().await.unwrap().auth_failures, 0, "no login was tried");
}
