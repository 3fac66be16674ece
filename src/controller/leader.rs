//! Leader election with a coordination.k8s.io Lease, so that of several
//! operator replicas only one schedules. Optimistic concurrency does the
//! locking: every write carries the Lease's resourceVersion, and a Conflict
//! means another replica won.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_seconds: i32,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, lease_seconds: i32) -> LeaderElection {
        LeaderElection { api, name: name.to_string(), identity: identity.to_string(), lease_seconds }
    }

    /// One attempt: `Ok(true)` when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let mine = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec { acquire_time: Some(MicroTime(now)), ..mine }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let d = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(self.lease_seconds) as i64);
            t.0.checked_add(d).is_ok_and(|until| until < now)
        });
        if holder != self.identity && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let acquire_time = if holder == self.identity { spec.acquire_time.clone() } else { Some(MicroTime(now)) };
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
        lease.spec = Some(LeaseSpec { acquire_time, lease_transitions: Some(transitions), ..mine });
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads, then renews in the background; the
    /// returned token is cancelled if leadership is lost (the caller stops).
    pub async fn lead(self, stop: CancellationToken) -> Option<CancellationToken> {
        let retry = Duration::from_secs((self.lease_seconds / 3).max(1) as u64);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => tracing::info!(lease = %self.name, "another replica leads; waiting"),
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "cannot read the Lease"),
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(retry) => {}
            }
        }
        tracing::info!(lease = %self.name, identity = %self.identity, "leading");
        let lost = CancellationToken::new();
        let signal = lost.clone();
        tokio::spawn(async move {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew the Lease");
                        if last_renewal.elapsed() > Duration::from_secs(self.lease_seconds as u64) {
                            break;
                        }
                    }
                }
            }
            tracing::error!(lease = %self.name, "lost leadership; stopping");
            signal.cancel();
        });
        Some(lost)
    }
}
