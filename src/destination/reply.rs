//! Reading an http destination's reply to one batch.
//!
//! A reply either says what happened to each record (a `results` array) or
//! to the whole batch (its status). A reply that cannot be read is never
//! taken as success: a 2xx whose `results` are garbled, or longer than the
//! batch, or (for a destination that declared `replies: perRecord`) missing
//! or of the wrong length, applied nothing retl can tell, so the batch is
//! retried like a 5xx.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Delivery;
use super::OutRecord;
use crate::api::HttpReplies;
use crate::record::codes;

/// The parts of a reply retl reads, borrowed from its text: a reply to a
/// batch of 1,000 is read without building a tree of 1,000 objects.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    results: Option<&'a RawValue>,
}

/// One entry of `results`; any field may be of any type (a `key` of
/// another type is matched by its text, an `ok` that is not `true` is a
/// rejection).
#[derive(Default, Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ok: Option<&'a RawValue>,
    #[serde(borrow, default)]
    code: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
}

/// A reply whose `results` are all objects: the usual case, read in one pass.
#[derive(Deserialize)]
struct Entries<'a> {
    #[serde(borrow)]
    results: Vec<Entry<'a>>,
}

/// A reply's `results`: `Ok(None)` when it has none (or is not a JSON
/// object), `Err` when they are not an array.
fn entries(text: &str) -> Result<Option<Vec<Entry<'_>>>, String> {
    // Only an object has a `results` field (serde would take an array for
    // the struct's fields in order).
    if !text.trim_start().starts_with('{') {
        return Ok(None);
    }
    if let Ok(reply) = serde_json::from_str::<Entries>(text) {
        return Ok(Some(reply.results));
    }
    // Anything else is looked at part by part.
    let Some(results) = serde_json::from_str::<Reply>(text).ok().and_then(|r| r.results) else { return Ok(None) };
    let Ok(results) = serde_json::from_str::<Vec<&RawValue>>(results.get()) else {
        return Err("the reply's \"results\" is not an array".into());
    };
    // An entry that is not an object says nothing: a rejection.
    Ok(Some(results.iter().map(|r| serde_json::from_str(r.get()).unwrap_or_default()).collect()))
}

/// A field that is there, even as `null` (an `Option` alone reads a `null`
/// as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// What a reply says about the records of its batch: `Ok(Some)` one
/// delivery per record, `Ok(None)` nothing per record (the status decides
/// for the whole batch), `Err` why the reply cannot be read.
pub fn read(text: &str, batch: &[OutRecord], replies: HttpReplies) -> Result<Option<Vec<Delivery>>, String> {
    let Some(results) = entries(text)? else {
        return match replies {
            HttpReplies::PerRecord => Err("the reply has no \"results\" array, and this destination answers per record".into()),
            HttpReplies::Batch => Ok(None),
        };
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
    if !results.iter().all(|r| r.key.is_some()) {
        return Ok(Some((0..batch.len()).map(|i| results.get(i).map_or_else(missing, delivery)).collect()));
    }
    // Most replies answer in the batch's order: matched by position, no
    // key needs hashing.
    let in_order =
        results.len() == batch.len() && results.iter().zip(batch).all(|(r, rec)| r.key.and_then(string).is_some_and(|k| k == rec.key));
    if in_order {
        return Ok(Some(results.iter().map(delivery).collect()));
    }
    let sent: HashSet<&str> = batch.iter().map(|r| r.key.as_str()).collect();
    let mut by_key: HashMap<String, &Entry> = HashMap::with_capacity(results.len());
    for r in &results {
        let key = r.key.map(key_text).unwrap_or_default();
        if !sent.contains(key.as_str()) {
            return Err(format!("the reply has a result for the key {key:?}, which the batch did not carry"));
        }
        if by_key.insert(key.clone(), r).is_some() {
            return Err(format!("the reply has two results for the key {key:?}"));
        }
    }
    Ok(Some(batch.iter().map(|rec| by_key.get(&rec.key).map_or_else(missing, |r| delivery(r))).collect()))
}

/// A JSON string's text, or `None` for a value of another type.
fn string(v: &RawValue) -> Option<Cow<'_, str>> {
    let raw = v.get();
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        Some(_) => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
        None => None,
    }
}

/// A key's text: a string as it reads, any other value as compact JSON.
fn key_text(v: &RawValue) -> String {
    match string(v) {
        Some(s) => s.into_owned(),
        None => serde_json::from_str::<serde_json::Value>(v.get()).map(|v| v.to_string()).unwrap_or_else(|_| v.get().to_string()),
    }
}

fn delivery(item: &Entry) -> Delivery {
    if item.ok.is_some_and(|ok| ok.get() == "true") {
        return Delivery::Accepted;
    }
    let text = |v: Option<&RawValue>| v.and_then(string).map(Cow::into_owned);
    Delivery::Rejected {
        code: text(item.code).unwrap_or_else(|| codes::REJECTED.to_string()),
        message: text(item.message).unwrap_or_else(|| "the destination rejected the record without a message".to_string()),
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
        assert!(batch_mode(r#"{"results":null}"#).unwrap_err().contains("not an array"));
        assert_eq!(batch_mode(r#"[{"ok":true}]"#), Ok(None), "only an object has results");
    }

    #[test]
    fn keys_and_messages_are_read_as_text() {
        let batch = [rec("a\"b"), rec("7")];
        let read = |text: &str| read(text, &batch, HttpReplies::Batch).unwrap().unwrap();
        let by_key = read(r#"{"results":[{"key":7,"ok":"true"},{"key":"a\"b","ok":true}]}"#);
        assert_eq!(by_key[0], Delivery::Accepted, "an escaped key matches its record");
        assert!(matches!(&by_key[1], Delivery::Rejected { code, .. } if code == codes::REJECTED), "only true accepts");
        let message = read(r#"{"results":[{"key":"a\"b","ok":false,"code":5,"message":"caf\u00e9 \"x\""},"oops"]}"#);
        assert_eq!(message[0], Delivery::Rejected { code: codes::REJECTED.into(), message: "café \"x\"".into() });
        assert!(matches!(&message[1], Delivery::Rejected { code, .. } if code == codes::REJECTED), "an entry that is not an object");
        let null_key = super::read(r#"{"results":[{"key":null,"ok":true},{"key":"7","ok":true}]}"#, &batch, HttpReplies::Batch);
        assert!(null_key.unwrap_err().contains("\"null\""), "a null key is a key that matches no record");
    }
}
