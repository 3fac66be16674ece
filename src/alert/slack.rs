//! Posting an alert to a Slack incoming webhook
//! (<https://api.slack.com/messaging/webhooks>).
//!
//! The webhook URL is a credential: anyone who has it can post to the
//! channel, and its path is the token. It never appears in an error, a log
//! line or a condition, and where a reply or a transport error echoes it
//! (or its token), that part is masked.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use super::delivery::{DeliveryError, Failed, RetryPolicy, snippet, with_retries};
use crate::mask::Masker;

/// How long one request may take, connecting included; Slack answers in
/// well under a second when it is well.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `Retry-After` that is waited for. Slack's rate limit for
/// incoming webhooks is about one message per second per channel, and its
/// 429s ask for a few seconds; a longer wait means a burst well past that
/// limit. A delivery holds up the alerts behind it, so past this it ends
/// `Transient` (`SlackRateLimited`) at once rather than sleeping on it.
/// Not capped by [`RetryPolicy::max_delay`]: trying again before the time
/// Slack asked for only earns another 429 and wastes a try.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How much of a reply goes into a message.
const REPLY_CHARS: usize = 300;

/// Checks that `url` can be a webhook URL: absolute, `https` (or `http`,
/// for a relay inside the cluster), with a host. The error never includes
/// the URL or any part of it (it is a credential).
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    parse(url).map(|_| ())
}

fn parse(url: &str) -> Result<reqwest::Url, String> {
    // url's errors name the problem, never the input.
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| format!("the webhook URL is not an absolute URL ({e})"))?;
    // The scheme is not quoted: text before a colon may be part of a pasted token.
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("the webhook URL must start with https://".to_string());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the webhook URL has no host".to_string());
    }
    Ok(parsed)
}

/// Posts `payload` (a JSON object such as `{"text": ..., "blocks": [...]}`)
/// to the webhook, retrying as `retry` says.
///
/// Outcomes: any 2xx is delivered. 429 waits for `Retry-After` (up to
/// [`MAX_RETRY_AFTER`]), 5xx, 408, timeouts and connection errors wait
/// as the policy says; either ends `Transient` when the tries are used up.
/// 404 and 410 end `Permanent` `WebhookNotFound` (the webhook, or its
/// channel, is gone); any other answer ends `Permanent` `WebhookRejected`,
/// with the start of what Slack said (masked). Redirects are followed as
/// `client` is configured to.
pub async fn post(
    client: &reqwest::Client,
    webhook_url: &str,
    payload: &serde_json::Value,
    retry: &RetryPolicy,
) -> Result<(), DeliveryError> {
    let url = parse(webhook_url).map_err(|message| DeliveryError::Permanent { reason: "InvalidWebhookUrl", message })?;
    let masker = url_masker(webhook_url, &url);
    let body = bytes::Bytes::from(serde_json::to_vec(payload).map_err(|e| DeliveryError::Permanent {
        reason: "InvalidPayload",
        message: format!("the Slack message cannot be encoded as JSON ({e})"),
    })?);
    with_retries(retry, "slack", || attempt(client, &url, &body, &masker)).await
}

/// The URL in every form a server or a transport error may show it: as
/// given, as parsed, its path (the token is in it), its last segment (the
/// token alone) and its query.
fn url_masker(given: &str, url: &reqwest::Url) -> Masker {
    let path = url.path();
    let last = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or_default();
    Masker::from_values([given.trim(), url.as_str(), path, path.trim_start_matches('/'), last, url.query().unwrap_or_default()])
}

