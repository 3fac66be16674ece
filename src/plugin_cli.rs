//! The `kubectl retl` commands (the binary installed as `kubectl-retl`):
//! arguments and printing; the work is in `retl::plugin`.

use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;

use retl::plugin::{self, Request, overview::Filters};

/// Where: `-n NAMESPACE` (default: the kubeconfig's), or `-A` for all.
#[derive(Args, Debug)]
pub struct Scope {
    /// The namespace (default: the current context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace the kubeconfig may list.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
}

/// `kubectl retl overview`.
#[derive(Args, Debug)]
pub struct OverviewArgs {
    #[command(flatten)]
    scope: Scope,
    /// Latest sync status: InProgress, Successful, PartiallySuccessful, Failed, Canceled, Pending.
    #[arg(long)]
    status: Option<String>,
    /// Latest sync started at or after: RFC 3339, or an age like `24h`.
    #[arg(long)]
    since: Option<String>,
    /// Latest sync started at or before: RFC 3339, or an age like `1h`.
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    destination: Option<String>,
    /// Enabled or Disabled.
    #[arg(long)]
    mapping_status: Option<String>,
    /// table, wide, json or yaml.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

impl From<crate::cli::Output> for Format {
    fn from(o: crate::cli::Output) -> Format {
        match o {
            crate::cli::Output::Table => Format::Table,
            crate::cli::Output::Json => Format::Json,
            crate::cli::Output::Yaml => Format::Yaml,
        }
    }
}

/// `kubectl retl records SYNC` (and `retl records -f DIR SYNC`).
#[derive(Args, Debug)]
pub struct RecordsArgs {
    /// The Sync.
    sync: String,
    /// A local run's manifests: read that run's history instead of a cluster's.
    #[arg(short = 'f', long = "filename", conflicts_with = "namespace")]
    dir: Option<std::path::PathBuf>,
    /// The namespace (default: the current context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Skip this many failed records (the page before said where the next starts).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Records per page (at most 10000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,
    /// table (each record with its error, recommended action and payload),
    /// wide (one line per record), json or yaml.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// `kubectl retl sync-now|reset MAPPING`, `replay|cancel SYNC`.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The Mapping (sync-now, reset) or the Sync (replay, cancel).
    name: String,
    /// The namespace (default: the current context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Wait for the outcome, at most this long (e.g. `10m`); exits 1 if the sync failed.
    #[arg(long, num_args = 0..=1, default_missing_value = "10m")]
    wait: Option<String>,
}

pub async fn overview(a: OverviewArgs) -> anyhow::Result<ExitCode> {
    let (client, current) = plugin::client().await?;
    let ns = if a.scope.all_namespaces { None } else { Some(a.scope.namespace.unwrap_or(current)) };
    let f = Filters {
        status: a.status,
        since: a.since.as_deref().map(parse_time).transpose()?,
        until: a.until.as_deref().map(parse_time).transpose()?,
        model: a.model,
        destination: a.destination,
        mapping_status: a.mapping_status,
    };
    let rows = plugin::overview(&client, ns.as_deref(), &f).await?;
    let text = match a.output {
        Format::Table | Format::Wide if rows.is_empty() => {
            format!("No Mappings found{}.\n", ns.map(|n| format!(" in namespace {n}")).unwrap_or_default())
        }
        Format::Table => plugin::overview::table(&rows, ns.is_none(), Timestamp::now()),
        Format::Wide => plugin::overview::table(&rows, true, Timestamp::now()),
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({ "items": rows }))? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&serde_json::json!({ "items": rows }))?,
    };
    crate::cli::out(&text);
    Ok(ExitCode::SUCCESS)
}

pub async fn request(req: Request, a: RequestArgs) -> anyhow::Result<ExitCode> {
    let (client, current) = plugin::client().await?;
    let ns = a.namespace.unwrap_or(current);
    let wait = a
        .wait
        .as_deref()
        .map(|w| humantime::parse_duration(w).map_err(|_| anyhow::anyhow!("--wait {w:?}: a duration such as 30s or 10m")))
        .transpose()?;
    let answer = plugin::request(&client, &ns, req, &a.name, wait).await?;
    crate::cli::out(&format!("{}\n", answer.message));
    Ok(if answer.phase == Some(retl::api::SyncPhase::Failed) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `kubectl retl history MAPPING` (the cluster form of `retl history`).
pub async fn history(mapping: &str, namespace: Option<String>, format: Format) -> anyhow::Result<ExitCode> {
    let (client, current) = plugin::client().await?;
    let ns = namespace.unwrap_or(current);
    let syncs = plugin::history(&client, &ns, mapping).await?;
    let list = || serde_json::json!({"apiVersion": "v1", "kind": "List", "items": syncs});
    let text = match format {
        Format::Table | Format::Wide if syncs.is_empty() => format!("Mapping {ns}/{mapping} has no Syncs.\n"),
        Format::Table | Format::Wide => plugin::history_table(&syncs, Timestamp::now()),
        Format::Json => serde_json::to_string_pretty(&list())? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&list())?,
    };
    crate::cli::out(&text);
    Ok(ExitCode::SUCCESS)
}

pub async fn records(a: RecordsArgs) -> anyhow::Result<ExitCode> {
    let (page, again) = match &a.dir {
        Some(dir) => {
            let page = retl::local::records::records(dir, &a.sync, a.offset, a.limit).await?;
            (page, format!("retl records -f {} {}", dir.display(), a.sync))
        }
        None => {
            let (client, current) = plugin::client().await?;
            let ns = a.namespace.clone().unwrap_or(current);
            let page = plugin::records::page(&client, &ns, &a.sync, a.offset, a.limit).await?;
            (page, format!("kubectl retl records {} -n {ns}", a.sync))
        }
    };
    let limit = if a.limit != 50 { format!(" --limit {}", a.limit) } else { String::new() };
    let text = match a.output {
        Format::Table => retl::local::records::text(&page, &format!("{again}{limit}")),
        Format::Wide => retl::local::records::wide(&page),
        Format::Json => serde_json::to_string_pretty(&page)? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&page)?,
    };
    crate::cli::out(&text);
    Ok(ExitCode::SUCCESS)
}

/// RFC 3339, or an age (`24h`, `7d`) back from now.
pub(crate) fn parse_time(s: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d = humantime::parse_duration(s).map_err(|_| anyhow::anyhow!("{s:?} is neither an RFC 3339 time nor an age like 24h"))?;
    let span = jiff::SignedDuration::try_from(d)?;
    Ok(Timestamp::now().checked_sub(span)?)
}
