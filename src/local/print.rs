//! Printing Syncs the way `kubectl get syncs` does, and the details of failed
//! records below them.

use std::fmt::Write as _;

use jiff::Timestamp;

use crate::engine::{PlanReport, SyncReport};

/// One line of the sync table.
pub struct SyncLine<'a> {
    pub name: &'a str,
    pub mapping: &'a str,
    pub report: &'a SyncReport,
}

/// A table with the columns of `kubectl get syncs`, and the skipped and
/// expired records (an expired record is dropped, not loaded: without them a
/// sync that dropped records reads as one that had nothing to do).
pub fn sync_table(lines: &[SyncLine<'_>], now: Timestamp) -> String {
    let header = [
        "NAME",
        "MAPPING",
        "STATUS",
        "STARTED",
        "DURATION",
        "EXTRACTED",
        "ADDED",
        "UPDATED",
        "DELETED",
        "LOADED",
        "FAILED",
        "SKIPPED",
        "EXPIRED",
        "AGE",
    ];
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let r = l.report;
            vec![
                l.name.to_string(),
                l.mapping.to_string(),
                r.phase.to_string(),
                started(r.started),
                r.duration().unwrap_or_default(),
                r.extracted.total.to_string(),
                r.extracted.added.to_string(),
                r.extracted.updated.to_string(),
                r.extracted.deleted.to_string(),
                r.loaded.succeeded.to_string(),
                r.loaded.failed.to_string(),
                r.loaded.skipped.to_string(),
                r.loaded.expired.to_string(),
                age(r.started, now),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// When a sync started, to the second, in UTC (RFC 3339: one word, so the
/// table's columns stay split by blanks).
fn started(t: Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether a sync's details are worth printing below the table: it did not
/// fully succeed, or it skipped records (which say why).
pub fn needs_details(r: &SyncReport) -> bool {
    r.phase != crate::api::SyncPhase::Successful || !r.skipped.is_empty()
}

/// Columns padded like kubectl's tabwriter (three spaces between columns).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}   ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// Age as kubectl prints it: `45s`, `3m12s`, `5h`, `2d`.
pub fn age(t: Timestamp, now: Timestamp) -> String {
    let secs = now.duration_since(t).as_secs().max(0) as u64;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=599 => format!("{}m{}s", secs / 60, secs % 60),
        600..=10799 => format!("{}m", secs / 60),
        10800..=172799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// What a person needs to act on a sync that did not fully succeed: the
/// message, the errors by code with a recommended action, the skipped
/// records by reason, and the failed-record samples with their payloads.
pub fn details(name: &str, r: &SyncReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Sync {name}: {}", r.phase);
    if let Some(m) = &r.message {
        let _ = writeln!(out, "  {m}");
    }
    let l = &r.loaded;
    let _ = writeln!(
        out,
        "  Loaded {}: {} new, {} updated, {} deleted; {} rejected, {} skipped ({} expired)",
        records(l.succeeded),
        l.new,
        l.updated,
        l.deleted,
        l.failed,
        l.skipped,
        l.expired
    );
    if !r.errors.is_empty() {
        let _ = writeln!(out, "  Errors:");
        for e in &r.errors {
            let _ = writeln!(out, "    {} ({}): {}", e.code, records(e.count), e.message);
            let _ = writeln!(out, "      Recommended action: {}", e.recommended_action);
        }
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(out, "  Skipped:");
        for s in &r.skipped {
            let _ = writeln!(out, "    {} ({}): {}", s.reason, records(s.count), s.message);
        }
    }
    if !r.failed_records.is_empty() {
        let _ = writeln!(out, "  Failed records ({} shown of {}):", r.failed_records.len(), r.loaded.failed);
        for f in &r.failed_records {
            let _ = writeln!(out, "    key {:?} ({}): {}: {}", f.key, f.operation, f.code, f.message);
            let _ = writeln!(out, "      Recommended action: {}", f.recommended_action);
            match (&f.payload, f.payload_truncated) {
                (Some(p), false) => {
                    let _ = writeln!(out, "      Payload: {p}");
                }
                (Some(p), true) => {
                    // A truncated payload is the start of its JSON text: shown as it is, not quoted again.
                    let start = p.as_str().map_or_else(|| p.to_string(), str::to_string);
                    let _ = writeln!(out, "      Payload (truncated; the record log has it in full): {start}");
                }
                (None, true) => {
                    let _ = writeln!(out, "      Payload: left out to keep the status small; the record log has it");
                }
                (None, false) => {}
            }
        }
    }
    out
}

/// `retl plan` output for one Mapping.
pub fn plan(mapping: &str, p: &PlanReport) -> String {
    let mut out = String::new();
    let e = &p.extracted;
    let _ = writeln!(
        out,
        "Mapping {mapping}: {} rows extracted: {} added, {} updated, {} deleted, {} unchanged ({} retries)",
        e.total, e.added, e.updated, e.deleted, e.unchanged, e.retried
    );
    let _ =
        writeln!(out, "  Would send: {} new, {} updated, {} deleted; would skip {}", p.to_send[0], p.to_send[1], p.to_send[2], p.skipped);
    for (code, n) in &p.would_fail {
        let _ = writeln!(out, "  Would reject {}: {code}", records(*n));
    }
    if let Some(g) = &p.guard {
        let _ = writeln!(out, "  Guard: {g}");
    }
    for (key, kind, payload) in &p.samples {
        let _ = writeln!(out, "  Sample ({kind}) key {key:?}: {payload}");
    }
    out
}

fn records(n: u64) -> String {
    if n == 1 { "1 record".to_string() } else { format!("{n} records") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FailedRecord, LoadedCounts, SkipSummary, SyncPhase};

    #[test]
    fn the_table_shows_the_start_time_and_what_was_skipped_or_expired() {
        let started: Timestamp = "2026-03-04T05:06:07.890Z".parse().unwrap();
        let mut r = SyncReport::started(started);
        r.phase = SyncPhase::Successful;
        r.completed = Some(started + jiff::SignedDuration::from_secs(2));
        r.extracted.added = 1;
        r.extracted.total = 1;
        r.loaded = LoadedCounts { skipped: 1, expired: 1, ..Default::default() };
        r.skipped = vec![SkipSummary { reason: "RetryWindowExpired".into(), count: 1, message: "dropped".into() }];
        let now = started + jiff::SignedDuration::from_secs(3600);
        let out = sync_table(&[SyncLine { name: "s", mapping: "m", report: &r }], now);
        let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
        let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
        let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(col("STARTED"), "2026-03-04T05:06:08Z", "{out}");
        assert_eq!(col("AGE"), "60m", "{out}");
        assert_eq!((col("LOADED"), col("SKIPPED"), col("EXPIRED")), ("0", "1", "1"), "{out}");
        assert!(needs_details(&r), "a successful sync that skipped records says why");
        let d = details("s", &r);
        assert!(d.contains("RetryWindowExpired (1 record): dropped"), "{d}");
        assert!(d.contains("0 records: 0 new, 0 updated, 0 deleted; 0 rejected, 1 skipped (1 expired)"), "{d}");
        r.skipped.clear();
        r.loaded = LoadedCounts { succeeded: 6, new: 3, updated: 2, deleted: 1, ..Default::default() };
        assert!(!needs_details(&r));
        assert!(details("s", &r).contains("Loaded 6 records: 3 new, 2 updated, 1 deleted"), "{}", details("s", &r));
    }

    #[test]
    fn details_say_which_payloads_were_truncated() {
        let mut r = SyncReport::started(Timestamp::UNIX_EPOCH);
        let sample = |key: &str, payload: Option<serde_json::Value>, truncated: bool| FailedRecord {
            key: key.into(),
            code: "INVALID_RECORD".into(),
            payload,
            payload_truncated: truncated,
            ..Default::default()
        };
        r.failed_records = vec![
            sample("1", Some(serde_json::json!({"id": "1"})), false),
            sample("2", Some(serde_json::json!(r#"{"id":"2","blob":"xx… (200030 bytes in all)"#)), true),
            sample("3", None, true),
        ];
        let out = details("s", &r);
        assert!(out.contains(r#"      Payload: {"id":"1"}"#), "{out}");
        assert!(
            out.contains(r#"Payload (truncated; the record log has it in full): {"id":"2","blob":"xx… (200030 bytes in all)"#),
            "{out}"
        );
        assert!(out.contains("Payload: left out to keep the status small; the record log has it"), "{out}");
    }
}
