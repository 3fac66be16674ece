//! Counting what happens to each record, and turning the counts into the
//! sync's outcome. Every record passes through [`Tally::record`] exactly
//! once, so the counts add up by construction.
//!
//! The samples and error summaries kept here end up in the Sync's status,
//! which etcd refuses above 1.5 MiB: a status write that fails for size
//! loses the whole outcome. So they are capped here, where they are made,
//! for the worker and `retl run` alike; the record log in the warehouse
//! keeps every rejected record's full payload.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::conditions::reason;
use crate::api::{ChangeKind, ErrorSummary, ExtractedCounts, FailedRecord, LoadedCounts, SkipSummary, SyncPhase};
use crate::record::{codes, skip};
use crate::warehouse::{OutcomeKind, RecordOutcome};

/// Most failed records kept as samples in a Sync's status.
pub const MAX_SAMPLES: usize = 10;
/// Most bytes of a sample's payload JSON kept as it is; a larger payload is
/// kept as the start of its JSON text, which is enough to recognise it.
pub const MAX_SAMPLE_PAYLOAD_BYTES: usize = 4 * 1024;
/// Most bytes of the samples' JSON together: once used up, further samples
/// keep no payload (their key, code and message stay).
pub const SAMPLES_BUDGET_BYTES: usize = 64 * 1024;
/// Most bytes of a key or an error message in status: a destination may
/// answer a record with a whole HTML page.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Most bytes of an error code (codes come from the destination too).
pub const MAX_CODE_BYTES: usize = 128;
/// Most distinct error codes summarised; rejections with further codes
/// count together under [`codes::OTHER_ERRORS`], so `errors` stays small
/// even when a destination puts a record's id into its code.
pub const MAX_ERROR_CODES: usize = 20;

#[derive(Default, Debug)]
pub struct Tally {
    pub extracted: ExtractedCounts,
    pub loaded: LoadedCounts,
    skipped: BTreeMap<String, u64>,
    errors: BTreeMap<String, (u64, String)>,
    samples: Vec<FailedRecord>,
    /// Bytes of the samples' JSON so far, against [`SAMPLES_BUDGET_BYTES`].
    samples_bytes: usize,
    /// Changes read from the stage so far.
    pub seen: u64,
}

