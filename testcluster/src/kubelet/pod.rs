//! One pod on the test kubelet: its containers' images mapped to local
//! binaries, their environment and ServiceAccount credentials prepared,
//! their processes run and restarted by the pod's `restartPolicy`, status
//! written at every change, and deletion honoured with SIGTERM, the grace
//! period, SIGKILL and the final delete.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use tokio::sync::watch;

use super::Shared;
use super::status::{self, ContainerStatus, State};
use crate::credentials::{self, Credentials, MOUNT_PATH};

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// What every container of the pod shares.
struct PodCtx {
    shared: Arc<Shared>,
    api: Api<Pod>,
    uid: String,
    name: String,
    dir: PathBuf,
    restart_policy: String,
    start_time: String,
    statuses: tokio::sync::Mutex<Vec<ContainerStatus>>,
}

impl PodCtx {
    /// Changes container `i`'s status and writes the pod's (serialized, so writes never reorder).
    async fn set(&self, i: usize, f: impl FnOnce(&mut ContainerStatus)) {
        let mut statuses = self.statuses.lock().await;
        if let Some(s) = statuses.get_mut(i) {
            f(s);
        }
        let phase = status::pod_phase(&statuses, &self.restart_policy);
        status::write(&self.api, &self.name, &self.start_time, &statuses, phase).await;
    }

    fn with_entry(&self, f: impl FnOnce(&mut super::PodEntry)) {
        if let Some(e) = self.shared.pods().get_mut(&self.uid) {
            f(e);
        }
    }
}

/// A container ready to start.
struct Prepared {
    program: PathBuf,
    args: Vec<String>,
    env: std::collections::BTreeMap<String, String>,
    /// The ServiceAccount's, when the container mounts them.
    creds: Option<Credentials>,
    working_dir: Option<String>,
}

fn terminating(rx: &watch::Receiver<Option<i64>>) -> Option<i64> {
    *rx.borrow()
}

/// Waits until the pod's deletion is asked for; its grace period in seconds.
async fn deleted(rx: &mut watch::Receiver<Option<i64>>) -> i64 {
    match rx.wait_for(|t| t.is_some()).await {
        Ok(v) => v.unwrap_or(30),
        // The kubelet is gone: stop at once.
        Err(_) => 0,
    }
}

pub async fn run(shared: Arc<Shared>, pod: Pod, mut terminate: watch::Receiver<Option<i64>>) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let dir = shared.dir.join(format!("{ns}_{name}_{uid}"));
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let statuses = spec
        .containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            restarts: 0,
            state: State::Waiting { reason: "ContainerCreating".into(), message: String::new() },
            last: None,
        })
        .collect();
    let ctx = Arc::new(PodCtx {
        api: Api::namespaced(shared.client.clone(), &ns),
        shared,
        uid,
        name,
        dir,
        restart_policy: spec.restart_policy.clone().unwrap_or_else(|| "Always".into()),
        start_time: now(),
        statuses: tokio::sync::Mutex::new(statuses),
    });
    ctx.set(usize::MAX, |_| {}).await;

    // Pull, configure and mount, retrying what a kubelet retries, until ready or deleted.
    let mut prepared = Vec::new();
    for (i, container) in spec.containers.iter().enumerate() {
        loop {
            match prepare(&ctx, &pod, container).await {
                Ok(p) => break prepared.push(p),
                Err((reason, message)) => {
                    ctx.set(i, |s| s.state = State::Waiting { reason: reason.into(), message }).await;
                    let wait = tokio::time::sleep(Duration::from_secs(2));
                    tokio::select! {
                        _ = wait => {}
                        _ = deleted(&mut terminate) => return finish(&ctx).await,
                    }
                }
            }
        }
    }
    let runs = prepared.into_iter().enumerate().map(|(i, p)| run_container(ctx.clone(), i, p, terminate.clone()));
    futures::future::join_all(runs).await;
    if terminating(&terminate).is_some() {
        return finish(&ctx).await;
    }
    ctx.with_entry(|e| e.finished = true);
    // Finished on its own: its deletion (by the Job controller, a TTL, GC) is finished by `observe`.
}

/// Maps the image, resolves the environment, issues the credentials.
async fn prepare(ctx: &PodCtx, pod: &Pod, c: &Container) -> Result<Prepared, (&'static str, String)> {
    let image = c.image.clone().unwrap_or_default();
    let Some(entrypoint) = (ctx.shared.images)(&image) else {
        let message =
            format!("Failed to pull image \"{image}\": the retl test kubelet maps no local binary to this image (testcluster/README.md)");
        return Err(("ErrImagePull", message));
    };
    let env = super::env::resolve(&ctx.shared.client, pod, c).await.map_err(|m| ("CreateContainerConfigError", m))?;
    let (program, mut args) = match c.command.as_deref() {
        // `command` replaces the image's entrypoint: a program of the host.
        Some([first, rest @ ..]) => (PathBuf::from(first), rest.to_vec()),
        _ => (entrypoint, Vec::new()),
    };
    args.extend(c.args.clone().unwrap_or_default());
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mounts_token = c.volume_mounts.iter().flatten().any(|m| m.mount_path == MOUNT_PATH);
    let creds = if mounts_token {
        let account = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
        let bound = (ctx.name.as_str(), ctx.uid.as_str());
        let issued =
            credentials::issue(&ctx.shared.client, &ctx.shared.endpoint, &ns, &account, Some(bound), &ctx.dir.join("serviceaccount")).await;
        Some(issued.map_err(|e| ("ContainerCreating", format!("MountVolume.SetUp failed for the ServiceAccount token: {e}")))?)
    } else {
        None
    };
    Ok(Prepared { program, args, env, creds, working_dir: c.working_dir.clone() })
}

