//! Child processes: the sink, and each measured sync or floor client, so
//! that each one's peak RSS is its own and none shares a runtime with the
//! parent.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::Error;

/// Runs this binary with `args` and returns the JSON of its `RESULT` line.
pub fn run_child(args: &[&str]) -> Result<Value, Error> {
    let out = Command::new(std::env::current_exe()?).args(args).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).ok_or_else(|| {
        format!("the child `{}` failed ({}): {}{}", args.join(" "), out.status, text, String::from_utf8_lossy(&out.stderr))
    })?;
    Ok(serde_json::from_str(line)?)
}

/// Peak resident set size of this process (`VmHWM`), in KiB.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap_or(0)
}

/// KiB as whole MB, rounded.
pub fn mb(kb: u64) -> u64 {
    (kb + 512) / 1024
}

/// The sink, in its own process; killed on drop.
pub struct SinkProcess {
    child: Child,
    pub url: String,
    client: reqwest::Client,
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the sink took between two readings.
#[derive(Clone, Copy, Default)]
pub struct Taken {
    pub records: u64,
    pub bytes: u64,
}

impl Taken {
    pub fn since(self, before: Taken) -> Taken {
        Taken { records: self.records - before.records, bytes: self.bytes - before.bytes }
    }

    pub fn bytes_per_record(self) -> f64 {
        self.bytes as f64 / self.records.max(1) as f64
    }
}

impl SinkProcess {
    pub fn start() -> Result<SinkProcess, Error> {
        let client = reqwest::Client::builder().build()?;
        let mut child = Command::new(std::env::current_exe()?).arg("--child-sink").stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("the sink has no stdout")?).read_line(&mut line)?;
        Ok(SinkProcess { child, url: line.trim().to_string(), client })
    }

    fn base(&self) -> &str {
        self.url.trim_end_matches("/batch")
    }

    /// Records and request bytes taken so far.
    pub async fn taken(&self) -> Result<Taken, Error> {
        let v: Value = serde_json::from_slice(&self.client.get(format!("{}/count", self.base())).send().await?.bytes().await?)?;
        Ok(Taken { records: v["records"].as_u64().unwrap_or_default(), bytes: v["bytes"].as_u64().unwrap_or_default() })
    }

    /// The first record of the last batch the sink took.
    pub async fn sample(&self) -> Result<Value, Error> {
        let v: Value = serde_json::from_slice(&self.client.get(format!("{}/sample", self.base())).send().await?.bytes().await?)?;
        Ok(v["records"][0].clone())
    }
}

/// A record's shape: its fields with the JSON type of each value, the
/// payload's fields inside, e.g. `key:string operation:string
/// payload.userId:string … payload.attrs:object`.
pub fn shape(record: &Value) -> String {
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
    let mut parts = Vec::new();
    if let Value::Object(fields) = record {
        for (name, value) in fields {
            match value {
                Value::Object(inner) if name == "payload" => {
                    // A date-time must come as RFC 3339 text from both.
                    let rfc3339 = |v: &Value| v.as_str().is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok());
                    let mut names: Vec<_> =
                        inner.iter().map(|(k, v)| format!("payload.{k}:{}", if rfc3339(v) { "rfc3339" } else { kind(v) })).collect();
                    names.sort();
                    parts.extend(names);
                }
                _ => parts.push(format!("{name}:{}", kind(value))),
            }
        }
    }
    parts.sort();
    parts.join(" ")
}
