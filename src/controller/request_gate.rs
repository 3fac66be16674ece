//! Which of the operator's API requests go first. At a schedule tick every
//! Mapping on that schedule is due in the same millisecond, and what each
//! one waits for is the creation of its Sync (the scheduling lag a user
//! sees); everything else the controllers write then (Mapping status,
//! Events, history deletions, the Sync controller's Jobs and labels) can
//! trail it by seconds. So the requests share a fixed number of slots
//! (requests in flight: the API server's fairness queues a client's
//! requests beyond its share and refuses them beyond its queues), and a
//! routine request takes a slot only while no urgent one waits for it.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// Requests in flight at once, across the controllers that share the gate.
/// Enough to keep the API server busy, few enough that it queues rather
/// than refuses (measured in docs/benchmark.md "Operator at scale").
pub const REQUESTS_IN_FLIGHT: usize = 128;

pub struct RequestGate {
    slots: Semaphore,
    urgent_waiting: AtomicUsize,
    urgent_served: Notify,
}

/// A slot, held while its request is in flight.
struct Slot<'a> {
    _permit: Option<SemaphorePermit<'a>>,
}

impl Default for RequestGate {
    fn default() -> Self {
        RequestGate::new(REQUESTS_IN_FLIGHT)
    }
}

impl RequestGate {
    pub fn new(slots: usize) -> RequestGate {
        RequestGate { slots: Semaphore::new(slots.max(1)), urgent_waiting: AtomicUsize::new(0), urgent_served: Notify::new() }
    }

    /// Sends `request` (a future that makes one API request) once it has
    /// an urgent slot: it is on the path to a Sync's creation. The slot is
    /// held for that request alone, so a caller never holds one while it
    /// waits for another.
    pub async fn urgent<F: Future>(&self, request: F) -> F::Output {
        let _slot = self.urgent_slot().await;
        request.await
    }

    /// Sends `request` once it has a routine slot: once no urgent request waits.
    pub async fn routine<F: Future>(&self, request: F) -> F::Output {
        let _slot = self.routine_slot().await;
        request.await
    }

    async fn urgent_slot(&self) -> Slot<'_> {
        self.urgent_waiting.fetch_add(1, Ordering::AcqRel);
        // The semaphore is never closed; were it, the request goes anyway.
        let permit = self.slots.acquire().await.ok();
        if self.urgent_waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.urgent_served.notify_waiters();
        }
        Slot { _permit: permit }
    }

    async fn routine_slot(&self) -> Slot<'_> {
        loop {
            self.urgent_gone().await;
            let permit = self.slots.acquire().await.ok();
            // Queued behind routine requests, an urgent one may have come
            // meanwhile: the slot is its, not this request's.
            if self.urgent_waiting.load(Ordering::Acquire) == 0 {
                return Slot { _permit: permit };
            }
        }
    }

    async fn urgent_gone(&self) {
        loop {
            let served = self.urgent_served.notified();
            tokio::pin!(served);
            // Registered before the check, so a notice between the check
            // and the wait is not missed.
            served.as_mut().enable();
            if self.urgent_waiting.load(Ordering::Acquire) == 0 {
                return;
            }
            served.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// One slot, held; routine requests queue first, then urgent ones: once
    /// the slot frees, every urgent request is served before any routine one.
    #[tokio::test]
    async fn urgent_requests_go_before_routine_ones_that_waited_longer() {
        let gate = Arc::new(RequestGate::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = gate.urgent_slot().await;
        let mut tasks = Vec::new();
        for (i, urgent) in [(0, false), (1, false), (2, true), (3, true), (4, false), (5, true)] {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let request = async {
                    order.lock().unwrap_or_else(|e| e.into_inner()).push(i);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                };
                if urgent { gate.urgent(request).await } else { gate.routine(request).await }
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        for t in tasks {
            t.await.expect("a request task panicked");
        }
        let order = order.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(&order[..3], &[2, 3, 5], "urgent requests first, in order: {order:?}");
        let mut routine = order[3..].to_vec();
        routine.sort();
        assert_eq!(routine, vec![0, 1, 4], "then every routine one: {order:?}");
    }

    /// With no urgent request waiting, routine requests use every slot.
    #[tokio::test]
    async fn routine_requests_share_every_slot_when_nothing_is_urgent() {
        let gate = RequestGate::new(3);
        let a = gate.routine_slot().await;
        let b = gate.routine_slot().await;
        let c = gate.routine_slot().await;
        let fourth = tokio::time::timeout(Duration::from_millis(50), gate.routine(async {})).await;
        assert!(fourth.is_err(), "a fourth request must wait for a slot");
        drop((a, b, c));
        let fourth = tokio::time::timeout(Duration::from_secs(5), gate.routine(async {})).await;
        assert!(fourth.is_ok(), "a freed slot must serve the next request");
    }
}
