//! `lighthouse-mcp-proxy --credential FILE`: the Lighthouse tools over stdio,
//! forwarding every call to the bridge named in the credential file (signed
//! requests). The same as `lighthouse-bridge mcp --credential FILE`, as a
//! standalone binary for MCP clients configured with a single command. Logs go
//! to stderr; stdout carries the protocol.
//!
//! `lighthouse-mcp-proxy token --credential FILE [--ttl-s N]` prints a bearer
//! token for the credential's agent (`POST /v1/sessions`), for MCP clients
//! that connect to `/mcp` over Streamable HTTP.

use std::process::ExitCode;

const USAGE: &str = "usage: lighthouse-mcp-proxy --credential FILE\n       lighthouse-mcp-proxy token --credential FILE [--ttl-s SECONDS]";

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

/// The value of `--name VALUE` or `--name=VALUE`.
fn flag(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let eq = format!("--{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if *a == long {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&eq).map(str::to_owned)
        }
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let token_mode = args.first().is_some_and(|a| a == "token");
    let Some(path) = flag(&args, "credential") else {
        return usage();
    };
    let client = match lighthouse_client::Client::from_credential_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lighthouse-mcp-proxy: cannot use credential {path}: {e}");
            return ExitCode::from(2);
        }
    };
    if token_mode {
        let ttl = match flag(&args, "ttl-s").map(|s| s.parse::<u64>()) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => return usage(),
        };
        return match client.create_session(ttl).await {
            Ok(s) => {
                println!("{}", s.token);
                eprintln!("expires at {}", s.expires_at);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lighthouse-mcp-proxy: {}", e.problem());
                ExitCode::from(1)
            }
        };
    }
    match lighthouse_mcp::serve_stdio(client, lighthouse_mcp::McpConfig::default()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lighthouse-mcp-proxy: {e}");
            ExitCode::from(3)
        }
    }
}
