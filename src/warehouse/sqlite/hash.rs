//! SQLite: `retl_hash`, the SQL function that hashes a row's JSON text
//! inside SQLite, registered on every connection.

use std::ffi::{CString, c_char, c_int};

/// Registers `retl_hash(text)`: xxh3-128 of the text as 32 hex digits, NULL for NULL.
/// Public so that the benchmark's SQLite hashing floor hashes with this very function.
///
/// # Safety
///
/// `db` must be a live connection handle that the caller holds exclusively
/// for the duration of the call (as sqlx's `lock_handle` gives it).
pub unsafe fn register_hash_function(db: *mut libsqlite3_sys::sqlite3) -> Result<(), String> {
    let name = CString::new("retl_hash").map_err(|e| e.to_string())?;
    // SAFETY: `db` is live and ours for this call (the caller's contract); the function pointer is a plain extern "C" fn
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
