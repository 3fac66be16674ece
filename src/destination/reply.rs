//! Reading an http destination's reply to one batch.
//!
//! A reply either says what happened to each record (a `results` array) or
//! to the whole batch (its status). A reply that cannot be read is never
//! taken as success: a 2xx whose `results` are garbled, or longer than the
//! batch, or (for a destination that declared `replies: perRecord`) missing
//! or of the wrong length, applied nothing retl can tell, so the batch is
//! retried like a 5xx.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::Delivery;
use super::OutRecord;
use crate::api::HttpReplies;
use crate::record::codes;

/// What a reply says about the records of its batch: `Ok(Some)` one
/// delivery per record, `Ok(None)` nothing per record (the status decides
/// for the whole batch), `Err` why the reply cannot be read.
pub fn read(text: &str, batch: &[OutRecord], replies: HttpReplies) -> Result<Option<Vec<Delivery>>, String> {
    let results = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut o)) => o.remove("results"),
        _ => None,
    };
    let Some(results) = results else {
        return match replies {
            HttpReplies::PerRecord => Err("the reply has no \"results\" array, and this destination answers per record".into()),
            HttpReplies::Batch => Ok(None),
        };
    };
    let Value::Array(results) = results else {
        return Err("the reply's \"results\" is not an array".into());
    };
    if results.len() > batch.len() {
        return Err(format!("the reply has {} results for a batch of {} records", results.len(), batch.len()));
    }
    if replies == HttpReplies::PerRecord && results.len() != batch.len() {
        return Err(format!(
            "the reply has {} results for a batch of {} records, and this destination answers per record",
            results.len(),
            batch.len()
        ));
    }
    let missing = || Delivery::Rejected {
        code: codes::NO_RESULT.to_string(),
        message: "the destination's reply has no result for this record".to_string(),
    };
    if !results.iter().all(|r| r.get("key").is_some()) {
        return Ok(Some((0..batch.len()).map(|i| results.get(i).map_or_else(missing, delivery)).collect()));
    }
    // Most replies answer in the batch's order: matched by position, no
    // key needs hashing.
    let in_order = results.len() == batch.len()
        && results.iter().zip(batch).all(|(r, rec)| match &r["key"] {
            Value::String(k) => *k == rec.key,
            _ => false, // a key of another type: matched by text below
        });
    if in_order {
        return Ok(Some(results.iter().map(delivery).collect()));
    }
    let sent: HashSet<&str> = batch.iter().map(|r| r.key.as_str()).collect();
    let mut by_key: HashMap<String, &Value> = HashMap::with_capacity(results.len());
    for r in &results {
        let key = key_text(&r["key"]);
        if !sent.contains(key.as_str()) {
            return Err(format!("the reply has a result for the key {key:?}, which the batch did not carry"));
        }
        if by_key.insert(key.clone(), r).is_some() {
            return Err(format!("the reply has two results for the key {key:?}"));
        }
    }
    Ok(Some(batch.iter().map(|rec| by_key.get(&rec.key).map_or_else(missing, |r| delivery(r))).collect()))
}

fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn delivery(item: &Value) -> Delivery {
    if item.get("ok").and_then(Value::as_bool) == Some(true) {
        return Delivery::Accepted;
    }
    Delivery::Rejected {
        code: item.get("code").and_then(Value::as_str).unwrap_or(codes::REJECTED).to_string(),
        message: item.get("message").and_then(Value::as_str).unwrap_or("the destination rejected the record without a message").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ChangeKind;

    fn rec(key: &str) -> OutRecord {
        OutRecord { key: key.into(), kind: ChangeKind::Added, payload: serde_json::json!({}).into(), id: String::new() }
    }

    #[test]
    fn replies_are_attributed_by_key_then_by_position() {
        let batch = [rec("1"), rec("2"), rec("3")];
        let read = |text: &str| read(text, &batch, HttpReplies::Batch);
        let by_key = read(r#"{"results":[{"key":"2","ok":false,"code":"BAD","message":"no"},{"key":1,"ok":true}]}"#).unwrap().unwrap();
        assert_eq!(by_key[0], Delivery::Accepted);
        assert_eq!(by_key[1], Delivery::Rejected { code: "BAD".into(), message: "no".into() });
        assert!(matches!(&by_key[2], Delivery::Rejected { code, .. } if code == codes::NO_RESULT));
        let by_pos = read(r#"{"results":[{"ok":true},{"ok":false}]}"#).unwrap().unwrap();
        assert_eq!(by_pos[0], Delivery::Accepted);
        assert!(matches!(&by_pos[1], Delivery::Rejected { code, .. } if code == codes::REJECTED));
        assert_eq!(read("not json"), Ok(None), "a batch destination may answer anything");
    }

    #[test]
    fn replies_that_cannot_be_read_are_errors() {
        let batch = [rec("1"), rec("2")];
        let batch_mode = |text: &str| read(text, &batch, HttpReplies::Batch);
        assert!(batch_mode(r#"{"results":"ok"}"#).is_err());
        assert!(batch_mode(r#"{"results":[{"ok":true},{"ok":true},{"ok":true}]}"#).unwrap_err().contains("3 results for a batch of 2"));
        assert!(batch_mode(r#"{"results":[{"key":"9","ok":true}]}"#).unwrap_err().contains("\"9\""));
        assert!(batch_mode(r#"{"results":[{"key":"1","ok":true},{"key":"1","ok":true}]}"#).is_err());
        let per_record = |text: &str| read(text, &batch, HttpReplies::PerRecord);
        assert!(per_record("<html>oops</html>").is_err());
        assert!(per_record("").is_err());
        assert!(per_record(r#"{"results":[{"ok":true}]}"#).is_err());
        assert_eq!(per_record(r#"{"results":[{"ok":true},{"ok":true}]}"#), Ok(Some(vec![Delivery::Accepted; 2])));
    }
}
