//! A kube-runtime Controller (what `retl operator` is built on) against the
//! test server: it watches a custom resource and the Jobs it owns, the test
//! kubelet runs the Jobs, the controller writes the outcome to status, and
//! deleting the custom resource garbage-collects its Job.

mod common;
use common::*;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use testkube::Harness;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Error(#[from] kube::Error);

async fn reconcile(w: Arc<DynamicObject>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let ns = w.namespace().unwrap();
    let name = w.name_any();
    let jobs: Api<Job> = Api::namespaced((*client).clone(), &ns);
    let job_name = format!("{name}-run");
    let job = match jobs.get_opt(&job_name).await? {
        Some(j) => j,
        None => {
            let owner = w.controller_owner_ref(&widget_resource()).unwrap();
            let code = if w.data["spec"]["size"].as_i64().unwrap_or(0) < 5 { 0 } else { 1 };
            let job: Job = serde_json::from_value(json!({
                "metadata": {"name": job_name, "ownerReferences": [owner]},
                "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "w", "image": "shell", "command": ["sh", "-c", format!("exit {code}")]}]}}}
            }))
            .unwrap();
            jobs.create(&PostParams::default(), &job).await?
        }
    };
    let conds = job.status.and_then(|s| s.conditions).unwrap_or_default();
    let phase = if conds.iter().any(|c| c.type_ == "Complete" && c.status == "True") {
        "Successful"
    } else if conds.iter().any(|c| c.type_ == "Failed" && c.status == "True") {
        "Failed"
    } else {
        "Running"
    };
    if w.data["status"]["phase"] != phase {
        widgets(&client, &ns).patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": phase}}))).await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_: Arc<DynamicObject>, _: &Error, _: Arc<kube::Client>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::test]
async fn controller_owns_jobs_run_by_the_kubelet() {
    let h = Harness::start().await.unwrap();
    h.apply_dir(fixtures()).await.unwrap();
    let _kubelet = h.start_kubelet(|_| Some("/bin/sh".into()));
    let client = h.client();
    let controller = Controller::new_with(widgets(&client, "default"), watcher::Config::default(), widget_resource())
        .owns(Api::<Job>::namespaced(client.clone(), "default"), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client.clone()))
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("small", json!({"size": 1}))).await.unwrap();
    api.create(&PostParams::default(), &widget("large", json!({"size": 9}))).await.unwrap();
    let phase = |n: &'static str| {
        let api = api.clone();
        async move { api.get(n).await.unwrap().data["status"]["phase"].as_str().unwrap_or("").to_string() }
    };
    let mut done = false;
    for _ in 0..200 {
        if phase("small").await == "Successful" && phase("large").await == "Failed" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "small={} large={}", phase("small").await, phase("large").await);
    let rows = h.kubectl(&["get", "widgets"]).unwrap().table();
    assert!(rows.iter().any(|r| r[0] == "large" && r.contains(&"Failed".to_string())), "{rows:?}");

    // deleting the owner collects its Job
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    api.delete("small", &Default::default()).await.unwrap();
    let gone = testkube::wait_until(Duration::from_secs(5), || {
        let jobs = jobs.clone();
        async move { jobs.get_opt("small-run").await.unwrap().is_none() }
    })
    .await;
    assert!(gone, "owned Job garbage-collected");
    assert!(jobs.get_opt("large-run").await.unwrap().is_some());
    let owner = &jobs.get("large-run").await.unwrap().metadata.owner_references.unwrap()[0];
    assert_eq!(owner.kind, DynamicObject::kind(&widget_resource()));
    task.abort();
}
