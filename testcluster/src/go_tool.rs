//! Go command-line tools the tests run as users do (helm; gopher-lua's
//! `glua`, Argo CD's Lua runtime), built from the Go module proxy with
//! `go install MODULE/cmd/TOOL@VERSION` once per machine into a cache
//! outside the clone, keyed by version: `$XDG_CACHE_HOME/retl/TOOL/VERSION/`,
//! else `~/.cache/retl/TOOL/VERSION/` (or the tool's own cache variable).
//! Go's GOMODCACHE and GOCACHE are used as they are (as for the control
//! plane), so a rebuild after a cache wipe mostly links. A tool's own
//! variable (`RETL_HELM`, `RETL_GLUA`) names a binary to use instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One tool: where it comes from and how it is stamped.
pub struct GoTool {
    /// The binary's name, and the cache folder's.
    pub name: &'static str,
    /// `go install`'s package path, without the version.
    pub package: &'static str,
    pub version: &'static str,
    /// `-X` flags for `-ldflags` (what `TOOL version` prints), if any.
    pub stamp: Option<&'static str>,
    /// The variable naming a binary to use instead.
    pub use_env: &'static str,
    /// The variable naming the cache folder.
    pub cache_env: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum GoToolError {
    #[error(
        "Go is required to build {tool} and `go` failed ({detail}); install Go 1.24 or newer, or set {env} to a {tool} {version} binary"
    )]
    NoGo { tool: &'static str, version: &'static str, env: &'static str, detail: String },
    #[error("cannot use the cache directory {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
    #[error("`go install {package}@{version}` failed (exit {code}); its output is in {log}")]
    Build { package: &'static str, version: &'static str, code: i32, log: PathBuf },
    #[error("`go mod download {module}@{version}` failed: {detail}; it needs Go and the Go module proxy")]
    Download { module: &'static str, version: &'static str, detail: String },
    #[error("{env}={path} does not exist")]
    Missing { env: &'static str, path: PathBuf },
}

impl GoTool {
    fn cache_root(&self) -> PathBuf {
        if let Some(dir) = std::env::var_os(self.cache_env) {
            return PathBuf::from(dir);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        base.join("retl").join(self.name)
    }

    /// The binary: the one `use_env` names, else the cached build, built
    /// first when missing. Blocking; progress goes to stderr.
    pub fn path(&self) -> Result<PathBuf, GoToolError> {
        if let Some(path) = std::env::var_os(self.use_env).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return if path.exists() { Ok(path) } else { Err(GoToolError::Missing { env: self.use_env, path }) };
        }
        self.ensure_built()
    }

    /// The cached build, made when this version is not there yet.
    /// Concurrent callers (test binaries run in parallel) wait on a lock
    /// file, so it is built once; the `.complete` marker is written last and
    /// the directory renamed into place, so a killed build never looks
    /// finished.
    pub fn ensure_built(&self) -> Result<PathBuf, GoToolError> {
        let root = self.cache_root();
        let dir = root.join(self.version);
        let cache_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GoToolError::Cache { path, source }
        };
        if dir.join(".complete").exists() {
            return Ok(dir.join(self.name));
        }
        let _lock = lock_cache(&root).map_err(|(path, source)| GoToolError::Cache { path, source })?;
        if dir.join(".complete").exists() {
            return Ok(dir.join(self.name));
        }
        let no_go = |detail: String| GoToolError::NoGo { tool: self.name, version: self.version, env: self.use_env, detail };
        let go = Command::new("go").arg("version").output().map_err(|e| no_go(e.to_string()))?;
        let go = String::from_utf8_lossy(&go.stdout).trim().to_string();
        let partial = root.join(format!(".partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(cache_err(&partial))?;
        let log = root.join("build.log");
        let log_file = std::fs::File::create(&log).map_err(cache_err(&log))?;
        let log_err = log_file.try_clone().map_err(cache_err(&log))?;
        let started = std::time::Instant::now();
        eprintln!("building {} {} from the Go module proxy into {} ...", self.name, self.version, dir.display());
        let ldflags = format!("-ldflags=-s -w{}", self.stamp.map(|x| format!(" {x}")).unwrap_or_default());
        let status = Command::new("go")
            .current_dir(&partial)
            .args(["install", "-trimpath", &ldflags, &format!("{}@{}", self.package, self.version)])
            .env("GOBIN", &partial)
            .env("CGO_ENABLED", "0")
            // A GOFLAGS of the caller (say -mod=vendor) means nothing outside a module.
            .env_remove("GOFLAGS")
            .stdout(log_file)
            .stderr(log_err)
            .status()
            .map_err(|e| no_go(e.to_string()))?;
        if !status.success() {
            return Err(GoToolError::Build { package: self.package, version: self.version, code: status.code().unwrap_or(-1), log });
        }
        let mut marker = std::fs::File::create(partial.join(".complete")).map_err(cache_err(&partial))?;
        let _ = writeln!(marker, "{go}\nbuilt in {:.0} s", started.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&partial, &dir).map_err(cache_err(&dir))?;
        eprintln!("built {} {} in {:.0} s", self.name, self.version, started.elapsed().as_secs_f64());
        Ok(dir.join(self.name))
    }
}

/// Creates the cache folder `root` and takes its build lock, held until the
/// returned file is dropped, so that test binaries started together build
/// once. The error names the path that failed.
pub(crate) fn lock_cache(root: &Path) -> Result<std::fs::File, (PathBuf, std::io::Error)> {
    std::fs::create_dir_all(root).map_err(|e| (root.to_path_buf(), e))?;
    let lock_path = root.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| (lock_path, e))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    Ok(lock)
}

/// The real helm the chart is tested with (its module has no replace
/// directives; helm's Makefile stamps the version the same way).
pub const HELM: GoTool = GoTool {
    name: "helm",
    package: "helm.sh/helm/v3/cmd/helm",
    version: "v3.22.0",
    stamp: Some("-X helm.sh/helm/v3/internal/version.version=v3.22.0"),
    use_env: "RETL_HELM",
    cache_env: "RETL_HELM_CACHE",
};

/// gopher-lua's interpreter: the Lua 5.1 that Argo CD runs health checks in.
pub const GLUA: GoTool = GoTool {
    name: "glua",
    package: "github.com/yuin/gopher-lua/cmd/glua",
    version: "v1.1.2",
    stamp: None,
    use_env: "RETL_GLUA",
    cache_env: "RETL_GLUA_CACHE",
};

/// Files a Go module ships (CRDs, say), from the Go module proxy: `go mod
/// download` puts the module's source, read-only, into Go's module cache
/// (kept between runs) and says where.
pub struct GoModule {
    pub path: &'static str,
    pub version: &'static str,
}

impl GoModule {
    /// The module's directory in Go's module cache, downloaded first when missing.
    pub fn dir(&self) -> Result<PathBuf, GoToolError> {
        let no_go = |detail: String| GoToolError::Download { module: self.path, version: self.version, detail };
        let out = Command::new("go")
            .args(["mod", "download", "-json", &format!("{}@{}", self.path, self.version)])
            .env_remove("GOFLAGS")
            .current_dir(std::env::temp_dir())
            .output()
            .map_err(|e| no_go(e.to_string()))?;
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| no_go(format!("unreadable answer: {e}")))?;
        match (info["Dir"].as_str(), info["Error"].as_str()) {
            (Some(dir), None) if out.status.success() => Ok(PathBuf::from(dir)),
            (_, error) => Err(no_go(error.unwrap_or("no directory in its answer").to_string())),
        }
    }
}

/// The Prometheus Operator, whose module ships the CRDs of ServiceMonitor
/// and PrometheusRule (`example/prometheus-operator-crd/`).
pub const PROMETHEUS_OPERATOR: GoModule = GoModule { path: "github.com/prometheus-operator/prometheus-operator", version: "v0.94.1" };
