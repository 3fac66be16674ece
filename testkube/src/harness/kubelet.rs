//! A test kubelet + Job controller: runs each Job's first container as a
//! local process and reports the outcome in Job status the way the Job
//! controller does (startTime, active/succeeded/failed, completionTime,
//! SuccessCriteriaMet+Complete or FailureTarget+Failed conditions with reasons
//! BackoffLimitExceeded / DeadlineExceeded).
//!
//! - image -> binary: the caller's map; the binary replaces `command[0]`
//!   (`command[1..]` + `args` are its arguments; without `command`, `args` only);
//! - env: `value`, `valueFrom.secretKeyRef` / `configMapKeyRef` / `fieldRef`
//!   (metadata.name = pod name, metadata.namespace), `envFrom`; plus `KUBECONFIG`
//!   pointing at the test server (instead of in-cluster service account config),
//!   `HOSTNAME`, and `PATH`/`HOME`/`RUST_LOG`/`RUST_BACKTRACE` inherited;
//! - an unknown image or a missing Secret keeps the "pod" pending (as
//!   ErrImagePull/CreateContainerConfigError would) until the deadline or deletion;
//! - a failed attempt is retried after `backoff` until `backoffLimit` failures;
//! - `activeDeadlineSeconds` kills the process and fails the Job (DeadlineExceeded);
//! - deleting the Job kills its process;
//! - `ttlSecondsAfterFinished` deletes the finished Job (the TTL controller).

use super::pod_env::env_for;
use crate::server::TestApiServer;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub type ImageMap = Arc<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// How often Jobs are listed.
    pub poll_interval: Duration,
    /// Delay before re-running a failed attempt (the Job controller starts at 10s and doubles).
    pub backoff: Duration,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig { poll_interval: Duration::from_millis(100), backoff: Duration::from_millis(500) }
    }
}

/// A Job the kubelet is running (or has run).
#[derive(Debug, Clone)]
pub struct JobRun {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub attempts: u32,
    pub pid: Option<u32>,
    pub finished: bool,
}

struct Run {
    info: JobRun,
    crash: Arc<Notify>,
    deleted: Arc<Notify>,
}

struct Shared {
    runs: Mutex<HashMap<String, Run>>,
    logs_dir: PathBuf,
}

impl Shared {
    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to the running test kubelet; stops when dropped (running processes are killed).
pub struct Kubelet {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn condition(t: &str, reason: &str, message: &str) -> Value {
    let n = now();
    json!({"type": t, "status": "True", "reason": reason, "message": message, "lastProbeTime": n, "lastTransitionTime": n})
}

impl Kubelet {
    pub(crate) fn start(
        server: &TestApiServer,
        kubeconfig: PathBuf,
        logs_dir: PathBuf,
        config: KubeletConfig,
        images: ImageMap,
    ) -> Kubelet {
        let _ = std::fs::create_dir_all(&logs_dir);
        let shared = Arc::new(Shared { runs: Mutex::new(HashMap::new()), logs_dir });
        let url = server.url();
        let s = shared.clone();
        let task = server.runtime().spawn(async move {
            let client = kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client");
            let jobs: Api<Job> = Api::all(client.clone());
            loop {
                if let Ok(list) = jobs.list(&ListParams::default()).await {
                    sync(&s, &client, &list.items, &kubeconfig, &config, &images);
                }
                tokio::time::sleep(config.poll_interval).await;
            }
        });
        Kubelet { shared, task }
    }

    /// Jobs seen so far, with their attempt counts and current process ids.
    pub fn runs(&self) -> Vec<JobRun> {
        self.shared.runs().values().map(|r| r.info.clone()).collect()
    }

    /// The pid of the Job's running process, if any.
    pub fn pid(&self, namespace: &str, name: &str) -> Option<u32> {
        self.shared
            .runs()
            .values()
            .find(|r| r.info.namespace == namespace && r.info.name == name && !r.info.finished)
            .and_then(|r| r.info.pid)
    }

