//! The same full sync by dlt 1.31 (benches/dlt/), with its default backend
//! (SQLAlchemy) and with connectorx, against the same PostgreSQL table and
//! sink, in batches of the same size.

use std::path::Path;
use std::process::Command;

use super::Error;

/// dlt's two backends, as named in the report.
pub const BACKENDS: [&str; 2] = ["sqlalchemy", "connectorx"];

/// One dlt run's result.
pub struct DltRun {
    pub rows: u64,
    pub secs: f64,
    pub rss_kb: u64,
    pub version: String,
}

/// Runs benches/dlt/run.sh (which installs dlt into a virtual environment
/// on first use), in its own process.
pub fn run(url: &str, table: &str, sink: &str, backend: &str, batch: u32) -> Result<DltRun, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dlt/run.sh");
    let out = Command::new("bash").arg(script).args([url, table, sink, backend, &batch.to_string()]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("DLT_RESULT "))
        .ok_or_else(|| format!("the dlt run ({backend}) failed ({}): {text}{}", out.status, String::from_utf8_lossy(&out.stderr)))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    Ok(DltRun {
        rows: v["rows"].as_u64().unwrap_or_default(),
        secs: v["secs"].as_f64().unwrap_or(f64::INFINITY),
        rss_kb: v["rss_kb"].as_u64().unwrap_or_default(),
        version: v["version"].as_str().unwrap_or_default().to_string(),
    })
}
