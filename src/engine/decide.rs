//! What to do with one staged change: skip it, reject it before sending, or
//! send it with its payload. One decision, used by the loader and by
//! `retl plan` alike, so that a plan shows what a sync does.

use crate::api::ChangeKind;
use crate::fieldmap::FieldMapper;
use crate::record::{Payload, codes, skip};
use crate::warehouse::{RowDecoder, StageFlag, StagedChange, decode_row};

/// The decision about one change.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Not sent, on purpose: a skip reason of [`crate::record::skip`].
    Skip(&'static str),
    /// Not sendable: a record code, a message, and the payload as far as it
    /// was built.
    Reject { code: String, message: String, payload: Option<Payload> },
    /// Sent with this payload (`null` for a delete).
    Send(Payload),
}

/// What a decision depends on besides the change.
pub struct Decider<'a> {
    /// The Mapping's `send` choice.
    pub send: &'a [ChangeKind],
    /// The destination's own skip reason for a kind it does not send.
    pub skip_for: &'a (dyn Fn(ChangeKind) -> Option<&'static str> + Sync),
    pub mapper: &'a FieldMapper,
    /// The Model's primary key column, for messages.
    pub primary_key: &'a str,
}

impl Decider<'_> {
    /// Decides about `change`, taking its row.
    pub fn decide(&self, change: &mut StagedChange) -> Decision {
        if change.flag == Some(StageFlag::Expired) {
            return Decision::Skip(skip::RETRY_WINDOW_EXPIRED);
        }
        if !self.send.contains(&change.kind) {
            return Decision::Skip(skip::NOT_SELECTED);
        }
        if let Some(reason) = (self.skip_for)(change.kind) {
            return Decision::Skip(reason);
        }
        if change.kind == ChangeKind::Deleted {
            return Decision::Send(Payload::null());
        }
        let reject = |code: &str, message: String, payload: Option<Payload>| Decision::Reject { code: code.to_string(), message, payload };
        let text = match change.row.take() {
            Some(Ok(text)) => text,
            Some(Err(message)) => return reject(codes::UNSUPPORTED_VALUE, message, None),
            None => return reject(codes::UNSUPPORTED_VALUE, "the row has no values".into(), None),
        };
        let flagged = match (change.flag, change.key.as_deref()) {
            (Some(StageFlag::NullKey), _) | (_, None) => {
                Some((codes::NULL_PRIMARY_KEY, format!("the row's primary key ({}) is null", self.primary_key)))
            }
            (Some(StageFlag::DuplicateKey), Some(k)) => {
                Some((codes::DUPLICATE_PRIMARY_KEY, format!("several rows have the primary key {k:?}; none of them is sent")))
            }
            _ => None,
        };
        // Most rows need nothing but copying (see `fieldmap::copy`).
        if flagged.is_none()
            && let Some(payload) = self.mapper.map_text(&text)
        {
            return Decision::Send(payload);
        }
        let row = match decode_row(&RowDecoder, &text) {
            Ok(row) => row,
            Err(message) => return reject(codes::UNSUPPORTED_VALUE, message, None),
        };
        // The row's values move into the payload: no copy per row.
        let mapped = self.mapper.map_owned(row);
        match (flagged, mapped) {
            (Some((code, message)), Ok(p) | Err((_, p))) => reject(code, message, Some(Payload::from(p))),
            (None, Err((e, partial))) => reject(&e.code, e.message, Some(Payload::from(partial))),
            (None, Ok(p)) => Decision::Send(Payload::from(p)),
        }
    }
}
