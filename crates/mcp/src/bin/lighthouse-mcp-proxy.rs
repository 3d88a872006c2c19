//! `lighthouse-mcp-proxy --credential FILE`: the Lighthouse tools over stdio,
//! forwarding every call to the bridge named in the credential file (signed
//! requests). The same as `lighthouse-bridge mcp --credential FILE`, as a
//! standalone binary for MCP clients configured with a single command. Logs go
//! to stderr (`RUST_LOG`); stdout carries the protocol.

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: lighthouse-mcp-proxy --credential FILE");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [flag, path] if flag == "--credential" => path.clone(),
        [one] if one.starts_with("--credential=") => one["--credential=".len()..].to_owned(),
        _ => return usage(),
    };
    let client = match lighthouse_client::Client::from_credential_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lighthouse-mcp-proxy: cannot use credential {path}: {e}");
            return ExitCode::from(2);
        }
    };
    match lighthouse_mcp::serve_stdio(client, lighthouse_mcp::McpConfig::default()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lighthouse-mcp-proxy: {e}");
            ExitCode::from(3)
        }
    }
}
