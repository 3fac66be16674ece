//! PostgreSQL and MariaDB/MySQL against real servers: how each type reaches
//! the mapping as JSON, and what a user reads when the connection or the
//! state schema's rights are wrong. The servers come from
//! `RETL_TEST_POSTGRES_URL` / `RETL_TEST_MYSQL_URL` (scripts/test-databases.sh).

use std::collections::BTreeMap;
use std::path::Path;

use retl::api::{SecretKeyRef, ServerSource, SourceSpec, SourceType, TlsMode};
use retl::warehouse::{self, DiffMode, DiffRequest, Row, SecretValues, StateScope, Warehouse, WarehouseError};
use serde_json::{Value, json};

fn url(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test (or `. scripts/test-databases.sh` first)"))
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn spec(type_: SourceType, settings: ServerSource, state_schema: &str) -> SourceSpec {
    SourceSpec {
        type_,
        sqlite: None,
        postgres: (type_ == SourceType::Postgres).then(|| settings.clone()),
        mysql: (type_ == SourceType::Mysql).then_some(settings),
        state_schema: state_schema.into(),
    }
}

/// A Source whose whole URL is in a Secret.
async fn connect_url(type_: SourceType, url: &str, state_schema: &str) -> Result<Box<dyn Warehouse>, WarehouseError> {
    let mut secrets = SecretValues::new();
    secrets.insert(("db".into(), "url".into()), url.to_string());
    let settings = ServerSource {
        url_secret_ref: Some(SecretKeyRef { name: "db".into(), key: "url".into() }),
        connect_timeout_seconds: Some(5),
        ..Default::default()
    };
    warehouse::connect("warehouse", &spec(type_, settings, state_schema), &secrets, Path::new(".")).await
}

/// Stages a query (as `retl plan` does: no state changes) and returns each
/// row by key, as the mapping would see it.
async fn rows(wh: &dyn Warehouse, query: &str) -> BTreeMap<String, Result<Row, String>> {
    let scope = StateScope::from_uid(&uuid::Uuid::new_v4().to_string());
    wh.prepare_state(&scope).await.expect("state");
    let columns = wh.describe(query).await.expect("describe");
    let req = DiffRequest {
        query: query.into(),
        primary_key: "id".into(),
        columns,
        mode: DiffMode::Normal,
        expire_before_ms: 0,
        stage: "types".into(),
        dry_run: true,
    };
    wh.stage(&scope, &req).await.expect("stage");
    let page = wh.read_stage(&scope, "types", 0, 100).await.expect("read");
    wh.drop_stage(&scope, "types").await.expect("drop");
    // A test record (`retl test`) reads each row exactly as the stage carries it.
    let page: Vec<_> = page.into_iter().map(|c| (c.key.unwrap_or_default(), decoded(c.row.expect("a row")))).collect();
    for (key, row) in &page {
        let sampled = wh.sample_row(&req, Some(key)).await.expect("sample");
        assert_eq!(sampled.iter().map(|s| &s.row).collect::<Vec<_>>(), [row], "{query}: key {key:?}");
    }
    page.into_iter().collect()
}

fn connect_error(r: Result<Box<dyn Warehouse>, WarehouseError>) -> String {
    match r {
        Ok(_) => panic!("the connection should have failed"),
        Err(e @ WarehouseError::Connect { .. }) => e.to_string(),
        Err(other) => panic!("expected a Connect error, got {other}"),
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `scheme://user@host:port/db` → the same with another user, password or database.
fn with(url: &str, user: &str, password: Option<&str>, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split('@').nth(1).unwrap_or(rest).split('/').next().unwrap();
    let auth = password.map(|p| format!("{user}:{p}")).unwrap_or(user.to_string());
    format!("{scheme}://{auth}@{host}/{db}")
}

/// Every change of a stage as a sync reads them: from the stage table, or
/// for a first sync's streamed stage from the model itself.
async fn staged(wh: &dyn Warehouse, scope: &StateScope, req: &DiffRequest, streamed: bool) -> Vec<retl::warehouse::StagedChange> {
    use futures::TryStreamExt;
    let pages: Vec<Vec<_>> = wh.changes(scope, req, streamed, 10).try_collect().await.unwrap();
    pages.concat()
}

/// A key delivered once, then returned twice with one copy changed: both
/// copies fail as duplicates (neither is sent), in every dialect.
async fn a_duplicate_with_one_copy_unchanged_is_caught(wh: &dyn Warehouse, table: &str) {
    use retl::api::ChangeKind;
    use retl::warehouse::{OutcomeKind, RecordOutcome, StageFlag};
    wh.execute(&format!("CREATE TABLE {table} (id INTEGER, v VARCHAR(10))")).await.unwrap();
    wh.execute(&format!("INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")).await.unwrap();
    let scope = StateScope::from_uid(&uuid::Uuid::new_v4().to_string());
    wh.prepare_state(&scope).await.unwrap();
    let query = format!("SELECT id, v FROM {table}");
    let req = |stage: &str| DiffRequest {
        query: query.clone(),
        primary_key: "id".into(),
        columns: vec![],
        mode: DiffMode::Normal,
        expire_before_ms: 0,
        stage: stage.into(),
        dry_run: false,
    };
    let mut first = req("first");
    first.columns = wh.describe(&query).await.unwrap();
    let counts = wh.stage(&scope, &first).await.unwrap();
    let page = staged(wh, &scope, &first, counts.streamed).await;
    let delivered: Vec<RecordOutcome> = page
        .iter()
        .map(|c| RecordOutcome { key: c.key.clone(), hash: c.hash.clone(), kind: c.kind, result: OutcomeKind::Delivered })
        .collect();
    wh.commit(&scope, "first", &[], &delivered).await.unwrap();
    wh.merge(&scope).await.unwrap();
    wh.drop_stage(&scope, "first").await.unwrap();

    wh.execute(&format!("INSERT INTO {table} VALUES (1, 'a2')")).await.unwrap();
    let mut second = req("second");
    second.columns = first.columns.clone();
    let counts = wh.stage(&scope, &second).await.unwrap();
    let page = staged(wh, &scope, &second, counts.streamed).await;
    wh.drop_stage(&scope, "second").await.unwrap();
    let ones: Vec<_> = page.iter().filter(|c| c.key.as_deref() == Some("1")).collect();
    assert_eq!(ones.len(), 2, "both copies of key 1 are staged: {page:?}");
    assert!(ones.iter().all(|c| c.flag == Some(StageFlag::DuplicateKey) && c.kind == ChangeKind::Updated), "{page:?}");
    assert!(
        ones.iter().all(|c| matches!(c.row.clone().map(decoded), Some(Ok(r)) if r["id"] == 1 || r["id"] == "1")),
        "each carries at least its key (as text when its copy kept no values): {page:?}"
    );
    assert!(!page.iter().any(|c| c.key.as_deref() == Some("2")), "key 2 did not change: {page:?}");
    assert_eq!((counts.model_rows, counts.snapshot_rows, counts.deleted), (3, 2, 0));
}

mod postgres {
    use super::*;

    const VAR: &str = "RETL_TEST_POSTGRES_URL";

    #[tokio::test]
    async fn every_type_reaches_the_mapping_as_json() {
        let wh = connect_url(SourceType::Postgres, &url(VAR), &format!("retl_{}", unique())).await.unwrap();
        let s = format!("t_{}", unique());
        wh.execute(&format!(
            "CREATE SCHEMA {s};
             CREATE TABLE {s}.v (id int PRIMARY KEY, big bigint, small_num numeric(12,2), big_num numeric,
               flag boolean, t text, ts timestamptz, ts_nz timestamp, d date, u uuid, j jsonb, js json,
               arr int[], tags text[], b bytea, n text, iv interval, num15 numeric(15,3), num16 numeric(16,0));
             INSERT INTO {s}.v VALUES (1, 9007199254740993, 1234.50, 12345678901234567890.123456789, true, 'hé \"x\"',
               '2024-05-01 12:00:00.123+02', '2024-05-01 12:00:00', '2024-05-01',
               'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": {{\"b\": [1, 2]}}}}', '[{{\"sku\": \"x\"}}]',
               '{{1,2,3}}', '{{a,b}}', '\\x68690a', NULL, '1 day', -123456789012.345, 9999999999999999)"
        ))
        .await
        .unwrap();
        // A table's numeric column shows its declared digits (the Model's
        // status lists them); an unconstrained one and a computed one do not.
        let columns = wh.describe(&format!("SELECT small_num, big_num, small_num * 2 AS twice FROM {s}.v")).await.unwrap();
        let types: Vec<Option<&str>> = columns.iter().map(|c| c.type_name.as_deref()).collect();
        assert_eq!(types, [Some("NUMERIC(12,2)"), Some("NUMERIC"), Some("NUMERIC")]);
        let rows = rows(wh.as_ref(), &format!("SELECT * FROM {s}.v")).await;
        let row = rows["1"].as_ref().unwrap();
        let expected = json!({
            "id": 1, "big": 9007199254740993i64, "small_num": 1234.5,
            "big_num": "12345678901234567890.123456789", "flag": true, "t": "hé \"x\"",
            "ts": "2024-05-01T10:00:00.123+00:00", "ts_nz": "2024-05-01T12:00:00+00:00", "d": "2024-05-01",
            "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": {"a": {"b": [1, 2]}}, "js": [{"sku": "x"}],
            "arr": [1, 2, 3], "tags": ["a", "b"], "b": "aGkK", "n": null, "iv": "1 day",
            // Declared to fit a double: a number; one digit more: every digit, as text.
            "num15": -123456789012.345, "num16": "9999999999999999",
        });
        assert_eq!(Value::Object(row.clone()), expected);
        let names: Vec<&str> = row.keys().map(String::as_str).collect();
        assert_eq!(names[..4], ["id", "big", "small_num", "big_num"], "the query's column order");
    }

    #[tokio::test]
    async fn duplicate_keys_are_caught_even_when_one_copy_is_unchanged() {
        let wh = connect_url(SourceType::Postgres, &url(VAR), &format!("retl_{}", unique())).await.unwrap();
        let s = format!("t_{}", unique());
        wh.execute(&format!("CREATE SCHEMA {s}")).await.unwrap();
        a_duplicate_with_one_copy_unchanged_is_caught(wh.as_ref(), &format!("{s}.d")).await;
    }

    #[tokio::test]
    async fn a_failed_connection_says_why_and_shows_no_secret() {
        let base = url(VAR);
        let err =
            connect_error(connect_url(SourceType::Postgres, &format!("postgres://u:s3cretpw@127.0.0.1:{}/x", closed_port()), "retl").await);
        assert!(err.contains("cannot reach the server at 127.0.0.1:") && err.contains("host and port"), "{err}");
        assert!(!err.contains("s3cretpw"), "{err}");

        let err = connect_error(connect_url(SourceType::Postgres, &with(&base, "postgres", None, "retl_no_such_db"), "retl").await);
        assert!(err.contains("does not have that database") && err.contains("spec.postgres.database"), "{err}");

        let err = connect_error(connect_url(SourceType::Postgres, &with(&base, "retl_no_such_role", Some("pw1"), "test"), "retl").await);
        assert!(err.contains("refused the login of user retl_no_such_role") && err.contains("passwordSecretRef"), "{err}");
        assert!(!err.contains("pw1"), "{err}");
    }

    #[tokio::test]
    async fn tls_that_cannot_be_verified_is_named() {
        let base = url(VAR);
        let mut secrets = SecretValues::new();
        secrets.insert(("db".into(), "password".into()), "unused-pw".into());
        let host_port = base.split('@').nth(1).unwrap().split('/').next().unwrap();
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, "5432"));
        let settings = ServerSource {
            host: Some(host.into()),
            port: Some(port.parse().unwrap()),
            database: Some("test".into()),
            user: Some("postgres".into()),
            password_secret_ref: Some(SecretKeyRef { name: "db".into(), key: "password".into() }),
            tls_mode: Some(TlsMode::VerifyFull),
            connect_timeout_seconds: Some(5),
            ..Default::default()
        };
        let r = warehouse::connect("warehouse", &spec(SourceType::Postgres, settings, "retl"), &secrets, Path::new(".")).await;
        // The test server either has no TLS or a self-signed certificate:
        // verify-full cannot succeed, and the message must say it is TLS.
        let err = connect_error(r);
        assert!(err.contains("TLS") && err.contains("tlsMode"), "{err}");
        assert!(!err.contains("unused-pw"), "{err}");
    }

    #[tokio::test]
    async fn a_user_without_rights_is_told_the_grant() {
        let admin = connect_url(SourceType::Postgres, &url(VAR), "retl").await.unwrap();
        let role = format!("retl_limited_{}", unique());
        admin.execute(&format!("CREATE ROLE {role} LOGIN")).await.unwrap();
        let limited =
            connect_url(SourceType::Postgres, &with(&url(VAR), &role, None, "test"), &format!("retl_{}", unique())).await.unwrap();
        let err = limited.prepare_state(&StateScope::from_uid("abc")).await.unwrap_err().to_string();
        admin.execute(&format!("DROP ROLE {role}")).await.unwrap();
        assert!(err.contains(&format!("GRANT CREATE ON DATABASE \"test\" TO \"{role}\"")), "{err}");
        assert!(err.contains("AUTHORIZATION"), "{err}");
    }
}

mod mysql {
    use super::*;

    const VAR: &str = "RETL_TEST_MYSQL_URL";

    #[tokio::test]
    async fn every_type_reaches_the_mapping_as_json() {
        let wh = connect_url(SourceType::Mysql, &url(VAR), &format!("retl_{}", unique())).await.unwrap();
        let s = format!("t_{}", unique());
        wh.execute(&format!("CREATE DATABASE {s}")).await.unwrap();
        wh.execute(&format!(
            "CREATE TABLE {s}.v (id INT PRIMARY KEY, big BIGINT, small_num DECIMAL(12,2), big_num DECIMAL(30,9),
               flag BOOLEAN, t VARCHAR(50), ts TIMESTAMP(3) NULL, dt DATETIME, d DATE, j JSON, b BLOB, n VARCHAR(5),
               e ENUM('a','b'), g GEOMETRY NULL, num15 DECIMAL(15,3), num16 DECIMAL(16,0))"
        ))
        .await
        .unwrap();
        wh.execute(&format!(
            "INSERT INTO {s}.v VALUES (1, 9007199254740993, 1234.50, 123456789012345678901.123456789, TRUE,
               'hé \"x\" \\\\ y', '2024-05-01 10:00:00.123', '2024-05-01 12:00:00', '2024-05-01',
               '{{\"a\": {{\"b\": [1, 2]}}}}', X'68690a', NULL, 'b', ST_GeomFromText('POINT(1 1)'),
               -123456789012.345, 9999999999999999)"
        ))
        .await
        .unwrap();
        let rows_ =
            rows(wh.as_ref(), &format!("SELECT id, big, small_num, big_num, flag, t, ts, dt, d, j, b, n, e, num15, num16 FROM {s}.v"))
                .await;
        let row = rows_["1"].as_ref().unwrap();
        let expected = json!({
            "id": 1, "big": 9007199254740993i64, "small_num": 1234.5,
            "big_num": "123456789012345678901.123456789", "flag": true, "t": "hé \"x\" \\ y",
            "ts": "2024-05-01T10:00:00.123000Z", "dt": "2024-05-01T12:00:00Z", "d": "2024-05-01",
            "j": {"a": {"b": [1, 2]}}, "b": "aGkK", "n": null, "e": "b",
            // 15 digits fit a double: a number; 16 do not: every digit, as text.
            "num15": -123456789012.345, "num16": "9999999999999999",
        });
        assert_eq!(Value::Object(row.clone()), expected);

        let with_geometry = rows(wh.as_ref(), &format!("SELECT id, g FROM {s}.v")).await;
        let err = with_geometry["1"].as_ref().unwrap_err();
        assert!(err.contains("\"g\"") && err.contains("GEOMETRY") && err.contains("cast it in the model"), "{err}");
    }

    #[tokio::test]
    async fn duplicate_keys_are_caught_even_when_one_copy_is_unchanged() {
        let wh = connect_url(SourceType::Mysql, &url(VAR), &format!("retl_{}", unique())).await.unwrap();
        let s = format!("t_{}", unique());
        wh.execute(&format!("CREATE DATABASE {s}")).await.unwrap();
        a_duplicate_with_one_copy_unchanged_is_caught(wh.as_ref(), &format!("{s}.d")).await;
    }

    #[tokio::test]
    async fn a_failed_connection_says_why_and_shows_no_secret() {
        let base = url(VAR);
        let err = connect_error(connect_url(SourceType::Mysql, &format!("mysql://u:s3cretpw@127.0.0.1:{}/x", closed_port()), "retl").await);
        assert!(err.contains("cannot reach the server at 127.0.0.1:"), "{err}");
        assert!(!err.contains("s3cretpw"), "{err}");

        let err = connect_error(connect_url(SourceType::Mysql, &with(&base, "root", None, "retl_no_such_db"), "retl").await);
        assert!(err.contains("does not have that database") && err.contains("spec.mysql.database"), "{err}");

        let err = connect_error(connect_url(SourceType::Mysql, &with(&base, "root", Some("wrong-pw"), "test"), "retl").await);
        assert!(err.contains("refused the login of user root") && err.contains("passwordSecretRef"), "{err}");
        assert!(!err.contains("wrong-pw"), "{err}");
    }

    #[tokio::test]
    async fn a_user_without_rights_is_told_the_grant() {
        let admin = connect_url(SourceType::Mysql, &url(VAR), "retl").await.unwrap();
        let user = format!("retl_lim_{}", unique());
        admin.execute(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'")).await.unwrap();
        admin.execute(&format!("CREATE USER '{user}'@'localhost' IDENTIFIED BY 'pw-{user}'")).await.unwrap();
        let state = format!("retl_{}", unique());
        let limited = connect_url(SourceType::Mysql, &with(&url(VAR), &user, Some(&format!("pw-{user}")), ""), &state).await.unwrap();
        let err = limited.prepare_state(&StateScope::from_uid("abc")).await.unwrap_err().to_string();
        admin.execute(&format!("DROP USER '{user}'@'%', '{user}'@'localhost'")).await.unwrap();
        assert!(err.contains(&format!("GRANT ALL PRIVILEGES ON `{state}`.* TO '{user}'")), "{err}");
        assert!(!err.contains(&format!("pw-{user}")), "{err}");
    }
}

/// A staged row's values, as the engine decodes them.
fn decoded(row: Result<String, String>) -> Result<retl::warehouse::Row, String> {
    row.and_then(|text| retl::warehouse::decode_row(&retl::warehouse::RowDecoder, &text))
}
