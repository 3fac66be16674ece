//! Counting what happens to each record, and turning the counts into the
//! sync's outcome. Every record passes through [`Tally::record`] exactly
//! once, so the counts add up by construction.

use std::collections::BTreeMap;

use serde_json::Value;

use super::codes;
use crate::api::conditions::reason;
use crate::api::{ChangeKind, ErrorSummary, ExtractedCounts, FailedRecord, LoadedCounts, SkipSummary, SyncPhase};
use crate::warehouse::{OutcomeKind, RecordOutcome};

/// Most failed records kept as samples in a Sync's status.
pub const MAX_SAMPLES: usize = 10;

/// Reasons a record is skipped.
pub mod skip {
    pub const NOT_SELECTED: &str = "NotSelected";
    pub const RETRY_WINDOW_EXPIRED: &str = "RetryWindowExpired";
    pub const CANCELED: &str = "Canceled";
    pub const NOT_PROCESSED: &str = "NotProcessed";
    pub const GUARD_TRIPPED: &str = "GuardTripped";

    pub fn message(reason: &str) -> &'static str {
        match reason {
            NOT_SELECTED => "the change kind is not in the Mapping's spec.send",
            RETRY_WINDOW_EXPIRED => "the record kept failing for the whole retry window and was dropped",
            CANCELED => "the sync was canceled before the record was sent; the next sync sends it",
            GUARD_TRIPPED => "a guard stopped the sync before anything was sent",
            _ => "the sync stopped before the record was sent; the next sync sends it",
        }
    }
}

#[derive(Default, Debug)]
pub struct Tally {
    pub extracted: ExtractedCounts,
    pub loaded: LoadedCounts,
    skipped: BTreeMap<String, u64>,
    errors: BTreeMap<String, (u64, String)>,
    samples: Vec<FailedRecord>,
    /// Changes read from the stage so far.
    pub seen: u64,
}

impl Tally {
    /// Counts one record's outcome; `payload` is what was (or would have been) sent.
    pub fn record(&mut self, o: &RecordOutcome, payload: Option<&Value>) {
        match &o.result {
            OutcomeKind::Delivered => {
                self.loaded.succeeded += 1;
                match o.kind {
                    ChangeKind::Added => self.loaded.new += 1,
                    ChangeKind::Updated => self.loaded.updated += 1,
                    ChangeKind::Deleted => self.loaded.deleted += 1,
                }
            }
            OutcomeKind::Skipped { reason } => self.skip(reason, 1),
            OutcomeKind::Rejected { code, message, .. } => {
                self.loaded.failed += 1;
                let entry = self.errors.entry(code.clone()).or_insert((0, message.clone()));
                entry.0 += 1;
                if self.samples.len() < MAX_SAMPLES {
                    self.samples.push(FailedRecord {
                        key: o.key.clone().unwrap_or_default(),
                        operation: crate::warehouse::kind_name(o.kind).to_string(),
                        code: code.clone(),
                        message: message.clone(),
                        recommended_action: codes::recommended_action(code),
                        payload: payload.cloned(),
                    });
                }
            }
        }
    }

    /// Counts `n` records skipped for `reason`.
    pub fn skip(&mut self, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.loaded.skipped += n;
        if reason == skip::RETRY_WINDOW_EXPIRED {
            self.loaded.expired += n;
        }
        *self.skipped.entry(reason.to_string()).or_default() += n;
    }

    /// Where the sync stands, for observers.
    pub fn progress(&self) -> super::Progress {
        super::Progress { extracted: self.extracted.clone(), loaded: self.loaded.clone(), read: self.seen }
    }

    /// Changes not yet accounted for.
    pub fn unaccounted(&self) -> u64 {
        let changes = self.extracted.added + self.extracted.updated + self.extracted.deleted;
        changes.saturating_sub(self.loaded.succeeded + self.loaded.failed + self.loaded.skipped)
    }

    /// The phase, reason and message of a sync that ran to its end (or was canceled).
    pub fn outcome(&self, canceled: bool) -> (SyncPhase, Option<String>, Option<String>) {
        let l = &self.loaded;
        if canceled {
            return (
                SyncPhase::Canceled,
                Some(reason::CANCELED.to_string()),
                Some(format!(
                    "canceled: {} records accepted and {} rejected before it stopped are committed; the rest is sent by the next sync",
                    l.succeeded, l.failed
                )),
            );
        }
        if l.failed == 0 {
            return (SyncPhase::Successful, Some(reason::SUCCESSFUL.to_string()), None);
        }
        let top = self.top_error();
        if l.succeeded == 0 {
            let unreachable = self.errors.len() == 1 && self.errors.contains_key(codes::DESTINATION_UNAVAILABLE);
            let why = if unreachable { reason::DESTINATION_UNREACHABLE } else { reason::ALL_RECORDS_REJECTED };
            return (SyncPhase::Failed, Some(why.to_string()), Some(format!("all {} records were rejected; {top}", l.failed)));
        }
        (
            SyncPhase::PartiallySuccessful,
            Some(reason::PARTIALLY_SUCCESSFUL.to_string()),
            Some(format!("{} records accepted, {} rejected; {top}", l.succeeded, l.failed)),
        )
    }

    fn top_error(&self) -> String {
        match self.errors.iter().max_by_key(|(_, (n, _))| *n) {
            Some((code, (n, msg))) => format!("most common error: {code} ({n}×): {msg}"),
            None => String::new(),
        }
    }

    pub fn skipped(&self) -> Vec<SkipSummary> {
        self.skipped.iter().map(|(r, n)| SkipSummary { reason: r.clone(), count: *n, message: skip::message(r).to_string() }).collect()
    }

    pub fn errors(&self) -> Vec<ErrorSummary> {
        let mut v: Vec<ErrorSummary> = self
            .errors
            .iter()
            .map(|(code, (n, msg))| ErrorSummary {
                code: code.clone(),
                count: *n,
                message: msg.clone(),
                recommended_action: codes::recommended_action(code),
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(&b.code)));
        v
    }

    pub fn samples(&self) -> Vec<FailedRecord> {
        self.samples.clone()
    }
}
