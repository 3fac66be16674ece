//! Map → load → commit: reads the staged changes page by page, maps each
//! row, sends full batches with bounded concurrency, and commits every batch
//! as soon as the destination answered it.
//!
//! The three run side by side, joined by bounded channels: while one page is
//! mapped the next is read, and while answered batches are committed the
//! next ones are mapped and sent. Memory holds at most two pages and twice
//! the batches in flight, whatever the size of the model.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::decide::{Decider, Decision};
use super::tally::Tally;
use super::{EngineError, Observer, SyncContext};
use crate::api::ChangeKind;
use crate::destination::{Delivery, Destination, DestinationError, OutRecord};
use crate::record::codes;
use crate::warehouse::{DiffRequest, OutcomeKind, RecordOutcome, StagedChange, StateScope, Warehouse};

/// Staged changes read per page.
const PAGE: usize = 1000;
/// Most records in one batch, whatever a destination asks for.
const MAX_BATCH_SIZE: usize = crate::destination::MAX_BATCH_SIZE;

/// What the committer receives.
enum Answered {
    /// A page's changes settled without sending (skipped, or rejected before
    /// sending), and how many changes that page held.
    Settled { seen: u64, outcomes: Vec<RecordOutcome> },
    /// A batch the destination answered (or failed to). The permit keeps the
    /// batch counted against the memory bound until it is committed.
    Batch {
        /// The batch's number in this sync, when its new keys were marked in
        /// flight (the commit clears the mark).
        marked: Option<i64>,
        hashes: Vec<String>,
        records: Vec<OutRecord>,
        result: Result<Vec<Delivery>, DestinationError>,
        held: OwnedSemaphorePermit,
    },
}

/// A full batch, mapped, on its way to be sent. The permit keeps it
/// counted against the memory bound until it is committed.
struct Full {
    number: i64,
    batch: Vec<(OutRecord, String)>,
    held: OwnedSemaphorePermit,
}

/// What to do with one staged change.
enum Prepared {
    /// Settled without sending: skipped, or rejected before sending.
    Settled(RecordOutcome),
    /// To be sent; the hash goes to the snapshot once it is accepted.
    Send(OutRecord, String),
}

pub struct Loader<'a> {
    pub ctx: &'a SyncContext,
    pub warehouse: &'a dyn Warehouse,
    pub destination: Arc<dyn Destination>,
    pub observer: &'a dyn Observer,
    pub cancel: &'a CancellationToken,
    pub scope: &'a StateScope,
    /// What was staged.
    pub request: &'a DiffRequest,
    /// The changes are the model's rows, read as they are sent
    /// ([`crate::warehouse::DiffCounts::streamed`]).
    pub streamed: bool,
    /// Decides about each change: skip, reject or send.
    pub decider: Decider<'a>,
    /// The sync's share of its Destination's rate limit.
    pub budget: super::Budget,
}

