//! One transaction of sync state on a pooled connection, safe to cancel.
//!
//! sqlx's `Pool::begin` is not cancel-safe: a future dropped between sending
//! `BEGIN` and recording it (a task aborted, a deadline's timeout) hands the
//! connection back to the pool still inside a transaction. The next user's
//! statements then run in that transaction and hold their row locks until
//! the pool closes (on MariaDB a later prune waited out
//! `innodb_lock_wait_timeout` behind a sync killed mid-commit), and what they
//! write is never committed. A [`StateTx`] dropped before [`StateTx::commit`]
//! returns closes its connection instead: the server rolls the transaction
//! back when the session ends, and no other user ever sees it.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Executor, Pool};

/// A transaction on a connection of its own (see the module docs).
pub(crate) struct StateTx<DB: Database> {
    conn: PoolConnection<DB>,
    ended: bool,
}

impl<DB: Database> StateTx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Takes a connection from the pool and begins a transaction on it.
    pub async fn begin(pool: &Pool<DB>) -> Result<StateTx<DB>, sqlx::Error> {
        StateTx::begin_with(pool, "BEGIN").await
    }

    /// Like [`StateTx::begin`], with the statement that begins it (SQLite's
    /// `BEGIN IMMEDIATE` takes the write lock at once, so two processes'
    /// transactions run one after the other instead of failing half-way).
    pub async fn begin_with(pool: &Pool<DB>, begin: &'static str) -> Result<StateTx<DB>, sqlx::Error> {
        let conn = pool.acquire().await?;
        // From here on, dropping `tx` (on an error or a cancellation) closes
        // the connection.
        let mut tx = StateTx { conn, ended: false };
        tx.conn.execute(sqlx::raw_sql(begin)).await?;
        Ok(tx)
    }

    /// Runs `statements` in one transaction.
    pub async fn execute_all(pool: &Pool<DB>, statements: impl IntoIterator<Item = String>) -> Result<(), sqlx::Error> {
        let mut tx = StateTx::begin(pool).await?;
        for sql in statements {
            tx.conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql))).await?;
        }
        tx.commit().await
    }

    /// Commits; only then does the connection go back to the pool.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.conn.execute(sqlx::raw_sql("COMMIT")).await?;
        self.ended = true;
        Ok(())
    }
}

impl<DB: Database> Deref for StateTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for StateTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> Drop for StateTx<DB> {
    fn drop(&mut self) {
        if !self.ended {
            self.conn.close_on_drop();
        }
    }
}
