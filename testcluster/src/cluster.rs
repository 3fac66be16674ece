//! For test binaries: one control plane per binary (started on first use,
//! gone when the binary exits), one namespace per test, the real kubectl,
//! and processes that run as a ServiceAccount.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::control_plane::{ControlPlane, Options};
use crate::credentials::{self, ApiEndpoint};
use crate::kubectl::{Kubectl, KubectlError, KubectlOutput};
use crate::kubelet::{ImageMap, Kubelet};
use crate::process::Process;

/// Polls `check` every 100 ms until it returns true; false if `timeout` passes first.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The control plane of this test binary.
pub struct TestCluster {
    cp: ControlPlane,
    kubectl: Kubectl,
}

static SHARED: OnceLock<Result<&'static TestCluster, String>> = OnceLock::new();
static DATA_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn remove_data_dir() {
    if let Some(dir) = DATA_DIR.lock().ok().and_then(|d| d.clone()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl TestCluster {
    /// The binary's control plane, started by the first caller (with its
    /// `images`) and shared by every test after it. Building the binaries
    /// first if this version is not in the cache. Panics with the reason
    /// when it cannot start: nothing in the test could work without it.
    pub fn shared(images: ImageMap) -> &'static TestCluster {
        let started = SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            // Its processes die with the thread that started them: one that lives as long as the binary.
            let spawned = std::thread::Builder::new().name("control-plane".into()).spawn(move || {
                let result = Self::start(images).map(|c| &*Box::leak(Box::new(c)));
                let ok = result.is_ok();
                let _ = tx.send(result);
                if ok {
                    loop {
                        std::thread::park();
                    }
                }
            });
            if let Err(e) = spawned {
                return Err(e.to_string());
            }
            rx.recv().unwrap_or_else(|e| Err(e.to_string()))
        });
        match started {
            Ok(c) => c,
            Err(e) => panic!("the test control plane did not start: {e}"),
        }
    }

    fn start(images: ImageMap) -> Result<TestCluster, String> {
        let bin_dir = match std::env::var_os("RETL_CONTROL_PLANE_BIN") {
            Some(d) => PathBuf::from(d),
            None => crate::binaries::ensure_built().map_err(|e| e.to_string())?,
        };
        let dir = tempfile::Builder::new().prefix("retl-control-plane-").tempdir().map_err(|e| e.to_string())?.keep();
        if let Ok(mut d) = DATA_DIR.lock() {
            *d = Some(dir.clone());
        }
        // SAFETY: registers a plain extern "C" function.
        unsafe {
            libc::atexit(remove_data_dir);
        }
        let cp = ControlPlane::start(Options { dir: dir.clone(), bin_dir: bin_dir.clone(), images }).map_err(|e| e.to_string())?;
        eprintln!("test control plane up in {:.1} s ({})", cp.started_in().as_secs_f64(), dir.display());
        let cache = dir.join("kubectl-cache");
        let kubectl = Kubectl {
            program: crate::kubectl::program(&bin_dir),
            kubeconfig: cp.kubeconfig().to_path_buf(),
            cache_dir: cache,
            namespace: None,
        };
        Ok(TestCluster { cp, kubectl })
    }

    pub fn control_plane(&self) -> &ControlPlane {
        &self.cp
    }

    pub fn kubelet(&self) -> &Kubelet {
        self.cp.kubelet()
    }

    /// kubectl as the admin, cluster-wide.
    pub fn kubectl(&self) -> &Kubectl {
        &self.kubectl
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        self.cp.kubeconfig()
    }

    /// A kube client as the admin (call inside a tokio runtime).
    pub fn client(&self) -> kube::Client {
        self.cp.admin_client().expect("the admin kubeconfig is valid")
    }

    pub fn endpoint(&self) -> &ApiEndpoint {
        self.cp.endpoint()
    }

    /// Every request of a ServiceAccount so far, from kube-apiserver's audit log.
    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.cp.audit_log()).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// A fresh namespace `<prefix>-<random>` for one test; deleted when dropped.
    pub fn namespace(&'static self, prefix: &str) -> Namespace {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let mut prefix: String = prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        prefix.truncate(40);
        let name = format!("{}-{suffix}", prefix.trim_matches('-'));
        let out = self.kubectl.run(&["create", "namespace", &name], None).and_then(KubectlOutput::ok);
        if let Err(e) = out {
            panic!("creating namespace {name}: {e}");
        }
        let dir = tempfile::Builder::new().prefix(&format!("{name}-")).tempdir().expect("a temp dir");
        let cache = dir.path().join("kubectl-cache");
        let kubectl = Kubectl { namespace: Some(name.clone()), cache_dir: cache, ..self.kubectl.clone() };
        Namespace { cluster: self, name, kubectl, dir, processes: Mutex::new(Vec::new()) }
    }
}

/// One test's namespace, kubectl pointed at it, and the processes it started.
pub struct Namespace {
    cluster: &'static TestCluster,
    name: String,
    kubectl: Kubectl,
    dir: tempfile::TempDir,
    processes: Mutex<Vec<Arc<Process>>>,
}

impl Namespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cluster(&self) -> &'static TestCluster {
        self.cluster
    }

    /// A directory of this test's own (kept until the Namespace is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `kubectl ARGS` in this namespace (unless ARGS name one); any exit code is returned.
    pub fn kubectl(&self, args: &[&str]) -> Result<KubectlOutput, KubectlError> {
        self.kubectl.run(args, None)
    }

    /// `kubectl ARGS` with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<KubectlOutput, KubectlError> {
        self.kubectl.run(args, Some(input))
    }

    /// `kubectl ARGS`; stdout, or an error carrying stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, KubectlError> {
        self.kubectl(args)?.ok()
    }

    /// `kubectl ARGS -o json`, parsed; a non-zero exit is an error.
    pub fn kubectl_json(&self, args: &[&str]) -> Result<Value, KubectlError> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubectl(&a)?;
        if !out.success() {
            return Err(KubectlError::Failed { args: a.join(" "), code: out.code, stderr: out.stderr });
        }
        out.json()
    }

    /// `kubectl apply -f -` of a YAML/JSON manifest, into this namespace.
    pub fn apply_yaml(&self, manifest: &str) -> Result<String, KubectlError> {
        self.kubectl_stdin(&["apply", "-f", "-"], manifest)?.ok()
    }

    /// Starts `program ARGS` as ServiceAccount `account_ns/account` with
    /// in-cluster credentials, exactly as a pod of it would get them
    /// ([`credentials`]); output captured, killed with the Namespace.
    pub async fn spawn_as(&self, account_ns: &str, account: &str, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Arc<Process> {
        let client = self.cluster.client();
        let dir = self.dir().join(format!("sa-{account_ns}-{account}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]));
        let creds = credentials::issue(&client, self.cluster.endpoint(), account_ns, account, None, &dir)
            .await
            .unwrap_or_else(|e| panic!("credentials of {account_ns}/{account}: {e}"));
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).envs(env.iter().copied());
        creds.apply(&mut cmd);
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let p = Arc::new(Process::spawn(&name, cmd).unwrap_or_else(|e| panic!("starting {}: {e}", program.display())));
        self.processes.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone());
        p
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for p in self.processes.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            p.kill();
        }
        let _ = self.kubectl.run(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}
