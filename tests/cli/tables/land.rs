//! What lands in the table: upserts and deletes, a created table's types, a
//! refused row failing alone, a killed load.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Db, Kind, URL_FROM_SECRET, loaded, run, setup, sql};

/// The columns of `contacts` as `name:type`.
async fn column_types(db: &Db) -> Vec<String> {
    match db.kind {
        Kind::Postgres => {
            db.texts(&format!(
                "SELECT attname || ':' || format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = '{}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                db.t("contacts")
            ))
            .await
        }
        Kind::Mysql => {
            db.texts(&format!(
                "SELECT CAST(CONCAT(COLUMN_NAME, ':', COLUMN_TYPE) AS CHAR) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'contacts' ORDER BY ORDINAL_POSITION",
                db.schema
            ))
            .await
        }
    }
}

/// id, email, age, score, active, traits.plan and seen (UTC), in either dialect.
async fn contacts(db: &Db) -> Vec<String> {
    let pg = ["id", "email", "age", "score", "active::int", "traits->>'plan'", "to_char(seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"];
    let my = ["id", "email", "age", "score", "active", "JSON_VALUE(traits, '$.plan')", "DATE_FORMAT(seen, '%Y-%m-%d %H:%i:%s')"];
    db.rows("contacts", if db.kind == Kind::Postgres { &pg } else { &my }).await
}

pub async fn upserts_and_deletes_land_in_a_table_retl_creates(kind: Kind) {
    let db = Db::new(kind).await;
    let tmp = tempfile::tempdir().unwrap();
    let users = [
        r#"(1, 'a@x.io', 30, 1.5, 1, '{"plan":"pro"}', '2024-01-05 10:00:00')"#,
        r#"(2, 'b@x.io', 40, 2.25, 0, '{"plan":"free"}', '2024-02-01T08:30:00+02:00')"#,
        r#"(3, 'c@x.io', 35, 0.25, 1, '{}', '2024-03-01 00:00:00')"#,
        r#"(4, 'd@x.io', 50, 9.5, 1, '{"plan":"pro"}', '2024-04-01 00:00:00')"#,
    ];
    let settings = format!("{URL_FROM_SECRET}\n    createTable: true\n    keyType: integer\n    batchSize: 2");
    // skipNulls: a null leaves the field out, and a field left out leaves its column as it is.
    setup(tmp.path(), &db, &users, &settings, "  skipNulls: true");

    let first = run(tmp.path(), &db);
    assert_eq!(first["phase"], "Successful", "{first:#}");
    assert_eq!(loaded(&first), [4, 0, 4, 0, 0], "{first:#}");
    let types = column_types(&db).await;
    let expected: &[&str] = match kind {
        Kind::Postgres => {
            &["id:bigint", "email:text", "age:bigint", "score:numeric", "active:boolean", "traits:jsonb", "seen:timestamp with time zone"]
        }
        // MariaDB's JSON is LONGTEXT with a json_valid CHECK; MySQL's is json.
        Kind::Mysql => {
            &["id:bigint", "email:longtext", "age:bigint", "score:double", "active:tinyint(1)", "traits:longtext", "seen:datetime(6)"]
        }
    };
    // MariaDB shows a display width for bigint, MySQL does not.
    let shown: Vec<String> = match kind {
        Kind::Postgres => types.clone(),
        Kind::Mysql => types.iter().map(|t| t.replace("traits:json", "traits:longtext").replace("bigint(20)", "bigint")).collect(),
    };
    assert_eq!(shown, expected, "the created table's columns follow the fields: {types:?}");
    assert_eq!(
        contacts(&db).await,
        [
            "1|a@x.io|30|1.5|1|pro|2024-01-05 10:00:00",
            "2|b@x.io|40|2.25|0|free|2024-02-01 06:30:00",
            "3|c@x.io|35|0.25|1|-|2024-03-01 00:00:00",
            "4|d@x.io|50|9.5|1|pro|2024-04-01 00:00:00",
        ]
    );

    sql(tmp.path(), &db, "UPDATE users SET email = 'b2@x.io', age = 41, attrs = '{\"plan\":\"team\"}' WHERE id = 2");
    sql(tmp.path(), &db, "UPDATE users SET age = NULL, score = 10.5 WHERE id = 4");
    sql(tmp.path(), &db, "DELETE FROM users WHERE id = 3");
    sql(tmp.path(), &db, "INSERT INTO users VALUES (5, 'e@x.io', 20, 1.75, 0, '{\"plan\":\"free\"}', '2024-05-01 00:00:00')");
    let second = run(tmp.path(), &db);
    assert_eq!(second["phase"], "Successful", "{second:#}");
    assert_eq!(loaded(&second), [4, 0, 1, 2, 1], "{second:#}");
    assert_eq!(
        contacts(&db).await,
        [
            "1|a@x.io|30|1.5|1|pro|2024-01-05 10:00:00",
            "2|b2@x.io|41|2.25|0|team|2024-02-01 06:30:00",
            "4|d@x.io|50|10.5|1|pro|2024-04-01 00:00:00",
            "5|e@x.io|20|1.75|0|free|2024-05-01 00:00:00",
        ],
        "updated values replace the old ones, the deleted row is gone, and the null age left the column as it was"
    );
    assert_eq!(loaded(&run(tmp.path(), &db)), [0; 5], "nothing changed, nothing sent");
    db.drop().await;
}

