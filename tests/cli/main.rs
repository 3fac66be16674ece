//! The `retl` binary as a user runs it: the quickstart, plan, history,
//! reset, replay, bad input, a killed run and Ctrl-C; `safety.rs`: secrets,
//! deadlines and a closed stdout; `segment.rs`: the segment destination;
//! `history.rs`: reset, replay, records of past syncs and a rate limit;
//! `test_record.rs` (and `tables/test_record.rs`): `retl test`.

mod alerts;
mod history;
mod manifests;
mod safety;
mod segment;
mod tables;
mod test_record;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::sink::Sink;

fn retl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retl")).args(args).current_dir(dir).env_remove("RUST_LOG").output().expect("run retl")
}

/// `retl run -f .` in `dir`, in the background, its output discarded (to be killed).
fn spawn_run(dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_retl"))
        .args(["run", "-f", "."])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
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
    let typo = retl(&dir, &["history", "-f", ".", "--mapping", "nope"]);
    assert_eq!(typo.status.code(), Some(2), "a Mapping that does not exist is an error, not an empty history");
    assert!(
        text(&retl(&dir, &["history", "-f", ".", "--model", "users", "--destination", "crm", "--since", "1h"])).contains("users-to-crm-")
    );
    assert!(text(&retl(&dir, &["history", "-f", ".", "--until", "2000-01-01T00:00:00Z"])).contains("No syncs found"));
    let bad = retl(&dir, &["history", "-f", ".", "--status", "sideways"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("is not a sync status"));
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
    let mut child = spawn_run(tmp.path());
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
    // It shows what it found and what its record log holds, not zeros.
    let killed = last_row(&history);
    let committed: usize = killed["LOADED"].parse().unwrap();
    assert_eq!(killed["EXTRACTED"], "300", "{history}");
    assert!(committed >= 40 && committed <= before, "{committed} of {before} sent: {history}");
    assert_eq!(killed["SKIPPED"], (300 - committed).to_string(), "the rest was not processed: {history}");
    assert!(history.contains("NotProcessed") && history.contains(&format!("{committed} new")), "{history}");
    assert!(!killed["STARTED"].ends_with('s'), "STARTED is a time, not an age: {history}");
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

/// Keys the sink accepted more than once.
fn sent_twice(sink: &Sink) -> Vec<String> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for r in sink.received() {
        *counts.entry(r.key).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_runs_send_each_record_once() {
    let sink = Sink::start().await.unwrap();
    // 30 batches at 40 ms each: a run takes over a second.
    sink.set(|b| b.stall = Some(Duration::from_millis(40)));
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 300, &sink.url(), "");
    assert!(retl(tmp.path(), &["sql", "-f", ".", "--source", "wh", "SELECT 1"]).status.success(), "seeds the database");
    let start = |delay: Duration| {
        let dir = tmp.path().to_path_buf();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            retl(&dir, &["run", "-f", "."])
        })
    };
    for (round, delay) in [(0, Duration::ZERO), (1, Duration::from_secs(1))] {
        if round == 1 {
            let sql = "INSERT INTO users (id, email) SELECT id + 1000, email FROM users WHERE id <= 300";
            assert!(retl(tmp.path(), &["sql", "-f", ".", "--source", "wh", sql]).status.success());
            sink.clear();
        }
        let (a, b) = (start(Duration::ZERO), start(delay));
        let (a, b) = tokio::task::block_in_place(|| (a.join().unwrap(), b.join().unwrap()));
        let (out_a, out_b) = (text(&a), text(&b));
        assert!(a.status.success() && b.status.success(), "{out_a}\n{out_b}");
        assert_eq!(sent_twice(&sink), Vec::<String>::new(), "round {round}: no record is sent twice");
        assert_eq!(sink.latest().len(), 300, "round {round}");
        let loaded: Vec<String> = [&out_a, &out_b].iter().map(|o| last_row(o)["LOADED"].clone()).collect();
        assert!(loaded.contains(&"300".to_string()) && loaded.contains(&"0".to_string()), "round {round}: {out_a}\n{out_b}");
        let history = text(&retl(tmp.path(), &["history", "-f", ".", "--status", "Failed"]));
        assert!(history.contains("No syncs found"), "no run was taken for abandoned: {history}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_in_flight_when_killed_get_their_deletes() {
    let sink = Sink::start().await.unwrap();
    // The first batch is taken, and the answer never comes before the kill.
    sink.set(|b| b.hang_after_accept = Some(Duration::from_secs(20)));
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 50, &sink.url(), "");
    // The Mapping (the last manifest) sends deletes too.
    let manifests = tmp.path().join("all.yaml");
    let yaml = std::fs::read_to_string(&manifests).unwrap() + "  send: [added, updated, deleted]\n";
    std::fs::write(&manifests, yaml).unwrap();
    let mut child = spawn_run(tmp.path());
    let s = &sink;
    tokio::task::block_in_place(|| wait_for(s, 10));
    child.kill().unwrap(); // SIGKILL: delivered, never committed
    child.wait().unwrap();
    let ghosts: Vec<String> = sink.received().into_iter().map(|r| r.key).collect();
    assert_eq!(ghosts.len(), 10, "{ghosts:?}");

    let sql = format!("DELETE FROM users WHERE id IN ({})", ghosts.join(", "));
    assert!(retl(tmp.path(), &["sql", "-f", ".", "--source", "wh", &sql]).status.success());
    sink.set(|b| b.hang_after_accept = None);
    sink.clear();
    let out = text(&retl(tmp.path(), &["run", "-f", "."]));
    assert_eq!(last_row(&out)["STATUS"], "Successful", "{out}");
    let latest = sink.latest();
    for k in &ghosts {
        assert_eq!(latest.get(k).map(|r| r.operation.as_str()), Some("delete"), "key {k} gets a delete: {out}");
    }
    assert_eq!(latest.len(), 50, "{out}");
}
