//! What an alert says, the same on every channel: which sync, of what, how
//! it ended, its counts and top errors, and what to run to see more.
//! Slack gets Block Kit blocks with a `text` fallback; e-mail gets a text
//! and an HTML part; an Event gets a one-paragraph note.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::ledger::Notice;
use crate::api::{AlertOutcome, ErrorSummary, ExtractedCounts, LoadedCounts, SyncPhase};

/// The finished Sync an alert is about, as every channel shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncSummary {
    pub namespace: String,
    pub sync: String,
    pub mapping: String,
    pub model: String,
    pub source: String,
    pub destination: String,
    pub action: String,
    pub phase: SyncPhase,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub started: Option<Timestamp>,
    pub duration: Option<String>,
    pub extracted: ExtractedCounts,
    pub loaded: LoadedCounts,
    pub errors: Vec<ErrorSummary>,
    /// Commands that show more (`kubectl describe sync …`, or `retl
    /// history …` for a local run).
    pub see_more: Vec<String>,
}

/// Error codes shown in an alert; the Sync has the rest.
const TOP_ERRORS: usize = 3;
/// An Event's note is at most 1 KiB.
const NOTE_LIMIT: usize = 1024;

/// `[retl] Failed: users-to-crm (team-a)`.
pub fn subject(n: &Notice, s: &SyncSummary) -> String {
    format!("[retl] {}: {} ({})", headline(n.outcome), s.mapping, s.namespace)
}

fn headline(o: AlertOutcome) -> &'static str {
    match o {
        AlertOutcome::Failed => "Failed",
        AlertOutcome::PartiallySuccessful => "Partially successful",
        AlertOutcome::Recovered => "Recovered",
    }
}

/// One sentence: what happened.
fn opening(n: &Notice, s: &SyncSummary) -> String {
    let mut out = match n.outcome {
        AlertOutcome::Failed => format!("Sync {} of Mapping {} failed", s.sync, s.mapping),
        AlertOutcome::PartiallySuccessful => format!("Sync {} of Mapping {} was partially successful", s.sync, s.mapping),
        AlertOutcome::Recovered => {
            format!("Sync {} of Mapping {} succeeded after {} failed or partially successful sync(s)", s.sync, s.mapping, n.failures)
        }
    };
    if let Some(since) = n.since.filter(|_| n.outcome != AlertOutcome::Recovered && n.failures > 1) {
        out.push_str(&format!(" ({} in a row since {})", n.failures, since.strftime("%Y-%m-%d %H:%M:%S UTC")));
    }
    if n.held_back > 0 {
        out.push_str(&format!("; {} more since the last alert were held back by repeatInterval", n.held_back));
    }
    out.push('.');
    if n.outcome != AlertOutcome::Recovered
        && let Some(m) = &s.message
    {
        out.push(' ');
        out.push_str(m);
    }
    out
}

/// The facts, as label/value pairs.
fn facts(s: &SyncSummary) -> Vec<(&'static str, String)> {
    let e = &s.extracted;
    let mut out = vec![
        ("Status", s.phase.to_string() + &s.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()),
        ("Mapping", format!("{} ({})", s.mapping, s.namespace)),
        ("Model", format!("{} from Source {}", s.model, s.source)),
        ("Destination", format!("{}, action {}", s.destination, s.action)),
        ("Started", s.started.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "-".into())),
        ("Duration", s.duration.clone().unwrap_or_else(|| "-".into())),
        ("Extracted", format!("{} (added {}, updated {}, deleted {}, unchanged {})", e.total, e.added, e.updated, e.deleted, e.unchanged)),
        ("Loaded", format!("{} succeeded, {} failed", s.loaded.succeeded, s.loaded.failed)),
    ];
    if s.loaded.expired > 0 {
        out.push(("Expired", format!("{} records past the retry window", s.loaded.expired)));
    }
    out
}

fn top_errors(s: &SyncSummary) -> Vec<String> {
    let mut lines: Vec<String> =
        s.errors.iter().take(TOP_ERRORS).map(|e| format!("{} × {}: {} — {}", e.count, e.code, e.message, e.recommended_action)).collect();
    if s.errors.len() > TOP_ERRORS {
        lines.push(format!("and {} more error codes", s.errors.len() - TOP_ERRORS));
    }
    lines
}

