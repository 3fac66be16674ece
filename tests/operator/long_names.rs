//! A Mapping with the longest name Kubernetes allows (253 characters) syncs:
//! the names and label values that retl derives from it are shortened with
//! a hash, so the API server accepts its Syncs, Jobs and pods, and the
//! Mapping finds its own Syncs by the shortened label.

use std::time::Duration;

use serde_json::Value;
use testcluster::wait_until;

use super::cluster::{Cluster, Setup, count};

/// What Kubernetes accepts as a label value (checked here, not with the
/// operator's own code): at most 63 characters of `[A-Za-z0-9._-]`,
/// starting and ending with a letter or digit.
fn valid_label_value(v: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    v.is_empty()
        || (v.len() <= 63
            && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && edge(v.chars().next())
            && edge(v.chars().last()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_with_a_253_character_name_syncs() {
    let c = Cluster::start(Setup::default()).await;
    // Dots where a cut at 63 or 253 characters could fall.
    let long = format!("{}.{}.{}", "users-to-the-crm-api".repeat(3), "a".repeat(120), "b".repeat(71));
    assert_eq!(long.len(), 253);
    c.ns.apply_yaml(&format!(
        "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {{name: {long}}}\nspec:\n  modelRef: {{name: users}}\n  \
         destinationRef: {{name: api}}\n  action: upsert\n  fields: [{{to: id, from: id}}, {{to: email, from: email}}]\n  \
         successfulSyncsHistoryLimit: 1\n"
    ))
    .expect("the long Mapping applies");
    c.wait_ready("mapping", &long).await;

    c.annotate("mapping", &long, "retl.dev/sync-now=first");
    let s = c.wait_finished(1).await;
    assert_eq!(s["status"]["phase"], "Successful", "{s:#}\n{}", c.state());
    assert_eq!(count(&s, "/status/loaded/succeeded"), 25);
    assert_eq!(c.sink.latest().len(), 25);
    let name = s["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.len() <= 253, "{name}");
    assert_eq!(s["spec"]["mappingRef"]["name"], long.as_str());
    assert_eq!(s["metadata"]["ownerReferences"][0]["name"], long.as_str());

    // Every label is valid; the mapping's is the shortened value.
    let labels = s["metadata"]["labels"].as_object().expect("labels").clone();
    for (k, v) in &labels {
        assert!(valid_label_value(v.as_str().unwrap_or("?")), "label {k}={v}");
    }
    let value = labels["retl.dev/mapping"].as_str().unwrap().to_string();
    assert_ne!(value, long);
    assert_eq!(value, retl::controller::naming::label_value(&long));
    assert!(long.starts_with(value.rsplit_once('-').unwrap().0), "{value} starts like the name");
    assert_eq!((labels["retl.dev/model"].as_str(), labels["retl.dev/destination"].as_str()), (Some("users"), Some("api")));
    assert_eq!(labels["retl.dev/status"], "successful");

    // kubectl finds the Sync by the shortened value, and only that Sync.
    let found = c.ns.kubectl_ok(&["get", "syncs", "-l", &format!("retl.dev/mapping={value}"), "-o", "name"]).unwrap();
    assert_eq!(found.trim(), format!("sync.retl.dev/{name}"));

    // The Job's name and labels fit too.
    let job_name = s["status"]["jobName"].as_str().expect("the Sync names its Job").to_string();
    assert!(job_name.len() <= 63, "{job_name}");
    let jobs = c.ns.kubectl_json(&["get", "jobs", "-l", &format!("retl.dev/mapping={value}")]).unwrap();
    let job = jobs["items"].as_array().and_then(|l| l.first()).cloned().unwrap_or(Value::Null);
    assert_eq!(job["metadata"]["name"], job_name.as_str(), "{jobs:#}");
    for (k, v) in job["metadata"]["labels"].as_object().expect("Job labels") {
        assert!(valid_label_value(v.as_str().unwrap_or("?")), "Job label {k}={v}");
    }

    // The Mapping finds its Sync by that label: its status follows it.
    let phase = || c.ns.kubectl_json(&["get", "mapping", &long]).unwrap_or_default()["status"]["lastSync"]["phase"].clone();
    let followed = wait_until(Duration::from_secs(30), || async { phase() == "Successful" }).await;
    assert!(followed, "the Mapping's lastSync follows its Sync:\n{}", c.yaml("mapping", &long));
    let ready = c.ns.kubectl_ok(&["get", "mapping", &long, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).unwrap();
    assert_eq!(ready, "True");

    // A second sync: the history limit (1) deletes the first one, which the
    // Mapping can only do if it lists its Syncs by the shortened label.
    c.sql("UPDATE users SET email = 'long@example.com' WHERE id = 2");
    c.annotate("mapping", &long, "retl.dev/sync-now=second");
    let only_second = wait_until(Duration::from_secs(90), || async {
        let syncs = c.syncs();
        syncs.len() == 1 && syncs[0]["metadata"]["name"] != name.as_str() && syncs[0]["status"]["phase"] == "Successful"
    })
    .await;
    assert!(only_second, "the second Sync succeeds and the first is deleted (history limit 1):\n{}", c.state());
    let second = c.syncs().remove(0);
    assert_eq!(count(&second, "/status/extracted/updated"), 1, "{second:#}");
    assert_eq!(second["metadata"]["labels"]["retl.dev/mapping"], value.as_str());

    // The short-named Mapping never ran.
    let short = c.ns.kubectl_ok(&["get", "syncs", "-l", "retl.dev/mapping=users-api", "-o", "name"]).unwrap();
    assert_eq!(short.trim(), "");
}
