//! What one commit writes, in the shape of state layout 2: the records the
//! destination acknowledged (or that were skipped) go in a few array rows,
//! one per operation, outcome and skip reason; only rejected records get a
//! row each (in the record log and the pending failures). Every dialect
//! commits a [`BatchPlan`] in O(1) statements and rows per batch.

use std::collections::HashMap;

use crate::record::{OutcomeKind, RecordOutcome};

/// Acknowledged records of one operation, outcome and code (the skip
/// reason), in commit order: an ack row of the record log.
#[derive(Debug, PartialEq)]
pub struct AckGroup<'a> {
    /// `added`, `updated` or `deleted`.
    pub op: &'static str,
    /// `delivered` or `skipped`.
    pub outcome: &'static str,
    /// The skip reason of skipped records.
    pub code: Option<&'a str>,
    pub keys: Vec<&'a str>,
    /// Each key's row hash (empty for deletes).
    pub hashes: Vec<&'a str>,
}

/// One record the record log keeps a row of its own for: a rejected record
/// (with its error and payload), or one without a key.
#[derive(Debug, PartialEq)]
pub struct LogRow<'a> {
    pub key: Option<&'a str>,
    pub op: &'static str,
    pub outcome: &'static str,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub payload: Option<&'a str>,
}

/// The rows one commit writes.
#[derive(Debug, Default)]
pub struct BatchPlan<'a> {
    pub acks: Vec<AckGroup<'a>>,
    pub log_rows: Vec<LogRow<'a>>,
    /// Rejected keys into the pending failures, each key once (the last
    /// rejection of a key in the batch wins): (key, code, message).
    pub pending: Vec<(&'a str, &'a str, &'a str)>,
}

impl<'a> BatchPlan<'a> {
    pub fn new(outcomes: &'a [RecordOutcome]) -> BatchPlan<'a> {
        let mut plan = BatchPlan::default();
        let mut pending: HashMap<&str, usize> = HashMap::new();
        for o in outcomes {
            let op = o.kind.name();
            match (&o.result, o.key.as_deref()) {
                (OutcomeKind::Delivered | OutcomeKind::Skipped { .. }, Some(key)) => {
                    let code = match &o.result {
                        OutcomeKind::Skipped { reason } => Some(reason.as_str()),
                        _ => None,
                    };
                    let outcome = o.result.name();
                    // A handful of groups at most: found by looking, not hashing.
                    let at = match plan.acks.iter().rposition(|g| g.op == op && g.outcome == outcome && g.code == code) {
                        Some(at) => at,
                        None => {
                            plan.acks.push(AckGroup { op, outcome, code, keys: Vec::new(), hashes: Vec::new() });
                            plan.acks.len() - 1
                        }
                    };
                    plan.acks[at].keys.push(key);
                    plan.acks[at].hashes.push(o.hash.as_str());
                }
                (OutcomeKind::Skipped { reason }, None) => {
                    plan.log_rows.push(LogRow { key: None, op, outcome: "skipped", code: Some(reason), error: None, payload: None });
                }
                (OutcomeKind::Delivered, None) => {
                    plan.log_rows.push(LogRow { key: None, op, outcome: "delivered", code: None, error: None, payload: None });
                }
                (OutcomeKind::Rejected { code, message, payload }, key) => {
                    plan.log_rows.push(LogRow {
                        key,
                        op,
                        outcome: "rejected",
                        code: Some(code),
                        error: Some(message),
                        payload: payload.as_deref(),
                    });
                    if let Some(k) = key {
                        let entry = (k, code.as_str(), message.as_str());
                        match pending.get(k) {
                            Some(&i) => plan.pending[i] = entry,
                            None => {
                                pending.insert(k, plan.pending.len());
                                plan.pending.push(entry);
                            }
                        }
                    }
                }
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChangeKind;

    fn outcome(key: Option<&str>, kind: ChangeKind, result: OutcomeKind) -> RecordOutcome {
        RecordOutcome { key: key.map(str::to_string), hash: key.map(|k| format!("h{k}")).unwrap_or_default(), kind, result }
    }

    #[test]
    fn acknowledged_records_become_a_few_array_rows_and_rejects_a_row_each() {
        let rejected = |m: &str| OutcomeKind::Rejected { code: "C".into(), message: m.into(), payload: Some("{}".into()) };
        let skipped = || OutcomeKind::Skipped { reason: "NotSelected".into() };
        let outcomes = vec![
            outcome(Some("1"), ChangeKind::Added, OutcomeKind::Delivered),
            outcome(Some("2"), ChangeKind::Deleted, OutcomeKind::Delivered),
            outcome(Some("3"), ChangeKind::Added, rejected("first")),
            outcome(Some("3"), ChangeKind::Added, rejected("second")),
            outcome(Some("4"), ChangeKind::Updated, skipped()),
            outcome(Some("5"), ChangeKind::Added, OutcomeKind::Delivered),
            outcome(None, ChangeKind::Added, rejected("null key")),
        ];
        let plan = BatchPlan::new(&outcomes);
        let groups: Vec<_> = plan.acks.iter().map(|g| (g.op, g.outcome, g.code, g.keys.clone(), g.hashes.clone())).collect();
        assert_eq!(
            groups,
            vec![
                ("added", "delivered", None, vec!["1", "5"], vec!["h1", "h5"]),
                ("deleted", "delivered", None, vec!["2"], vec!["h2"]),
                ("updated", "skipped", Some("NotSelected"), vec!["4"], vec!["h4"]),
            ]
        );
        assert_eq!(plan.log_rows.len(), 3, "each rejection keeps its own row: {:?}", plan.log_rows);
        assert_eq!(plan.pending, vec![("3", "C", "second")], "a key is pending once, with its last error");
    }
}
