//! Manifests read strictly, and exit codes and output a script can rely on,
//! through the real `retl` binary: a typo or an out-of-range value is an
//! error (exit 2) that names the field and what to write instead, before
//! anything is sent; `plan` fails when it cannot plan; a `--mapping` that
//! selects nothing is an error; `-o json|yaml` prints the Syncs as
//! `kubectl get syncs -o json` would.

use std::path::Path;

use super::{quickstart, retl, text};

/// Replaces `from` (which must be there) with `to` in `file`.
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn typos_and_out_of_range_values_are_errors_that_say_what_to_write() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: api}\ndata: {token: \"not base64!\"}\n";
    let cases: &[(&str, &str, &str, &str)] = &[
        ("mapping.yaml", "  send: [", "  sned: [", r#"unknown field "spec.sned" (did you mean "spec.send"?)"#),
        (
            "mapping.yaml",
            "maxDeletePercent: 50",
            "maxDeletesPercent: 10",
            r#"unknown field "spec.guards.maxDeletesPercent" (did you mean "spec.guards.maxDeletePercent"?)"#,
        ),
        (
            "mapping.yaml",
            "  action: identify",
            "  action: identify\n  schedule: \"61 * * * *\"",
            r#"spec.schedule "61 * * * *" is not a cron expression"#,
        ),
        (
            "mapping.yaml",
            "  action: identify",
            "  action: identify\n  timeZone: Mars/Olympus",
            r#"spec.timeZone "Mars/Olympus" is not an IANA time zone"#,
        ),
        ("mapping.yaml", "maxDeletePercent: 50", "maxDeletePercent: 250", "maxDeletePercent is a percentage from 0 to 100"),
        ("mapping.yaml", "maxDeletePercent: 50", "maxDeletePercent: -5", "maxDeletePercent is a percentage from 0 to 100"),
        ("mapping.yaml", "  action: identify", "  action: identify\n  retryWindow: 0s", r#"spec.retryWindow "0s": a positive duration"#),
        (
            "mapping.yaml",
            "  action: identify",
            "  action: identify\n  activeDeadlineSeconds: 0",
            "spec.activeDeadlineSeconds: 0 is less than the minimum 1; use 1 or more",
        ),
        (
            "mapping.yaml",
            "  action: identify",
            "  action: identify\n  successfulSyncsHistoryLimit: 5000",
            "spec.successfulSyncsHistoryLimit: 5000 is more than the maximum 1000",
        ),
        (
            "mapping.yaml",
            "{ to: userId, from: id }",
            "{ to: userId, form: id }",
            r#"unknown field "spec.fields[0].form" (did you mean "spec.fields[0].from"?)"#,
        ),
        ("mapping.yaml", "spec:\n", "sepc:\n", r#"unknown field "sepc" (did you mean "spec"?)"#),
        (
            "destination.yaml",
            "    path: out/crm.jsonl",
            "    path: out/crm.jsonl\n    batchSize: 0",
            "spec.file.batchSize: 0 is less than the minimum 1; use 1 or more",
        ),
        (
            "destination.yaml",
            "type: string, required: true }",
            "type: string, requred: true }",
            r#"unknown field "spec.actions[0].fields[0].requred" (did you mean "spec.actions[0].fields[0].required"?)"#,
        ),
        (
            "source.yaml",
            "    path: warehouse.db",
            "    paht: warehouse.db",
            r#"unknown field "spec.sqlite.paht" (did you mean "spec.sqlite.path"?)"#,
        ),
        ("model.yaml", "primaryKey:", "primarykey:", r#"(did you mean "spec.primaryKey"?)"#),
        ("secret.yaml", "", secret, r#"Secret "api" key "token": the values under data are base64"#),
    ];
    for (file, from, to, expected) in cases {
        let (_tmp, dir) = quickstart();
        if from.is_empty() {
            std::fs::write(dir.join(file), to).unwrap();
        } else {
            edit(&dir, file, from, to);
        }
        for command in ["run", "plan"] {
            let out = retl(&dir, &[command, "-f", "."]);
            let said = text(&out);
            assert_eq!(out.status.code(), Some(2), "retl {command} with {to:?} in {file}: {said}");
            assert!(said.contains(expected), "retl {command} with {to:?} in {file}: expected {expected:?} in:\n{said}");
            assert!(said.contains(file), "names the file: {said}");
        }
        assert!(!dir.join("out").exists(), "nothing was sent with {to:?} in {file}");
    }
}

#[test]
fn plan_fails_when_it_cannot_plan_and_skips_disabled_mappings() {
    let (_tmp, dir) = quickstart();
    edit(&dir, "model.yaml", "SELECT", "SELEC");
    let out = retl(&dir, &["plan", "-f", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Mapping users-to-crm: cannot plan:"), "{}", text(&out));

    let (_tmp, dir) = quickstart();
    edit(&dir, "mapping.yaml", "  action: identify", "  action: identify\n  enabled: false");
    let out = retl(&dir, &["plan", "-f", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("users-to-crm: disabled") && !said.contains("Would send"), "{said}");
    let json: serde_json::Value = serde_json::from_slice(&retl(&dir, &["plan", "-f", ".", "-o", "json"]).stdout).unwrap();
    assert_eq!(json["items"][0]["result"], "Disabled");
}

#[test]
fn a_selection_of_nothing_is_an_error() {
    let (_tmp, dir) = quickstart();
    for command in ["run", "plan", "history"] {
        let out = retl(&dir, &[command, "-f", ".", "--mapping", "users-to-crn"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", text(&out));
        assert!(text(&out).contains(r#"there is no Mapping "users-to-crn""#) && text(&out).contains("users-to-crm"), "{}", text(&out));
    }
    let empty = tempfile::tempdir().unwrap();
    let out = retl(empty.path(), &["run", "-f", "."]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("there is no Mapping in ."), "{}", text(&out));
    assert!(!dir.join("out").exists());
}

#[test]
fn run_plan_and_history_print_json_and_yaml_for_scripts() {
    let (_tmp, dir) = quickstart();
    let plan: serde_json::Value = serde_json::from_slice(&retl(&dir, &["plan", "-f", ".", "-o", "json"]).stdout).unwrap();
    let p = &plan["items"][0];
    assert_eq!((p["mapping"].as_str(), p["result"].as_str()), (Some("users-to-crm"), Some("Planned")));
    assert_eq!((p["wouldSend"]["added"].as_u64(), p["extracted"]["total"].as_u64()), (Some(8), Some(10)), "{p:#}");

    let run = retl(&dir, &["run", "-f", ".", "-o", "json"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let list: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&run)));
    assert_eq!((list["kind"].as_str(), list["items"][0]["kind"].as_str()), (Some("List"), Some("Sync")));
    let s = &list["items"][0];
    assert_eq!(s["spec"]["mappingRef"]["name"], "users-to-crm");
    assert_eq!(s["status"]["phase"], "PartiallySuccessful");
    assert_eq!((s["status"]["loaded"]["succeeded"].as_u64(), s["status"]["loaded"]["failed"].as_u64()), (Some(8), Some(2)));
    assert_eq!(s["status"]["failedRecords"][0]["code"], "MISSING_REQUIRED_FIELD", "{s:#}");
    let complete = s["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Complete").cloned();
    assert_eq!(complete.map(|c| c["status"].clone()), Some("True".into()));

    let history = retl(&dir, &["history", "-f", ".", "-o", "yaml"]);
    let list: serde_json::Value = serde_yaml_ng::from_slice(&history.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&history)));
    assert_eq!(list["items"][0]["metadata"]["name"], s["metadata"]["name"], "the same Sync, read back from the warehouse");
    assert_eq!(list["items"][0]["status"]["loaded"], s["status"]["loaded"]);
}