fn command(ctx: &PodCtx, p: &Prepared, log: &std::path::Path) -> std::io::Result<tokio::process::Command> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::create(log)?;
    let file2 = file.try_clone()?;
    let mut cmd = std::process::Command::new(&p.program);
    cmd.args(&p.args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let endpoint = &ctx.shared.endpoint;
    cmd.env("HOSTNAME", &ctx.name)
        .env("HOME", &ctx.dir)
        .env("KUBERNETES_SERVICE_HOST", &endpoint.host)
        .env("KUBERNETES_SERVICE_PORT", endpoint.port.to_string())
        .envs(&p.env);
    if let Some(creds) = &p.creds {
        creds.apply(&mut cmd);
    }
    cmd.current_dir(p.working_dir.as_deref().unwrap_or("/")).stdin(std::process::Stdio::null()).stdout(file).stderr(file2);
    // Its own process group, so that signals reach everything the container started.
    cmd.process_group(0);
    crate::process::die_with_parent(&mut cmd);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    Ok(cmd)
}

/// Runs one container until it is done for good (by the restart policy) or the pod is deleted.
async fn run_container(ctx: Arc<PodCtx>, i: usize, p: Prepared, mut terminate: watch::Receiver<Option<i64>>) {
    let container = ctx.statuses.lock().await.get(i).map(|s| s.name.clone()).unwrap_or_default();
    let mut restarts = 0;
    loop {
        if terminating(&terminate).is_some() {
            return;
        }
        let log = ctx.dir.join("logs").join(format!("{container}-{restarts:03}.log"));
        let started_at = now();
        let spawned = command(&ctx, &p, &log).and_then(|mut c| c.spawn());
        let code = match spawned {
            Err(e) => {
                let _ = std::fs::write(&log, format!("test kubelet: cannot start {}: {e}\n", p.program.display()));
                128
            }
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                ctx.with_entry(|e| e.pids.push(pid));
                let started = started_at.clone();
                ctx.set(i, |s| s.state = State::Running { started_at: started }).await;
                let code = tokio::select! {
                    status = child.wait() => exit_code(status),
                    grace = deleted(&mut terminate) => stop(&ctx, &mut child, pid, grace).await,
                };
                ctx.with_entry(|e| e.pids.retain(|p| *p != pid));
                code
            }
        };
        let reason = if code == 0 { "Completed" } else { "Error" };
        let done = State::Terminated { exit_code: code, reason: reason.into(), started_at, finished_at: now() };
        let again =
            terminating(&terminate).is_none() && (ctx.restart_policy == "Always" || (ctx.restart_policy == "OnFailure" && code != 0));
        if !again {
            ctx.set(i, |s| s.state = done).await;
            return;
        }
        restarts += 1;
        let n = restarts;
        ctx.set(i, |s| {
            s.restarts = n;
            s.last = Some(done);
            s.state = State::Waiting { reason: "CrashLoopBackOff".into(), message: "back-off restarting failed container".into() };
        })
        .await;
        // A kubelet backs off 10 s doubling to 5 min; here 1 s doubling to 10 s.
        let backoff = Duration::from_secs((1u64 << (restarts - 1).min(4)).min(10));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = deleted(&mut terminate) => return,
        }
    }
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(_) => 1,
    }
}

/// SIGTERM to the container's process group, up to `grace` seconds to exit, then SIGKILL.
async fn stop(ctx: &PodCtx, child: &mut tokio::process::Child, pid: u32, grace: i64) -> i32 {
    if grace > 0 {
        ctx.with_entry(|e| e.signals.push("SIGTERM".into()));
        crate::process::signal_group(pid, libc::SIGTERM);
        let wait = Duration::from_secs(grace.unsigned_abs());
        if let Ok(status) = tokio::time::timeout(wait, child.wait()).await {
            return exit_code(status);
        }
    }
    ctx.with_entry(|e| e.signals.push("SIGKILL".into()));
    crate::process::signal_group(pid, libc::SIGKILL);
    exit_code(child.wait().await)
}

/// After a deletion: the terminal phase, then the final delete (grace 0).
async fn finish(ctx: &PodCtx) {
    {
        let mut statuses = ctx.statuses.lock().await;
        for s in statuses.iter_mut() {
            if !matches!(s.state, State::Terminated { .. }) {
                let t = now();
                s.state =
                    State::Terminated { exit_code: 137, reason: "ContainerStatusUnknown".into(), started_at: t.clone(), finished_at: t };
            }
        }
        let phase = status::pod_phase(&statuses, "Never");
        status::write(&ctx.api, &ctx.name, &ctx.start_time, &statuses, phase).await;
    }
    ctx.with_entry(|e| {
        e.finished = true;
        e.deleted = true;
    });
    delete_now(&ctx.api, &ctx.name, &ctx.uid).await;
}

/// A deleted pod none of whose containers runs here: the final delete.
pub async fn finish_deletion(shared: Arc<Shared>, pod: Pod) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
    delete_now(&api, pod.metadata.name.as_deref().unwrap_or_default(), pod.metadata.uid.as_deref().unwrap_or_default()).await;
}

async fn delete_now(api: &Api<Pod>, name: &str, uid: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid.into()), resource_version: None }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => eprintln!("test kubelet: deleting pod {name}: {e}"),
    }
}
