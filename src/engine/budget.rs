//! A Destination's shared budget, as one sync sees it: its share of the
//! Destination's `rateLimit`, waited for before each batch is sent. The
//! operator admits at most `maxConcurrentSyncs` Syncs of a Destination at
//! once and gives each an equal share, so the rates of all running Syncs
//! add up to at most the Destination's; a local run runs one Mapping at a
//! time and gets the whole rate.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::api::DestinationSpec;

/// The rate one sync may send at (`None`: no limit).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Share {
    pub records_per_second: Option<f64>,
    pub requests_per_second: Option<f64>,
}

impl Share {
    /// An equal share of `spec`'s rate limit among `running` syncs (at least one).
    fn of(spec: &DestinationSpec, running: u32) -> Share {
        let n = f64::from(running.max(1));
        let rate = spec.rate_limit.clone().unwrap_or_default();
        Share {
            records_per_second: rate.records_per_second.map(|r| f64::from(r) / n),
            requests_per_second: rate.requests_per_second.map(|r| f64::from(r) / n),
        }
    }

    /// All of `spec`'s rate, for a sync that runs alone (`retl run` runs
    /// one Mapping at a time).
    pub fn whole(spec: &DestinationSpec) -> Share {
        Share::of(spec, 1)
    }

    /// A share of `spec`'s rate for one of the Syncs the operator admits at
    /// once (`maxConcurrentSyncs`).
    pub fn per_admitted_sync(spec: &DestinationSpec) -> Share {
        Share::of(spec, spec.sync_slots().unwrap_or(1))
    }
}

/// Waits out a [`Share`]: one limiter for records, one for requests.
#[derive(Clone, Default)]
pub struct Budget {
    records: Option<Arc<DefaultDirectRateLimiter>>,
    requests: Option<Arc<DefaultDirectRateLimiter>>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget").field("records", &self.records.is_some()).field("requests", &self.requests.is_some()).finish()
    }
}

/// A quota of `per_second` (fractions allowed: 0.5 is one every 2 s) with
/// a burst of `burst`: in any window of T seconds at most `burst +
/// per_second × T` pass, so a small burst keeps every second near the rate.
fn limiter(per_second: f64, burst: u32) -> Option<Arc<DefaultDirectRateLimiter>> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst.max(1))?;
    Some(Arc::new(RateLimiter::direct(Quota::with_period(period)?.allow_burst(burst))))
}

impl Budget {
    /// `max_batch` is the largest batch the sync sends: the records
    /// limiter's burst holds one whole batch, or it could never pass.
    pub fn new(share: &Share, max_batch: u32) -> Budget {
        Budget {
            records: share.records_per_second.and_then(|r| limiter(r, max_batch)),
            requests: share.requests_per_second.and_then(|r| limiter(r, 1)),
        }
    }

    /// Waits until a batch of `records` records may be sent.
    pub async fn wait(&self, records: usize) {
        if let Some(l) = &self.requests {
            l.until_ready().await;
        }
        if let Some(l) = &self.records
            && let Some(n) = NonZeroU32::new(u32::try_from(records).unwrap_or(u32::MAX))
            && l.until_n_ready(n).await.is_err()
        {
            // Larger than the burst (never, with the batch size given to
            // `new`): wait for one cell rather than block for ever.
            l.until_ready().await;
        }
    }
}
