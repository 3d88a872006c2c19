//! `lighthouse-mcp-proxy --credential FILE`: the Lighthouse tools over stdio,
//! forwarding every call to the bridge named in the credential file (signed
//! requests). The same as `lighthouse-bridge mcp --credential FILE`, as a
//! standalone binary for MCP clients configured with a single command. Logs go
//! to stderr (`RUST_LOG`, default `rmcp=warn,info`); stdout carries the
//! protocol.
//!
//! `lighthouse-mcp-proxy token --credential FILE [--ttl-s N]` prints a bearer
//! token for the credential's agent (`POST /v1/sessions`), for MCP clients
//! that connect to `/mcp` over Streamable HTTP.
//!
//! Exit codes: 0 done (the client closed stdin; the token printed); 1 the
//! bridge refused the token; 2 bad usage or an unusable credential; 3 the MCP
//! session failed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser, Subcommand};

/// The Lighthouse tools over MCP stdio, forwarding to a remote bridge.
///
/// Without a command, serves the tools on stdin/stdout as the credential's
/// agent. Logs go to stderr (RUST_LOG, default rmcp=warn,info).
#[derive(Debug, Parser)]
#[command(name = "lighthouse-mcp-proxy", version, about, long_about)]
struct Cli {
    /// Credential file of the agent to act as (it names the bridge).
    #[arg(long, global = true, value_name = "FILE")]
    credential: Option<PathBuf>,
    /// Tool calls run at once, 1 to 4096 (default 32); more wait for a turn.
    /// Serving stdio only.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=4096).map(|n| n as usize)
    )]
    max_concurrent_calls: Option<usize>,
    /// What to do instead of serving stdio.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a bearer token for the credential's agent (POST /v1/sessions),
    /// for MCP clients that connect to /mcp over Streamable HTTP.
    Token {
        /// Lifetime in seconds (bridge default 3600, at most 86400).
        #[arg(long, value_name = "SECONDS")]
        ttl_s: Option<u64>,
    },
}

/// Logs to stderr: `RUST_LOG`, else `rmcp=warn,info` (rmcp logs every
/// notification at `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("rmcp=warn,info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with success; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let usage = |kind, message: &str| {
        let _ = Cli::command().error(kind, message).print();
        ExitCode::from(2)
    };
    if cli.command.is_some() && cli.max_concurrent_calls.is_some() {
        return usage(
            clap::error::ErrorKind::ArgumentConflict,
            "--max-concurrent-calls applies to serving stdio, not to `token`",
        );
    }
    let Some(path) = cli.credential else {
        return usage(
            clap::error::ErrorKind::MissingRequiredArgument,
            "--credential FILE is required",
        );
    };
    let client = match lighthouse_client::Client::from_credential_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "lighthouse-mcp-proxy: cannot use credential {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Token { ttl_s }) => match client.create_session(ttl_s).await {
            Ok(s) => {
                println!("{}", s.token);
                eprintln!("expires at {}", s.expires_at);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lighthouse-mcp-proxy: {}", e.problem());
                ExitCode::from(1)
            }
        },
        None => {
            init_logging();
            let config = lighthouse_mcp::McpConfig::default().with_max_concurrent_calls(
                cli.max_concurrent_calls
                    .unwrap_or(lighthouse_mcp::DEFAULT_MAX_CONCURRENT_CALLS),
            );
            match lighthouse_mcp::serve_stdio(client, config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "the MCP session ended");
                    eprintln!("lighthouse-mcp-proxy: {e}");
                    ExitCode::from(3)
                }
            }
        }
    }
}
