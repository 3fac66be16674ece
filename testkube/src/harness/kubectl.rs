//! Running the real `kubectl` against the test server.

use super::HarnessError;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where kubectl is looked for: `$KUBECTL`, else `/usr/bin/kubectl`, else `kubectl` on PATH.
pub fn find_kubectl() -> Result<PathBuf, HarnessError> {
    if let Some(p) = std::env::var_os("KUBECTL") {
        let p = PathBuf::from(p);
        return if p.exists() { Ok(p) } else { Err(HarnessError::KubectlMissing) };
    }
    let default = PathBuf::from("/usr/bin/kubectl");
    if default.exists() {
        return Ok(default);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("kubectl");
        if p.exists() {
            return Ok(p);
        }
    }
    Err(HarnessError::KubectlMissing)
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
    pub fn ok(self) -> Result<String, HarnessError> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(HarnessError::KubectlFailed { args: self.args.join(" "), code: self.code, stderr: self.stderr })
        }
    }

    /// stdout parsed as JSON (for `-o json`).
    pub fn json(&self) -> Result<Value, HarnessError> {
        serde_json::from_str(&self.stdout).map_err(|e| HarnessError::Json(format!("{e} in kubectl output: {}", self.stdout)))
    }

    /// The rows of a `kubectl get` table: header cells and one Vec per line, split on runs of 2+ spaces.
    pub fn table(&self) -> Vec<Vec<String>> {
        let re = regex::Regex::new(r"\s{2,}").expect("regex");
        self.stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| re.split(l.trim_end()).map(String::from).collect()).collect()
    }
}

pub fn run(kubectl: &Path, kubeconfig: &Path, cache_dir: &Path, args: &[&str], stdin: Option<&str>) -> Result<KubectlOutput, HarnessError> {
    let mut cmd = Command::new(kubectl);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", cache_dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = if let Some(input) = stdin {
        use std::io::Write;
        cmd.stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| HarnessError::Spawn(kubectl.display().to_string(), e))?;
        if let Some(mut s) = child.stdin.take() {
            s.write_all(input.as_bytes()).map_err(|e| HarnessError::Spawn(kubectl.display().to_string(), e))?;
        }
        child.wait_with_output().map_err(|e| HarnessError::Spawn(kubectl.display().to_string(), e))?
    } else {
        cmd.output().map_err(|e| HarnessError::Spawn(kubectl.display().to_string(), e))?
    };
    Ok(KubectlOutput {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
