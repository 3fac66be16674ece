//! Starting and stopping the control plane: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler as processes on loopback, and
//! the test kubelet as the one Ready Node. Every process it starts dies with
//! the thread that started it (PR_SET_PDEATHSIG) and is stopped by pid on
//! [`ControlPlane::stop`]; the data directory goes with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::credentials::ApiEndpoint;
use crate::kubelet::{ImageMap, Kubelet};
use crate::pki;
use crate::process::{die_with_parent, signal};

/// The Node the test kubelet registers.
pub const NODE_NAME: &str = "retl-test-node";

/// Environment variable: kube-controller-manager's `--kube-api-qps` (and
/// twice that as its burst), for benchmarks that run a thousand Jobs a
/// minute; unset, its defaults (20 and 30).
pub const KCM_QPS_ENV: &str = "RETL_CONTROL_PLANE_KCM_QPS";

/// What the controller manager runs: enough for Jobs, Deployments and cleanup.
const CONTROLLERS: &str = "job,garbagecollector,namespace,serviceaccount,ttl-after-finished,deployment,replicaset,disruption";

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(transparent)]
    Build(#[from] crate::binaries::BuildError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("cannot prepare {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{component} exited with {code} while starting; the end of its log ({log}):\n{tail}")]
    Exited { component: String, code: String, log: PathBuf, tail: String },
    #[error("kube-apiserver did not become ready within {0:?}; its log is {1}")]
    NotReady(Duration, PathBuf),
    #[error("kube client: {0}")]
    Client(String),
    #[error("the test kubelet could not register its Node: {0}")]
    Kubelet(String),
    #[error("no free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
}

/// How to start a control plane.
pub struct Options {
    /// Everything it writes (certificates, etcd data, logs, pod directories); removed by `stop`.
    pub dir: PathBuf,
    /// Where the programs of [`crate::binaries::PROGRAMS`] are.
    pub bin_dir: PathBuf,
    /// Which local binary runs a pod's image.
    pub images: ImageMap,
}

/// One component process, its output in a log file.
struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// A running control plane. Dropping it stops it.
pub struct ControlPlane {
    dir: PathBuf,
    bin_dir: PathBuf,
    kubeconfig: PathBuf,
    endpoint: ApiEndpoint,
    admin_token: String,
    components: Vec<Component>,
    kubelet: Option<Kubelet>,
    runtime: Option<tokio::runtime::Runtime>,
    started_in: Duration,
}

fn free_port() -> Result<u16, ControlPlaneError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(ControlPlaneError::Port)?;
    l.local_addr().map(|a| a.port()).map_err(ControlPlaneError::Port)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ControlPlaneError + '_ {
    move |source| ControlPlaneError::Io { path: path.to_path_buf(), source }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The admin kubeconfig: the CA and a token of a `system:masters` user.
pub fn admin_kubeconfig(endpoint: &ApiEndpoint, token: &str) -> String {
    crate::credentials::kubeconfig(endpoint, "default", &format!("token: {token}"))
}

/// Audit: every request of a ServiceAccount (what retl's own components
/// do), none of the control plane's own chatter.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  userGroups: [\"system:serviceaccounts\"]\n- level: None\n";