async fn attempt(client: &reqwest::Client, url: &reqwest::Url, body: &bytes::Bytes, masker: &Masker) -> Result<(), Failed> {
    let response = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .timeout(REQUEST_TIMEOUT)
        .body(body.clone())
        .send()
        .await
        .map_err(|e| {
            Failed::retry(
                "SlackUnavailable",
                masker.owned(format!("cannot reach the Slack webhook: {}", crate::destination::http::describe(&e))),
            )
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = crate::destination::http::retry_after(response.headers());
    // A reply that breaks off is still a refusal; what arrived is enough to show.
    let text = response.text().await.unwrap_or_default();
    // Masked before it is cut short: a token cut in half would no longer match.
    let reply = snippet(&masker.owned(text), REPLY_CHARS);
    Err(judge(status, retry_after, &reply))
}

/// What an answer other than 2xx means.
fn judge(status: StatusCode, retry_after: Option<Duration>, reply: &str) -> Failed {
    let said = format!("the Slack webhook answered {status}: {reply}");
    match status.as_u16() {
        429 => match retry_after {
            Some(wait) if wait > MAX_RETRY_AFTER => Failed::give_up(
                "SlackRateLimited",
                format!(
                    "{said}; Slack asked to wait {} s before the next message, \
                     longer than retl waits ({} s): too many alerts go to this webhook at once",
                    wait.as_secs(),
                    MAX_RETRY_AFTER.as_secs()
                ),
            ),
            Some(wait) => Failed::retry_after("SlackRateLimited", format!("{said} (rate limited)"), wait),
            None => Failed::retry("SlackRateLimited", format!("{said} (rate limited)")),
        },
        408 | 500..=599 => Failed::retry("SlackUnavailable", said),
        404 | 410 => Failed::permanent(
            "WebhookNotFound",
            format!(
                "{said}; the webhook was removed, its channel was deleted or archived, or the URL is wrong; \
                 create a new incoming webhook in Slack and put its URL in the Secret"
            ),
        ),
        401 | 403 => Failed::permanent(
            "WebhookRejected",
            format!(
                "{said}; the webhook's token was revoked, or its app may no longer post to that channel; \
                 create a new incoming webhook in Slack and put its URL in the Secret"
            ),
        ),
        400 | 413 | 422 => Failed::permanent(
            "WebhookRejected",
            format!("{said}; Slack refused the message itself (this is a bug in retl's alert message; please report it with this text)"),
        ),
        _ => Failed::permanent("WebhookRejected", format!("{said}; check that the URL in the Secret is a Slack incoming webhook")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_checked_without_quoting_them() {
        assert_eq!(check_webhook_url("https://hooks.slack.com/services/T0/B0/abc\n"), Ok(()));
        assert_eq!(check_webhook_url("http://relay.monitoring.svc:8080/hook"), Ok(()));
        for (url, why) in [
            ("hooks.slack.com/services/T0/B0/s3cr3t", "not an absolute URL"),
            ("xoxb-s3cr3t:x", "must start with https://"),
            ("ftp://files.example.com/s3cr3t", "must start with https://"),
            ("https://?s3cr3t", "empty host"),
        ] {
            let err = check_webhook_url(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn every_form_of_the_url_and_its_token_is_masked() {
        let given = "https://hooks.slack.com/services/T000/B000/Tok3nTok3n?x=Qu3ryQu3ry";
        let url = parse(given).unwrap();
        let m = url_masker(given, &url);
        let echoed = "bad: https://hooks.slack.com/services/T000/B000/Tok3nTok3n?x=Qu3ryQu3ry, \
                      path services/T000/B000/Tok3nTok3n, token Tok3nTok3n, %2Fservices%2FT000%2FB000%2FTok3nTok3n";
        let masked = m.apply(echoed);
        for secret in ["Tok3nTok3n", "Qu3ryQu3ry"] {
            assert!(!masked.contains(secret), "{masked}");
        }
        assert!(masked.contains("***"), "{masked}");
    }

    #[test]
    fn answers_are_judged_as_slack_means_them() {
        let judged = |code: u16, after: Option<u64>| {
            let f = judge(StatusCode::from_u16(code).unwrap(), after.map(Duration::from_secs), "x");
            format!("{f:?}")
        };
        assert!(judged(429, Some(1)).contains("After(1s)"));
        assert!(judged(429, Some(61)).contains("Stop") && judged(429, Some(61)).contains("Transient"));
        assert!(judged(503, None).contains("SlackUnavailable") && judged(503, None).contains("Backoff"));
        assert!(judged(410, None).contains("WebhookNotFound") && judged(410, None).contains("Permanent"));
        assert!(judged(403, None).contains("WebhookRejected"));
        assert!(judged(302, None).contains("WebhookRejected"));
    }
}
