//! Bad settings say what to fix: an unreachable server, a missing Secret, a
//! table without the key column or without the table; and what the
//! Destination's check reports; and examples/tables as written.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{Db, Kind, URL_FROM_SECRET, run, setup, text};

pub async fn bad_settings_say_what_to_fix(kind: Kind) {
    let db = Db::new(kind).await;
    let field = db.field();
    let users = ["(1, 'a@x.io', 30, 1, 1, '{}', '2024-01-01 00:00:00')"];

    // A server nobody listens on: the message names the address and what to check, never the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let settings = format!(
        "    host: 127.0.0.1\n    port: {port}\n    user: app\n    database: crm\n    passwordSecretRef: {{name: db-pass, key: password}}\n    connectTimeoutSeconds: 2"
    );
    setup(tmp.path(), &db, &users, &settings, "");
    let out = Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(["run", "-f", "."])
        .current_dir(tmp.path())
        .env("RETL_SECRET_DB_PASS_PASSWORD", "pw-Zx9-s3cret")
        .output()
        .unwrap();
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(printed.contains("DestinationUnreachable") || printed.contains("DESTINATION_UNAVAILABLE"), "{printed}");
    assert!(printed.contains(&format!("127.0.0.1:{port}")) && printed.contains(&format!("spec.{field}.host and port")), "{printed}");
    assert!(!printed.contains("Zx9-s3cret"), "no password in the output: {printed}");

    // The same Destination without its Secret.
    let out = Command::new(env!("CARGO_BIN_EXE_retl")).args(["run", "-f", "."]).current_dir(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("RETL_SECRET_DB_PASS_PASSWORD"), "the error says what to set: {}", text(&out));

    // A table without the key column.
    db.exec(&format!("CREATE TABLE {} (email TEXT, age INT, score FLOAT, active BOOLEAN, traits TEXT, seen TEXT)", db.t("contacts"))).await;
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), &db, &users, URL_FROM_SECRET, "");
    let s = run(tmp.path(), &db);
    assert_eq!(s["phase"], "Failed", "{s:#}");
    let f = &s["failedRecords"][0];
    assert_eq!(f["code"], "TABLE_MISMATCH", "{s:#}");
    let message = f["message"].as_str().unwrap();
    assert!(message.contains("has no column \"id\"") && message.contains(&format!("spec.{field}.keyColumn")), "{message}");
    assert!(f["recommendedAction"].as_str().unwrap().contains("key column"), "{f:#}");

    // No table at all, and retl may not create it.
    db.exec(&format!("DROP TABLE {}", db.t("contacts"))).await;
    let s = run(tmp.path(), &db);
    let message = s["failedRecords"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("does not exist") && message.contains(&format!("spec.{field}.createTable: true")), "{s:#}");
    assert_eq!(db.count_tables().await, 0, "nothing was created");

    // A typo in the settings is an error before anything runs, naming the field.
    let manifest = std::fs::read_to_string(tmp.path().join("all.yaml")).unwrap();
    std::fs::write(tmp.path().join("all.yaml"), manifest.replace("    table: contacts", "    tabel: contacts")).unwrap();
    let out = super::retl(tmp.path(), &db, &["run", "-f", "."]);
    assert!(text(&out).contains(&format!("unknown field \"spec.{field}.tabel\" (did you mean \"spec.{field}.table\"?)")), "{}", text(&out));
    db.drop().await;
}

/// What the Destination controller's `Ready` condition reports: `check()`
/// connects and reads the table, and writes nothing.
pub async fn the_destination_check_says_whether_the_table_fits(kind: Kind) {
    let db = Db::new(kind).await;
    let field = db.field();
    let check = |settings: Value, secrets: Vec<(&str, &str, String)>| {
        let spec: retl::api::DestinationSpec = serde_json::from_value(serde_json::json!({
            "type": field,
            field: settings,
            "actions": [{"name": "upsert", "fields": [{"name": "email", "type": "string"}, {"name": "age", "type": "integer"}]}],
        }))
        .unwrap();
        let secrets = secrets.into_iter().map(|(n, k, v)| ((n.to_string(), k.to_string()), v)).collect();
        async move {
            let d = retl::destination::build("crm", &spec, &secrets, Path::new(".")).map_err(|e| e.to_string())?;
            d.check().await.map_err(|e| e.to_string())
        }
    };
    let url = || vec![("db", "url", db.url.clone())];
    let at = |table: &str, more: Value| {
        let mut v = serde_json::json!({"urlSecretRef": {"name": "db", "key": "url"}, "schema": db.schema, "table": table});
        v.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        v
    };

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = serde_json::json!({"host": "127.0.0.1", "port": port, "user": "app", "table": "t", "connectTimeoutSeconds": 1,
        "passwordSecretRef": {"name": "db", "key": "password"}});
    let err = check(down.clone(), vec![("db", "password", "pw-Zx9-s3cret".into())]).await.unwrap_err();
    assert!(err.starts_with("Destination crm is unavailable: cannot reach the server at 127.0.0.1:"), "{err}");
    assert!(!err.contains("Zx9-s3cret"), "{err}");
    let err = check(down, vec![]).await.unwrap_err();
    assert!(err.contains("Secret \"db\" has no key \"password\""), "{err}");

    let err = check(at("contacts", serde_json::json!({})), url()).await.unwrap_err();
    assert!(err.contains("does not exist") && err.contains("createTable"), "{err}");
    check(at("contacts", serde_json::json!({"createTable": true})), url()).await.expect("retl may create it");
    assert_eq!(db.count_tables().await, 0, "the check creates nothing");

    db.exec(&format!("CREATE TABLE {} (id BIGINT, email TEXT)", db.t("contacts"))).await;
    let err = check(at("contacts", serde_json::json!({})), url()).await.unwrap_err();
    assert!(err.contains("no unique index"), "{err}");
    let err = check(at("contacts", serde_json::json!({"keyColumn": "customer_id"})), url()).await.unwrap_err();
    assert!(err.contains("has no column \"customer_id\"") && err.contains(&format!("spec.{field}.keyColumn")), "{err}");
    db.exec(&format!("CREATE UNIQUE INDEX contacts_id ON {} (id)", db.t("contacts"))).await;
    let err = check(at("contacts", serde_json::json!({})), url()).await.unwrap_err();
    assert!(err.contains("has no column \"age\" for the field(s) of the same name of action \"upsert\""), "{err}");
    db.exec(&format!("ALTER TABLE {} ADD COLUMN age INT", db.t("contacts"))).await;
    check(at("contacts", serde_json::json!({})), url()).await.expect("the table fits now");
    db.drop().await;
}

/// examples/tables as written, against the test server (its schema set to the test's).
pub async fn the_tables_example_runs(kind: Kind) {
    let db = Db::new(kind).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tables");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let file = tmp.path().join("destination.yaml");
    let text_of = std::fs::read_to_string(&file).unwrap();
    let edited = text_of.replace("schema: public", &format!("schema: {}", db.schema));
    let edited =
        if kind == Kind::Mysql { edited.replace("type: postgres", "type: mysql").replace("  postgres:", "  mysql:") } else { edited };
    assert_ne!(edited, text_of);
    std::fs::write(&file, edited).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(["run", "-f", "."])
        .current_dir(tmp.path())
        .env("RETL_SECRET_CRM_DB_URL", &db.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(super::super::last_row(&text(&out))["LOADED"], "5", "{}", text(&out));
    assert_eq!(db.count("crm_contacts").await, 5);
    db.drop().await;
}
