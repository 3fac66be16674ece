//! The control plane's binaries, built from the Go module in `go/` once per
//! version into a cache outside the clone (`$RETL_CONTROL_PLANE_CACHE`, else
//! `$XDG_CACHE_HOME/retl/control-plane`, else `~/.cache/retl/control-plane`),
//! so later runs on the same machine skip the build. The cache key is a hash
//! of the module's go.mod, go.sum and sources and of `go version`: changing
//! the Kubernetes version builds anew.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The programs built, by file name.
pub const PROGRAMS: [&str; 5] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd"];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("Go is required to build the test control plane and `go version` failed ({0}); install Go 1.24 or newer and put it on PATH")]
    NoGo(String),
    #[error("cannot use the cache directory {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
    #[error("cannot read the Go module at {path}: {source}")]
    Module { path: PathBuf, source: std::io::Error },
    #[error("`go build` of the test control plane failed (exit {code}); its output is in {log}")]
    Build { code: i32, log: PathBuf },
}

/// `testcluster/go`, the dev-only Go module.
pub fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("RETL_CONTROL_PLANE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("retl").join("control-plane")
}

fn go_version() -> Result<String, BuildError> {
    let out = Command::new("go").arg("version").output().map_err(|e| BuildError::NoGo(e.to_string()))?;
    if !out.status.success() {
        return Err(BuildError::NoGo(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Kubernetes version the module requires (`k8s.io/kubernetes vX.Y.Z`).
pub fn kubernetes_version() -> Result<String, BuildError> {
    let path = module_dir().join("go.mod");
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Module { path, source })?;
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("require k8s.io/kubernetes ").or_else(|| l.trim().strip_prefix("k8s.io/kubernetes ")))
        .map(|v| v.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| "unknown".into()))
}

/// `-ldflags`: stripped, and stamped with the version as Kubernetes' own
/// build stamps it (what `kubectl version` and `/version` report).
fn ldflags(version: &str) -> String {
    let minor = version.trim_start_matches('v').split('.').nth(1).unwrap_or_default();
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    for pkg in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        flags.push(format!("-X {pkg}.gitVersion={version}"));
        flags.push(format!("-X {pkg}.gitMajor=1"));
        flags.push(format!("-X {pkg}.gitMinor={minor}"));
        flags.push(format!("-X {pkg}.gitTreeState=clean"));
    }
    flags.join(" ")
}

/// The hash naming one build: the module's files, the flags and the Go toolchain.
fn key(go: &str) -> Result<String, BuildError> {
    let dir = module_dir();
    let mut files = vec![dir.join("go.mod"), dir.join("go.sum")];
    for program in PROGRAMS {
        files.push(dir.join("cmd").join(program).join("main.go"));
    }
    let mut hash = Sha256::new();
    hash.update(go.as_bytes());
    hash.update(ldflags(&kubernetes_version()?).as_bytes());
    for path in files {
        let bytes = std::fs::read(&path).map_err(|source| BuildError::Module { path: path.clone(), source })?;
        hash.update(path.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        hash.update(&bytes);
    }
    let digest = hash.finalize();
    let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{short}", kubernetes_version()?))
}

/// The directory holding every program of [`PROGRAMS`], building it first
/// when this version is not in the cache. Concurrent callers wait on a lock
/// file, so the build happens once. Progress goes to stderr.
pub fn ensure_built() -> Result<PathBuf, BuildError> {
    let go = go_version()?;
    let root = cache_root();
    let dir = root.join(key(&go)?);
    let cache_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Cache { path, source }
    };
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let _lock = crate::go_tool::lock_cache(&root).map_err(|(path, source)| BuildError::Cache { path, source })?;
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let partial = root.join(format!(".partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(cache_err(&partial))?;
    let log = root.join("build.log");
    let started = std::time::Instant::now();
    eprintln!("building the test control plane (Kubernetes {}) into {} ...", kubernetes_version()?, dir.display());
    let log_file = std::fs::File::create(&log).map_err(cache_err(&log))?;
    let log_err = log_file.try_clone().map_err(cache_err(&log))?;
    let status = Command::new("go")
        .current_dir(module_dir())
        .args(["build", "-trimpath", &format!("-ldflags={}", ldflags(&kubernetes_version()?)), "-o"])
        .arg(&partial)
        .arg("./cmd/...")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=readonly")
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(|e| BuildError::NoGo(e.to_string()))?;
    if !status.success() {
        return Err(BuildError::Build { code: status.code().unwrap_or(-1), log });
    }
    let mut marker = std::fs::File::create(partial.join(".complete")).map_err(cache_err(&partial))?;
    let _ = writeln!(marker, "{go}\nbuilt in {:.0} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir).map_err(cache_err(&dir))?;
    eprintln!("built the test control plane in {:.0} s", started.elapsed().as_secs_f64());
    Ok(dir)
}
