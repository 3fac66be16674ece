//! `retl`: the command line. Everything it does lives in the library; this
//! file only parses arguments and turns errors into exit codes.

mod cli;
mod plugin_cli;
mod test_cli;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    retl::tune_memory();
    let cli = cli::Cli::parse();
    let long_running = matches!(cli.command, cli::Command::Operator { .. } | cli::Command::Worker { .. });
    retl::telemetry::init(if long_running { "info" } else { "warn" }, cli.log_format);
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            cli::say(&format!("error: {e:#}\n"));
            ExitCode::from(2)
        }
    }
}
