//! `retl test -f DIR --mapping M` and `kubectl retl test-record MAPPING`:
//! arguments and printing; the work is in `retl::local::test_record` and
//! `retl::plugin::test_record`.

use std::process::ExitCode;

use clap::Args;

use crate::cli::Output;
use retl::local::test_record::{self, TestReport};

/// Map one row of a Mapping's model under DIR (the given key, or the first
/// row), send it to the Mapping's destination, and print the request and
/// the destination's reply. Changes no sync state. Exits 1 when the record
/// was rejected or could not be delivered.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Directory of manifests (Source, Destination, Model, Mapping, Secret).
    #[arg(short = 'f', long = "filename")]
    dir: std::path::PathBuf,
    /// The Mapping whose record to send.
    #[arg(long)]
    mapping: String,
    #[command(flatten)]
    record: Record,
}

/// Map one row of a Mapping's model in the cluster (the given key, or the
/// first row), send it to the Mapping's Destination, and print the request
/// and the destination's reply (as `kubectl retl test-record`). Runs on
/// this machine with your own RBAC: it reads the Mapping, Model, Source,
/// Destination and their Secrets, and reaches the warehouse and the
/// destination from here. Changes no sync state and creates no Sync.
#[derive(Args, Debug)]
pub struct TestRecordArgs {
    /// The Mapping.
    mapping: String,
    /// The namespace (default: the current context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[command(flatten)]
    record: Record,
}

/// What both forms share.
#[derive(Args, Debug)]
struct Record {
    /// The primary key of the row to send, as text (default: the model's first row).
    #[arg(long)]
    key: Option<String>,
    /// Output format: text, or the report as JSON or YAML.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    output: Output,
}

pub async fn local(a: TestArgs) -> anyhow::Result<ExitCode> {
    let report = test_record::test(&a.dir, &a.mapping, a.record.key.as_deref()).await?;
    print(&report, a.record.output)
}

pub async fn cluster(a: TestRecordArgs) -> anyhow::Result<ExitCode> {
    let (client, current) = retl::plugin::client().await?;
    let ns = a.namespace.unwrap_or(current);
    let report = retl::plugin::test_record::test(&client, &ns, &a.mapping, a.record.key.as_deref()).await?;
    print(&report, a.record.output)
}

/// Prints the report; exit 1 unless the destination accepted the record.
fn print(report: &TestReport, output: Output) -> anyhow::Result<ExitCode> {
    let text = match output {
        Output::Table => test_record::text(report),
        Output::Json => serde_json::to_string_pretty(report)? + "\n",
        Output::Yaml => serde_yaml_ng::to_string(report)?,
    };
    crate::cli::out(&text);
    Ok(if report.accepted() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
