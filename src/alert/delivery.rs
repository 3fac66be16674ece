//! What delivery over every channel shares: how often and how long one
//! message is retried ([`RetryPolicy`]), and what a delivery that did not
//! succeed ends with ([`DeliveryError`]), whose reason and message become a
//! condition on the SyncAlert.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

/// How one message is retried on one channel: `attempts` tries in all, the
/// waits between them doubling from `first_delay` up to `max_delay`, each
/// plus a random part of up to its own length (so that many alerts failing
/// together do not all retry in the same instant). A server that says how
/// long to wait (Slack's `Retry-After`) is listened to instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; 0 counts as 1.
    pub attempts: u32,
    /// Wait after the first failed try.
    pub first_delay: Duration,
    /// Longest wait between two tries (before the random part).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 tries, waiting about 1, 2, 4 and 8 s between them: a channel down
    /// for a quarter of a minute still gets the alert, and a dead one is
    /// reported within about half a minute.
    fn default() -> Self {
        RetryPolicy { attempts: 5, first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay.max(self.first_delay))
            .with_factor(2.0)
            .with_max_times(self.attempts.max(1) as usize - 1)
            .with_jitter()
    }
}

/// Why a message was not delivered. `reason` is one CamelCase word for the
/// `reason` of a Kubernetes condition (`WebhookNotFound`, `SmtpRejected`,
/// ...); the message says what happened and what to change. Neither ever
/// holds a credential (a webhook URL, an SMTP user name or password), even
/// when the server echoed it back.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum DeliveryError {
    /// Trying again cannot help until someone changes the configuration
    /// (a deleted webhook, a refused password, an address that is not one).
    #[error("{message}")]
    Permanent { reason: &'static str, message: String },
    /// The channel did not take the message on any attempt of the
    /// [`RetryPolicy`] (unreachable, overloaded, rate-limited); a later
    /// delivery may well succeed.
    #[error("{message}")]
    Transient { reason: &'static str, message: String },
}

impl DeliveryError {
    /// The condition reason, e.g. `WebhookNotFound`.
    pub fn reason(&self) -> &'static str {
        match self {
            DeliveryError::Permanent { reason, .. } | DeliveryError::Transient { reason, .. } => reason,
        }
    }

    /// What happened and what to change, for a person.
    pub fn message(&self) -> &str {
        match self {
            DeliveryError::Permanent { message, .. } | DeliveryError::Transient { message, .. } => message,
        }
    }

    /// Whether only a change of configuration can make delivery succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Permanent { .. })
    }
}

/// One failed attempt, and what it means for the next one.
#[derive(Debug)]
pub(crate) struct Failed {
    error: DeliveryError,
    next: Next,
}

#[derive(Debug, Clone, Copy)]
enum Next {
    /// Wait as the policy says, then try again.
    Backoff,
    /// Wait this long (the server asked for it), then try again.
    After(Duration),
    /// Do not try again.
    Stop,
}

impl Failed {
    /// Retrying cannot help.
    pub(crate) fn permanent(reason: &'static str, message: String) -> Failed {
        Failed { error: DeliveryError::Permanent { reason, message }, next: Next::Stop }
    }

    /// Try again after the policy's wait.
    pub(crate) fn retry(reason: &'static str, message: String) -> Failed {
        Failed { error: DeliveryError::Transient { reason, message }, next: Next::Backoff }
    }

    /// Try again after `wait`, as the server asked.
    pub(crate) fn retry_after(reason: &'static str, message: String, wait: Duration) -> Failed {
        Failed { error: DeliveryError::Transient { reason, message }, next: Next::After(wait) }
    }

    /// A transient failure not worth waiting for now (the server asked for
    /// a longer wait than a delivery may take); a later delivery may succeed.
    pub(crate) fn give_up(reason: &'static str, message: String) -> Failed {
        Failed { error: DeliveryError::Transient { reason, message }, next: Next::Stop }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's tries
/// are used up. A transient error says how many tries were made, and over
/// how long, so that the person reading it knows retl did not give up at
/// the first hiccup.
pub(crate) async fn with_retries<F, Fut>(policy: &RetryPolicy, channel: &'static str, mut attempt: F) -> Result<(), DeliveryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failed>>,
{
    let started = Instant::now();
    let mut tries = 0u32;
    let result = (|| {
        tries += 1;
        attempt()
    })
    .retry(policy.backoff())
    .when(|f: &Failed| !matches!(f.next, Next::Stop))
    .adjust(|f: &Failed, planned| match f.next {
        // The server's wait replaces the policy's, but only while the policy
        // still allows another try.
        Next::After(wait) => planned.map(|_| wait),
        _ => planned,
    })
    .notify(|f: &Failed, wait| {
        // Messages are masked where they are made: nothing secret reaches the log.
        tracing::debug!(channel, reason = f.error.reason(), error = %f.error, ?wait, "alert delivery failed; trying again");
    })
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(Failed { error: DeliveryError::Transient { reason, message }, .. }) => {
            let took = started.elapsed().as_secs_f64();
            let took = if took < 10.0 { format!("{took:.1}") } else { format!("{took:.0}") };
            let tries = if tries == 1 { "1 attempt".to_string() } else { format!("{tries} attempts") };
            Err(DeliveryError::Transient { reason, message: format!("{message} (gave up after {tries} in {took} s)") })
        }
        Err(Failed { error, .. }) => Err(error),
    }
}

/// The first `max` characters of a server's reply, on one line.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match t.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None if t.is_empty() => "(empty reply)".to_string(),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn the_default_policy_waits_about_one_two_four_eight_seconds() {
        let waits: Vec<Duration> = RetryPolicy::default().backoff().build().collect();
        assert_eq!(waits.len(), 4, "5 tries, 4 waits");
        for (wait, base) in waits.iter().zip([1, 2, 4, 8]) {
            let base = Duration::from_secs(base);
            assert!(*wait >= base && *wait <= base * 2, "{wait:?} for {base:?}");
        }
        let one: Vec<Duration> = RetryPolicy { attempts: 0, ..RetryPolicy::default() }.backoff().build().collect();
        assert!(one.is_empty(), "0 tries means one try and no retry");
    }

    fn quick() -> RetryPolicy {
        RetryPolicy { attempts: 3, first_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_counted_permanent_ones_are_not() {
        let mut calls = 0;
        let err = with_retries(&quick(), "test", || {
            calls += 1;
            async { Err(Failed::retry("Down", "it is down".into())) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(err.reason(), "Down");
        assert!(!err.is_permanent());
        assert!(err.message().starts_with("it is down (gave up after 3 attempts in "), "{err}");

        let mut calls = 0;
        let err = with_retries(&quick(), "test", || {
            calls += 1;
            async { Err(Failed::permanent("Gone", "it is gone".into())) }
        })
        .await
        .unwrap_err();
        assert_eq!((calls, err.clone()), (1, DeliveryError::Permanent { reason: "Gone", message: "it is gone".into() }));

        let mut calls = 0;
        let result = with_retries(&quick(), "test", || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(Failed::retry_after("Busy", "busy".into(), Duration::from_millis(1))) } else { Ok(()) } }
        })
        .await;
        assert_eq!((calls, result), (3, Ok(())));
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet("  a\n  b ", 300), "a b");
        assert_eq!(snippet("", 300), "(empty reply)");
        assert_eq!(snippet(&"é".repeat(400), 300), format!("{}…", "é".repeat(300)));
    }
}