impl ControlPlane {
    /// Starts everything and waits until the API server serves and the Node
    /// is Ready. Blocking; call it from a thread that outlives the control
    /// plane (its processes die with that thread).
    pub fn start(options: Options) -> Result<ControlPlane, ControlPlaneError> {
        let started = Instant::now();
        let dir = options.dir;
        std::fs::create_dir_all(dir.join("logs")).map_err(io_err(&dir))?;
        let pki = pki::generate(&dir.join("pki"))?;
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let endpoint = ApiEndpoint { host: "127.0.0.1".into(), port: api_port, ca_pem: pki.ca_pem.clone() };
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, admin_kubeconfig(&endpoint, &pki.admin_token)).map_err(io_err(&kubeconfig))?;
        let audit_policy = dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, AUDIT_POLICY).map_err(io_err(&audit_policy))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("control-plane")
            .enable_all()
            .build()
            .map_err(io_err(&dir))?;
        // kube clients spawn their buffer task on the current runtime.
        let _in_runtime = runtime.enter();
        let mut cp = ControlPlane {
            dir: dir.clone(),
            bin_dir: options.bin_dir,
            kubeconfig: kubeconfig.clone(),
            endpoint,
            admin_token: pki.admin_token.clone(),
            components: Vec::new(),
            kubelet: None,
            runtime: None,
            started_in: Duration::ZERO,
        };
        let p = |path: &Path| path.display().to_string();
        cp.spawn(
            "etcd",
            &[
                format!("--data-dir={}", p(&dir.join("etcd"))),
                format!("--listen-client-url=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-url=http://127.0.0.1:{peer_port}"),
            ],
        )?;
        cp.spawn(
            "kube-apiserver",
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                // The `kubernetes` Endpoints object refuses loopback addresses.
                "--endpoint-reconciler-type=none".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                format!("--cert-dir={}", p(&dir.join("pki"))),
                format!("--tls-cert-file={}", p(&pki.serving_cert)),
                format!("--tls-private-key-file={}", p(&pki.serving_key)),
                format!("--client-ca-file={}", p(&pki.ca_cert)),
                format!("--token-auth-file={}", p(&pki.token_file)),
                "--authorization-mode=RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p(&pki.sa_public_key)),
                format!("--service-account-signing-key-file={}", p(&pki.sa_signing_key)),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
                format!("--audit-policy-file={}", p(&audit_policy)),
                format!("--audit-log-path={}", p(&dir.join("audit.log"))),
                "--audit-log-format=json".into(),
            ],
        )?;
        let client = cp.admin_client()?;
        cp.wait_ready(&runtime, &client, Duration::from_secs(90))?;
        let kc = format!("--kubeconfig={}", p(&kubeconfig));
        let mut kcm_args = vec![
            kc.clone(),
            format!("--controllers={CONTROLLERS}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            format!("--root-ca-file={}", p(&pki.ca_cert)),
            format!("--service-account-private-key-file={}", p(&pki.sa_signing_key)),
        ];
        // The Job controller's pace: its client sends 20 requests a second
        // by default (a few per Job), fewer than a thousand Jobs a minute need.
        if let Some(qps) = std::env::var(KCM_QPS_ENV).ok().and_then(|v| v.parse::<u32>().ok()) {
            kcm_args.push(format!("--kube-api-qps={qps}"));
            kcm_args.push(format!("--kube-api-burst={}", qps.saturating_mul(2)));
        }
        cp.spawn("kube-controller-manager", &kcm_args)?;
        cp.spawn("kube-scheduler", &[kc, "--leader-elect=false".into(), "--secure-port=0".into()])?;
        let kubelet = Kubelet::start(runtime.handle(), client, cp.endpoint.clone(), NODE_NAME, dir.join("pods"), options.images)
            .map_err(|e| ControlPlaneError::Kubelet(e.to_string()))?;
        cp.kubelet = Some(kubelet);
        cp.runtime = Some(runtime);
        cp.check_running()?;
        cp.started_in = started.elapsed();
        Ok(cp)
    }

    fn spawn(&mut self, name: &'static str, args: &[String]) -> Result<(), ControlPlaneError> {
        let program = self.bin_dir.join(name);
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(io_err(&log))?;
        let file2 = file.try_clone().map_err(io_err(&log))?;
        let mut cmd = Command::new(&program);
        cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(file2).env_remove("KUBECONFIG");
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| ControlPlaneError::Spawn { program: program.display().to_string(), source })?;
        self.components.push(Component { name, child, log });
        Ok(())
    }

    /// A component that exited during start-up is an error naming it, with its log.
    fn check_running(&mut self) -> Result<(), ControlPlaneError> {
        for c in &mut self.components {
            if let Ok(Some(status)) = c.child.try_wait() {
                return Err(ControlPlaneError::Exited {
                    component: c.name.into(),
                    code: status.to_string(),
                    log: c.log.clone(),
                    tail: tail(&c.log),
                });
            }
        }
        Ok(())
    }

    fn wait_ready(&mut self, runtime: &tokio::runtime::Runtime, client: &kube::Client, timeout: Duration) -> Result<(), ControlPlaneError> {
        let end = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let ready = runtime.block_on(async {
                let req = http_get("/readyz");
                tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await
            });
            if matches!(ready, Ok(Ok(ref body)) if body.trim() == "ok") {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(ControlPlaneError::NotReady(timeout, self.dir.join("logs/kube-apiserver.log")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A kube client with the admin credential (call inside a tokio runtime).
    pub fn admin_client(&self) -> Result<kube::Client, ControlPlaneError> {
        admin_client(&self.endpoint, &self.admin_token)
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn endpoint(&self) -> &ApiEndpoint {
        &self.endpoint
    }

    /// The kube-apiserver audit log (JSON lines; requests of ServiceAccounts only).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    pub fn kubelet(&self) -> &Kubelet {
        self.kubelet.as_ref().expect("the kubelet runs from start to stop")
    }

    /// The runtime the kubelet runs on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("the runtime runs from start to stop").handle().clone()
    }

    /// How long `start` took (binaries already built).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Pids of every component process.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.components.iter().map(|c| (c.name, c.child.id())).collect()
    }

    /// Stops the kubelet (its pods' processes are killed), then every
    /// component in reverse order (SIGTERM, SIGKILL after 10 s), then
    /// removes the data directory.
    pub fn stop(&mut self) {
        if let Some(kubelet) = self.kubelet.take() {
            kubelet.stop();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        for c in self.components.iter_mut().rev() {
            signal(c.child.id(), libc::SIGTERM);
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end && matches!(c.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
        self.components.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn http_get(path: &str) -> http::Request<Vec<u8>> {
    let mut req = http::Request::new(Vec::new());
    *req.uri_mut() = path.parse().unwrap_or_default();
    req
}

/// A client for `endpoint` authenticated with a bearer token.
pub fn admin_client(endpoint: &ApiEndpoint, token: &str) -> Result<kube::Client, ControlPlaneError> {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&admin_kubeconfig(endpoint, token)).map_err(|e| ControlPlaneError::Client(e.to_string()))?;
    let options = kube::config::KubeConfigOptions::default();
    let config = futures::executor::block_on(kube::Config::from_custom_kubeconfig(kubeconfig, &options))
        .map_err(|e| ControlPlaneError::Client(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| ControlPlaneError::Client(e.to_string()))
}
