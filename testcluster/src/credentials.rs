//! A ServiceAccount's in-cluster credentials for a local process, put where
//! a kubelet puts them: a token from the TokenRequest API, `ca.crt` and
//! `namespace` under `/var/run/secrets/kubernetes.io/serviceaccount`, and
//! `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` in the environment.
//!
//! Each process gets a private mount namespace in which its own token
//! directory is bind-mounted at that path (we are root), so two processes
//! can hold two different identities at the same path. Where the sandbox
//! refuses mount namespaces, the process gets a kubeconfig holding the very
//! same token instead (RBAC applies either way); [`Mode`] says which.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;

/// Where a kubelet mounts a pod's ServiceAccount credentials.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("TokenRequest for ServiceAccount {namespace}/{name} failed: {source}")]
    Token { namespace: String, name: String, source: kube::Error },
    #[error("cannot write credentials to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// How credentials reach processes on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Private mount namespace, token directory bind-mounted at [`MOUNT_PATH`].
    MountNamespace,
    /// A kubeconfig (in `KUBECONFIG`) holding the same token.
    Kubeconfig,
}

/// Whether mount namespaces work here (probed once: a child unshares and bind-mounts).
pub fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| {
        if std::fs::create_dir_all(MOUNT_PATH).is_err() {
            return Mode::Kubeconfig;
        }
        let probe = tempfile::tempdir().ok();
        let Some(probe) = probe else { return Mode::Kubeconfig };
        let marker = probe.path().join("namespace");
        if std::fs::write(&marker, "probe").is_err() {
            return Mode::Kubeconfig;
        }
        let mut cmd = std::process::Command::new("cat");
        cmd.arg(Path::new(MOUNT_PATH).join("namespace"));
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        bind_in_private_namespace(&mut cmd, probe.path());
        match cmd.output() {
            Ok(out) if out.status.success() && out.stdout == b"probe" => Mode::MountNamespace,
            _ => Mode::Kubeconfig,
        }
    })
}

/// Credentials written to a directory, ready to hand to a process.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Holds `token`, `ca.crt`, `namespace` (and `kubeconfig` for [`Mode::Kubeconfig`]).
    pub dir: PathBuf,
    pub service_host: String,
    pub service_port: u16,
}

/// What the control plane tells processes about itself.
#[derive(Clone, Debug)]
pub struct ApiEndpoint {
    pub host: String,
    pub port: u16,
    pub ca_pem: String,
}

/// Asks the API server for a token of `namespace/name` (bound to a pod
/// when `bound_pod` is given, as a kubelet's projected token is) and writes
/// the credentials into `dir`.
pub async fn issue(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
    name: &str,
    bound_pod: Option<(&str, &str)>,
    dir: &Path,
) -> Result<Credentials, CredentialsError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            // What a kubelet asks for a projected token (the API server extends it while the pod lives).
            expiration_seconds: Some(3607),
            bound_object_ref: bound_pod.map(|(pod, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.into()),
                uid: Some(uid.into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|source| CredentialsError::Token { namespace: namespace.into(), name: name.into(), source })?
        .status
        .map(|s| s.token)
        .unwrap_or_default();
    write_files(endpoint, namespace, &token, dir)
}

fn write_files(endpoint: &ApiEndpoint, namespace: &str, token: &str, dir: &Path) -> Result<Credentials, CredentialsError> {
    let write = |file: &str, text: &str| {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|source| CredentialsError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| CredentialsError::Write { path: dir.into(), source })?;
    write("token", token)?;
    write("ca.crt", &endpoint.ca_pem)?;
    write("namespace", namespace)?;
    write("kubeconfig", &kubeconfig(endpoint, namespace, &format!("tokenFile: {}", dir.join("token").display())))?;
    Ok(Credentials { dir: dir.to_path_buf(), service_host: endpoint.host.clone(), service_port: endpoint.port })
}

/// A kubeconfig for `endpoint` (its CA embedded) whose one user has `credential`
/// (`token: ...` or `tokenFile: ...`), in `namespace` by default.
pub fn kubeconfig(endpoint: &ApiEndpoint, namespace: &str, credential: &str) -> String {
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &endpoint.ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: retl-test\n  cluster:\n    server: https://{}:{}\n    certificate-authority-data: {ca}\ncontexts:\n- name: retl-test\n  context: {{cluster: retl-test, user: user, namespace: {namespace}}}\ncurrent-context: retl-test\nusers:\n- name: user\n  user:\n    {credential}\n",
        endpoint.host, endpoint.port
    )
}

impl Credentials {
    /// Gives `cmd` these credentials: the environment of a pod and the
    /// token directory at [`MOUNT_PATH`] (or a kubeconfig, see [`Mode`]).
    /// Clears `KUBECONFIG` and points `HOME` at the credentials' directory,
    /// so that nothing but the in-cluster configuration is found.
    pub fn apply(&self, cmd: &mut std::process::Command) {
        cmd.env_remove("KUBECONFIG")
            .env("HOME", &self.dir)
            .env("KUBERNETES_SERVICE_HOST", &self.service_host)
            .env("KUBERNETES_SERVICE_PORT", self.service_port.to_string())
            .env("KUBERNETES_SERVICE_PORT_HTTPS", self.service_port.to_string());
        match mode() {
            Mode::MountNamespace => bind_in_private_namespace(cmd, &self.dir),
            Mode::Kubeconfig => {
                cmd.env("KUBECONFIG", self.dir.join("kubeconfig"));
            }
        }
    }
}

/// Before exec: a private mount namespace with `dir` bind-mounted at [`MOUNT_PATH`].
fn bind_in_private_namespace(cmd: &mut std::process::Command, dir: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let source = CString::new(dir.as_os_str().as_bytes()).unwrap_or_default();
    let target = CString::new(MOUNT_PATH).unwrap_or_default();
    let root = CString::new("/").unwrap_or_default();
    // SAFETY: only async-signal-safe syscalls on memory prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Mounts made here must not propagate back to the host.
            if libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