impl Loader<'_> {
    /// Runs the pipeline; `Ok(true)` when it stopped because of a cancel.
    pub async fn run(&self, tally: &mut Tally) -> Result<bool, EngineError> {
        let in_flight = self.destination.max_in_flight().clamp(1, crate::destination::MAX_IN_FLIGHT);
        let (page_tx, page_rx) = mpsc::channel(1);
        let (full_tx, full_rx) = mpsc::channel(1);
        let (done_tx, done_rx) = mpsc::channel(2 * in_flight + 1);
        let (read_canceled, map_canceled, (), ()) = tokio::try_join!(
            self.read(page_tx),
            self.map(page_rx, full_tx, done_tx.clone(), in_flight),
            self.dispatch(full_rx, done_tx, in_flight),
            self.commit(done_rx, tally)
        )?;
        Ok(read_canceled || map_canceled)
    }

    /// Reads the changes page by page, one page ahead of the mapper.
    async fn read(&self, pages: mpsc::Sender<Vec<StagedChange>>) -> Result<bool, EngineError> {
        use futures::StreamExt;
        let mut changes = self.warehouse.changes(self.scope, self.request, self.streamed, PAGE);
        loop {
            if self.cancel.is_cancelled() {
                return Ok(true);
            }
            let Some(page) = changes.next().await.transpose()? else { return Ok(false) };
            if pages.send(page).await.is_err() {
                return Ok(false); // the mapper stopped (a cancel): nothing more to read
            }
        }
    }

    /// Maps each change and hands full batches to the dispatcher; at most
    /// twice the batches in flight are held, mapped and not yet committed.
    async fn map(
        &self,
        mut pages: mpsc::Receiver<Vec<StagedChange>>,
        full: mpsc::Sender<Full>,
        done: mpsc::Sender<Answered>,
        in_flight: usize,
    ) -> Result<bool, EngineError> {
        // A destination's batch size is bounded where it is built; bounded
        // again here so that no destination can make a batch allocate
        // without limit.
        let batch_size = self.destination.batch_size().clamp(1, MAX_BATCH_SIZE);
        let held = Arc::new(Semaphore::new(2 * in_flight));
        let mut batch: Vec<(OutRecord, String)> = Vec::with_capacity(batch_size);
        let mut number = 0;
        let hand_over = async |number: i64, batch: Vec<(OutRecord, String)>| {
            // The semaphore is never closed; the dispatcher only goes away
            // when the sync already failed. A cancel while the batch waited
            // for room keeps it from being sent (its records are counted as
            // skipped at the end): a cancel stops a sync at the next batch
            // boundary, not after every batch already mapped.
            if let Ok(held) = held.clone().acquire_owned().await {
                if self.cancel.is_cancelled() {
                    return false;
                }
                let _ = full.send(Full { number, batch, held }).await;
            }
            true
        };
        while let Some(page) = pages.recv().await {
            let seen = page.len() as u64;
            let mut outcomes = Vec::new();
            let mut canceled = false;
            for change in page {
                match self.prepare(change) {
                    Prepared::Settled(outcome) => outcomes.push(outcome),
                    Prepared::Send(record, hash) if !canceled => {
                        batch.push((record, hash));
                        if batch.len() >= batch_size {
                            if self.cancel.is_cancelled() {
                                canceled = true;
                                continue;
                            }
                            number += 1;
                            canceled = !hand_over(number, std::mem::replace(&mut batch, Vec::with_capacity(batch_size))).await;
                        }
                    }
                    Prepared::Send(..) => {} // canceled: counted as skipped at the end
                }
            }
            let _ = done.send(Answered::Settled { seen, outcomes }).await;
            if canceled {
                return Ok(true);
            }
        }
        if !batch.is_empty() && (self.cancel.is_cancelled() || !hand_over(number + 1, batch).await) {
            return Ok(true);
        }
        Ok(false)
    }

    /// Sends each batch in its own task once a slot is free; its answer goes
    /// to the committer. The keys of its new records are marked in flight
    /// first: should the sync die before their outcome is committed, the
    /// next sync knows the destination may have them (and sends a delete
    /// once the model no longer returns them). Marking runs beside the
    /// mapping of the next batches.
    async fn dispatch(&self, mut full: mpsc::Receiver<Full>, done: mpsc::Sender<Answered>, in_flight: usize) -> Result<(), EngineError> {
        let sending = Arc::new(Semaphore::new(in_flight));
        // Sends still running when the sync stops early (a failed commit)
        // are aborted when this set is dropped.
        let mut sends = JoinSet::new();
        while let Some(Full { number, batch, held }) = full.recv().await {
            // A slot first, so that only a batch about to be sent is marked.
            // The semaphore is never closed.
            let Ok(slot) = sending.clone().acquire_owned().await else { break };
            // The Destination's shared budget, before anything is marked or sent.
            self.budget.wait(batch.len()).await;
            // Updates and deletes have a snapshot entry already, which is all
            // the next diff needs; only records new to the snapshot are marked.
            let new: Vec<&str> = batch.iter().filter(|(r, _)| r.kind == ChangeKind::Added).map(|(r, _)| r.key.as_str()).collect();
            let marked = (!new.is_empty()).then_some(number);
            if marked.is_some() {
                self.warehouse.mark_in_flight(self.scope, &self.ctx.sync_name, number, &new).await?;
            }
            let destination = self.destination.clone();
            let action = self.ctx.action.name.clone();
            let done = done.clone();
            let (records, hashes): (Vec<OutRecord>, Vec<String>) = batch.into_iter().unzip();
            while sends.try_join_next().is_some() {}
            sends.spawn(async move {
                let result = destination.send(&action, &records).await;
                drop(slot);
                // The committer only goes away when the sync already failed.
                let _ = done.send(Answered::Batch { marked, hashes, records, result, held }).await;
            });
        }
        // The answers of the last sends still go to the committer.
        while sends.join_next().await.is_some() {}
        Ok(())
    }

    /// Commits answered batches, taking every one already waiting in a
    /// single commit (fewer round trips, and still as soon as acknowledged).
    async fn commit(&self, mut done: mpsc::Receiver<Answered>, tally: &mut Tally) -> Result<(), EngineError> {
        while let Some(first) = done.recv().await {
            let mut answered = vec![first];
            while let Ok(more) = done.try_recv() {
                answered.push(more);
            }
            let mut outcomes = Vec::new();
            // Released once the batches they count are committed, not before.
            let mut committing = Vec::new();
            let mut numbers = Vec::new();
            for item in answered {
                match item {
                    Answered::Settled { seen, outcomes: settled } => {
                        tally.seen += seen;
                        outcomes.extend(settled);
                    }
                    Answered::Batch { marked, hashes, records, result, held } => {
                        committing.push(held);
                        numbers.extend(marked);
                        outcomes.extend(answer(hashes, records, result));
                    }
                }
            }
            if outcomes.is_empty() {
                continue;
            }
            self.warehouse.commit(self.scope, &self.ctx.sync_name, &numbers, &outcomes).await?;
            drop(committing);
            for o in &outcomes {
                tally.record(o);
            }
            self.observer.progress(&tally.progress()).await;
        }
        Ok(())
    }

    fn prepare(&self, mut change: StagedChange) -> Prepared {
        let decision = self.decider.decide(&mut change);
        let settle = |result: OutcomeKind| {
            Prepared::Settled(RecordOutcome { key: change.key.clone(), hash: change.hash.clone(), kind: change.kind, result })
        };
        match decision {
            Decision::Skip(reason) => settle(OutcomeKind::Skipped { reason: reason.into() }),
            Decision::Reject { code, message, payload } => {
                settle(OutcomeKind::Rejected { code, message, payload: payload.map(|p| p.as_str().to_string()) })
            }
            Decision::Send(payload) => {
                let key = change.key.unwrap_or_default();
                let id = match self.destination.record_ids() {
                    true => crate::destination::record_id(&self.ctx.mapping_uid, &key, change.kind, &change.hash),
                    false => String::new(),
                };
                Prepared::Send(OutRecord { id, key, kind: change.kind, payload }, change.hash)
            }
        }
    }
}

