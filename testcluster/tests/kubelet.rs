//! The test kubelet on the real control plane: pods that the real
//! kube-scheduler binds and the real Job controller counts, the pod's
//! environment and ServiceAccount identity, and deletion with SIGTERM and
//! the grace period.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use testcluster::{Namespace, TestCluster, wait_until};

fn cluster() -> &'static TestCluster {
    TestCluster::shared(Arc::new(|image: &str| image.starts_with("example.dev/shell").then(|| PathBuf::from("/bin/sh"))))
}

fn kubectl_path(ns: &Namespace) -> String {
    let _ = ns;
    std::env::var("KUBECTL").unwrap_or_else(|_| {
        let bin =
            std::env::var("RETL_CONTROL_PLANE_BIN").map(PathBuf::from).unwrap_or_else(|_| testcluster::binaries::ensure_built().unwrap());
        bin.join("kubectl").display().to_string()
    })
}

fn job(name: &str, script: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  backoffLimit: 0
{extra}  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 5
      containers:
      - name: main
        image: example.dev/shell:1
        command: [sh, -c, '{script}']
        env:
        - {{name: GREETING, value: hello}}
        - name: PASSWORD
          valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
        - name: POD_NAMESPACE
          valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
"#
    )
}

async fn wait_job(ns: &Namespace, name: &str, condition: &str) -> Value {
    let found = wait_until(Duration::from_secs(60), || async {
        let j = ns.kubectl_json(&["get", "job", name]).unwrap_or_default();
        j["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == condition && c["status"] == "True")
    })
    .await;
    let j = ns.kubectl_json(&["get", "job", name]).unwrap_or_default();
    assert!(found, "Job {name} never got {condition}: {:#}\n{}", j["status"], ns.kubectl(&["get", "pods", "-o", "yaml"]).unwrap().stdout);
    j
}

fn pod_of(ns: &Namespace, job: &str) -> Value {
    let pods = ns.kubectl_json(&["get", "pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]).unwrap();
    pods["items"][0].clone()
}

fn condition_reason(job: &Value, condition: &str) -> String {
    let cs = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
    cs.iter().find(|c| c["type"] == condition).and_then(|c| c["reason"].as_str()).unwrap_or_default().to_string()
}

fn setup(ns: &Namespace) {
    ns.kubectl_ok(&["create", "secret", "generic", "creds", "--from-literal=password=hunter2"]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_with_its_environment_and_its_service_account() {
    let ns = cluster().namespace("kubelet-env");
    setup(&ns);
    let kubectl = kubectl_path(&ns);
    let script = format!(
        "echo \"$GREETING $PASSWORD $POD_NAMESPACE\"; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; {kubectl} auth whoami -o jsonpath={{.status.userInfo.username}}"
    );
    ns.apply_yaml(&job("env", &script, "")).unwrap();
    let j = wait_job(&ns, "env", "Complete").await;
    assert_eq!(j["status"]["succeeded"], 1);
    let pod = pod_of(&ns, "env");
    let name = pod["metadata"]["name"].as_str().unwrap();
    assert_eq!(pod["spec"]["nodeName"], "retl-test-node", "bound by the real scheduler");
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0);
    let logs = cluster().kubelet().logs(ns.name(), name);
    let expected = format!("hello hunter2 {0}\n{0}\nsystem:serviceaccount:{0}:default", ns.name());
    assert_eq!(logs.trim(), expected, "env, the mounted namespace file, and the token's identity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_deadlines_reach_the_job_controller() {
    let ns = cluster().namespace("kubelet-exit");
    setup(&ns);
    ns.apply_yaml(&job("fails", "exit 3", "")).unwrap();
    let j = wait_job(&ns, "fails", "Failed").await;
    assert_eq!(condition_reason(&j, "Failed"), "BackoffLimitExceeded");
    let pod = pod_of(&ns, "fails");
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3);

    // activeDeadlineSeconds: the Job controller deletes the pod; the kubelet sends SIGTERM.
    ns.apply_yaml(&job("slow", "trap \"echo got TERM; exit 0\" TERM; while true; do sleep 0.1; done", "  activeDeadlineSeconds: 2\n"))
        .unwrap();
    let j = wait_job(&ns, "slow", "Failed").await;
    assert_eq!(condition_reason(&j, "Failed"), "DeadlineExceeded", "{j:#}");
    let pods = ns.kubectl_json(&["get", "pods", "-l", "batch.kubernetes.io/job-name=slow"]).unwrap();
    let name = pods["items"][0]["metadata"]["name"].as_str().map(String::from);
    if let Some(name) = name {
        assert_eq!(cluster().kubelet().signals(ns.name(), &name), ["SIGTERM"]);
        assert!(cluster().kubelet().logs(ns.name(), &name).contains("got TERM"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_sends_sigterm_and_sigkill_after_the_grace_period() {
    let ns = cluster().namespace("kubelet-delete");
    let pod = |name: &str, script: &str, grace: u32| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: {grace}\n  containers:\n  - {{name: main, image: example.dev/shell:1, command: [sh, -c, '{script}']}}\n"
        )
    };
    ns.apply_yaml(&pod("polite", "trap \"echo bye; exit 0\" TERM; echo up; while true; do sleep 0.1; done", 30)).unwrap();
    ns.apply_yaml(&pod("stubborn", "trap \"\" TERM; echo up; while true; do sleep 0.1; done", 2)).unwrap();
    let kubelet = cluster().kubelet();
    for name in ["polite", "stubborn"] {
        assert!(wait_until(Duration::from_secs(30), || async { kubelet.logs(ns.name(), name).contains("up") }).await, "{name} runs");
        let running = ns.kubectl_json(&["get", "pod", name]).unwrap();
        assert_eq!(running["status"]["phase"], "Running");
        assert_eq!(running["status"]["containerStatuses"][0]["ready"], true);
    }
    let started = std::time::Instant::now();
    let polite = ns.kubectl(&["delete", "pod", "polite", "--timeout=20s"]).unwrap();
    assert!(polite.success(), "{}", polite.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "a pod that exits on SIGTERM goes at once: {:?}", started.elapsed());
    assert_eq!(kubelet.signals(ns.name(), "polite"), ["SIGTERM"]);
    assert!(kubelet.logs(ns.name(), "polite").contains("bye"));

    let started = std::time::Instant::now();
    let stubborn = ns.kubectl(&["delete", "pod", "stubborn", "--timeout=20s"]).unwrap();
    assert!(stubborn.success(), "{}", stubborn.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2), "SIGKILL only after the grace period: {:?}", started.elapsed());
    assert_eq!(kubelet.signals(ns.name(), "stubborn"), ["SIGTERM", "SIGKILL"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_cannot_start_say_why() {
    let ns = cluster().namespace("kubelet-waiting");
    ns.apply_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: no-image}\nspec:\n  containers:\n  - {name: main, image: registry.invalid/nothing:1}\n").unwrap();
    ns.apply_yaml(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: no-secret}\nspec:\n  containers:\n  - name: main\n    image: example.dev/shell:1\n    command: [sh, -c, 'sleep 60']\n    env: [{name: X, valueFrom: {secretKeyRef: {name: missing, key: k}}}]\n",
    )
    .unwrap();
    for (pod, reason, says) in
        [("no-image", "ErrImagePull", "registry.invalid/nothing:1"), ("no-secret", "CreateContainerConfigError", "missing")]
    {
        let waiting = wait_until(Duration::from_secs(30), || async {
            let p = ns.kubectl_json(&["get", "pod", pod]).unwrap_or_default();
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason
        })
        .await;
        let p = ns.kubectl_json(&["get", "pod", pod]).unwrap();
        assert!(waiting, "{pod} waits with {reason}: {:#}", p["status"]);
        let message = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
        let table = ns.kubectl(&["get", "pod", pod]).unwrap().stdout;
        assert!(table.contains(reason), "kubectl get pods shows {reason}: {table}");
    }
    // Once the Secret exists the pod starts (a kubelet retries).
    ns.kubectl_ok(&["create", "secret", "generic", "missing", "--from-literal=k=v"]).unwrap();
    let running = wait_until(Duration::from_secs(30), || async {
        ns.kubectl_json(&["get", "pod", "no-secret"]).unwrap_or_default()["status"]["phase"] == "Running"
    })
    .await;
    assert!(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_deployment_pod_is_restarted() {
    let ns = cluster().namespace("kubelet-restart");
    ns.apply_yaml(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: crash}\nspec:\n  selector: {matchLabels: {app: crash}}\n  template:\n    metadata: {labels: {app: crash}}\n    spec:\n      containers:\n      - {name: main, image: example.dev/shell:1, command: [sh, -c, 'echo start; exit 1']}\n",
    )
    .unwrap();
    let restarted = wait_until(Duration::from_secs(60), || async {
        let pods = ns.kubectl_json(&["get", "pods", "-l", "app=crash"]).unwrap_or_default();
        pods["items"][0]["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    assert!(restarted, "{}", ns.kubectl(&["get", "pods", "-o", "yaml"]).unwrap().stdout);
    let pods = ns.kubectl_json(&["get", "pods", "-l", "app=crash"]).unwrap();
    let last = &pods["items"][0]["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1);
}