pub async fn a_row_the_table_refuses_fails_alone_and_is_retried(kind: Kind) {
    let db = Db::new(kind).await;
    let t = db.t("contacts");
    match kind {
        Kind::Postgres => {
            db.exec(&format!(
                "CREATE TABLE {t} (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, age integer CONSTRAINT age_not_negative CHECK (age >= 0), \
                 score numeric, active boolean, traits jsonb, seen timestamptz)"
            ))
            .await
        }
        Kind::Mysql => {
            db.exec(&format!(
                "CREATE TABLE {t} (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL UNIQUE, age INT, score DOUBLE, active BOOLEAN, \
                 traits JSON, seen DATETIME(6), CONSTRAINT age_not_negative CHECK (age >= 0))"
            ))
            .await
        }
    }
    db.exec(&format!("INSERT INTO {t} (id, email) VALUES (100, 'taken@x.io')")).await;
    let tmp = tempfile::tempdir().unwrap();
    let users: Vec<String> = (1..=10)
        .map(|i| match i {
            3 => "(3, 'u3@x.io', -1, 1, 1, '{}', '2024-01-01 00:00:00')".to_string(),
            5 => "(5, NULL, 20, 1, 1, '{}', '2024-01-01 00:00:00')".to_string(),
            7 => "(7, 'taken@x.io', 20, 1, 1, '{}', '2024-01-01 00:00:00')".to_string(),
            i => format!("({i}, 'u{i}@x.io', {i}, 1, 1, '{{}}', '2024-01-01 00:00:00')"),
        })
        .collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    setup(tmp.path(), &db, &users, &format!("{URL_FROM_SECRET}\n    batchSize: 10"), "");

    let first = run(tmp.path(), &db);
    assert_eq!(first["phase"], "PartiallySuccessful", "{first:#}");
    assert_eq!(loaded(&first)[..2], [7, 3], "{first:#}");
    let failed: Vec<(String, String, String)> = first["failedRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (f["key"].as_str().unwrap().to_string(), f["code"].as_str().unwrap().to_string(), f["message"].as_str().unwrap().to_lowercase())
        })
        .collect();
    let by_key = |k: &str| failed.iter().find(|f| f.0 == k).unwrap_or_else(|| panic!("record {k} among the failed: {first:#}"));
    assert!(failed.iter().all(|f| f.1 == "CONSTRAINT_VIOLATION"), "{failed:?}");
    assert!(by_key("3").2.contains("age_not_negative"), "the server's message names the CHECK: {failed:?}");
    assert!(by_key("5").2.contains("null") && by_key("5").2.contains("email"), "{failed:?}");
    assert!(by_key("7").2.contains("duplicate") && by_key("7").2.contains("taken@x.io"), "{failed:?}");
    let ids = db.rows("contacts", &["id"]).await;
    assert_eq!(ids, ["1", "2", "4", "6", "8", "9", "10", "100"], "the rest of the batch landed, one transaction");
    assert_eq!(db.rows("contacts", &["email"]).await.last().map(String::as_str), Some("taken@x.io"), "no other row was overwritten");

    sql(tmp.path(), &db, "UPDATE users SET age = 33 WHERE id = 3");
    let second = run(tmp.path(), &db);
    assert_eq!(second["extracted"]["retried"], 3, "the failed records are retried: {second:#}");
    assert_eq!(loaded(&second)[..2], [1, 2], "the fixed one lands, the others fail again: {second:#}");
    assert_eq!(db.rows("contacts", &["id", "age"]).await[2], "3|33");
    db.drop().await;
}

