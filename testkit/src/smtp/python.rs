//! The Python that runs the test SMTP server: aiosmtpd at the versions that
//! testkit/smtp-requirements.txt pins, installed from PyPI once per machine
//! into a venv cached outside the clone by testkit/smtp_venv.py (which says
//! where, and how concurrent installs wait for each other). scripts/test
//! runs that script first; the tests run it again, which costs a moment
//! once it is installed. The interpreter it builds on is
//! `$RETL_TEST_PYTHON`, else `python3`.

use std::path::PathBuf;
use std::process::Command;

use super::SmtpError;

/// The aiosmtpd version that testkit/smtp-requirements.txt pins (a unit
/// test keeps the two in step).
pub const AIOSMTPD_VERSION: &str = "1.4.6";
const INSTALLER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp_venv.py");

/// How to run a script with aiosmtpd importable.
#[derive(Clone, Debug)]
pub struct Python {
    pub exe: PathBuf,
    /// Set when the packages were installed with `pip install --target`.
    pub pythonpath: Option<PathBuf>,
}

/// The installed Python, installing it first when needed. Blocking.
pub fn ensure_installed() -> Result<Python, SmtpError> {
    let base = std::env::var("RETL_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let failed = |message: String| SmtpError::Install { message };
    let out = Command::new(&base)
        .arg(INSTALLER)
        .output()
        .map_err(|e| failed(format!("cannot run {base} (install Python 3, or set RETL_TEST_PYTHON): {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(failed(format!("{base} {INSTALLER} failed ({}):\n{}", out.status, tail.join("\n"))));
    }
    // Say so when it installed: the first test then takes a while.
    if !stderr.trim().is_empty() {
        eprintln!("{}", stderr.trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).map_err(|e| failed(format!("{INSTALLER} printed {stdout:?}, not JSON: {e}")))?;
    let exe = v["python"].as_str().map(PathBuf::from).ok_or_else(|| failed(format!("{INSTALLER} printed no python: {stdout}")))?;
    Ok(Python { exe, pythonpath: v["pythonpath"].as_str().map(PathBuf::from) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pinned_version_is_the_one_in_the_requirements() {
        let requirements = include_str!("../../smtp-requirements.txt");
        assert!(requirements.lines().any(|l| l == format!("aiosmtpd=={}", super::AIOSMTPD_VERSION)), "{requirements}");
    }
}
