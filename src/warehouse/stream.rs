//! A first sync's changes read straight from the model, as the server
//! returns them ([`DiffCounts::streamed`](super::DiffCounts::streamed)).
//!
//! With an empty snapshot every model row is a change (added), so staging
//! would only write each row's JSON into a table to read it back: instead
//! one statement runs the model, builds each row's JSON and hash, and its
//! rows are read page by page while earlier pages are mapped and sent. The
//! server turns rows into JSON while retl and the destination work; a slow
//! reader holds the server back (the socket's buffer fills), so memory
//! stays at the pages in flight.
//!
//! The statement runs on a pooled connection of its own, inside a
//! transaction the dialect opens with its settings. Should the reader stop
//! early (a cancel, a failed commit), the connection is closed rather than
//! handed back with rows still unread.

use futures::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Database, Executor, Pool};
use tokio::sync::mpsc;

use super::{ChangeStream, StageFlag, StagedChange, WarehouseError};
use crate::record::ChangeKind;

/// What a dialect gives to stream a model: the statements to run first in
/// the transaction (settings), the streaming statement, and how to read
/// one of its rows into a change (numbered by the reader).
pub struct Streamed<DB: Database> {
    pub setup: Vec<String>,
    pub sql: String,
    pub read: fn(&DB::Row, i64) -> Result<StagedChange, sqlx::Error>,
    pub error: Box<dyn Fn(&'static str, sqlx::Error) -> WarehouseError + Send + Sync>,
}

/// A model row read by a first sync's stream: an addition, failed as a
/// null key or a duplicate (`dup`: its key is among the stage's duplicates).
pub fn added(position: i64, key: Option<String>, dup: bool, hash: String, row: String) -> StagedChange {
    let flag = match (&key, dup) {
        (None, _) => Some(StageFlag::NullKey),
        (_, true) => Some(StageFlag::DuplicateKey),
        _ => None,
    };
    StagedChange { position, key, hash, row: Some(Ok(row)), kind: ChangeKind::Added, retried: false, flag }
}

/// Runs `s` on a connection of `pool` in a task of its own and hands its
/// changes over in pages of `page`.
pub fn changes<DB>(pool: &Pool<DB>, s: Streamed<DB>, page: usize) -> ChangeStream<'static>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: for<'q> sqlx::IntoArguments<DB>,
{
    let (tx, rx) = mpsc::channel::<Result<Vec<StagedChange>, WarehouseError>>(1);
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut conn = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err((s.error)("read", e))).await;
                return;
            }
        };
        let finished = pump(&mut conn, &s, page, &tx).await;
        match finished {
            Ok(true) => {}
            Ok(false) => conn.close_on_drop(),
            Err(e) => {
                conn.close_on_drop();
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// Sends the statement's rows as pages; `Ok(true)` once they were all read
/// and the transaction ended, `Ok(false)` when the reader went away first.
async fn pump<DB>(
    conn: &mut PoolConnection<DB>,
    s: &Streamed<DB>,
    page: usize,
    tx: &mpsc::Sender<Result<Vec<StagedChange>, WarehouseError>>,
) -> Result<bool, WarehouseError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: for<'q> sqlx::IntoArguments<DB>,
{
    let err = |e| (s.error)("read", e);
    (&mut **conn).execute(sqlx::raw_sql("BEGIN")).await.map_err(err)?;
    for sql in &s.setup {
        (&mut **conn).execute(sqlx::raw_sql(AssertSqlSafe(sql.clone()))).await.map_err(err)?;
    }
    let mut rows = sqlx::query::<DB>(AssertSqlSafe(s.sql.clone())).fetch(&mut **conn);
    let mut changes = Vec::with_capacity(page);
    let mut position = 0i64;
    while let Some(row) = rows.try_next().await.map_err(super::rows::query_err)? {
        position += 1;
        changes.push((s.read)(&row, position).map_err(err)?);
        if changes.len() >= page && tx.send(Ok(std::mem::replace(&mut changes, Vec::with_capacity(page)))).await.is_err() {
            return Ok(false);
        }
    }
    drop(rows);
    if !changes.is_empty() && tx.send(Ok(changes)).await.is_err() {
        return Ok(false);
    }
    (&mut **conn).execute(sqlx::raw_sql("COMMIT")).await.map_err(err)?;
    Ok(true)
}