pub async fn a_killed_load_loses_nothing(kind: Kind) {
    let db = Db::new(kind).await;
    let t = db.t("contacts");
    // Each row takes 10 ms to insert, so the load lasts seconds and can be killed in the middle.
    match kind {
        Kind::Postgres => {
            db.exec(&format!("CREATE TABLE {t} (id bigint PRIMARY KEY, email text, age bigint, score numeric, active boolean, traits jsonb, seen timestamptz)")).await;
            db.exec(&format!(
                "CREATE FUNCTION {s}.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$; \
                 CREATE TRIGGER slow BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {s}.slow()",
                s = db.schema
            ))
            .await;
        }
        Kind::Mysql => {
            db.exec(&format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, email TEXT, age BIGINT, score DOUBLE, active BOOLEAN, traits JSON, seen DATETIME(6))")).await;
            db.exec(&format!("CREATE TRIGGER {}.slow BEFORE INSERT ON {t} FOR EACH ROW SET @retl_slow = SLEEP(0.01)", db.schema)).await;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let users: Vec<String> = (1..=300).map(|i| format!("({i}, 'u{i}@x.io', {i}, 1, 1, '{{}}', '2024-01-01 00:00:00')")).collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    setup(tmp.path(), &db, &users, &format!("{URL_FROM_SECRET}\n    batchSize: 10\n    maxInFlight: 1"), "");

    let mut child = Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(["run", "-f", "."])
        .current_dir(tmp.path())
        .env("RETL_SECRET_DB_URL", &db.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while db.count("contacts").await < 50 {
        assert!(start.elapsed() < Duration::from_secs(60), "the table never got 50 rows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: the transaction in flight is left to the server to roll back
    child.wait().unwrap();
    // The server rolls back the killed connection's transaction once it notices.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = db.count("contacts").await;
    assert!(before < 300, "killed mid-load: {before}");
    assert_eq!(before % 10, 0, "each batch is one transaction: all of it or none of it is in the table ({before} rows)");

    db.exec(&format!(
        "DROP TRIGGER {}slow{}",
        if kind == Kind::Mysql { format!("{}.", db.schema) } else { String::new() },
        if kind == Kind::Postgres { format!(" ON {t}") } else { String::new() }
    ))
    .await;
    let second = run(tmp.path(), &db);
    assert_eq!(second["phase"], "Successful", "{second:#}");
    let sent = loaded(&second)[0] as usize;
    assert!(sent <= 300 - before + 10, "only one in-flight window (10 records) is sent again: {sent} sent, {before} were in");
    assert_eq!(db.count("contacts").await, 300, "every record ends up in the table");
    assert_eq!(db.rows("contacts", &["email"]).await[299], "u300@x.io");
    assert_eq!(loaded(&run(tmp.path(), &db))[0], 0, "nothing left to send");
    db.drop().await;
}
