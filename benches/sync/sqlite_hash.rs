//! `bench_hash(text)`: the hash retl registers in SQLite as `retl_hash`
//! (src/warehouse/sqlite/hash.rs: xxh3-128 of the text as 32 hex digits),
//! registered on the floor's own connection so that the hashing floor costs
//! what retl's hashing costs.

use std::ffi::{CString, c_char, c_int};

use super::Error;

pub fn register(db: *mut libsqlite3_sys::sqlite3) -> Result<(), Error> {
    let name = CString::new("bench_hash")?;
    // SAFETY: `db` is a live handle locked for our exclusive use by sqlx for
    // the duration of this call; the function is a plain extern "C" fn with
    // no user data, so there is nothing to free.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_create_function_v2(
            db,
            name.as_ptr(),
            1,
            libsqlite3_sys::SQLITE_UTF8 | libsqlite3_sys::SQLITE_DETERMINISTIC,
            std::ptr::null_mut(),
            Some(hash),
            None,
            None,
            None,
        )
    };
    if rc == libsqlite3_sys::SQLITE_OK { Ok(()) } else { Err(format!("cannot register bench_hash (SQLite error {rc})").into()) }
}

unsafe extern "C" fn hash(ctx: *mut libsqlite3_sys::sqlite3_context, argc: c_int, argv: *mut *mut libsqlite3_sys::sqlite3_value) {
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
