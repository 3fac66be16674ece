//! `retl test` to a table: the row's upsert as written and what the server
//! said, a row the table refuses with the server's message, and no sync
//! state changed.

use super::{Db, Kind, URL_FROM_SECRET, loaded, retl, run, setup};
use crate::text;

pub async fn a_test_record_shows_the_rows_statement_and_the_servers_answer(kind: Kind) {
    let db = Db::new(kind).await;
    let t = db.t("contacts");
    let check = "CONSTRAINT age_not_negative CHECK (age >= 0)";
    db.exec(&match kind {
        Kind::Postgres => format!("CREATE TABLE {t} (id bigint PRIMARY KEY, email text, age integer {check}, score numeric, active boolean, traits jsonb, seen timestamptz)"),
        Kind::Mysql => format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, email TEXT, age INT, score DOUBLE, active BOOLEAN, traits JSON, seen DATETIME(6), {check})"),
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let users =
        [r#"(1, 'a@x.io', 30, 1.5, 1, '{"plan":"pro"}', '2024-01-05 10:00:00')"#, "(2, 'b@x.io', -1, 1, 0, '{}', '2024-01-05 10:00:00')"];
    setup(tmp.path(), &db, &users, URL_FROM_SECRET, "");

    let ok = retl(tmp.path(), &db, &["test", "-f", ".", "--mapping", "users-db", "--key", "1"]);
    let out = text(&ok);
    assert!(ok.status.success(), "{out}");
    assert!(out.contains(&format!("Request: UPSERT {t}")) && out.contains("\"email\": \"a@x.io\""), "the row as written: {out}");
    assert!(out.contains("Reply: written") && out.contains("upserted by key column \"id\"; the transaction committed"), "{out}");
    assert!(!out.contains(&db.url), "the connection URL (a Secret) never shows: {out}");
    assert_eq!(db.rows("contacts", &["id", "email", "age"]).await, ["1|a@x.io|30"]);

    let refused = retl(tmp.path(), &db, &["test", "-f", ".", "--mapping", "users-db", "--key", "2", "-o", "json"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let report: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&refused)));
    assert_eq!((report["result"]["outcome"].as_str(), report["result"]["code"].as_str()), (Some("Rejected"), Some("CONSTRAINT_VIOLATION")));
    let reply = &report["exchanges"][0]["reply"];
    assert_eq!(reply["status"], "refused (CONSTRAINT_VIOLATION)", "{report:#}");
    assert!(reply["body"].as_str().unwrap().to_lowercase().contains("age_not_negative"), "the server's message: {report:#}");
    assert_eq!(db.count("contacts").await, 1, "the refused row did not land");

    // The first sync still sends both rows as new: the test changed no sync state.
    let first = run(tmp.path(), &db);
    assert_eq!((first["extracted"]["added"].as_u64(), loaded(&first)[..3].to_vec()), (Some(2), vec![1, 1, 1]), "{first:#}");
    db.drop().await;
}