impl Tally {
    /// Counts one record's outcome.
    pub fn record(&mut self, o: &RecordOutcome) {
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
            OutcomeKind::Rejected { code, message, payload } => {
                self.loaded.failed += 1;
                let code = truncate(code, MAX_CODE_BYTES);
                self.count_error(&code, message);
                if self.samples.len() < MAX_SAMPLES {
                    self.add_sample(o, &code, message, payload.as_deref());
                }
            }
        }
    }

    fn count_error(&mut self, code: &str, message: &str) {
        if !self.errors.contains_key(code) && self.errors.len() >= MAX_ERROR_CODES {
            let other =
                self.errors.entry(codes::OTHER_ERRORS.to_string()).or_insert_with(|| (0, codes::other_errors_message(MAX_ERROR_CODES)));
            other.0 += 1;
            return;
        }
        let entry = self.errors.entry(code.to_string()).or_insert_with(|| (0, truncate(message, MAX_TEXT_BYTES).into_owned()));
        entry.0 += 1;
    }

    /// Keeps a sample of a rejected record: its payload as it is when it is
    /// small and the budget has room, else the start of its JSON text (marked
    /// truncated), else no payload (marked truncated too).
    fn add_sample(&mut self, o: &RecordOutcome, code: &str, message: &str, payload: Option<&str>) {
        let mut sample = FailedRecord {
            key: truncate(o.key.as_deref().unwrap_or_default(), MAX_TEXT_BYTES).into_owned(),
            operation: o.kind.name().to_string(),
            code: code.to_string(),
            message: truncate(message, MAX_TEXT_BYTES).into_owned(),
            recommended_action: codes::recommended_action(code),
            payload: None,
            payload_truncated: false,
        };
        if let Some(text) = payload {
            let parsed = serde_json::from_str::<Value>(text).ok().filter(|_| text.len() <= MAX_SAMPLE_PAYLOAD_BYTES);
            sample.payload = Some(if let Some(p) = parsed {
                p
            } else {
                sample.payload_truncated = true;
                Value::String(truncate(text, MAX_SAMPLE_PAYLOAD_BYTES).into_owned())
            });
            // One comma between samples in the list.
            if self.samples_bytes + json_len(&sample) + 1 > SAMPLES_BUDGET_BYTES {
                sample.payload = None;
                sample.payload_truncated = true;
            }
        }
        self.samples_bytes += json_len(&sample) + 1;
        self.samples.push(sample);
    }

    /// Counts records of a record log (a dead sync's, counted by the
    /// warehouse): delivered, rejected (by code) or skipped (by reason).
    pub fn logged(&mut self, c: &crate::warehouse::LogCount) {
        let code = c.code.as_deref().unwrap_or(codes::OTHER_ERRORS);
        match c.outcome.as_str() {
            "delivered" => {
                self.loaded.succeeded += c.count;
                match c.kind {
                    ChangeKind::Added => self.loaded.new += c.count,
                    ChangeKind::Updated => self.loaded.updated += c.count,
                    ChangeKind::Deleted => self.loaded.deleted += c.count,
                }
            }
            "skipped" => self.skip(c.code.as_deref().unwrap_or(skip::NOT_PROCESSED), c.count),
            _ => {
                self.loaded.failed += c.count;
                let entry = self.errors.entry(truncate(code, MAX_CODE_BYTES).into_owned()).or_insert_with(|| {
                    (0, "rejected by the destination; the record log in the warehouse has each record's error".to_string())
                });
                entry.0 += c.count;
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
        let mut top = self.top_error();
        let truncated = self.samples.iter().filter(|s| s.payload_truncated).count();
        if truncated > 0 {
            top.push_str(&format!(
                "; {truncated} of the failed-record samples carry a truncated payload or none, to keep the status small (the record log in the warehouse has them in full)"
            ));
        }
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

/// The length of `v` as JSON.
fn json_len(v: &impl serde::Serialize) -> usize {
    serde_json::to_string(v).map_or(0, |s| s.len())
}

/// `text` cut to at most `max` bytes at a character boundary, and then
/// marked with `…` and its full length, so that a reader knows it was cut.
fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rejected(key: &str, code: &str, message: &str) -> RecordOutcome {
        RecordOutcome {
            key: Some(key.to_string()),
            hash: String::new(),
            kind: ChangeKind::Added,
            result: OutcomeKind::Rejected { code: code.into(), message: message.into(), payload: None },
        }
    }

    /// A rejection carrying the payload that was sent.
    fn with_payload(mut o: RecordOutcome, p: &Value) -> RecordOutcome {
        if let OutcomeKind::Rejected { payload, .. } = &mut o.result {
            *payload = Some(p.to_string());
        }
        o
    }

    fn delivered(key: &str) -> RecordOutcome {
        RecordOutcome { key: Some(key.to_string()), hash: String::new(), kind: ChangeKind::Added, result: OutcomeKind::Delivered }
    }

    fn big(n: usize) -> String {
        "x".repeat(n)
    }

    #[test]
    fn small_payloads_are_kept_as_they_are() {
        let mut t = Tally::default();
        let payload = json!({"id": "1", "email": "a@example.com"});
        t.record(&with_payload(rejected("1", "HTTP_422", "no"), &payload));
        let s = &t.samples()[0];
        assert_eq!((s.payload.as_ref(), s.payload_truncated), (Some(&payload), false));
        let text = serde_json::to_string(s).unwrap();
        assert!(!text.contains("payloadTruncated"), "left out when false: {text}");
        assert!(!t.outcome(false).2.unwrap_or_default().contains("truncated"));
    }

    #[test]
    fn a_200_kb_payload_is_cut_to_the_start_of_its_json_and_marked() {
        let mut t = Tally::default();
        let payload = json!({"id": "1", "email": big(200_000)});
        t.record(&with_payload(rejected("1", "INVALID_RECORD", "bad"), &payload));
        t.record(&delivered("2"));
        let s = &t.samples()[0];
        assert!(s.payload_truncated);
        let start = s.payload.as_ref().and_then(Value::as_str).expect("a string preview");
        assert!(start.starts_with(r#"{"id":"1","email":"xxx"#), "{start:.40}");
        assert!(start.len() < MAX_SAMPLE_PAYLOAD_BYTES + 40 && start.ends_with("bytes in all)"), "{}", &start[start.len() - 40..]);
        assert!(serde_json::to_string(s).unwrap().contains(r#""payloadTruncated":true"#));
        let (phase, _, message) = t.outcome(false);
        assert_eq!(phase, SyncPhase::PartiallySuccessful);
        assert!(message.unwrap_or_default().contains("1 of the failed-record samples carry a truncated payload"));
    }

    #[test]
    fn the_samples_budget_holds_however_large_the_rejections() {
        let mut t = Tally::default();
        // Many short fields: the preview, a JSON string of JSON text, escapes every quote.
        let wide: serde_json::Map<String, Value> = (0..5_000).map(|n| (format!("field_{n}"), json!("v"))).collect();
        for i in 0..200 {
            let payload = json!({"id": i, "wide": wide, "blob": big(200_000)});
            t.record(&with_payload(rejected(&format!("{i}-{}", big(5_000)), "INVALID_RECORD", &big(300_000)), &payload));
        }
        for i in 0..50 {
            t.record(&delivered(&format!("ok{i}")));
        }
        let samples = t.samples();
        assert_eq!(samples.len(), MAX_SAMPLES);
        let bytes = serde_json::to_string(&samples).unwrap().len();
        assert!(bytes <= SAMPLES_BUDGET_BYTES, "{bytes} bytes of samples");
        assert!(samples.iter().all(|s| s.payload_truncated && s.key.len() < MAX_TEXT_BYTES + 40 && s.message.len() < MAX_TEXT_BYTES + 40));
        assert!(samples[0].payload.is_some(), "the first samples keep a preview");
        assert!(samples.last().is_some_and(|s| s.payload.is_none()), "once the budget is used up, no payload");
        assert!(samples.iter().all(|s| s.code == "INVALID_RECORD" && !s.recommended_action.is_empty()));
        let errors = t.errors();
        assert_eq!((errors.len(), errors[0].count), (1, 200));
        assert!(errors[0].message.len() < MAX_TEXT_BYTES + 40, "{}", errors[0].message.len());
        assert!(t.outcome(false).2.unwrap_or_default().len() < 4 * MAX_TEXT_BYTES);
        assert_eq!((t.loaded.failed, t.loaded.succeeded), (200, 50), "counts are untouched");
    }

    #[test]
    fn many_distinct_codes_fold_into_other_errors_and_still_add_up() {
        let mut t = Tally::default();
        for i in 0..100 {
            t.record(&rejected(&i.to_string(), &format!("E_{i}_{}", big(1_000)), "m"));
        }
        let errors = t.errors();
        assert_eq!(errors.len(), MAX_ERROR_CODES + 1);
        assert_eq!(errors.iter().map(|e| e.count).sum::<u64>(), t.loaded.failed);
        let other = errors.iter().find(|e| e.code == codes::OTHER_ERRORS).expect("OTHER_ERRORS");
        assert_eq!(other.count, 100 - MAX_ERROR_CODES as u64);
        assert!(errors.iter().all(|e| e.code.len() < MAX_CODE_BYTES + 40));
        assert!(serde_json::to_string(&errors).unwrap().len() < 64 * 1024);
    }

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        let cut = truncate("ééé", 3);
        assert_eq!(cut, "é… (6 bytes in all)");
        assert_eq!(truncate("short", 10), "short");
    }
}
