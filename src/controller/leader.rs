//! Leader election with a coordination.k8s.io Lease, so that of several
//! operator replicas only one reconciles, as client-go's leaderelection does:
//!
//! - Optimistic concurrency does the locking: every write carries the
//!   Lease's resourceVersion, and a Conflict means another replica won.
//! - A holder's Lease expires when this replica has seen it unchanged for
//!   a lease duration *by its own clock*: another replica's `renewTime` is
//!   never compared with this one's clock, so clock skew cannot make two
//!   leaders.
//! - The leader renews every retry period and stops leading when it has not
//!   renewed within the renew deadline, shorter than the lease duration, so
//!   it stops before anyone else may take over.
//! - On shutdown the leader releases the Lease (no holder), so a standby
//!   takes over at its next retry instead of waiting for expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// client-go's defaults.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub lease: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { lease: Duration::from_secs(15), renew_deadline: Duration::from_secs(10), retry: Duration::from_secs(2) }
    }
}

/// Another replica's Lease record as this replica last saw it, and when it
/// last saw it change (by this replica's clock).
#[derive(Clone, Debug, PartialEq)]
struct Observed {
    record: (String, Option<Timestamp>, Option<i32>),
    since: Instant,
}

impl Observed {
    /// Notes what the Lease says now; returns whether its holder has let it
    /// expire: unchanged for `lease` (or the holder's own shorter duration,
    /// as a released Lease says) by this replica's clock.
    fn update(seen: &mut Option<Observed>, spec: &LeaseSpec, lease: Duration, now: Instant) -> bool {
        let record = (spec.holder_identity.clone().unwrap_or_default(), spec.renew_time.as_ref().map(|t| t.0), spec.lease_duration_seconds);
        match seen {
            Some(o) if o.record == record => {}
            _ => *seen = Some(Observed { record, since: now }),
        }
        let duration = spec.lease_duration_seconds.map(|s| Duration::from_secs(s.max(0) as u64)).unwrap_or(lease);
        seen.as_ref().is_some_and(|o| now.duration_since(o.since) >= duration.min(lease))
    }
}

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    seen: Option<Observed>,
    /// Whether this replica takes part in the election (it can read and
    /// write the Lease): its readiness.
    ready: Arc<AtomicBool>,
}

/// This replica leads until `lost` is cancelled; [`Leadership::release`]
/// gives the Lease up.
pub struct Leadership {
    pub lost: CancellationToken,
    renewing: CancellationToken,
    task: tokio::task::JoinHandle<LeaderElection>,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing, ready: Arc<AtomicBool>) -> LeaderElection {
        LeaderElection { api, name: name.to_string(), identity: identity.to_string(), timing, seen: None, ready }
    }

    /// One attempt: `Ok(true)` when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let mine = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease.as_secs() as i32),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec { acquire_time: Some(MicroTime(now)), lease_transitions: Some(0), ..mine }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_me = holder == self.identity;
        if !held_by_me && !holder.is_empty() && !Observed::update(&mut self.seen, &spec, self.timing.lease, Instant::now()) {
            return Ok(false);
        }
        let acquire_time = if held_by_me { spec.acquire_time.clone() } else { Some(MicroTime(now)) };
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_me);
        lease.spec = Some(LeaseSpec { acquire_time, lease_transitions: Some(transitions), ..mine });
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads (`None` when `stop` came first), then
    /// renews in the background.
    pub async fn lead(mut self, stop: CancellationToken) -> Option<Leadership> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {
                    self.ready.store(true, Ordering::Relaxed);
                    tracing::info!(lease = %self.name, "another replica leads; waiting");
                }
                Err(e) => {
                    // Not ready: this replica could not take over if the leader went.
                    self.ready.store(false, Ordering::Relaxed);
                    tracing::warn!(lease = %self.name, error = %super::secrets::short(&e), "cannot read the Lease");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(self.timing.retry) => {}
            }
        }
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!(lease = %self.name, identity = %self.identity, "leading");
        let lost = CancellationToken::new();
        let renewing = stop.child_token();
        let task = tokio::spawn(self.renew(lost.clone(), renewing.clone()));
        Some(Leadership { lost, renewing, task })
    }

    /// Renews every retry period until `renewing` is cancelled; cancels
    /// `lost` when the Lease went to another replica or the renew deadline
    /// passed without a renewal.
    async fn renew(mut self, lost: CancellationToken, renewing: CancellationToken) -> LeaderElection {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = renewing.cancelled() => return self,
                _ = tokio::time::sleep(self.timing.retry) => {}
            }
            let left = self.timing.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!(lease = %self.name, "another replica took the Lease; stopping");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %super::secrets::short(&e), "cannot renew the Lease"),
                Err(_) => {}
            }
            if renewed.elapsed() >= self.timing.renew_deadline {
                tracing::error!(lease = %self.name, deadline = ?self.timing.renew_deadline, "not renewed within the renew deadline; stopping");
                break;
            }
        }
        self.ready.store(false, Ordering::Relaxed);
        lost.cancel();
        self
    }
}

impl Leadership {
    /// Stops renewing and, if this replica still holds the Lease, gives it
    /// up: no holder and a one-second duration, so that a standby takes over
    /// at its next retry. Call it after the controllers stopped.
    pub async fn release(self) {
        self.renewing.cancel();
        let Ok(election) = self.task.await else { return };
        if self.lost.is_cancelled() {
            return;
        }
        let result = async {
            let Some(mut lease) = election.api.get_opt(&election.name).await? else { return Ok(()) };
            let spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(election.identity.as_str()) {
                return Ok(());
            }
            lease.spec = Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                renew_time: Some(MicroTime(Timestamp::now())),
                acquire_time: None,
                ..spec
            });
            election.api.replace(&election.name, &PostParams::default(), &lease).await.map(|_| ())
        };
        match result.await {
            Ok(()) => tracing::info!(lease = %election.name, "released the Lease"),
            Err(e) => tracing::warn!(lease = %election.name, error = %super::secrets::short(&e), "could not release the Lease; it expires"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed.parse().unwrap())),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_expires_by_this_replicas_clock_not_the_holders() {
        let lease = Duration::from_secs(15);
        let t0 = Instant::now();
        let mut seen = None;
        // The holder's clock is an hour behind: its renewTime looks long
        // expired, but it keeps renewing, so it is not.
        let old = spec("a", "2020-01-01T00:00:00Z", 15);
        assert!(!Observed::update(&mut seen, &old, lease, t0), "first sight is never expired");
        assert!(!Observed::update(&mut seen, &old, lease, t0 + Duration::from_secs(14)));
        let renewed = spec("a", "2020-01-01T00:00:10Z", 15);
        assert!(!Observed::update(&mut seen, &renewed, lease, t0 + Duration::from_secs(16)), "a renewal restarts the clock");
        assert!(!Observed::update(&mut seen, &renewed, lease, t0 + Duration::from_secs(30)));
        assert!(Observed::update(&mut seen, &renewed, lease, t0 + Duration::from_secs(31)), "unchanged for a lease duration");

        // The holder's clock is an hour ahead: its renewTime is in the
        // future, yet it expires once it stops renewing.
        let mut seen = None;
        let ahead = spec("a", "2099-01-01T00:00:00Z", 15);
        assert!(!Observed::update(&mut seen, &ahead, lease, t0));
        assert!(Observed::update(&mut seen, &ahead, lease, t0 + Duration::from_secs(15)));
    }

    #[test]
    fn the_renew_deadline_is_shorter_than_the_lease() {
        let t = Timing::default();
        assert!(t.retry < t.renew_deadline && t.renew_deadline < t.lease, "{t:?}");
    }
}
