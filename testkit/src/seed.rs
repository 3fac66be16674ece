//! Demo warehouse data for tests.

/// SQL that creates `users (id, email)` with `rows` rows: ids 1..=rows,
/// emails `u<id>@example.com`. Portable across SQLite, PostgreSQL and MySQL.
pub fn users_sql(rows: u32) -> String {
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, 'u{i}@example.com')")).collect();
    format!("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);\nINSERT INTO users VALUES {};\n", values.join(","))
}