/// The plain-text body (e-mail's text part, Slack's fallback).
pub fn text(n: &Notice, s: &SyncSummary) -> String {
    let mut out = opening(n, s) + "\n\n";
    for (label, value) in facts(s) {
        out.push_str(&format!("{label}: {value}\n"));
    }
    let errors = top_errors(s);
    if !errors.is_empty() && n.outcome != AlertOutcome::Recovered {
        out.push_str("\nTop errors:\n");
        for e in errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out.push_str("\nSee more:\n");
    for c in &s.see_more {
        out.push_str(&format!("  {c}\n"));
    }
    out
}

/// The HTML body of the e-mail.
pub fn html(n: &Notice, s: &SyncSummary) -> String {
    let mut out = format!("<!DOCTYPE html><html><body><h2>{}</h2><p>{}</p><table>", escape(&subject(n, s)), escape(&opening(n, s)));
    for (label, value) in facts(s) {
        out.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", escape(label), escape(&value)));
    }
    out.push_str("</table>");
    let errors = top_errors(s);
    if !errors.is_empty() && n.outcome != AlertOutcome::Recovered {
        out.push_str("<h3>Top errors</h3><ul>");
        for e in errors {
            out.push_str(&format!("<li>{}</li>", escape(&e)));
        }
        out.push_str("</ul>");
    }
    out.push_str("<h3>See more</h3>");
    for c in &s.see_more {
        out.push_str(&format!("<pre>{}</pre>", escape(c)));
    }
    out.push_str("</body></html>");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A Slack incoming-webhook payload: Block Kit blocks and a `text` fallback.
pub fn slack_payload(n: &Notice, s: &SyncSummary, channel: Option<&str>) -> Value {
    let emoji = match n.outcome {
        AlertOutcome::Failed => ":red_circle:",
        AlertOutcome::PartiallySuccessful => ":large_orange_circle:",
        AlertOutcome::Recovered => ":large_green_circle:",
    };
    let fields: Vec<Value> = facts(s)
        .into_iter()
        .map(|(label, value)| json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", slack_escape(&value))}))
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&subject(n, s), 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("{emoji} {}", slack_escape(&opening(n, s))), 3000)}}),
    ];
    // A section holds at most 10 fields.
    for chunk in fields.chunks(10) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    let errors = top_errors(s);
    if !errors.is_empty() && n.outcome != AlertOutcome::Recovered {
        let list: Vec<String> = errors.iter().map(|e| format!("• {}", slack_escape(e))).collect();
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("*Top errors*\n{}", list.join("\n")), 3000)}}));
    }
    let commands: Vec<String> = s.see_more.iter().map(|c| format!("`{}`", c.replace('`', "'"))).collect();
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&format!("See more: {}", commands.join("  ")), 3000)}]}),
    );
    let mut payload = json!({"text": cut(&format!("{}: {}", subject(n, s), opening(n, s)), 3000), "blocks": blocks});
    if let Some(c) = channel {
        payload["channel"] = json!(c);
    }
    payload
}

/// Slack's mrkdwn reads `&`, `<` and `>` as markup.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The note of the alert's Event (at most 1 KiB).
pub fn event_note(n: &Notice, s: &SyncSummary) -> String {
    let e = &s.extracted;
    let mut note = format!(
        "{} Extracted {} (added {}, updated {}, deleted {}); loaded {}, failed {}.",
        opening(n, s),
        e.total,
        e.added,
        e.updated,
        e.deleted,
        s.loaded.succeeded,
        s.loaded.failed
    );
    if n.outcome != AlertOutcome::Recovered {
        let codes: Vec<String> = s.errors.iter().take(TOP_ERRORS).map(|e| format!("{} {}", e.count, e.code)).collect();
        if !codes.is_empty() {
            note.push_str(&format!(" Errors: {}.", codes.join(", ")));
        }
    }
    if let Some(c) = s.see_more.first() {
        note.push_str(&format!(" See: {c}"));
    }
    cut(&note, NOTE_LIMIT)
}

/// Cuts `s` to at most `max` bytes, at a character boundary, marked with `…`.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests;
