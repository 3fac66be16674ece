//! Logging: human-readable by default, JSON with `--log-format json` or
//! `RETL_LOG_FORMAT=json` (as the operator's Deployment and the sync Jobs
//! set it). `RUST_LOG` tunes the
//! level (default `warn` for commands, so their output stays clean, and
//! `info` for the operator and worker).

use tracing_subscriber::EnvFilter;

/// sqlx logs PostgreSQL's NOTICEs at INFO under this target; every worker
/// gets a few at its start ("relation ... already exists, skipping", from
/// the state tables' `CREATE ... IF NOT EXISTS`), which is noise in the
/// operator's and workers' logs. The default filter shows only warnings
/// from it. The server still sends them, so `RUST_LOG` (for example
/// `RUST_LOG=info` or `RUST_LOG=info,sqlx::postgres::notice=info`) shows
/// them again when someone asks.
const POSTGRES_NOTICES: &str = "sqlx::postgres::notice";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: one line per event, fields as `key=value`.
    #[default]
    Text,
    /// For log collectors: one JSON object per line.
    Json,
}

pub fn init(default_level: &str, format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), default_level);
    // Colours only on a terminal: piped logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `RUST_LOG`'s directives when it is set and valid, else `default_level`
/// with PostgreSQL's NOTICEs kept out.
fn filter(rust_log: Option<&str>, default_level: &str) -> EnvFilter {
    rust_log
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("{default_level},{POSTGRES_NOTICES}=warn")))
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    /// What `f` answers with the filter that `RUST_LOG=rust_log` gives the worker.
    fn with_filter(rust_log: Option<&str>, f: fn() -> bool) -> bool {
        let subscriber = tracing_subscriber::registry().with(super::filter(rust_log, "info"));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn notice() -> bool {
        tracing::enabled!(target: "sqlx::postgres::notice", Level::INFO)
    }

    fn postgres_warning() -> bool {
        tracing::enabled!(target: "sqlx::postgres::notice", Level::WARN)
    }

    fn own_info() -> bool {
        tracing::enabled!(target: "retl::worker", Level::INFO)
    }

    #[test]
    fn notices_are_left_out_by_default_and_rust_log_shows_them() {
        assert!(!with_filter(None, notice), "a NOTICE at the default level");
        assert!(with_filter(None, postgres_warning), "a PostgreSQL WARNING still shows");
        assert!(with_filter(None, own_info), "retl's own INFO lines show");
        assert!(with_filter(Some("info"), notice), "RUST_LOG=info shows NOTICEs");
        assert!(with_filter(Some("warn,sqlx::postgres::notice=info"), notice));
        assert!(!with_filter(Some("warn"), own_info));
        assert!(!with_filter(Some("not a [valid filter"), notice), "an invalid RUST_LOG falls back to the default");
    }
}
