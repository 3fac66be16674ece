//! `retl test -f DIR --mapping M [--key K]`: one record sent to a real HTTP
//! sink (and a Segment-compatible server), the request and the reply
//! printed with secret headers masked, a rejected or undeliverable record
//! exiting 1, bad input exiting 2, and no sync state changed.

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;
use testkit::segment::SegmentServer;
use testkit::sink::Sink;

use super::{http_setup, last_row, retl, text};

const TOKEN: &str = "Bearer t3st-r3c0rd-s3cret";
const HEADER: &str = "    maxRetries: 1\n    initialBackoffMillis: 10\n    headers: [{name: Authorization, valueFrom: {name: api-token, key: token}}, {name: X-Team, value: growth}]";

/// `retl ARGS` with the API token in the environment, as a local run reads Secrets.
fn retl_token(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("RETL_SECRET_API_TOKEN_TOKEN", TOKEN)
        .output()
        .expect("run retl")
}

/// Every form of the token that must never be printed.
fn leaks(out: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let forms = ["t3st-r3c0rd-s3cret".to_string(), b64.encode(TOKEN), b64.encode("t3st-r3c0rd-s3cret")];
    forms.into_iter().filter(|f| out.contains(f.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_record_prints_the_request_and_the_reply_and_changes_no_sync_state() {
    let sink = Sink::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 5, &sink.url(), HEADER);

    let sent = retl_token(tmp.path(), &["test", "-f", ".", "--mapping", "users-api", "--key", "3"]);
    let out = text(&sent);
    assert!(sent.status.success(), "{out}");
    println!("--- retl test -f . --mapping users-api --key 3\n{out}");
    for expected in [
        "Test record of Mapping default/users-api: key \"3\" of Model users, to Destination api (http), action upsert",
        "Payload: {\"id\":\"3\",\"email\":\"u3@example.com\"}",
        &format!("Request: POST {}", sink.url()),
        "authorization: Bearer ***",
        "x-team: growth",
        "\"operation\": \"upsert\"",
        "Reply: HTTP 200 OK",
        "\"ok\": true",
        "Accepted: the destination took the record.",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert_eq!(leaks(&out), Vec::<String>::new(), "{out}");
    assert_eq!(sink.headers()[0]["authorization"], TOKEN, "the header was sent as it is");
    assert_eq!(sink.received().iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["3"]);

    // The first row, for scripts.
    let json = retl_token(tmp.path(), &["test", "-f", ".", "--mapping", "users-api", "-o", "json"]);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&json)));
    assert_eq!((report["result"]["outcome"].as_str(), report["destinationType"].as_str()), (Some("Accepted"), Some("http")), "{report:#}");
    assert_eq!(report["payload"]["id"], report["key"], "{report:#}");
    let request = &report["exchanges"][0]["request"];
    assert!(request["headers"].as_array().unwrap().iter().any(|h| h["name"] == "authorization" && h["value"] == "Bearer ***"));
    assert_eq!(request["body"]["records"][0]["key"], report["key"], "{report:#}");

    // Bad input: exit 2 and what to do.
    let missing = retl_token(tmp.path(), &["test", "-f", ".", "--mapping", "users-api", "--key", "999"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("no row whose primary key (id) is \"999\"") && text(&missing).contains("leave out --key"));
    let unknown = retl_token(tmp.path(), &["test", "-f", ".", "--mapping", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).contains("there is no Mapping \"nope\"") && text(&unknown).contains("its Mappings: users-api"));

    // No sync state: no sync in the history, and the first run sends every record as added.
    let history = text(&retl(tmp.path(), &["history", "-f", "."]));
    assert!(history.contains("No syncs found"), "{history}");
    sink.clear();
    let run = text(&retl_token(tmp.path(), &["run", "-f", "."]));
    let row = last_row(&run);
    assert_eq!((row["STATUS"].as_str(), row["ADDED"].as_str(), row["LOADED"].as_str()), ("Successful", "5", "5"), "{run}");
    assert_eq!(sink.latest().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_or_undelivered_test_record_says_why_and_exits_1() {
    let sink = Sink::start().await.unwrap();
    // The sink rejects record 2 and echoes the headers it got in its message.
    sink.set(|b| {
        b.reject_keys.insert("2".into());
        b.echo_headers = true;
    });
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 5, &sink.url(), HEADER);
    let rejected = retl_token(tmp.path(), &["test", "-f", ".", "--mapping", "users-api", "--key", "2"]);
    let out = text(&rejected);
    assert_eq!(rejected.status.code(), Some(1), "{out}");
    assert!(out.contains("Rejected (INVALID_RECORD): record 2 is not valid here"), "{out}");
    assert!(out.contains("Recommended action: Check the error message"), "{out}");
    assert!(out.contains("\"ok\": false") && out.contains("***"), "the reply, its echo of the token masked: {out}");
    assert_eq!(leaks(&out), Vec::<String>::new(), "{out}");

    // A destination that keeps failing: each attempt shows, then why it was not delivered.
    sink.set(|b| b.always_status = Some(503));
    let down = retl_token(tmp.path(), &["test", "-f", ".", "--mapping", "users-api", "--key", "1"]);
    let out = text(&down);
    assert_eq!(down.status.code(), Some(1), "{out}");
    assert!(out.contains("Request 1: POST") && out.contains("Request 2: POST") && out.contains("Reply 2: HTTP 503"), "{out}");
    assert!(out.contains("Not delivered (DESTINATION_UNAVAILABLE)") && out.contains("after 2 attempts"), "{out}");
    assert_eq!(leaks(&out), Vec::<String>::new(), "{out}");
    let history = text(&retl(tmp.path(), &["history", "-f", "."]));
    assert!(history.contains("No syncs found"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_test_record_has_a_message_id_no_sync_sends() {
    let server = SegmentServer::start(super::segment::KEY).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    super::segment::setup(tmp.path(), 3, 4, &server.base_url(), "", super::segment::IDENTIFY);
    let sent = retl(tmp.path(), &["test", "-f", ".", "--mapping", "users-identify", "--key", "2"]);
    let out = text(&sent);
    assert!(sent.status.success(), "{out}");
    assert!(out.contains(&format!("Request: POST {}/v1/batch", server.base_url())) && out.contains("authorization: Basic ***"), "{out}");
    assert!(out.contains("\"type\": \"identify\"") && out.contains("\"messageId\": "), "{out}");
    assert!(!out.contains(super::segment::KEY), "{out}");
    assert_eq!(server.messages().len(), 1);

    // The sync sends user 2 again under its own messageId: a receiver that
    // deduplicates does not drop it as the test record's.
    let run = retl(tmp.path(), &["run", "-f", "."]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!((server.messages().len(), server.duplicates()), (4, 0));
}
