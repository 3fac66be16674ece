//! End-to-end harness: a test API server, a kubeconfig for it, the real
//! `kubectl`, subprocesses with captured logs and a test kubelet for Jobs.

mod kubectl;
mod kubelet;
mod pod_env;
mod process;

pub use kubectl::{KubectlOutput, find_kubectl};
pub use kubelet::{ImageMap, JobRun, Kubelet, KubeletConfig};
pub use process::Process;

use crate::server::{ServerConfig, StartError, TestApiServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "kubectl is required for these tests and was not found ($KUBECTL, /usr/bin/kubectl, PATH): install it at /usr/bin/kubectl, put it on PATH, or set KUBECTL=/path/to/kubectl"
    )]
    KubectlMissing,
    #[error("`kubectl {args}` exited with {code}: {stderr}")]
    KubectlFailed { args: String, code: i32, stderr: String },
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("bad JSON: {0}")]
    Json(String),
}

/// Polls `check` every 50 ms until it returns true; false if `timeout` passes first.
pub async fn wait_until<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Debug shows the message, so that `unwrap()` in a test says what is wrong.
impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A kubeconfig for a plain-HTTP server without authentication.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testkube\n  cluster:\n    server: {url}\ncontexts:\n- name: testkube\n  context:\n    cluster: testkube\n    user: testkube\n    namespace: default\ncurrent-context: testkube\nusers:\n- name: testkube\n  user: {{}}\n"
    )
}

/// Server + kubeconfig in a temp dir + helpers. Everything stops when dropped.
pub struct Harness {
    // Declared first so that processes are killed before the server stops.
    processes: std::sync::Mutex<Vec<std::sync::Arc<Process>>>,
    server: TestApiServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Harness {
    /// Starts a server with the default config and writes its kubeconfig.
    pub async fn start() -> Result<Harness, HarnessError> {
        Self::start_with(ServerConfig::default()).await
    }

    pub async fn start_with(config: ServerConfig) -> Result<Harness, HarnessError> {
        Self::start_blocking(config)
    }

    pub fn start_blocking(config: ServerConfig) -> Result<Harness, HarnessError> {
        let server = TestApiServer::start_blocking(config)?;
        let dir = tempfile::Builder::new().prefix("testkube-").tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&server.url()))?;
        std::fs::create_dir_all(dir.path().join("kubectl-cache"))?;
        Ok(Harness { processes: Default::default(), server, dir, kubeconfig })
    }

    pub fn server(&self) -> &TestApiServer {
        &self.server
    }

    /// A kube-rs client (call inside a tokio runtime).
    pub fn client(&self) -> kube::Client {
        self.server.client()
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The harness's temp dir (kubeconfig, kubectl cache, job logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `kubectl ARGS` (any exit code is returned, not an error; see [`KubectlOutput::ok`]).
    pub fn kubectl(&self, args: &[&str]) -> Result<KubectlOutput, HarnessError> {
        kubectl::run(&find_kubectl()?, &self.kubeconfig, &self.dir.path().join("kubectl-cache"), args, None)
    }

    /// Runs `kubectl ARGS` with `input` on stdin (e.g. `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<KubectlOutput, HarnessError> {
        kubectl::run(&find_kubectl()?, &self.kubeconfig, &self.dir.path().join("kubectl-cache"), args, Some(input))
    }

    /// Runs `kubectl ARGS` and returns stdout; a non-zero exit is an error carrying stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, HarnessError> {
        self.kubectl(args)?.ok()
    }

    /// Runs `kubectl ARGS -o json`, fails on a non-zero exit, parses stdout.
    pub fn kubectl_json(&self, args: &[&str]) -> Result<Value, HarnessError> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubectl(&a)?;
        if !out.success() {
            return Err(HarnessError::KubectlFailed { args: a.join(" "), code: out.code, stderr: out.stderr });
        }
        out.json()
    }

    /// `kubectl apply -f DIR` (every YAML file in it), then waits for CRDs in it to be Established.
    pub async fn apply_dir(&self, dir: impl AsRef<Path>) -> Result<String, HarnessError> {
        let d = dir.as_ref().display().to_string();
        let out = self.kubectl(&["apply", "-f", &d])?.ok()?;
        let _ = self.kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=30s"]);
        Ok(out)
    }

    /// `kubectl apply -f -` of a YAML/JSON manifest.
    pub fn apply_yaml(&self, manifest: &str) -> Result<String, HarnessError> {
        self.kubectl_stdin(&["apply", "-f", "-"], manifest)?.ok()
    }

    /// Starts `program ARGS` with `KUBECONFIG` set; its output is captured (see [`Process::logs`]).
    /// The process is killed when the harness is dropped.
    pub fn spawn(&self, program: impl AsRef<Path>, args: &[&str]) -> Result<std::sync::Arc<Process>, HarnessError> {
        self.spawn_with_env(program, args, &[])
    }

    pub fn spawn_with_env(
        &self,
        program: impl AsRef<Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<std::sync::Arc<Process>, HarnessError> {
        let program = program.as_ref();
        let mut cmd = Command::new(program);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig).env_remove("KUBERNETES_SERVICE_HOST");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let p = std::sync::Arc::new(Process::spawn(&name, cmd).map_err(|e| HarnessError::Spawn(program.display().to_string(), e))?);
        self.processes.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone());
        Ok(p)
    }

    /// Starts the test kubelet: Jobs' containers run as local processes, `image_map`
    /// turning an image into a local binary (None: the Job fails with reason `ImageNotFound`... see [`Kubelet`]).
    pub fn start_kubelet<F>(&self, image_map: F) -> Kubelet
    where
        F: Fn(&str) -> Option<PathBuf> + Send + Sync + 'static,
    {
        self.start_kubelet_with(KubeletConfig::default(), image_map)
    }

    pub fn start_kubelet_with<F>(&self, config: KubeletConfig, image_map: F) -> Kubelet
    where
        F: Fn(&str) -> Option<PathBuf> + Send + Sync + 'static,
    {
        Kubelet::start(&self.server, self.kubeconfig.clone(), self.dir.path().join("jobs"), config, std::sync::Arc::new(image_map))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for p in self.processes.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            p.kill();
        }
    }
}