    /// Waits until the Job's process runs; returns its pid.
    pub async fn wait_running(&self, namespace: &str, name: &str, timeout: Duration) -> Option<u32> {
        let end = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < end {
            if let Some(p) = self.pid(namespace, name) {
                return Some(p);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Kills the Job's running process with SIGKILL, as a crashing worker; the
    /// attempt counts as failed (retried while under backoffLimit). False if none runs.
    pub fn kill(&self, namespace: &str, name: &str) -> bool {
        let runs = self.shared.runs();
        match runs.values().find(|r| r.info.namespace == namespace && r.info.name == name && r.info.pid.is_some() && !r.info.finished) {
            Some(r) => {
                r.crash.notify_one();
                true
            }
            None => false,
        }
    }

    /// Output (stdout and stderr) of every attempt of the Job so far.
    pub fn logs(&self, namespace: &str, name: &str) -> String {
        let mut out = String::new();
        for attempt in 1..100 {
            match std::fs::read_to_string(self.shared.logs_dir.join(format!("{namespace}_{name}_{attempt}.log"))) {
                Ok(s) => out.push_str(&s),
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        for r in self.shared.runs().values() {
            r.deleted.notify_one();
        }
    }
}

fn finished(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

fn sync(s: &Arc<Shared>, client: &kube::Client, jobs: &[Job], kubeconfig: &std::path::Path, config: &KubeletConfig, images: &ImageMap) {
    let mut live = std::collections::HashSet::new();
    for job in jobs {
        let v = serde_json::to_value(job).unwrap_or_default();
        let uid = v["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let deleting = !v["metadata"]["deletionTimestamp"].is_null();
        if !deleting {
            live.insert(uid.clone());
        }
        let mut runs = s.runs();
        if runs.contains_key(&uid) || deleting || finished(&v) || v["spec"]["suspend"] == true {
            continue;
        }
        let info = JobRun {
            namespace: v["metadata"]["namespace"].as_str().unwrap_or("").into(),
            name: v["metadata"]["name"].as_str().unwrap_or("").into(),
            uid: uid.clone(),
            attempts: 0,
            pid: None,
            finished: false,
        };
        let run = Run { info, crash: Arc::new(Notify::new()), deleted: Arc::new(Notify::new()) };
        let (crash, deleted) = (run.crash.clone(), run.deleted.clone());
        runs.insert(uid.clone(), run);
        drop(runs);
        let ctx = RunCtx {
            s: s.clone(),
            client: client.clone(),
            kubeconfig: kubeconfig.to_path_buf(),
            config: config.clone(),
            images: images.clone(),
            uid,
            crash,
            deleted,
        };
        tokio::spawn(run_job(ctx, v));
    }
    for (uid, r) in s.runs().iter() {
        if !live.contains(uid) && !r.info.finished {
            r.deleted.notify_one();
        }
    }
}

struct RunCtx {
    s: Arc<Shared>,
    client: kube::Client,
    kubeconfig: PathBuf,
    config: KubeletConfig,
    images: ImageMap,
    uid: String,
    crash: Arc<Notify>,
    deleted: Arc<Notify>,
}

impl RunCtx {
    fn update(&self, f: impl FnOnce(&mut JobRun)) {
        if let Some(r) = self.s.runs().get_mut(&self.uid) {
            f(&mut r.info);
        }
    }
}

enum Outcome {
    Exited(i32),
    Crashed,
    Deadline,
    Deleted,
}

/// Counts are `omitempty` int32s in JobStatus: zero is written as absent (null in a merge patch).
fn count(n: i64) -> Value {
    if n == 0 { Value::Null } else { json!(n) }
}

async fn patch_status(client: &kube::Client, ns: &str, name: &str, status: Value) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let _ = jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await;
}

async fn run_job(ctx: RunCtx, job: Value) {
    let ns = job["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    let name = job["metadata"]["name"].as_str().unwrap_or("").to_string();
    let spec = &job["spec"];
    let container = spec["template"]["spec"]["containers"][0].clone();
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
    let start = job["status"]["startTime"].as_str().map(String::from).unwrap_or_else(now);
    let started_at =
        chrono::DateTime::parse_from_rfc3339(&start).map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_else(|_| chrono::Utc::now());
    let deadline = spec["activeDeadlineSeconds"].as_i64().map(|secs| {
        let left = (started_at + chrono::Duration::seconds(secs) - chrono::Utc::now()).num_milliseconds().max(0) as u64;
        tokio::time::Instant::now() + Duration::from_millis(left)
    });
    let deadline_sleep = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline_sleep);
    let mut failed = job["status"]["failed"].as_i64().unwrap_or(0);
    patch_status(
        &ctx.client,
        &ns,
        &name,
        json!({"startTime": start, "active": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}),
    )
    .await;
    let mut attempt = 0u32;
    let outcome = loop {
        attempt += 1;
        ctx.update(|r| r.attempts = attempt);
        let pod = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..5]);
        let image = container["image"].as_str().unwrap_or("");
        let prepared = match (ctx.images)(image) {
            None => Err(format!("image {image:?} is not mapped to a local binary")),
            Some(bin) => env_for(&ctx.client, &ns, &pod, &container).await.map(|env| (bin, env)),
        };
        let (bin, env) = match prepared {
            Ok(x) => x,
            Err(why) => {
                let _ = std::fs::write(
                    ctx.s.logs_dir.join(format!("{ns}_{name}_{attempt}.log")),
                    format!("testkube kubelet: pod {pod} cannot start: {why}\n"),
                );
                // pending forever, like ErrImagePull / CreateContainerConfigError
                tokio::select! {
                    _ = &mut deadline_sleep => break Outcome::Deadline,
                    _ = ctx.deleted.notified() => break Outcome::Deleted,
                }
            }
        };
        let mut argv: Vec<String> =
            container["command"].as_array().into_iter().flatten().skip(1).filter_map(|v| v.as_str().map(String::from)).collect();
        argv.extend(container["args"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)));
        let log_path = ctx.s.logs_dir.join(format!("{ns}_{name}_{attempt}.log"));
        let spawned = std::fs::File::create(&log_path).and_then(|f| {
            let f2 = f.try_clone()?;
            let mut cmd = tokio::process::Command::new(&bin);
            cmd.args(&argv).env_clear();
            for k in ["PATH", "HOME", "RUST_LOG", "RUST_BACKTRACE"] {
                if let Some(v) = std::env::var_os(k) {
                    cmd.env(k, v);
                }
            }
            cmd.env("KUBECONFIG", &ctx.kubeconfig)
                .env("HOSTNAME", &pod)
                .envs(&env)
                .stdin(std::process::Stdio::null())
                .stdout(f)
                .stderr(f2)
                .kill_on_drop(true)
                // its own process group, so that killing the "container" kills all its processes
                .process_group(0);
            if let Some(wd) = container["workingDir"].as_str() {
                cmd.current_dir(wd);
            }
            cmd.spawn()
        });
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::write(&log_path, format!("testkube kubelet: cannot start {}: {e}\n", bin.display()));
                break Outcome::Exited(128);
            }
        };
        ctx.update(|r| r.pid = child.id());
        let result = tokio::select! {
            status = child.wait() => match status { Ok(s) => Outcome::Exited(s.code().unwrap_or(137)), Err(_) => Outcome::Exited(1) },
            _ = &mut deadline_sleep => Outcome::Deadline,
            _ = ctx.crash.notified() => Outcome::Crashed,
            _ = ctx.deleted.notified() => Outcome::Deleted,
        };
        if !matches!(result, Outcome::Exited(_)) {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
            }
            let _ = child.kill().await;
        }
        ctx.update(|r| r.pid = None);
        match result {
            Outcome::Exited(0) => break result,
            Outcome::Exited(_) | Outcome::Crashed => {
                failed += 1;
                if failed > backoff_limit {
                    break result;
                }
                patch_status(&ctx.client, &ns, &name, json!({"failed": count(failed), "active": null})).await;
                tokio::select! {
                    _ = tokio::time::sleep(ctx.config.backoff) => {}
                    _ = &mut deadline_sleep => break Outcome::Deadline,
                    _ = ctx.deleted.notified() => break Outcome::Deleted,
                }
                patch_status(&ctx.client, &ns, &name, json!({"active": 1})).await;
            }
            other => break other,
        }
    };
    ctx.update(|r| r.finished = true);
    let n = now();
    let status = match outcome {
        Outcome::Deleted => return,
        Outcome::Exited(0) => json!({"active": null, "ready": 0, "succeeded": 1, "failed": count(failed), "completionTime": n,
            "conditions": [condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                           condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]}),
        Outcome::Deadline => json!({"active": null, "ready": 0, "failed": failed + 1,
            "conditions": [condition("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline"),
                           condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]}),
        _ => json!({"active": null, "ready": 0, "failed": count(failed),
            "conditions": [condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                           condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]}),
    };
    patch_status(&ctx.client, &ns, &name, status).await;
    // the TTL-after-finished controller
    if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_u64() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(ttl)) => {
                let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
                let _ = jobs.delete(&name, &kube::api::DeleteParams::background()).await;
            }
            _ = ctx.deleted.notified() => {}
        }
    }
}
