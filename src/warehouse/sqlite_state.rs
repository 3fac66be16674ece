//! SQLite: committing a batch's outcomes (snapshot, pending failures and
//! the record log) in one transaction, and the row-hash SQL function.

use std::ffi::{CString, c_char, c_int};

use sqlx::AssertSqlSafe;

use super::sqlite::{SqliteWarehouse, now_ms, state_err};
use super::{OutcomeKind, RecordOutcome, StateScope, WarehouseError};
use crate::api::ChangeKind;

/// Commits one batch atomically.
pub(super) async fn commit(w: &SqliteWarehouse, scope: &StateScope, sync: &str, outcomes: &[RecordOutcome]) -> Result<(), WarehouseError> {
    let (s, p, l) = (w.table("snapshot", scope), w.table("pending", scope), w.table("log", scope));
    let now = now_ms();
    let upsert_snapshot = format!(
        "INSERT INTO {s} (k, h, delivered_at) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET h = excluded.h, delivered_at = excluded.delivered_at"
    );
    let delete_snapshot = format!("DELETE FROM {s} WHERE k = ?");
    let delete_pending = format!("DELETE FROM {p} WHERE k = ?");
    let upsert_pending = format!(
        "INSERT INTO {p} (k, first_failed_at, last_failed_at, attempts, last_code, last_error) VALUES (?, ?, ?, 1, ?, ?)
         ON CONFLICT (k) DO UPDATE SET last_failed_at = excluded.last_failed_at, attempts = attempts + 1,
         last_code = excluded.last_code, last_error = excluded.last_error"
    );
    let insert_log = format!("INSERT INTO {l} (sync, k, op, outcome, code, error, payload, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    let mut tx = w.pool.begin().await.map_err(|e| state_err("committed", e))?;
    for o in outcomes {
        let op = super::kind_name(o.kind);
        let (outcome, code, error, payload) = match &o.result {
            OutcomeKind::Delivered => ("delivered", None, None, None),
            OutcomeKind::Skipped { reason } => ("skipped", Some(reason.as_str()), None, None),
            OutcomeKind::Rejected { code, message, payload } => {
                ("rejected", Some(code.as_str()), Some(message.as_str()), payload.as_deref())
            }
        };
        if let Some(k) = &o.key {
            match (&o.result, o.kind) {
                (OutcomeKind::Rejected { code, message, .. }, _) => {
                    sqlx::query(AssertSqlSafe(upsert_pending.as_str()))
                        .bind(k)
                        .bind(now)
                        .bind(now)
                        .bind(code)
                        .bind(message)
                        .execute(&mut *tx)
                        .await
                }
                (_, ChangeKind::Deleted) => sqlx::query(AssertSqlSafe(delete_snapshot.as_str())).bind(k).execute(&mut *tx).await,
                (_, _) => sqlx::query(AssertSqlSafe(upsert_snapshot.as_str())).bind(k).bind(&o.hash).bind(now).execute(&mut *tx).await,
            }
            .map_err(|e| state_err("committed", e))?;
            if !matches!(o.result, OutcomeKind::Rejected { .. }) {
                sqlx::query(AssertSqlSafe(delete_pending.as_str()))
                    .bind(k)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| state_err("committed", e))?;
            }
        }
        sqlx::query(AssertSqlSafe(insert_log.as_str()))
            .bind(sync)
            .bind(&o.key)
            .bind(op)
            .bind(outcome)
            .bind(code)
            .bind(error)
            .bind(payload)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| state_err("committed", e))?;
    }
    tx.commit().await.map_err(|e| state_err("committed", e))
}

/// Registers `retl_hash(text)`: xxh3-128 of the text as 32 hex digits, NULL for NULL.
pub(super) fn register_hash_function(db: *mut libsqlite3_sys::sqlite3) -> Result<(), String> {
    let name = CString::new("retl_hash").map_err(|e| e.to_string())?;
    // SAFETY: `db` is a live handle locked for our exclusive use by sqlx for the
    // duration of this call; the function pointer is a plain extern "C" fn
    // with no user data, so there is nothing to free.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_create_function_v2(
            db,
            name.as_ptr(),
            1,
            libsqlite3_sys::SQLITE_UTF8 | libsqlite3_sys::SQLITE_DETERMINISTIC,
            std::ptr::null_mut(),
            Some(retl_hash),
            None,
            None,
            None,
        )
    };
    if rc == libsqlite3_sys::SQLITE_OK { Ok(()) } else { Err(format!("cannot register retl_hash (SQLite error {rc})")) }
}

unsafe extern "C" fn retl_hash(ctx: *mut libsqlite3_sys::sqlite3_context, argc: c_int, argv: *mut *mut libsqlite3_sys::sqlite3_value) {
    // SAFETY: SQLite passes `argc` valid values in `argv`; the text pointer is
    // valid for `sqlite3_value_bytes` bytes until the next call on the value,
    // and SQLITE_TRANSIENT makes SQLite copy our result before we drop it.
    unsafe {
        if argc != 1 {
            libsqlite3_sys::sqlite3_result_null(ctx);
            return;
        }
        let value = *argv;
        let text = libsqlite3_sys::sqlite3_value_text(value);
        if text.is_null() {
            libsqlite3_sys::sqlite3_result_null(ctx);
            return;
        }
        let len = libsqlite3_sys::sqlite3_value_bytes(value).max(0) as usize;
        let bytes = std::slice::from_raw_parts(text, len);
        let hex = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes));
        libsqlite3_sys::sqlite3_result_text(ctx, hex.as_ptr() as *const c_char, hex.len() as c_int, libsqlite3_sys::SQLITE_TRANSIENT());
    }
}
