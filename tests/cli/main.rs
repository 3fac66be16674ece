//! The `retl` binary as a user runs it: the quickstart, plan, history,
//! reset, replay, bad input, a killed run and Ctrl-C; `safety.rs`: secrets,
//! deadlines and a closed stdout.

mod safety;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::sink::Sink;

fn retl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retl")).args(args).current_dir(dir).env_remove("RUST_LOG").output().expect("run retl")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A copy of examples/quickstart in a temporary directory.
fn quickstart() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let dst = tmp.path().join("quickstart");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["source.yaml", "destination.yaml", "model.yaml", "mapping.yaml", "warehouse.sql"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    (tmp, dst)
}

/// The row of the sync table for the last sync printed, as column → value.
fn last_row(out: &str) -> std::collections::BTreeMap<String, String> {
    let lines: Vec<&str> = out.lines().collect();
    let h = lines.iter().rposition(|l| l.starts_with("NAME ")).expect("a table header");
    let header: Vec<&str> = lines[h].split_whitespace().collect();
    let row: Vec<&str> = lines[h + 1].split_whitespace().collect();
    header.iter().map(|s| s.to_string()).zip(row.iter().map(|s| s.to_string())).collect()
}

#[test]
fn quickstart_shows_a_partial_success_then_retries_updates_and_deletes() {
    let (_tmp, dir) = quickstart();
    let first = retl(&dir, &["run", "-f", "."]);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    let row = last_row(&out);
    assert_eq!(row["STATUS"], "PartiallySuccessful", "{out}");
    assert_eq!((row["EXTRACTED"].as_str(), row["ADDED"].as_str(), row["LOADED"].as_str(), row["FAILED"].as_str()), ("10", "10", "8", "2"));
    for expected in ["MISSING_REQUIRED_FIELD", "PROPERTY_NOT_ACCEPTED", "\"internal_note\"", "Recommended action:", "Payload: {"] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let delivered = std::fs::read_to_string(dir.join("out/crm.jsonl")).unwrap();
    assert_eq!(delivered.lines().count(), 8);
    assert!(
        delivered.contains(r#""products":[{"sku":"A-1","quantity":2,"price":10.5},{"sku":"B-2","quantity":1}]"#),
        "a property an element lacks is left out"
    );

    // No data change: only the two failures are retried (and fail again).
    let again = retl(&dir, &["run", "-f", "."]);
    let out = text(&again);
    assert_eq!(again.status.code(), Some(1), "every record sent was rejected: Failed: {out}");
    let row = last_row(&out);
    assert_eq!((row["STATUS"].as_str(), row["ADDED"].as_str(), row["LOADED"].as_str()), ("Failed", "2", "0"));

    // Fix one upstream, change one, delete one.
    let sql = "UPDATE users SET email = 'katherine@example.com' WHERE id = 4; \
               UPDATE users SET plan = 'pro' WHERE id = 3; DELETE FROM users WHERE id = 10";
    assert!(retl(&dir, &["sql", "-f", ".", "--source", "warehouse", sql]).status.success());
    let third = retl(&dir, &["run", "-f", "."]);
    let out = text(&third);
    let row = last_row(&out);
    assert_eq!(
        (row["STATUS"].as_str(), row["ADDED"].as_str(), row["UPDATED"].as_str(), row["DELETED"].as_str(), row["LOADED"].as_str()),
        ("PartiallySuccessful", "2", "1", "1", "3"),
        "{out}"
    );
    let delivered = std::fs::read_to_string(dir.join("out/crm.jsonl")).unwrap();
    assert!(delivered.contains(r#""operation":"delete","key":"10""#));
    assert!(delivered.contains("katherine@example.com"));
}

#[test]
fn plan_changes_nothing_and_history_filters() {
    let (_tmp, dir) = quickstart();
    let plan = text(&retl(&dir, &["plan", "-f", "."]));
    assert!(plan.contains("10 rows extracted: 10 added"), "{plan}");
    assert!(plan.contains("Would send: 8 new"), "{plan}");
    assert!(plan.contains("Would reject 1 record: MISSING_REQUIRED_FIELD"), "{plan}");
    assert_eq!(text(&retl(&dir, &["plan", "-f", "."])), plan, "plan changes no state");
    assert!(!dir.join("out").exists(), "plan sends nothing");

    retl(&dir, &["run", "-f", "."]);
    retl(&dir, &["run", "-f", "."]);
    let all = text(&retl(&dir, &["history", "-f", "."]));
    assert_eq!(all.lines().filter(|l| l.starts_with("users-to-crm-")).count(), 2, "{all}");
    let failed = text(&retl(&dir, &["history", "-f", ".", "--status", "failed"]));
    assert_eq!(failed.lines().filter(|l| l.contains(" Failed ")).count(), 1, "{failed}");
    assert!(!failed.contains("PartiallySuccessful"), "{failed}");
    let newest_first: Vec<&str> = all.lines().skip(1).map(|l| l.split_whitespace().nth(2).unwrap()).collect();
    assert_eq!(newest_first, ["Failed", "PartiallySuccessful"]);
    assert!(text(&retl(&dir, &["history", "-f", ".", "--mapping", "nope"])).contains("No syncs found"));
    assert!(
        text(&retl(&dir, &["history", "-f", ".", "--model", "users", "--destination", "crm", "--since", "1h"])).contains("users-to-crm-")
    );
    assert!(text(&retl(&dir, &["history", "-f", ".", "--until", "2000-01-01T00:00:00Z"])).contains("No syncs found"));
    let bad = retl(&dir, &["history", "-f", ".", "--status", "sideways"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("is not a sync status"));
}

#[test]
fn reset_and_replay() {
    let (_tmp, dir) = quickstart();
    let first = text(&retl(&dir, &["run", "-f", "."]));
    let first_sync = last_row(&first)["NAME"].clone();
    let reset = text(&retl(&dir, &["run", "-f", ".", "--reset", "users-to-crm"]));
    assert_eq!(last_row(&reset)["ADDED"], "10", "after a reset every record is new: {reset}");
    let again = text(&retl(&dir, &["run", "-f", "."]));
    assert_eq!(last_row(&again)["ADDED"], "2", "a reset happens once: {again}");

    retl(&dir, &["sql", "-f", ".", "--source", "warehouse", "UPDATE users SET name = 'Ada King' WHERE id = 1"]);
    let replay = text(&retl(&dir, &["run", "-f", ".", "--replay", &first_sync]));
    let row = last_row(&replay);
    assert!(row["NAME"].starts_with(&format!("{first_sync}-replay-")), "{replay}");
    assert_eq!(row["EXTRACTED"], "10", "{replay}");
    let delivered = std::fs::read_to_string(dir.join("out/crm.jsonl")).unwrap();
    assert!(delivered.lines().last().is_some() && delivered.contains("Ada King"), "replay sends current values");
    let unknown = retl(&dir, &["run", "-f", ".", "--replay", "no-such-sync"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).contains("no Mapping in these manifests has a sync of that name"));
}

#[test]
fn crds_command_prints_every_crd() {
    let out = text(&retl(Path::new("."), &["crds"]));
    assert_eq!(out.matches("kind: CustomResourceDefinition").count(), 6);
    for plural in ["sources", "destinations", "models", "mappings", "syncs", "syncalerts"] {
        assert!(out.contains(&format!("name: {plural}.retl.dev")), "{plural}");
    }
}

/// Writes manifests for a Mapping of `rows` users to an HTTP sink.
fn http_setup(dir: &Path, rows: u32, sink_url: &str, extra_destination: &str) {
    std::fs::write(dir.join("seed.sql"), testkit::seed::users_sql(rows)).unwrap();
    std::fs::write(
        dir.join("all.yaml"),
        format!(
            r#"apiVersion: retl.dev/v1alpha1
kind: Source
metadata: {{name: wh}}
spec: {{type: sqlite, sqlite: {{path: wh.db, seedFile: seed.sql}}}}
---
apiVersion: retl.dev/v1alpha1
kind: Destination
metadata: {{name: api}}
spec:
  type: http
  http:
    url: {sink_url}
    batchSize: 10
    maxInFlight: 1
{extra_destination}
  actions:
    - name: upsert
      fields: [{{name: id, type: string, required: true}}, {{name: email, type: string}}]
---
apiVersion: retl.dev/v1alpha1
kind: Model
metadata: {{name: users}}
spec: {{sourceRef: {{name: wh}}, primaryKey: id, query: "SELECT id, email FROM users"}}
---
apiVersion: retl.dev/v1alpha1
kind: Mapping
metadata: {{name: users-api}}
spec:
  modelRef: {{name: users}}
  destinationRef: {{name: api}}
  action: upsert
  fields: [{{to: id, from: id}}, {{to: email, from: email}}]
"#
        ),
    )
    .unwrap();
}

fn wait_for(sink: &Sink, n: usize) {
    let start = Instant::now();
    while sink.received().len() < n {
        assert!(start.elapsed() < Duration::from_secs(30), "the sink never got {n} records");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_and_loses_nothing() {
    let sink = Sink::start().await.unwrap();
    sink.set(|b| b.stall = Some(Duration::from_millis(40)));
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 300, &sink.url(), "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(["run", "-f", "."])
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = &sink;
    tokio::task::block_in_place(|| wait_for(s, 50));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before = sink.latest().len();
    assert!(before < 300, "killed mid-load");

    sink.set(|b| b.stall = None);
    let out = text(&retl(tmp.path(), &["run", "-f", "."]));
    let row = last_row(&out);
    assert_eq!(row["STATUS"], "Successful", "{out}");
    let loaded: usize = row["LOADED"].parse().unwrap();
    assert!(loaded <= 300 - before + 10, "what was acknowledged before the kill is not sent again: {loaded} vs {before}");
    assert_eq!(sink.latest().len(), 300, "every record ends up delivered");
    let history = text(&retl(tmp.path(), &["history", "-f", ".", "--status", "Failed", "--details"]));
    assert!(history.contains("stopped before it finished"), "the killed run shows as Failed: {history}");
    let last = text(&retl(tmp.path(), &["run", "-f", "."]));
    assert_eq!(last_row(&last)["LOADED"], "0", "nothing left: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_at_a_batch_boundary() {
    let sink = Sink::start().await.unwrap();
    sink.set(|b| b.stall = Some(Duration::from_millis(40)));
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 300, &sink.url(), "");
    let child = Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(["run", "-f", "."])
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let s = &sink;
    tokio::task::block_in_place(|| wait_for(s, 30));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(130), "{printed}");
    let row = last_row(&printed);
    assert_eq!(row["STATUS"], "Canceled", "{printed}");
    assert!(printed.contains("Canceled (") && printed.contains("the next sync sends it"), "{printed}");
    sink.set(|b| b.stall = None);
    retl(tmp.path(), &["run", "-f", "."]);
    assert_eq!(sink.latest().len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_come_from_manifests_or_the_environment_and_never_show() {
    let sink = Sink::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let header = "    headers: [{name: Authorization, valueFrom: {name: api-token, key: token}}]";
    http_setup(tmp.path(), 3, &sink.url(), header);
    let missing = retl(tmp.path(), &["run", "-f", "."]);
    let out = text(&missing);
    assert_eq!(missing.status.code(), Some(1));
    assert!(out.contains("SecretNotFound") || out.contains("RETL_SECRET_API_TOKEN_TOKEN"), "{out}");
    assert!(out.contains("RETL_SECRET_API_TOKEN_TOKEN"), "the error says what to set: {out}");

    let with_env = Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(["run", "-f", "."])
        .current_dir(tmp.path())
        .env("RETL_SECRET_API_TOKEN_TOKEN", "Bearer s3cr3t-value")
        .output()
        .unwrap();
    assert!(with_env.status.success(), "{}", text(&with_env));
    assert_eq!(sink.headers()[0]["authorization"], "Bearer s3cr3t-value");
    assert!(!text(&with_env).contains("s3cr3t"));

    std::fs::write(
        tmp.path().join("secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: api-token}\nstringData: {token: from-manifest}\n",
    )
    .unwrap();
    retl(tmp.path(), &["sql", "-f", ".", "--source", "wh", "UPDATE users SET email = 'x@y.z' WHERE id = 1"]);
    assert!(retl(tmp.path(), &["run", "-f", "."]).status.success());
    assert_eq!(sink.headers().last().unwrap()["authorization"], "from-manifest");
}

#[test]
fn bad_manifests_and_references_say_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.yaml"), "apiVersion: retl.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec: {query: 1\n")
        .unwrap();
    let out = retl(tmp.path(), &["run", "-f", "."]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("bad.yaml"), "{}", text(&out));

    std::fs::write(
        tmp.path().join("bad.yaml"),
        "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {name: orphan, namespace: team-a}\n\
         spec: {modelRef: {name: users}, destinationRef: {name: api}, action: upsert}\n",
    )
    .unwrap();
    let out = retl(tmp.path(), &["run", "-f", "."]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(printed.contains("Model \"users\" does not exist in namespace \"team-a\""), "{printed}");
    assert!(printed.contains("ReferenceNotFound") || printed.contains("Failed"), "{printed}");
}
