//! One batch in one transaction, and a refused row failing alone.
//!
//! The batch is grouped by what each record writes: upserts by the set of
//! fields their payload carries (a field left out of the payload, as a
//! mapping's `skipNulls` does, leaves its column as it is), and deletes. Each
//! group is one statement under a SAVEPOINT. When the server refuses a
//! statement for a row's data, the statement is rolled back to its savepoint
//! and its rows are split in halves, each tried under a savepoint of its own,
//! until every refused row stands alone: `k` bad rows among `n` cost about
//! `2k·log2(n)` statements, and a batch without one costs one per group.
//! Rows are unique by key within a batch (the engine stages one change per
//! key), so the order of the groups changes nothing.

use futures::future::BoxFuture;
use serde_json::Value;

use super::schema::{Class, Dialect, TableInfo, Target, Tx};
use crate::api::{ActionField, ChangeKind};
use crate::destination::OutRecord;

/// Why a batch as a whole failed.
pub enum Failure {
    /// The server could not be reached (the message says what to check).
    Down(String),
    /// Worth another try in a new transaction.
    Transient(String),
    /// The table does not fit.
    Table(String),
    Other(String),
}

impl Failure {
    pub fn of(d: &dyn Dialect, e: &sqlx::Error) -> Failure {
        let message = d.message(e);
        match d.class(e) {
            Class::Table => Failure::Table(message),
            Class::Transient => Failure::Transient(message),
            // A row error outside a row's statement (creating the table, say) fails the batch.
            Class::Row(_) | Class::Other => Failure::Other(message),
        }
    }
}

/// The statements of one batch, before any is run.
pub struct Plan {
    groups: Vec<Group>,
    len: usize,
}

/// Records that one statement writes: the batch position and the values of
/// each record, one per column (`columns[0]` is the key column).
struct Group {
    delete: bool,
    columns: Vec<String>,
    rows: Vec<(usize, Vec<Value>)>,
}

impl Plan {
    pub fn new(t: &Target, fields: &[ActionField], batch: &[OutRecord], d: &dyn Dialect) -> Plan {
        let mut groups: Vec<Group> = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let key = Value::String(r.key.clone());
            let (delete, present, values) = if r.kind == ChangeKind::Deleted {
                (true, Vec::new(), vec![key])
            } else {
                let payload = r.payload.to_value();
                let payload = payload.as_object();
                let present: Vec<&ActionField> = fields.iter().filter(|f| payload.is_some_and(|p| p.contains_key(&f.name))).collect();
                let mut values = vec![key];
                for f in &present {
                    let v = payload.and_then(|p| p.get(&f.name)).cloned().unwrap_or(Value::Null);
                    values.push(d.encode(f.type_, v));
                }
                (false, present.into_iter().map(|f| f.name.clone()).collect(), values)
            };
            let columns: Vec<String> = std::iter::once(t.key.clone()).chain(present).collect();
            match groups.iter_mut().find(|g| g.delete == delete && g.columns == columns) {
                Some(g) => g.rows.push((i, values)),
                None => groups.push(Group { delete, columns, rows: vec![(i, values)] }),
            }
        }
        Plan { groups, len: batch.len() }
    }

    /// Each record as its statement writes it, in batch order: whether it
    /// is a delete, and its columns and values (for a recorded
    /// [`exchange`](crate::destination::exchange)).
    pub fn rows(&self) -> Vec<(bool, serde_json::Map<String, Value>)> {
        let mut rows: Vec<(usize, bool, serde_json::Map<String, Value>)> = Vec::with_capacity(self.len);
        for g in &self.groups {
            for (i, values) in &g.rows {
                rows.push((*i, g.delete, g.columns.iter().cloned().zip(values.iter().cloned()).collect()));
            }
        }
        rows.sort_by_key(|(i, _, _)| *i);
        rows.into_iter().map(|(_, delete, row)| (delete, row)).collect()
    }
}

/// What happened to each record of the batch: `None` written, `Some` the
/// code and message of a row the server refused.
pub type Outcomes = Vec<Option<(&'static str, String)>>;

/// Runs the batch in one transaction.
pub async fn run(d: &dyn Dialect, t: &TableInfo, plan: &Plan) -> Result<Outcomes, Failure> {
    // No connection: the caller finds out why (or tries again).
    let mut tx = d.begin().await.map_err(|e| Failure::Down(d.message(&e)))?;
    let mut outcomes = vec![None; plan.len];
    for g in &plan.groups {
        let all: Vec<usize> = (0..g.rows.len()).collect();
        apply(tx.as_mut(), d, t, g, &all, 0, &mut outcomes).await?;
    }
    tx.commit().await.map_err(|e| Failure::of(d, &e))?;
    Ok(outcomes)
}

/// Writes the rows `items` of `g` under a savepoint, splitting them when the
/// server refuses one.
fn apply<'a>(
    tx: &'a mut dyn Tx,
    d: &'a dyn Dialect,
    t: &'a TableInfo,
    g: &'a Group,
    items: &'a [usize],
    depth: usize,
    outcomes: &'a mut Outcomes,
) -> BoxFuture<'a, Result<(), Failure>> {
    Box::pin(async move {
        let fail = |e: sqlx::Error| Failure::of(d, &e);
        let savepoint = format!("retl_{depth}");
        tx.exec(&format!("SAVEPOINT {savepoint}")).await.map_err(fail)?;
        let rows: Vec<&[Value]> = items.iter().map(|i| g.rows[*i].1.as_slice()).collect();
        let written = if g.delete { tx.delete(t, &g.columns[0], &rows).await } else { tx.upsert(t, &g.columns, &rows).await };
        if let Err(e) = written {
            let Class::Row(code) = d.class(&e) else { return Err(fail(e)) };
            tx.exec(&format!("ROLLBACK TO SAVEPOINT {savepoint}")).await.map_err(fail)?;
            if let [one] = items {
                outcomes[g.rows[*one].0] = Some((code, d.message(&e)));
            } else {
                let (left, right) = items.split_at(items.len() / 2);
                apply(&mut *tx, d, t, g, left, depth + 1, &mut *outcomes).await?;
                apply(&mut *tx, d, t, g, right, depth + 1, &mut *outcomes).await?;
            }
        }
        tx.exec(&format!("RELEASE SAVEPOINT {savepoint}")).await.map_err(fail)
    })
}
