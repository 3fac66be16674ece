//! The real `helm`, v3.22.0, built from the Go module proxy
//! (`go install helm.sh/helm/v3/cmd/helm@v3.22.0`: helm's module has no
//! replace directives) once per machine into a cache outside the clone,
//! keyed by version: `$RETL_HELM_CACHE/v3.22.0/helm`, else
//! `$XDG_CACHE_HOME/retl/helm/...`, else `~/.cache/retl/helm/...`. Go's own
//! GOMODCACHE and GOCACHE are used as they are (as for the control plane),
//! so a rebuild after a cache wipe mostly links.
//!
//! `$RETL_HELM` names a helm to use instead (scripts/test sets it after
//! building up front, so that a failing build is one clear message).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The helm version the chart is tested with.
pub const HELM_VERSION: &str = "v3.22.0";

#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    #[error(
        "Go is required to build helm and `go` failed ({0}); install Go 1.24 or newer, or set RETL_HELM to a helm {HELM_VERSION} binary"
    )]
    NoGo(String),
    #[error("cannot use the helm cache directory {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
    #[error("`go install helm.sh/helm/v3/cmd/helm@{HELM_VERSION}` failed (exit {code}); its output is in {log}")]
    Build { code: i32, log: PathBuf },
    #[error("RETL_HELM={0} does not exist")]
    Missing(PathBuf),
}

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("RETL_HELM_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("retl").join("helm")
}

/// The helm binary: `$RETL_HELM` when set, else the cached build, building
/// it first when missing. Blocking; progress goes to stderr.
pub fn helm() -> Result<PathBuf, HelmError> {
    if let Some(path) = std::env::var_os("RETL_HELM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.exists() { Ok(path) } else { Err(HelmError::Missing(path)) };
    }
    ensure_built()
}

/// The cached helm, built when this version is not there yet. Concurrent
/// callers (test binaries run in parallel) wait on a lock file, so it is
/// built once; the `.complete` marker is written last and the directory
/// renamed into place, so a killed build never looks finished.
pub fn ensure_built() -> Result<PathBuf, HelmError> {
    let root = cache_root();
    let dir = root.join(HELM_VERSION);
    let cache_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HelmError::Cache { path, source }
    };
    if dir.join(".complete").exists() {
        return Ok(dir.join("helm"));
    }
    std::fs::create_dir_all(&root).map_err(cache_err(&root))?;
    let lock_path = root.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(cache_err(&lock_path))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    if dir.join(".complete").exists() {
        return Ok(dir.join("helm"));
    }
    let go = Command::new("go").arg("version").output().map_err(|e| HelmError::NoGo(e.to_string()))?;
    let go = String::from_utf8_lossy(&go.stdout).trim().to_string();
    let partial = root.join(format!(".partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(cache_err(&partial))?;
    let log = root.join("build.log");
    let log_file = std::fs::File::create(&log).map_err(cache_err(&log))?;
    let log_err = log_file.try_clone().map_err(cache_err(&log))?;
    let started = std::time::Instant::now();
    eprintln!("building helm {HELM_VERSION} from the Go module proxy into {} ...", dir.display());
    // `version.version` is what `helm version` prints; helm's own Makefile
    // stamps it the same way.
    let ldflags = format!("-ldflags=-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}");
    let status = Command::new("go")
        .current_dir(&partial)
        .args(["install", "-trimpath", &ldflags, &format!("helm.sh/helm/v3/cmd/helm@{HELM_VERSION}")])
        .env("GOBIN", &partial)
        .env("CGO_ENABLED", "0")
        // A GOFLAGS of the caller (say -mod=vendor) means nothing outside a module.
        .env_remove("GOFLAGS")
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(|e| HelmError::NoGo(e.to_string()))?;
    if !status.success() {
        return Err(HelmError::Build { code: status.code().unwrap_or(-1), log });
    }
    let mut marker = std::fs::File::create(partial.join(".complete")).map_err(cache_err(&partial))?;
    let _ = writeln!(marker, "{go}\nbuilt in {:.0} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir).map_err(cache_err(&dir))?;
    eprintln!("built helm {HELM_VERSION} in {:.0} s", started.elapsed().as_secs_f64());
    Ok(dir.join("helm"))
}
