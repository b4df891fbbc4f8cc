//! The `tusd-rs` server binary.
//!
//! # Layout
//! - `cli`: every flag, tusd's names, `TUSD_*` environment variables.
//! - `server`: assembling store, locker, handler, metrics, CORS; the
//!   shutdown sequence.
//! - `locker`: memory locker or etcd locker, by flags.
//! - `cors`: tusd-style CORS.
//! - `connections`: the accept loop: connection limit, header, idle and write timeouts, bounded read buffers, the connection metrics.

mod cli;
mod connections;
mod cors;
mod locker;
mod server;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = EnvFilter::try_from_env("TUSD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match cli.log_format {
        cli::LogFormat::Json => logs.json().flatten_event(true).init(),
        cli::LogFormat::Text => logs.init(),
    }
    match server::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tusd-rs: {e}");
            ExitCode::FAILURE
        }
    }
}
