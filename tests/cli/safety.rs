//! Issue 11 through the real binary: secrets never echo (stdout, stderr at
//! trace level, `retl history --details`, the warehouse file), a local run
//! honours `activeDeadlineSeconds`, and a closed stdout ends a command
//! quietly.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use testkit::sink::Sink;

use super::{http_setup, last_row, quickstart, text};

const SECRET: &str = "Bearer s3cr3t-t0ken-9f2c";

fn retl_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retl"));
    c.args(args).current_dir(dir).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run retl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_echo_from_the_binary() {
    let sink = Sink::start().await.unwrap();
    sink.set(|b| {
        b.echo_headers = true;
        b.reject_keys.insert("2".into());
    });
    let tmp = tempfile::tempdir().unwrap();
    let extra =
        "    maxRetries: 1\n    initialBackoffMillis: 10\n    headers: [{name: Authorization, valueFrom: {name: api-token, key: token}}]";
    http_setup(tmp.path(), 5, &sink.url(), extra);
    let env = [("RETL_SECRET_API_TOKEN_TOKEN", SECRET), ("RUST_LOG", "trace")];
    let mut printed = Vec::new();
    let first = retl_env(tmp.path(), &["run", "-f", "."], &env);
    printed.push(text(&first));
    for (status, email) in [(401, "a"), (500, "b")] {
        sink.set(|b| b.always_status = Some(status));
        let sql = format!("UPDATE users SET email = '{email}@example.com'");
        assert!(retl_env(tmp.path(), &["sql", "-f", ".", "--source", "wh", &sql], &[]).status.success());
        printed.push(text(&retl_env(tmp.path(), &["run", "-f", "."], &env)));
    }
    printed.push(text(&retl_env(tmp.path(), &["history", "-f", ".", "--details"], &env)));
    assert_eq!(sink.headers()[0]["authorization"], SECRET, "the header was sent");
    let all = printed.join("\n");
    for code in ["INVALID_RECORD", "HTTP_401", "DESTINATION_UNAVAILABLE"] {
        assert!(all.contains(code), "{code} missing: {all}");
    }
    assert!(all.contains("***"), "the echoes arrived, masked: {all}");

    let b64 = base64::engine::general_purpose::STANDARD;
    let forms = ["s3cr3t-t0ken-9f2c".to_string(), b64.encode(SECRET), b64.encode("s3cr3t-t0ken-9f2c")];
    let mut hits = Vec::new();
    for form in &forms {
        if all.contains(form.as_str()) {
            hits.push(format!("{form} in the output"));
        }
        for file in ["wh.db", "wh.db-wal"] {
            let bytes = std::fs::read(tmp.path().join(file)).unwrap_or_default();
            if bytes.windows(form.len()).any(|w| w == form.as_bytes()) {
                hits.push(format!("{form} in {file}"));
            }
        }
    }
    assert!(hits.is_empty(), "the secret shows: {hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_stops_at_its_active_deadline() {
    let sink = Sink::start().await.unwrap();
    // 10 batches of 10, each answered after half a second: 5 s in all.
    sink.set(|b| b.stall = Some(Duration::from_millis(500)));
    let tmp = tempfile::tempdir().unwrap();
    http_setup(tmp.path(), 100, &sink.url(), "");
    let manifests = tmp.path().join("all.yaml");
    let yaml = std::fs::read_to_string(&manifests).unwrap();
    std::fs::write(&manifests, yaml.replace("  action: upsert\n", "  action: upsert\n  activeDeadlineSeconds: 1\n")).unwrap();
    let started = Instant::now();
    let run = retl_env(tmp.path(), &["run", "-f", "."], &[]);
    let out = text(&run);
    assert!(started.elapsed() < Duration::from_secs(4), "stopped at the deadline, not after all 5 s: took {:?}: {out}", started.elapsed());
    assert_eq!(run.status.code(), Some(1), "{out}");
    let row = last_row(&out);
    assert_eq!(row["STATUS"], "Failed", "{out}");
    assert!(out.contains("activeDeadlineSeconds (1)"), "{out}");
    let loaded: usize = row["LOADED"].parse().unwrap();
    assert!(loaded > 0 && loaded < 100, "committed work is kept: {out}");
    let history = text(&retl_env(tmp.path(), &["history", "-f", ".", "--details"], &[]));
    assert!(history.contains("activeDeadlineSeconds (1)"), "{history}");

    sink.set(|b| b.stall = None);
    let rest = retl_env(tmp.path(), &["run", "-f", "."], &[]);
    assert!(rest.status.success(), "{}", text(&rest));
    assert_eq!(sink.latest().len(), 100);
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let (_tmp, dir) = quickstart();
    for args in [&["run", "-f", "."][..], &["history", "-f", ".", "--details"], &["crds"], &["plan", "-f", "."]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_retl"))
            .args(args)
            .current_dir(&dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?} exited {:?}: {stderr}", out.status);
    }
}
