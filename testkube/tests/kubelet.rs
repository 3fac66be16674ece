//! The test kubelet: Jobs run as local processes with their env resolved
//! from Secrets, and Job status as the Job controller reports it.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use testkube::Harness;

fn job(name: &str, script: &str, extra: serde_json::Value) -> Job {
    let mut j = json!({
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "example.dev/shell:1", "command": ["sh", "-c", script],
            "env": [{"name": "GREETING", "value": "hello"},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
        }]}}}
    });
    json_patch::merge(&mut j, &extra);
    serde_json::from_value(j).unwrap()
}

fn shell(image: &str) -> Option<PathBuf> {
    (image == "example.dev/shell:1").then(|| PathBuf::from("/bin/sh"))
}

async fn wait_condition(api: &Api<Job>, name: &str, cond: &str) -> Job {
    for _ in 0..200 {
        let j = api.get(name).await.unwrap();
        let done = j
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().any(|c| c.type_ == cond && c.status == "True"))
            .unwrap_or(false);
        if done {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {name} never got condition {cond}: {:?}", api.get(name).await.unwrap().status);
}

fn reason(j: &Job, cond: &str) -> String {
    j.status.as_ref().unwrap().conditions.as_ref().unwrap().iter().find(|c| c.type_ == cond).unwrap().reason.clone().unwrap_or_default()
}

async fn setup() -> (Harness, Api<Job>) {
    let h = Harness::start().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(h.client(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}})).unwrap(),
        )
        .await
        .unwrap();
    let jobs = Api::namespaced(h.client(), "default");
    (h, jobs)
}

#[tokio::test]
async fn job_runs_to_completion_with_env_from_secrets() {
    let (h, jobs) = setup().await;
    let kubelet = h.start_kubelet(shell);
    jobs.create(&PostParams::default(), &job("ok", "echo \"$GREETING $PASSWORD $POD_NAMESPACE\"", json!({}))).await.unwrap();
    let j = wait_condition(&jobs, "ok", "Complete").await;
    let s = j.status.unwrap();
    assert_eq!((s.succeeded, s.active, s.failed), (Some(1), None, None));
    assert!(s.start_time.is_some() && s.completion_time.is_some());
    assert_eq!(kubelet.logs("default", "ok"), "hello hunter2 default\n");
}

#[tokio::test]
async fn failures_count_against_backoff_limit() {
    let (h, jobs) = setup().await;
    let kubelet =
        h.start_kubelet_with(testkube::harness::KubeletConfig { backoff: Duration::from_millis(50), ..Default::default() }, shell);
    jobs.create(&PostParams::default(), &job("bad", "echo try; exit 3", json!({"spec": {"backoffLimit": 2}}))).await.unwrap();
    let j = wait_condition(&jobs, "bad", "Failed").await;
    assert_eq!(reason(&j, "Failed"), "BackoffLimitExceeded");
    assert_eq!(j.status.as_ref().unwrap().failed, Some(3));
    assert_eq!(kubelet.logs("default", "bad"), "try\ntry\ntry\n");
}

#[tokio::test]
async fn active_deadline_kills_and_fails_the_job() {
    let (h, jobs) = setup().await;
    let kubelet = h.start_kubelet(shell);
    // a shell with a child: the whole process group is killed
    jobs.create(&PostParams::default(), &job("slow", "sleep 30; echo never", json!({"spec": {"activeDeadlineSeconds": 1}}))).await.unwrap();
    let pid = kubelet.wait_running("default", "slow", Duration::from_secs(5)).await.expect("started");
    let j = wait_condition(&jobs, "slow", "Failed").await;
    assert_eq!(reason(&j, "Failed"), "DeadlineExceeded");
    let alive = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z")).unwrap_or(false);
    assert!(!alive(pid), "process killed");
    // no `sleep 30` of this job's process group is left
    let group_left =
        std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()).filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok()).any(
            |stat| {
                stat.rsplit(')')
                    .next()
                    .map(|rest| rest.split_whitespace().nth(2) == Some(&pid.to_string()) && !rest.starts_with(" Z"))
                    .unwrap_or(false)
            },
        );
    assert!(!group_left, "children of the job's process were killed too");
}

#[tokio::test]
async fn killing_the_process_is_a_crash_and_deleting_the_job_kills_it() {
    let (h, jobs) = setup().await;
    let kubelet = h.start_kubelet(shell);
    jobs.create(&PostParams::default(), &job("crash", "sleep 30", json!({}))).await.unwrap();
    kubelet.wait_running("default", "crash", Duration::from_secs(5)).await.expect("started");
    assert!(kubelet.kill("default", "crash"));
    let j = wait_condition(&jobs, "crash", "Failed").await;
    assert_eq!(reason(&j, "Failed"), "BackoffLimitExceeded");

    jobs.create(&PostParams::default(), &job("doomed", "sleep 30", json!({}))).await.unwrap();
    let pid = kubelet.wait_running("default", "doomed", Duration::from_secs(5)).await.expect("started");
    jobs.delete("doomed", &DeleteParams::background()).await.unwrap();
    for _ in 0..100 {
        if kubelet.pid("default", "doomed").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kubelet.pid("default", "doomed").is_none(), "process of a deleted job is killed (pid {pid})");
}

#[tokio::test]
async fn jobs_are_defaulted_and_cleaned_up_after_their_ttl() {
    let (h, jobs) = setup().await;
    let _kubelet = h.start_kubelet(shell);
    let created = jobs.create(&PostParams::default(), &job("ttl", "true", json!({"spec": {"ttlSecondsAfterFinished": 0}}))).await.unwrap();
    let spec = created.spec.unwrap();
    assert_eq!((spec.completions, spec.parallelism, spec.completion_mode.as_deref()), (Some(1), Some(1), Some("NonIndexed")));
    let uid = created.metadata.uid.unwrap();
    assert_eq!(spec.selector.unwrap().match_labels.unwrap()["batch.kubernetes.io/controller-uid"], uid);
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["batch.kubernetes.io/job-name"], "ttl");
    assert_eq!(spec.template.spec.unwrap().containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    for _ in 0..100 {
        if jobs.get_opt("ttl").await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("finished job with ttlSecondsAfterFinished=0 was not deleted");
}
