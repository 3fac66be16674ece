//! PostgreSQL: the snapshot moves forward. What a sync committed is merged
//! set-based when it ends (or, after a crash, when the next sync starts);
//! into an empty snapshot the rows go in without the primary key's index,
//! which is then built once, after them.
//!
//! A first sync (or one after a reset) fills the snapshot as it goes
//! instead. It streams every model row into an empty snapshot, and merging
//! at the end would leave the whole insert (0.6 s per million records) for
//! after the load. So its stage drops the empty snapshot's primary key
//! ([`start`]), and each commit puts its acknowledged records straight into
//! the snapshot and marks their `acks` row merged, in the same statement
//! ([`filling`]). The merge that ends the sync builds the key once, over
//! all the rows ([`finish`]).
//!
//! A snapshot without its primary key is the only sign of this mode, kept
//! in the database rather than in the process: a sync killed in the middle
//! leaves it so, and the next sync's merge restores the key before anything
//! else touches the snapshot. Only a first sync sees a snapshot without its
//! key (every other sync merges first), so each key goes in once; should a
//! key ever be there twice, the older entry goes when the key is built.

use sqlx::postgres::Postgres;
use sqlx::{AssertSqlSafe, Executor};

use super::state::Store;
use crate::warehouse::rows::quote_ident;
use crate::warehouse::server::literal;
use crate::warehouse::state_tx::StateTx;
use crate::warehouse::{StateScope, WarehouseError};

/// The snapshot's primary-key constraint, as a query of its name.
fn primary_key_sql(snapshot: &str) -> String {
    format!("SELECT conname::text FROM pg_constraint WHERE conrelid = {}::regclass AND contype = 'p'", literal(snapshot))
}

/// The name of the snapshot's primary key, when it has one.
async fn primary_key<'c>(conn: impl sqlx::PgExecutor<'c>, snapshot: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(primary_key_sql(snapshot))).fetch_optional(conn).await
}

/// SQL that is true while a first sync fills `snapshot` (it has no primary
/// key), for a commit's statement.
pub(super) fn filling(snapshot: &str) -> String {
    format!("NOT EXISTS ({})", primary_key_sql(snapshot))
}

/// Drops the primary key of an empty snapshot, in `tx`. Its keys become
/// "C" text on the way (an older build's snapshot), so that the key is
/// built the fast way afterwards.
pub(super) async fn start(tx: &mut StateTx<Postgres>, snapshot: &str) -> Result<(), sqlx::Error> {
    let drop = match primary_key(&mut **tx, snapshot).await? {
        Some(name) => format!("DROP CONSTRAINT {}, ", quote_ident(&name)),
        None => String::new(),
    };
    tx.execute(AssertSqlSafe(format!("ALTER TABLE {snapshot} {drop}ALTER COLUMN k TYPE text COLLATE \"C\""))).await.map(|_| ())
}

/// Builds the snapshot's primary key in `tx`.
async fn build_key(tx: &mut StateTx<Postgres>, st: &Store, scope: &StateScope) -> Result<(), sqlx::Error> {
    let s = st.table("snapshot", scope);
    let build = format!("ALTER TABLE {s} ADD CONSTRAINT {} PRIMARY KEY (k)", quote_ident(&format!("snapshot_{}_pkey", scope.id)));
    tx.execute(sqlx::raw_sql("SET LOCAL maintenance_work_mem = '256MB'; SAVEPOINT build")).await?;
    match tx.execute(AssertSqlSafe(build.clone())).await {
        // A key there twice: never expected (see the module docs), and
        // mended rather than leaving a Mapping that cannot sync again.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            tracing::warn!(snapshot = %s, "the snapshot holds a key twice; the older entry goes");
            let dedupe = format!(
                "ROLLBACK TO SAVEPOINT build;
                 DELETE FROM {s} a USING {s} b WHERE a.k = b.k AND (a.delivered_at, a.ctid) < (b.delivered_at, b.ctid)"
            );
            tx.execute(sqlx::raw_sql(AssertSqlSafe(dedupe))).await?;
            tx.execute(AssertSqlSafe(build)).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// Builds the snapshot's primary key when it has none (a first sync ended,
/// or was killed). The caller holds the Mapping's lock, so the look needs
/// no transaction of its own.
async fn finish(st: &Store, scope: &StateScope) -> Result<(), WarehouseError> {
    let err = |e| st.error("merged", e);
    if primary_key(&st.pool, &st.table("snapshot", scope)).await.map_err(err)?.is_some() {
        return Ok(());
    }
    let mut tx = StateTx::begin(&st.pool).await.map_err(err)?;
    build_key(&mut tx, st, scope).await.map_err(err)?;
    tx.commit().await.map_err(err)
}

/// Merges every sync's acknowledged records not merged yet into the
/// snapshot, one sync at a time in the order they were committed; returns
/// how many records moved.
pub async fn merge(st: &Store, scope: &StateScope) -> Result<u64, WarehouseError> {
    // A first sync filled the snapshot without its key: built first, as
    // what follows needs it.
    finish(st, scope).await?;
    let a = st.table("acks", scope);
    let syncs: Vec<String> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT sync FROM {a} WHERE NOT merged GROUP BY sync ORDER BY min(id)")))
            .fetch_all(&st.pool)
            .await
            .map_err(|e| st.error("read", e))?;
    let mut moved = 0;
    for sync in syncs {
        moved += merge_sync(st, scope, &sync).await?;
    }
    Ok(moved)
}

/// Merges one sync's acknowledged records, in one transaction: upserts and
/// deletes into the snapshot, their keys out of the pending failures, the
/// acks marked merged.
async fn merge_sync(st: &Store, scope: &StateScope, sync: &str) -> Result<u64, WarehouseError> {
    let err = |e| st.error("merged", e);
    let (s, p, a) = (st.table("snapshot", scope), st.table("pending", scope), st.table("acks", scope));
    let mut tx = StateTx::begin(&st.pool).await.map_err(err)?;
    let acked = format!("{a} a CROSS JOIN LATERAL unnest(a.keys, a.hashes) AS u(k, h) WHERE a.sync = $1 AND NOT a.merged");
    let upserts = format!("SELECT u.k, u.h, a.at FROM {acked} AND a.op <> 'deleted'");
    let empty: bool =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT NOT EXISTS (SELECT 1 FROM {s})"))).fetch_one(&mut *tx).await.map_err(err)?;
    let moved = if empty {
        start(&mut tx, &s).await.map_err(err)?;
        let insert = format!("INSERT INTO {s} (k, h, delivered_at) {upserts}");
        let n = sqlx::query(AssertSqlSafe(insert)).bind(sync).execute(&mut *tx).await.map_err(err)?.rows_affected();
        build_key(&mut tx, st, scope).await.map_err(err)?;
        n
    } else {
        let n = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {s} (k, h, delivered_at) {upserts}
             ON CONFLICT (k) DO UPDATE SET h = excluded.h, delivered_at = excluded.delivered_at"
        )))
        .bind(sync)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        let deleted =
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {s} s USING (SELECT u.k FROM {acked} AND a.op = 'deleted') d WHERE s.k = d.k")))
                .bind(sync)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
        n + deleted
    };
    let pending: bool =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {p})"))).fetch_one(&mut *tx).await.map_err(err)?;
    if pending {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {p} p USING (SELECT u.k FROM {acked}) d WHERE p.k = d.k")))
            .bind(sync)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    sqlx::query(AssertSqlSafe(format!("UPDATE {a} SET merged = true WHERE sync = $1 AND NOT merged")))
        .bind(sync)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(moved)
}