/// Each record of an answered batch with its outcome. A destination that
/// could not be reached rejects every record of the batch; a record the
/// answer does not cover is rejected as such, so none goes uncounted.
fn answer(
    hashes: Vec<String>,
    records: Vec<OutRecord>,
    result: Result<Vec<Delivery>, DestinationError>,
) -> impl Iterator<Item = RecordOutcome> {
    let deliveries: Vec<Delivery> = match result {
        Ok(d) => d,
        Err(e) => vec![Delivery::Rejected { code: codes::DESTINATION_UNAVAILABLE.into(), message: e.to_string() }; records.len()],
    };
    records.into_iter().zip(hashes).enumerate().map(move |(i, (record, hash))| {
        let payload = || Some(record.payload.as_str().to_string());
        let result = match deliveries.get(i) {
            Some(Delivery::Accepted) => OutcomeKind::Delivered,
            Some(Delivery::Rejected { code, message }) => {
                OutcomeKind::Rejected { code: code.clone(), message: message.clone(), payload: payload() }
            }
            None => OutcomeKind::Rejected {
                code: codes::NO_RESULT.into(),
                message: "the destination answered for fewer records than it was sent".into(),
                payload: payload(),
            },
        };
        RecordOutcome { key: Some(record.key), hash, kind: record.kind, result }
    })
}
