//! Logging: human-readable by default, JSON with `RETL_LOG_FORMAT=json` (as
//! the operator's Deployment and the sync Jobs set it). `RUST_LOG` tunes the
//! level (default `warn` for commands, so their output stays clean, and
//! `info` for the operator and worker).

use tracing_subscriber::EnvFilter;

pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only on a terminal: piped logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if std::env::var("RETL_LOG_FORMAT").is_ok_and(|f| f == "json") { builder.json().try_init() } else { builder.try_init() };
}
