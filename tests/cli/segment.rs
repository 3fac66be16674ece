//! The `segment` destination through the real binary against a real
//! Segment-compatible server (`testkit::segment`): built-in actions and
//! fields, the request and message limits, a malformed message found by
//! halving while the rest lands, 429 with `Retry-After`, the same
//! messageIds after a kill, skipped deletes, and bad input that says what
//! to fix. The last test holds the server itself to the contract.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::segment::{MAX_REQUEST_BYTES, SegmentServer};

use super::{retl, spawn_run, text};

pub(super) const KEY: &str = "wk-9d2f-test-key";

/// Manifests: `rows` users (id, email, plan, bio of `bio` characters,
/// signed_up_at), a segment Destination, and `mappings` (YAML documents).
pub(super) fn setup(dir: &Path, rows: u32, bio: usize, base_url: &str, destination: &str, mappings: &str) {
    let values: Vec<String> = (1..=rows)
        .map(|i| format!("({i}, 'u{i}@example.com', 'free', substr(hex(zeroblob({bio})), 1, {bio}), '2024-05-01 10:00:00')"))
        .collect();
    let seed = format!(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, plan TEXT, bio TEXT, signed_up_at TEXT);\nINSERT INTO users VALUES {};\n",
        values.join(",")
    );
    std::fs::write(dir.join("seed.sql"), seed).unwrap();
    let yaml = format!(
        r#"apiVersion: retl.dev/v1alpha1
kind: Source
metadata: {{name: wh}}
spec: {{type: sqlite, sqlite: {{path: wh.db, seedFile: seed.sql}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: segment}}
stringData: {{writeKey: {KEY}}}
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: users}}
spec: {{sourceRef: {{name: wh}}, primaryKey: id, query: "SELECT id, email, plan, bio, signed_up_at FROM users"}}
---
apiVersion: retl.dev/v1alpha1
kind: Destination
metadata: {{name: segment}}
spec:
  type: segment
  segment:
    baseUrl: {base_url}
    writeKeySecretRef: {{name: segment, key: writeKey}}
    maxInFlight: 1
    maxRetries: 3
    initialBackoffMillis: 10
{destination}---
{mappings}"#
    );
    std::fs::write(dir.join("all.yaml"), yaml).unwrap();
}

pub(super) const IDENTIFY: &str = r#"apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {name: users-identify}
spec:
  modelRef: {name: users}
  destinationRef: {name: segment}
  action: identify
  send: [added, updated, deleted]
  fields:
    - {to: userId, from: id}
    - {to: traits, object: [{to: email, from: email}, {to: plan, from: plan}, {to: bio, from: bio}]}
"#;

const TRACK: &str = r#"apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {name: users-track}
spec:
  modelRef: {name: users}
  destinationRef: {name: segment}
  action: track
  fields:
    - {to: userId, from: id}
    - {to: event, value: Signed Up}
    - {to: properties, object: [{to: plan, from: plan}]}
    - {to: timestamp, from: signed_up_at}
"#;

/// `retl run -f . -o json`: the Syncs by Mapping name, and the exit code.
fn run(dir: &Path) -> (std::collections::BTreeMap<String, Value>, Option<i32>, String) {
    let out = retl(dir, &["run", "-f", ".", "-o", "json"]);
    let said = text(&out);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {said}"));
    let syncs = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["spec"]["mappingRef"]["name"].as_str().unwrap().to_string(), s["status"].clone()));
    (syncs.collect(), out.status.code(), said)
}

fn sql(dir: &Path, statement: &str) {
    let source = if dir.join("source.yaml").exists() { "warehouse" } else { "wh" };
    assert!(retl(dir, &["sql", "-f", ".", "--source", source, statement]).status.success(), "{statement}");
}

