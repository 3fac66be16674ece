//! Reading a sync's record log: its counts, and its failed records page by
//! page. The statements are the same in every dialect but for placeholders,
//! an integer type and how a key column is read back as text.
//!
//! The log is two tables (state layout 2): `acks`, one row per committed
//! batch and operation of acknowledged records (keys in an array, `n` of
//! them), and `records`, a row per rejected record (and per record of
//! layout 1). Counts add both up without unpacking the arrays.

use crate::record::ChangeKind;

/// How many records of a sync's record log share an operation, an outcome
/// (`delivered`, `skipped`, `rejected`) and a code (the skip reason or the
/// error code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCount {
    pub kind: ChangeKind,
    pub outcome: String,
    pub code: Option<String>,
    pub count: u64,
}

/// One rejected record as the record log holds it: the error and payload in
/// full (a Sync's status keeps at most 10 samples, cut short).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedFailure {
    /// The primary key as text; `None` when the row's key was null.
    pub key: Option<String>,
    pub kind: ChangeKind,
    pub code: String,
    pub message: String,
    /// The payload's JSON text, when the record got as far as a payload.
    pub payload: Option<String>,
    /// When the record's batch was committed (unix milliseconds).
    pub at_ms: i64,
}

/// The statement that counts a sync's record log: `records` and `acks` the
/// tables, `ph` the sync's two placeholders (one per table), `int` the
/// dialect's name of a 64-bit integer in `CAST`.
pub(crate) fn log_counts_sql(records: &str, acks: &str, ph: [&str; 2], int: &str) -> String {
    let [a, b] = ph;
    format!(
        "SELECT op, outcome, code, CAST(SUM(n) AS {int}) AS n FROM (
           SELECT op, outcome, code, COUNT(*) AS n FROM {records} WHERE sync = {a} GROUP BY op, outcome, code
           UNION ALL
           SELECT op, outcome, code, SUM(n) AS n FROM {acks} WHERE sync = {b} GROUP BY op, outcome, code
         ) AS l GROUP BY op, outcome, code"
    )
}

/// Reads the rows of [`log_counts_sql`].
pub(crate) fn read_log_counts<R>(rows: &[R]) -> Result<Vec<LogCount>, sqlx::Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|r| {
            let op: String = r.try_get("op")?;
            let n: i64 = r.try_get("n")?;
            Ok(LogCount { kind: ChangeKind::parse(&op), outcome: r.try_get("outcome")?, code: r.try_get("code")?, count: n.max(0) as u64 })
        })
        .collect()
}

/// The statement that reads one page of a sync's rejected records.
/// `key_text` reads the key column as text (`k`, or a conversion where keys
/// are stored as bytes); `ph` are the placeholders of sync, limit and
/// offset. Ties in commit time are broken by key and operation, so pages
/// neither overlap nor leave a record out.
pub(crate) fn failed_records_sql(log_table: &str, key_text: &str, ph: [&str; 3]) -> String {
    let [sync, limit, offset] = ph;
    format!(
        "SELECT {key_text} AS k, op, code, error, payload, at FROM {log_table}
         WHERE sync = {sync} AND outcome = 'rejected' ORDER BY at, k, op LIMIT {limit} OFFSET {offset}"
    )
}

/// Reads the rows of [`failed_records_sql`].
pub(crate) fn read_failed_records<R>(rows: &[R]) -> Result<Vec<LoggedFailure>, sqlx::Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|r| {
            let op: String = r.try_get("op")?;
            Ok(LoggedFailure {
                key: r.try_get("k")?,
                kind: ChangeKind::parse(&op),
                code: r.try_get::<Option<String>, _>("code")?.unwrap_or_default(),
                message: r.try_get::<Option<String>, _>("error")?.unwrap_or_default(),
                payload: r.try_get("payload")?,
                at_ms: r.try_get("at")?,
            })
        })
        .collect()
}

/// Placeholders bind limits as signed integers, which every dialect takes.
pub(crate) fn page_bounds(offset: u64, limit: u64) -> (i64, i64) {
    (i64::try_from(limit).unwrap_or(i64::MAX), i64::try_from(offset).unwrap_or(i64::MAX))
}
