//! The `retl` command line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use retl::api::SyncPhase;
use retl::local::{self, HistoryOptions, PlanOutcome, RunOptions, output, print};

/// retl: Reverse ETL, the Kubernetes way.
#[derive(Parser, Debug)]
#[command(name = "retl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as `text` (default) or `json`, one object per line with
    /// the namespace, kind and name of the object it is about (for log
    /// collectors; the operator's Deployment and the sync Jobs use json).
    #[arg(long, global = true, env = "RETL_LOG_FORMAT", value_enum, default_value_t = retl::telemetry::LogFormat::Text)]
    pub log_format: retl::telemetry::LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every enabled Mapping in the manifests under DIR once, in this
    /// process (no cluster needed), and print the Syncs like `kubectl get syncs`.
    Run {
        /// Directory of manifests (Source, Destination, Model, Mapping, Secret).
        #[arg(short = 'f', long = "filename")]
        dir: PathBuf,
        /// Run only this Mapping (repeatable).
        #[arg(long)]
        mapping: Vec<String>,
        /// Forget this Mapping's sync state first: its sync sends every record as new.
        #[arg(long, value_name = "MAPPING")]
        reset: Option<String>,
        /// Re-send every record that this past sync extracted, with current values.
        #[arg(long, value_name = "SYNC", conflicts_with_all = ["reset", "mapping"])]
        replay: Option<String>,
        /// Output format: a table, or the Syncs as JSON or YAML (as `kubectl get syncs -o json`).
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show what a sync of each Mapping would send, without sending anything
    /// or changing sync state.
    Plan {
        #[arg(short = 'f', long = "filename")]
        dir: PathBuf,
        /// Only this Mapping (repeatable).
        #[arg(long)]
        mapping: Vec<String>,
        /// Sample payloads to show per Mapping.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        /// Output format: text, or the plans as JSON or YAML.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List past syncs of the Mappings under DIR, newest first; or, with
    /// MAPPING and no -f, the Syncs of that Mapping in the cluster (as
    /// `kubectl retl history MAPPING`).
    History {
        #[arg(short = 'f', long = "filename", required_unless_present = "cluster_mapping")]
        dir: Option<PathBuf>,
        /// A Mapping in the cluster (instead of -f DIR).
        #[arg(value_name = "MAPPING", conflicts_with = "dir")]
        cluster_mapping: Option<String>,
        /// The cluster namespace (with MAPPING; default: the current context's).
        #[arg(short = 'n', long, requires = "cluster_mapping")]
        namespace: Option<String>,
        /// Only syncs in this status (Successful, PartiallySuccessful, Failed, Canceled, InProgress).
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        mapping: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        destination: Option<String>,
        /// Only syncs started at or after this time: RFC 3339, or an age like `24h`.
        #[arg(long)]
        since: Option<String>,
        /// Only syncs started at or before this time: RFC 3339, or an age like `1h`.
        #[arg(long)]
        until: Option<String>,
        /// Also print the errors and failed records of each listed sync.
        #[arg(long)]
        details: bool,
        /// Output format: a table, or the Syncs as JSON or YAML (as `kubectl get syncs -o json`).
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Run one SQL statement against a Source under DIR (to seed or edit demo data).
    Sql {
        #[arg(short = 'f', long = "filename")]
        dir: PathBuf,
        /// Name of the Source.
        #[arg(long)]
        source: String,
        /// The statement.
        statement: String,
    },
    /// Run the controllers (in a cluster, or against KUBECONFIG).
    Operator(OperatorArgs),
    /// Run one Sync (the entrypoint of a sync's Job).
    Worker {
        /// The Sync to run, as NAMESPACE/NAME.
        #[arg(long)]
        sync: String,
    },
    /// The sync overview of a cluster (as `kubectl retl overview`): per
    /// Mapping its destination, model and Source, action, mapping status,
    /// and latest sync; filtered as the reference filters.
    Overview(crate::plugin_cli::OverviewArgs),
    /// Start a sync of a Mapping in the cluster now (`retl.dev/sync-now`).
    SyncNow(crate::plugin_cli::RequestArgs),
    /// Forget a Mapping's sync state in the cluster (`retl.dev/reset`).
    Reset(crate::plugin_cli::RequestArgs),
    /// Re-send what a Sync in the cluster extracted (`retl.dev/replay`).
    Replay(crate::plugin_cli::RequestArgs),
    /// Stop a running Sync in the cluster (`retl.dev/cancel`).
    Cancel(crate::plugin_cli::RequestArgs),
    /// Every failed record of a Sync (in the cluster, or with -f DIR of a
    /// local run), from the record log in the warehouse, a page at a time.
    Records(crate::plugin_cli::RecordsArgs),
    Test(crate::test_cli::TestArgs),
    TestRecord(crate::test_cli::TestRecordArgs),
    /// Print the CustomResourceDefinitions, or write them to a directory.
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// Print the manifest reference (Markdown) instead.
        #[arg(long, conflicts_with = "output_dir")]
        reference: bool,
    },
}

/// `-o`: how `run`, `plan` and `history` print.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

impl From<Output> for output::Format {
    fn from(o: Output) -> output::Format {
        match o {
            Output::Table => output::Format::Table,
            Output::Json => output::Format::Json,
            Output::Yaml => output::Format::Yaml,
        }
    }
}

/// `retl operator`'s flags.
#[derive(clap::Args, Debug)]
pub struct OperatorArgs {
    /// Watch only this namespace (repeatable); all namespaces when not given.
    #[arg(long = "namespace", env = "RETL_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Image of the sync Jobs' workers; by default the operator's own
    /// (read from its Pod), so that an image override moves both.
    #[arg(long, env = "RETL_WORKER_IMAGE")]
    worker_image: Option<String>,
    /// Service account the workers run as, unless a Mapping names one.
    #[arg(long, env = "RETL_WORKER_SERVICE_ACCOUNT", default_value = "retl-worker")]
    worker_service_account: String,
    /// Seconds a finished sync Job is kept.
    #[arg(long, default_value_t = 3600)]
    job_ttl_seconds: i32,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "RETL_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// Lease for leader election: NAME (in the operator's own namespace,
    /// POD_NAMESPACE) or NAMESPACE/NAME; `none` to run without.
    #[arg(long, env = "RETL_LEADER_LEASE", default_value = "retl-operator")]
    leader_lease: String,
    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// The operator's own namespace (the downward API sets it in a Pod).
    #[arg(long, env = "POD_NAMESPACE")]
    pod_namespace: Option<String>,
}

impl OperatorArgs {
    fn settings(self) -> anyhow::Result<retl::controller::run::Settings> {
        let own_namespace = self.pod_namespace.clone();
        let leader_lease = match (self.leader_lease.as_str(), own_namespace.as_deref()) {
            ("none" | "", _) => None,
            (l, own) => Some(match (l.split_once('/'), own) {
                (Some((ns, n)), _) => (ns.to_string(), n.to_string()),
                (None, Some(ns)) => (ns.to_string(), l.to_string()),
                (None, None) => anyhow::bail!(
                    "--leader-lease {l:?} is a Lease in the operator's own namespace, which is not known outside a Pod: set POD_NAMESPACE, give --leader-lease NAMESPACE/NAME, or --leader-lease none"
                ),
            }),
        };
        // The Pod is known when the downward API gave both its name and namespace.
        let pod = match (own_namespace, std::env::var("POD_NAME")) {
            (Some(ns), Ok(name)) => Some((ns, name)),
            _ => None,
        };
        Ok(retl::controller::run::Settings {
            namespaces: self.namespaces,
            worker_image: self.worker_image,
            worker_service_account: self.worker_service_account,
            job_ttl_seconds: self.job_ttl_seconds,
            metrics_addr: self.metrics_addr,
            leader_lease,
            identity: self.identity.unwrap_or_else(|| format!("retl-{}", uuid::Uuid::new_v4().simple())),
            pod,
        })
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { dir, mapping, reset, replay, output } => {
            let cancel = CancellationToken::new();
            let on_signal = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    say("stopping at the next batch boundary (press Ctrl-C again to force)\n");
                    on_signal.cancel();
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            });
            // Progress of long syncs, every two seconds at most.
            let throttle = retl::engine::Throttle::after(std::time::Duration::from_secs(2));
            let progress = |sync: &str, p: &retl::engine::Progress| {
                if throttle.ready() {
                    say(&format!("{sync}: {} changes read, {} records loaded\n", p.read, p.answered()));
                }
            };
            let outcome = local::run(&RunOptions { dir, mappings: mapping, reset, replay }, &progress, &cancel).await?;
            for name in &outcome.disabled {
                say(&format!("Mapping {name} is disabled (spec.enabled: false); not synced\n"));
            }
            for line in &outcome.alerts {
                say(&format!("{line}\n"));
            }
            match output {
                Output::Table => print_syncs(&outcome.ran, true),
                other => out(&output::render(&output::syncs(&outcome.ran), other.into())),
            }
            Ok(exit_code(&outcome.ran))
        }
        Command::Plan { dir, mapping, samples, output } => {
            let planned = local::plan(&dir, &mapping, samples).await?;
            match output {
                Output::Table => {
                    for p in &planned {
                        match &p.outcome {
                            PlanOutcome::Plan(report) => out(&print::plan(&p.mapping, report)),
                            PlanOutcome::Disabled => {
                                out(&format!("Mapping {}: disabled (spec.enabled: false); run skips it, so nothing to plan\n", p.mapping))
                            }
                            PlanOutcome::CannotPlan(e) => out(&format!("Mapping {}: cannot plan: {e}\n", p.mapping)),
                        }
                    }
                }
                other => out(&output::render(&output::plans(&planned), other.into())),
            }
            // A plan that cannot be made is a sync that would fail: say so to CI.
            let failed = planned.iter().any(|p| matches!(p.outcome, PlanOutcome::CannotPlan(_)));
            Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::History { cluster_mapping: Some(m), namespace, output, .. } => {
            crate::plugin_cli::history(&m, namespace, output.into()).await
        }
        Command::History { dir: None, .. } => {
            Err(anyhow::anyhow!("history: pass -f DIR (a local run's manifests) or a MAPPING in the cluster"))
        }
        Command::History { dir: Some(dir), status, mapping, model, destination, since, until, details, output, .. } => {
            let phase = match status {
                Some(s) => Some(SyncPhase::parse(&s).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--status {s:?} is not a sync status; use Successful, PartiallySuccessful, Failed, Canceled or InProgress"
                    )
                })?),
                None => None,
            };
            let opts = HistoryOptions {
                phase,
                mapping,
                model,
                destination,
                since: since.as_deref().map(crate::plugin_cli::parse_time).transpose()?,
                until: until.as_deref().map(crate::plugin_cli::parse_time).transpose()?,
            };
            let ran = local::history(&dir, &opts).await?;
            match output {
                Output::Table if ran.is_empty() => out("No syncs found.\n"),
                Output::Table => print_syncs(&ran, details),
                other => out(&output::render(&output::syncs(&ran), other.into())),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql { dir, source, statement } => {
            let n = local::sql(&dir, &source, &statement).await?;
            out(&format!("{n} rows affected\n"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Operator(args) => {
            let settings = args.settings()?;
            retl::controller::run::run(settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Overview(a) => crate::plugin_cli::overview(a).await,
        Command::SyncNow(a) => crate::plugin_cli::request(retl::plugin::Request::SyncNow, a).await,
        Command::Reset(a) => crate::plugin_cli::request(retl::plugin::Request::Reset, a).await,
        Command::Replay(a) => crate::plugin_cli::request(retl::plugin::Request::Replay, a).await,
        Command::Cancel(a) => crate::plugin_cli::request(retl::plugin::Request::Cancel, a).await,
        Command::Records(a) => crate::plugin_cli::records(a).await,
        Command::Test(a) => crate::test_cli::local(a).await,
        Command::TestRecord(a) => crate::test_cli::cluster(a).await,
        Command::Worker { sync } => {
            let client = retl::controller::client("worker").await?;
            let phase = retl::worker::run(client, &sync).await?;
            out(&format!("Sync {sync}: {phase}\n"));
            // A Failed sync fails its Job, so that the Job reads Failed, not Complete.
            Ok(if phase == SyncPhase::Failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Crds { reference: true, .. } => {
            out(&retl::api::reference::markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds { output_dir, .. } => {
            let crds = retl::api::all_crds();
            match output_dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)?;
                    for crd in &crds {
                        std::fs::write(dir.join(retl::api::crd_file_name(crd)), retl::api::crd_yaml(crd)?)?;
                    }
                }
                None => {
                    for crd in &crds {
                        out(&format!("---\n{}", retl::api::crd_yaml(crd)?));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_syncs(ran: &[local::Ran], details: bool) {
    let lines: Vec<print::SyncLine<'_>> =
        ran.iter().map(|r| print::SyncLine { name: &r.name, mapping: &r.mapping, report: &r.report }).collect();
    out(&print::sync_table(&lines, Timestamp::now()));
    if details {
        for r in ran.iter().filter(|r| print::needs_details(&r.report)) {
            out(&format!("\n{}", print::details(&r.name, &r.report)));
        }
    }
}

/// Writes to stdout. A closed stdout (`retl run | head -1`) is not an
/// error: the reader has what it wanted, so the rest is dropped quietly
/// (Rust ignores SIGPIPE, and `print!` would panic on EPIPE).
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => say(&format!("error: cannot write the output: {e}\n")),
        _ => {}
    }
}

/// Writes to stderr; a closed stderr loses the message, nothing more.
pub fn say(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// 0 when no sync failed (a partially successful sync has done its job and
/// shows its rejects), 1 when one failed, 130 when canceled.
fn exit_code(ran: &[local::Ran]) -> ExitCode {
    if ran.iter().any(|r| r.report.phase == SyncPhase::Failed) {
        ExitCode::from(1)
    } else if ran.iter().any(|r| r.report.phase == SyncPhase::Canceled) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}