fn of_type<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_land_with_built_in_fields_and_deletes_are_skipped() {
    let server = SegmentServer::start(KEY).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), 25, 8, &server.base_url(), "    batchSize: 10\n", &format!("{IDENTIFY}---\n{TRACK}"));
    let (syncs, code, said) = run(tmp.path());
    assert_eq!(code, Some(0), "{said}");
    for m in ["users-identify", "users-track"] {
        assert_eq!(syncs[m]["phase"], "Successful", "{m}: {said}");
        assert_eq!(syncs[m]["loaded"]["succeeded"], 25, "{said}");
    }
    let messages = server.messages();
    let (identify, track) = (of_type(&messages, "identify"), of_type(&messages, "track"));
    assert_eq!((identify.len(), track.len()), (25, 25));
    let first = identify.iter().find(|m| m["userId"] == "1").unwrap();
    assert_eq!(first["traits"], json!({"email": "u1@example.com", "plan": "free", "bio": "00000000"}));
    assert_eq!(first["context"]["library"]["name"], "retl");
    assert!(uuid::Uuid::parse_str(first["messageId"].as_str().unwrap()).is_ok(), "{first}");
    let t = track.iter().find(|m| m["userId"] == "2").unwrap();
    assert_eq!((t["event"].as_str(), t["timestamp"].as_str()), (Some("Signed Up"), Some("2024-05-01T10:00:00Z")), "{t}");
    assert_eq!(t["properties"], json!({"plan": "free"}));
    let answered = server.answered();
    assert!(answered.iter().all(|a| a.status == 200 && a.messages <= 10), "{answered:?}");
    assert_eq!(answered.len(), 6, "batches of batchSize");

    sql(tmp.path(), "UPDATE users SET plan = 'pro' WHERE id = 1; DELETE FROM users WHERE id = 25");
    server.clear();
    let (syncs, code, said) = run(tmp.path());
    assert_eq!(code, Some(0), "{said}");
    let s = &syncs["users-identify"];
    assert_eq!((s["loaded"]["succeeded"].as_u64(), s["loaded"]["skipped"].as_u64()), (Some(1), Some(1)), "{said}");
    assert_eq!(s["skipped"][0]["reason"], "DeletesNotSupported", "{said}");
    assert!(s["skipped"][0]["message"].as_str().unwrap().contains("regulations API"), "{said}");
    let again = server.messages();
    assert_eq!(again.len(), 2, "one identify and one track for user 1, nothing for the delete: {again:?}");
    assert!(again.iter().all(|m| m["userId"] == "1"));
    assert_ne!(of_type(&again, "identify")[0]["messageId"], first["messageId"], "a changed row is a new message");
    let (syncs, _, said) = run(tmp.path());
    assert_eq!(syncs["users-identify"]["loaded"]["skipped"], 0, "a skipped delete is not found again: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_split_and_a_bad_record_fails_alone() {
    let server = SegmentServer::start(KEY).await.unwrap();
    // A rule only the server knows: it refuses the whole request with user 7 in it.
    server.set(|b| {
        b.refuse_user_ids.insert("7".into());
    });
    let tmp = tempfile::tempdir().unwrap();
    // 60 messages of about 9 KB in batches of 100: more than one request may carry.
    setup(tmp.path(), 60, 9_000, &server.base_url(), "    batchSize: 100\n", IDENTIFY);
    sql(tmp.path(), "UPDATE users SET bio = hex(zeroblob(20000)) WHERE id = 3");
    let (syncs, code, said) = run(tmp.path());
    assert_eq!(code, Some(0), "{said}");
    let s = &syncs["users-identify"];
    assert_eq!(s["phase"], "PartiallySuccessful", "{said}");
    assert_eq!((s["loaded"]["succeeded"].as_u64(), s["loaded"]["failed"].as_u64()), (Some(58), Some(2)), "{said}");
    let failed: Vec<(String, String)> = s["failedRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["key"].as_str().unwrap().to_string(), f["code"].as_str().unwrap().to_string()))
        .collect();
    assert!(failed.contains(&("3".into(), "MESSAGE_TOO_LARGE".into())), "{failed:?}");
    assert!(failed.contains(&("7".into(), "HTTP_400".into())), "{failed:?}");
    let bad = s["failedRecords"].as_array().unwrap().iter().find(|f| f["key"] == "7").unwrap();
    assert!(bad["message"].as_str().unwrap().contains("user \"7\" is not accepted here"), "the server's reason: {bad}");
    let users: std::collections::BTreeSet<String> = server.messages().iter().map(|m| m["userId"].as_str().unwrap().to_string()).collect();
    assert_eq!(users.len(), 58);
    assert!(!users.contains("3") && !users.contains("7"));
    let answered = server.answered();
    assert!(answered.iter().all(|a| a.bytes <= MAX_REQUEST_BYTES), "{answered:?}");
    assert!(answered.iter().any(|a| a.status == 200 && a.bytes > MAX_REQUEST_BYTES / 2), "requests are filled: {answered:?}");
    assert!(answered.iter().filter(|a| a.status == 400).count() <= 2 * 7, "halving, not one request per message: {answered:?}");
    assert_eq!(server.duplicates(), 0, "a refused request lands nothing, so halves send nothing twice");

    server.set(|b| b.refuse_user_ids.clear());
    let (syncs, _, said) = run(tmp.path());
    let s = &syncs["users-identify"];
    assert_eq!(
        (s["loaded"]["succeeded"].as_u64(), s["loaded"]["failed"].as_u64()),
        (Some(1), Some(1)),
        "7 lands, 3 is still too large: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_honouring_retry_after() {
    let server = SegmentServer::start(KEY).await.unwrap();
    server.set(|b| b.throttle_next.extend([1, 1]));
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), 5, 4, &server.base_url(), "", IDENTIFY);
    let started = Instant::now();
    let (syncs, code, said) = run(tmp.path());
    assert_eq!((code, syncs["users-identify"]["phase"].as_str()), (Some(0), Some("Successful")), "{said}");
    let statuses: Vec<u16> = server.answered().iter().map(|a| a.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
    assert!(started.elapsed() >= Duration::from_secs(2), "waited Retry-After, not the 10 ms backoff: {:?}", started.elapsed());
    assert_eq!(server.messages().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_again_after_a_kill_carries_the_same_message_ids() {
    let server = SegmentServer::start(KEY).await.unwrap();
    // The first request is accepted, and its answer never comes before the kill.
    server.set(|b| b.hang_after_accept = Some(Duration::from_secs(30)));
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), 50, 4, &server.base_url(), "    batchSize: 10\n", IDENTIFY);
    let mut child = spawn_run(tmp.path());
    let started = Instant::now();
    while server.messages().len() < 10 {
        assert!(started.elapsed() < Duration::from_secs(30), "the server never got the first batch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: delivered, never committed
    child.wait().unwrap();
    let before = server.message_ids();
    assert_eq!(before.len(), 10);

    server.set(|b| b.hang_after_accept = None);
    let (syncs, code, said) = run(tmp.path());
    assert_eq!((code, syncs["users-identify"]["loaded"]["succeeded"].as_u64()), (Some(0), Some(50)), "{said}");
    let after = server.message_ids();
    assert!(before.iter().all(|id| after.iter().filter(|a| *a == id).count() == 2), "each id of the lost batch came again");
    assert_eq!(server.duplicates(), 10, "and the server applied them once");
    let users: std::collections::BTreeSet<String> = server.messages().iter().map(|m| m["userId"].as_str().unwrap().to_string()).collect();
    assert_eq!((server.messages().len(), users.len()), (50, 50), "every user once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_segment_manifests_say_what_to_fix() {
    let server = SegmentServer::start(KEY).await.unwrap();
    let identify_with = |from: &str, to: &str| IDENTIFY.replacen(from, to, 1);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "  actions: [{name: identfy}]\n",
            IDENTIFY.into(),
            r#"no action "identfy" (its actions: identify, track, group, page, screen, alias)"#,
        ),
        ("  actions: [{name: identify, fields: [{name: email}]}]\n", IDENTIFY.into(), r#"segment's identify action has no field "email""#),
        ("", identify_with("action: identify", "action: upsert"), r#"has no action "upsert" (its actions: identify, track"#),
        ("", identify_with("{to: userId, from: id}", "{to: email, from: email}"), r#"field "email" is not a field of action "identify""#),
    ];
    for (destination, mapping, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        setup(tmp.path(), 3, 4, &server.base_url(), destination, &mapping);
        let out = retl(tmp.path(), &["run", "-f", "."]);
        let said = text(&out);
        assert_ne!(out.status.code(), Some(0), "{said}");
        assert!(said.contains(expected), "expected {expected:?} in:\n{said}");
    }
    assert!(server.answered().is_empty(), "nothing was sent");

    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), 3, 4, &server.base_url(), "", IDENTIFY);
    let all = tmp.path().join("all.yaml");
    let yaml = std::fs::read_to_string(&all).unwrap();
    for (from, to, expected) in [
        ("name: segment}\nstringData", "name: other}\nstringData", "RETL_SECRET_SEGMENT_WRITEKEY"),
        ("{writeKey: wk-9d2f-test-key}", "{writeKey: \" \"}", "is empty; put the source's write key there"),
        ("    writeKeySecretRef: {name: segment, key: writeKey}\n", "", "writeKeySecretRef"),
    ] {
        assert!(yaml.contains(from), "{from}");
        std::fs::write(&all, yaml.replacen(from, to, 1)).unwrap();
        let out = retl(tmp.path(), &["run", "-f", "."]);
        let said = text(&out);
        assert_ne!(out.status.code(), Some(0), "{said}");
        assert!(said.contains(expected), "expected {expected:?} in:\n{said}");
    }

    // A wrong key: the API refuses it, and the key shows in no form.
    std::fs::write(&all, yaml.replacen(KEY, "wk-wrong-key-77", 1)).unwrap();
    let (syncs, code, said) = run(tmp.path());
    assert_eq!(code, Some(1), "{said}");
    let s = &syncs["users-identify"];
    assert_eq!((s["phase"].as_str(), s["errors"][0]["code"].as_str()), (Some("Failed"), Some("HTTP_401")), "{said}");
    let b64 = |v: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v);
    for form in ["wk-wrong-key-77".to_string(), b64("wk-wrong-key-77:")] {
        assert!(!said.contains(&form), "{form} in {said}");
    }
    assert!(said.contains("***"), "the server's echo arrived, masked: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runs_as_its_readme_says() {
    let server = SegmentServer::start("test-write-key").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/segment");
    for f in ["source.yaml", "warehouse.sql", "model.yaml", "destination.yaml", "mappings.yaml"] {
        let text = std::fs::read_to_string(src.join(f)).unwrap();
        std::fs::write(tmp.path().join(f), text.replace("http://127.0.0.1:8090", &server.base_url())).unwrap();
    }
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_retl"))
            .args(["run", "-f", ".", "-o", "json"])
            .current_dir(tmp.path())
            .env("RETL_SECRET_SEGMENT_WRITEKEY", "test-write-key")
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        let loaded = |m: &str| {
            list["items"].as_array().unwrap().iter().find(|s| s["spec"]["mappingRef"]["name"] == m).unwrap()["status"]["loaded"].clone()
        };
        (out.status.code(), loaded("users-identify"), loaded("users-signed-up"))
    };
    let (code, identify, track) = run();
    assert_eq!((code, identify["succeeded"].as_u64(), track["succeeded"].as_u64()), (Some(0), Some(5), Some(5)));
    let messages = server.messages();
    let edsger = messages.iter().find(|m| m["type"] == "identify" && m["userId"] == "4").unwrap();
    assert_eq!(edsger["traits"], json!({"email": "edsger@example.com", "name": "Edsger Dijkstra", "plan": "free"}), "skipNulls");
    let ada = messages.iter().find(|m| m["type"] == "track" && m["userId"] == "1").unwrap();
    assert_eq!((ada["event"].as_str(), ada["timestamp"].as_str()), (Some("Signed Up"), Some("2024-03-01T09:15:00Z")));

    sql(tmp.path(), "UPDATE users SET plan = 'pro' WHERE id = 3");
    let (_, identify, track) = run();
    assert_eq!((identify["succeeded"].as_u64(), track["succeeded"].as_u64(), track["skipped"].as_u64()), (Some(1), Some(0), Some(1)));
    assert_eq!(server.messages().len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_server_holds_senders_to_the_contract() {
    let server = SegmentServer::start(KEY).await.unwrap();
    retl::install_crypto_provider();
    let client = reqwest::Client::new();
    let url = format!("{}/v1/batch", server.base_url());
    let post = |body: Value, key: Option<&str>| {
        let mut r = client.post(&url).json(&body);
        if let Some(k) = key {
            r = r.basic_auth(k, Some(""));
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let ok = |id: &str| json!({"type": "track", "userId": "1", "event": "E", "messageId": id, "timestamp": "2024-05-01T10:00:00.5+02:00"});
    assert_eq!(post(json!({"batch": [ok("a")]}), None).await, 401);
    assert_eq!(post(json!({"batch": [ok("a")]}), Some("wrong")).await, 401);
    for bad in [
        json!({"type": "track", "event": "E"}),
        json!({"type": "purchase", "userId": "1"}),
        json!({"type": "track", "userId": "1"}),
        json!({"type": "identify", "userId": "1", "timestamp": "yesterday"}),
        json!({"type": "alias", "userId": "1"}),
        json!({"type": "identify", "userId": "1", "traits": {"bio": "x".repeat(32_001)}}),
    ] {
        assert_eq!(post(json!({"batch": [ok("b"), bad.clone()]}), Some(KEY)).await, 400, "{bad}");
    }
    let many: Vec<Value> =
        (0..20).map(|i| json!({"type": "identify", "userId": i.to_string(), "traits": {"bio": "x".repeat(30_000)}})).collect();
    assert_eq!(post(json!({"batch": many}), Some(KEY)).await, 400, "more than 500,000 bytes");
    assert!(server.messages().is_empty(), "a refused request lands nothing");
    assert_eq!(post(json!({"batch": [ok("a"), ok("c")]}), Some(KEY)).await, 200);
    assert_eq!(post(json!({"batch": [ok("a")]}), Some(KEY)).await, 200);
    assert_eq!((server.messages().len(), server.duplicates()), (2, 1), "deduplicated by messageId");
    server.set(|b| b.throttle_next.push_back(3));
    let throttled = client.post(&url).basic_auth(KEY, Some("")).json(&json!({"batch": [ok("d")]})).send().await.unwrap();
    assert_eq!((throttled.status().as_u16(), throttled.headers()["retry-after"].to_str().unwrap()), (429, "3"));
}
