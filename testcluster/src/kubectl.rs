//! The real `kubectl` against the control plane: the one built with it
//! (1.34) unless `$KUBECTL` names another.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum KubectlError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`kubectl {args}` exited with {code}: {stderr}")]
    Failed { args: String, code: i32, stderr: String },
    #[error("`kubectl {args}` printed no JSON ({error}): {stdout}")]
    Json { args: String, error: String, stdout: String },
}

/// What one kubectl run printed.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// stdout, or an error carrying stderr when kubectl failed.
    pub fn ok(self) -> Result<String, KubectlError> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(KubectlError::Failed { args: self.args.join(" "), code: self.code, stderr: self.stderr })
        }
    }

    /// stdout parsed as JSON (for `-o json`).
    pub fn json(&self) -> Result<Value, KubectlError> {
        serde_json::from_str(&self.stdout).map_err(|e| KubectlError::Json {
            args: self.args.join(" "),
            error: e.to_string(),
            stdout: self.stdout.clone(),
        })
    }

    /// The rows of a `kubectl get` table: header cells and one Vec per line, split on runs of 2+ spaces.
    pub fn table(&self) -> Vec<Vec<String>> {
        let re = regex::Regex::new(r"\s{2,}").expect("a valid regex");
        self.stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| re.split(l.trim_end()).map(String::from).collect()).collect()
    }
}

/// kubectl with one kubeconfig, a default namespace and its own cache dir.
#[derive(Clone, Debug)]
pub struct Kubectl {
    pub program: PathBuf,
    pub kubeconfig: PathBuf,
    pub cache_dir: PathBuf,
    /// `--namespace` for every call (unless the arguments name one).
    pub namespace: Option<String>,
}

impl Kubectl {
    /// Runs `kubectl ARGS` (any exit code is returned, not an error; see [`KubectlOutput::ok`]).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<KubectlOutput, KubectlError> {
        let mut cmd = Command::new(&self.program);
        if let Some(ns) = &self.namespace {
            let named = args.iter().any(|a| *a == "-n" || a.starts_with("--namespace") || *a == "-A" || *a == "--all-namespaces");
            if !named {
                cmd.args(["--namespace", ns]);
            }
        }
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", &self.cache_dir)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| KubectlError::Spawn { program: self.program.display().to_string(), source };
        let out = match stdin {
            Some(input) => {
                use std::io::Write;
                cmd.stdin(Stdio::piped());
                let mut child = cmd.spawn().map_err(spawn_err)?;
                if let Some(mut s) = child.stdin.take() {
                    s.write_all(input.as_bytes()).map_err(spawn_err)?;
                }
                child.wait_with_output().map_err(spawn_err)?
            }
            None => cmd.stdin(Stdio::null()).output().map_err(spawn_err)?,
        };
        Ok(KubectlOutput {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// The kubectl to use: `$KUBECTL`, else the one built beside the control plane.
pub fn program(bin_dir: &Path) -> PathBuf {
    std::env::var_os("KUBECTL").map(PathBuf::from).unwrap_or_else(|| bin_dir.join("kubectl"))
}
