//! Map → load → commit: reads the staged changes page by page, maps each
//! row, sends full batches with bounded concurrency, and commits every batch
//! as soon as the destination answered it. Memory holds at most one page and
//! the batches in flight, whatever the size of the model.

use std::sync::Arc;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::tally::{Tally, skip};
use super::{EngineError, Observer, SyncContext, codes};
use crate::api::ChangeKind;
use crate::destination::{Delivery, Destination, DestinationError, OutRecord};
use crate::fieldmap::FieldMapper;
use crate::warehouse::{OutcomeKind, RecordOutcome, StageFlag, StagedChange, StateScope, Warehouse};

/// Staged changes read per page.
const PAGE: usize = 1000;

type BatchResult = (Vec<String>, Vec<OutRecord>, Result<Vec<Delivery>, DestinationError>);

/// What to do with one staged change.
enum Prepared {
    /// Settled without sending: skipped, or rejected before sending.
    Settled(RecordOutcome, Option<Value>),
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
    pub mapper: &'a FieldMapper,
}

impl Loader<'_> {
    /// Runs the loop; `Ok(true)` when it stopped because of a cancel.
    pub async fn run(&self, tally: &mut Tally) -> Result<bool, EngineError> {
        let batch_size = self.destination.batch_size().max(1);
        let max_in_flight = self.destination.max_in_flight().max(1);
        let mut in_flight: JoinSet<BatchResult> = JoinSet::new();
        let mut batch: Vec<(OutRecord, String)> = Vec::with_capacity(batch_size);
        let mut after = 0i64;
        let mut canceled = false;
        'pages: loop {
            if self.cancel.is_cancelled() {
                canceled = true;
                break;
            }
            let page = self.warehouse.read_stage(self.scope, &self.ctx.sync_name, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            let mut settled = Vec::new();
            for change in page {
                tally.seen += 1;
                match self.prepare(change) {
                    Prepared::Settled(outcome, payload) => settled.push((outcome, payload)),
                    Prepared::Send(record, hash) => {
                        batch.push((record, hash));
                        if batch.len() >= batch_size {
                            if self.cancel.is_cancelled() {
                                canceled = true;
                                self.commit_settled(&settled, tally).await?;
                                break 'pages;
                            }
                            self.dispatch(&mut in_flight, std::mem::take(&mut batch));
                            while in_flight.len() >= max_in_flight {
                                self.await_one(&mut in_flight, tally).await?;
                            }
                        }
                    }
                }
            }
            self.commit_settled(&settled, tally).await?;
        }
        if !canceled && !batch.is_empty() {
            self.dispatch(&mut in_flight, std::mem::take(&mut batch));
        }
        while !in_flight.is_empty() {
            self.await_one(&mut in_flight, tally).await?;
        }
        Ok(canceled)
    }

    fn prepare(&self, change: StagedChange) -> Prepared {
        let settle = |result: OutcomeKind, payload: Option<Value>| {
            Prepared::Settled(
                RecordOutcome { key: change.key.clone(), hash: change.hash.clone(), kind: change.kind, result },
                payload,
            )
        };
        let reject = |code: &str, message: String, payload: Option<Value>| {
            let text = payload.as_ref().map(Value::to_string);
            settle(OutcomeKind::Rejected { code: code.to_string(), message, payload: text }, payload)
        };
        if change.flag == Some(StageFlag::Expired) {
            return settle(OutcomeKind::Skipped { reason: skip::RETRY_WINDOW_EXPIRED.into() }, None);
        }
        if !self.ctx.mapping.send.contains(&change.kind) {
            return settle(OutcomeKind::Skipped { reason: skip::NOT_SELECTED.into() }, None);
        }
        if change.kind == ChangeKind::Deleted {
            let key = change.key.clone().unwrap_or_default();
            return Prepared::Send(OutRecord { key, kind: change.kind, payload: Value::Null }, change.hash);
        }
        let row = match &change.row {
            Some(Ok(row)) => row,
            Some(Err(message)) => return reject(codes::UNSUPPORTED_VALUE, message.clone(), None),
            None => return reject(codes::UNSUPPORTED_VALUE, "the row has no values".into(), None),
        };
        // The payload moves into the record (or the rejection): no copy per row.
        match (change.flag, change.key.as_ref(), self.mapper.map(row)) {
            (Some(StageFlag::NullKey), _, Ok(p) | Err((_, p))) | (_, None, Ok(p) | Err((_, p))) => reject(
                codes::NULL_PRIMARY_KEY,
                format!("the row's primary key ({}) is null", self.ctx.model.primary_key),
                Some(p),
            ),
            (Some(StageFlag::DuplicateKey), Some(k), Ok(p) | Err((_, p))) => reject(
                codes::DUPLICATE_PRIMARY_KEY,
                format!("several rows have the primary key {k:?}; none of them is sent"),
                Some(p),
            ),
            (_, _, Err((e, partial))) => reject(&e.code, e.message, Some(partial)),
            (_, Some(k), Ok(p)) => {
                Prepared::Send(OutRecord { key: k.clone(), kind: change.kind, payload: p }, change.hash)
            }
        }
    }

    fn dispatch(&self, in_flight: &mut JoinSet<BatchResult>, batch: Vec<(OutRecord, String)>) {
        let destination = self.destination.clone();
        let action = self.ctx.action.name.clone();
        let (records, hashes): (Vec<OutRecord>, Vec<String>) = batch.into_iter().unzip();
        in_flight.spawn(async move {
            let result = destination.send(&action, &records).await;
            (hashes, records, result)
        });
    }

    /// Waits for one batch to be answered, takes every other batch already
    /// answered too, and commits them together (fewer round trips, and still
    /// as soon as they are acknowledged).
    async fn await_one(&self, in_flight: &mut JoinSet<BatchResult>, tally: &mut Tally) -> Result<(), EngineError> {
        let Some(first) = in_flight.join_next().await else { return Ok(()) };
        let mut answered = vec![first];
        while let Some(more) = in_flight.try_join_next() {
            answered.push(more);
        }
        let mut outcomes = Vec::new();
        let mut payloads = Vec::new();
        // A send task cannot panic on purpose; if it did, its records are
        // still accounted for: they stay unsent and the next sync sends them.
        for (hashes, records, result) in answered.into_iter().flatten() {
            let deliveries: Vec<Delivery> = match result {
                Ok(d) => d,
                Err(e) => vec![
                    Delivery::Rejected { code: codes::DESTINATION_UNAVAILABLE.into(), message: e.to_string() };
                    records.len()
                ],
            };
            for (i, (record, hash)) in records.into_iter().zip(hashes).enumerate() {
                let result = match deliveries.get(i) {
                    Some(Delivery::Accepted) => OutcomeKind::Delivered,
                    Some(Delivery::Rejected { code, message }) => OutcomeKind::Rejected {
                        code: code.clone(),
                        message: message.clone(),
                        payload: Some(record.payload.to_string()),
                    },
                    None => OutcomeKind::Rejected {
                        code: codes::NO_RESULT.into(),
                        message: "the destination answered for fewer records than it was sent".into(),
                        payload: Some(record.payload.to_string()),
                    },
                };
                outcomes.push(RecordOutcome { key: Some(record.key), hash, kind: record.kind, result });
                payloads.push(record.payload);
            }
        }
        self.warehouse.commit(self.scope, &self.ctx.sync_name, &outcomes).await?;
        for (o, p) in outcomes.iter().zip(&payloads) {
            tally.record(o, Some(p));
        }
        self.observer.progress(&tally.progress()).await;
        Ok(())
    }

    async fn commit_settled(&self, settled: &[(RecordOutcome, Option<Value>)], tally: &mut Tally) -> Result<(), EngineError> {
        if settled.is_empty() {
            return Ok(());
        }
        let outcomes: Vec<RecordOutcome> = settled.iter().map(|(o, _)| o.clone()).collect();
        self.warehouse.commit(self.scope, &self.ctx.sync_name, &outcomes).await?;
        for (o, p) in settled {
            tally.record(o, p.as_ref());
        }
        self.observer.progress(&tally.progress()).await;
        Ok(())
    }
}
