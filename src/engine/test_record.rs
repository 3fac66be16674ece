//! One test record (`retl test`, `kubectl retl test-record`): one row of
//! the model (the given key, or the first row), mapped as a sync maps it
//! and sent to the destination as an upsert, with every request and reply
//! recorded. It changes no sync state: it reads the model, not the
//! snapshot, writes no stage, log or run, and marks nothing in flight, so
//! the next sync finds the row exactly as before (a row never delivered is
//! still sent as added). The record gets an id of its own, not the one a
//! sync would give the row: a receiver that deduplicates by id (Segment's
//! `messageId`) must not take the sync's record for this one.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use super::{EngineError, codes};
use crate::api::{Action, ChangeKind, MappingSpec, ModelSpec};
use crate::destination::exchange::{self, Exchange};
use crate::destination::{Delivery, Destination, OutRecord};
use crate::fieldmap::FieldMapper;
use crate::warehouse::{DiffMode, DiffRequest, Row, Warehouse};

/// What to test.
pub struct TestRecord<'a> {
    /// The Mapping's UID (part of the record's id).
    pub mapping_uid: &'a str,
    pub mapping: &'a MappingSpec,
    pub model: &'a ModelSpec,
    pub action: &'a Action,
    /// The row's primary key as text; the model's first row when `None`.
    pub key: Option<&'a str>,
}

/// What became of the test record.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestOutcome {
    /// The primary key of the row tested.
    pub key: String,
    /// The row as the warehouse returned it (`None` when it cannot be carried as JSON).
    pub row: Option<Row>,
    /// The payload the Mapping made of it (what it could, when mapping failed).
    pub payload: Option<Value>,
    pub result: Verdict,
    /// Each request made and its reply, in order (retries included); none
    /// when the record was rejected before sending.
    pub exchanges: Vec<Exchange>,
}

/// Accepted, rejected (by the destination, or before sending), or not sent
/// because the destination could not be reached.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended_action: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Accepted,
    Rejected,
    /// The destination could not be reached, or kept answering 429/5xx.
    Unavailable,
}

impl Verdict {
    fn failed(outcome: Outcome, code: &str, message: String) -> Verdict {
        Verdict { outcome, code: Some(code.to_string()), message: Some(message), recommended_action: Some(codes::recommended_action(code)) }
    }
}

impl TestRecord<'_> {
    /// Reads the row, maps it and sends it; `Err` when there is no row to
    /// test or the model or mapping cannot be used at all.
    pub async fn run(&self, warehouse: &dyn Warehouse, destination: &dyn Destination) -> Result<TestOutcome, EngineError> {
        let columns = warehouse.describe(&self.model.query).await?;
        let request = DiffRequest {
            query: self.model.query.clone(),
            primary_key: self.model.primary_key.clone(),
            columns,
            mode: DiffMode::Normal,
            expire_before_ms: 0,
            stage: String::new(),
            dry_run: true,
        };
        crate::warehouse::check_columns(&request)?;
        let names: Vec<String> = request.columns.iter().map(|c| c.name.clone()).collect();
        let mapper = FieldMapper::new(&self.mapping.fields, self.action, self.mapping.skip_nulls, &names)?;
        let mut rows = warehouse.sample_row(&request, self.key).await?;
        let pk = &self.model.primary_key;
        let Some(first) = rows.first().cloned() else {
            return Err(EngineError::NoRow(match self.key {
                Some(k) => format!(
                    "the model returns no row whose primary key ({pk}) is {k:?}; check the key (matched as text, as `retl plan` and the record log show keys), or leave out --key to test the model's first row"
                ),
                None => format!("the model returns no row with a primary key ({pk}): there is nothing to test; check the model's query"),
            }));
        };
        let mut outcome = TestOutcome { key: first.key.clone(), row: None, payload: None, result: accepted(), exchanges: Vec::new() };
        if rows.len() > 1 {
            outcome.result = Verdict::failed(
                Outcome::Rejected,
                codes::DUPLICATE_PRIMARY_KEY,
                format!("several rows have the primary key {:?}; a sync sends none of them, so nothing was sent", first.key),
            );
            return Ok(outcome);
        }
        let row = match rows.remove(0).row {
            Ok(row) => row,
            Err(message) => {
                outcome.result = Verdict::failed(Outcome::Rejected, codes::UNSUPPORTED_VALUE, format!("{message}; nothing was sent"));
                return Ok(outcome);
            }
        };
        let mapped = mapper.map(&row);
        outcome.row = Some(row);
        let payload = match mapped {
            Ok(p) => p,
            Err((e, partial)) => {
                outcome.payload = Some(partial);
                outcome.result = Verdict::failed(Outcome::Rejected, &e.code, format!("{}; nothing was sent", e.message));
                return Ok(outcome);
            }
        };
        outcome.payload = Some(payload.clone());
        // An id no sync gives: see the module's documentation.
        let hash = format!("test-record:{}", Timestamp::now().as_nanosecond());
        let id = crate::destination::record_id(self.mapping_uid, &first.key, ChangeKind::Added, &hash);
        let record = OutRecord { key: first.key.clone(), kind: ChangeKind::Added, payload: payload.into(), id };
        let (sent, exchanges) = exchange::recorded(destination.send(&self.mapping.action, std::slice::from_ref(&record))).await;
        outcome.exchanges = exchanges;
        outcome.result = match sent {
            Ok(deliveries) => match deliveries.into_iter().next() {
                Some(Delivery::Accepted) => accepted(),
                Some(Delivery::Rejected { code, message }) => Verdict::failed(Outcome::Rejected, &code, message),
                None => Verdict::failed(
                    Outcome::Rejected,
                    codes::NO_RESULT,
                    "the destination answered for fewer records than it was sent".into(),
                ),
            },
            Err(e) => Verdict::failed(Outcome::Unavailable, codes::DESTINATION_UNAVAILABLE, e.to_string()),
        };
        Ok(outcome)
    }
}

fn accepted() -> Verdict {
    Verdict { outcome: Outcome::Accepted, code: None, message: None, recommended_action: None }
}
