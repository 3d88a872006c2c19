//! `lighthouse-bridge`: run the bridge and administer its data directory.
//!
//! Exit codes: 0 success; 1 the operation ran and was refused or found a
//! problem (for example `store verify` on a broken chain, `healthcheck` on an
//! unready bridge); 2 bad input or usage; 3 error.

mod admin;
mod config;
mod demo;
mod listener;
mod serve;
mod server;

use std::path::PathBuf;

/// mimalloc instead of the system allocator: the request path allocates a lot of
/// small, short-lived objects across threads, where glibc malloc showed up as
/// about a sixth of the CPU in profiles (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use lighthouse_security::Role;

/// A failure and its exit code.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Exit 1: refused or found a problem.
    pub fn refused(m: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: m.into(),
        }
    }
    /// Exit 2: bad input.
    pub fn input(m: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: m.into(),
        }
    }
    /// Exit 3: error.
    pub fn error(m: impl Into<String>) -> Self {
        Failure {
            code: 3,
            message: m.into(),
        }
    }
}

#[derive(Parser)]
#[command(
    name = "lighthouse-bridge",
    version,
    about = "The Lighthouse bridge: agents ask each other structured questions through it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct DataArg {
    /// Data directory.
    #[arg(
        long = "data",
        env = "LIGHTHOUSE_DATA_DIR",
        default_value = "./lighthouse-data"
    )]
    data: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory.
        #[arg(long = "data")]
        data: Option<PathBuf>,
        /// Listen address.
        #[arg(long)]
        listen: Option<String>,
        /// URL written into credential files.
        #[arg(long)]
        public_url: Option<String>,
        /// text or json.
        #[arg(long)]
        log_format: Option<String>,
        /// Create the data directory, master key and development credentials
        /// (admin, alice, bob, carol, ops) on first start.
        #[arg(long)]
        dev: bool,
    },
    /// Create a data directory: master key, admin credential, the
    /// elicitation_enabled flag.
    Init {
        #[command(flatten)]
        data: DataArg,
        /// URL written into credential files.
        #[arg(long, default_value = "http://127.0.0.1:8765")]
        public_url: String,
    },
    /// Manage agents (bridge stopped; while it runs use POST /v1/agents).
    Agents {
        #[command(flatten)]
        data: DataArg,
        #[command(subcommand)]
        action: AgentsCmd,
    },
    /// Inspect and copy the event store (bridge stopped).
    Store {
        #[command(flatten)]
        data: DataArg,
        #[command(subcommand)]
        action: StoreCmd,
    },
    /// Exit 0 when the bridge at URL is ready, 1 when not (container health checks).
    Healthcheck {
        /// Base URL.
        #[arg(long, default_value = "http://127.0.0.1:8765")]
        url: String,
    },
    /// Start a bridge on a free port and run two agents through an elicitation.
    Demo,
    /// Serve the Lighthouse MCP tools over stdio, forwarding to the bridge named
    /// in the credential file (for MCP clients that only launch stdio servers).
    Mcp {
        /// The agent's credential file.
        #[arg(long, env = "LIGHTHOUSE_CREDENTIAL")]
        credential: PathBuf,
    },
}

#[derive(Subcommand)]
enum AgentsCmd {
    /// Register an agent and write its credential file.
    Add {
        id: String,
        /// agent, observer, operator or admin.
        #[arg(long, default_value = "agent")]
        role: String,
        /// Where to write the credential (default <data>/credentials/<id>.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// URL written into the credential.
        #[arg(long, default_value = "http://127.0.0.1:8765")]
        public_url: String,
    },
    /// Make a new key current (the old one stays valid for the grace period).
    Rotate {
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Refuse every key and token of an agent.
    Revoke { id: String },
    /// List agents.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Walk the integrity chain (exit 1 when broken).
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Head, streams, size.
    Stats,
    /// Write a consistent backup file.
    Backup { file: PathBuf },
    /// Restore a backup into <data>/store (must not exist).
    Restore { file: PathBuf },
}

fn parse_role(s: &str) -> Result<Role, Failure> {
    match s {
        "agent" => Ok(Role::Agent),
        "observer" => Ok(Role::Observer),
        "operator" => Ok(Role::Operator),
        "admin" => Ok(Role::Admin),
        _ => Err(Failure::input(format!(
            "role must be agent, observer, operator or admin, not {s:?}"
        ))),
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve {
            config,
            data,
            listen,
            public_url,
            log_format,
            dev,
        } => {
            let o = config::Overrides {
                listen,
                data_dir: data,
                public_url,
                log_format,
            };
            let c = config::ServeConfig::resolve(config.as_deref(), |k| std::env::var(k).ok(), o)
                .map_err(Failure::input)?;
            init_logging(&c.log_format);
            serve::serve(c, dev).await
        }
        Command::Init { data, public_url } => serve::init(&data.data, public_url).await,
        Command::Agents { data, action } => match action {
            AgentsCmd::Add {
                id,
                role,
                out,
                public_url,
            } => {
                admin::add(
                    &data.data,
                    &id,
                    parse_role(&role)?,
                    out.as_deref(),
                    public_url,
                )
                .await
            }
            AgentsCmd::Rotate { id, out } => admin::rotate(&data.data, &id, out.as_deref()).await,
            AgentsCmd::Revoke { id } => admin::revoke(&data.data, &id).await,
            AgentsCmd::List { json } => admin::list(&data.data, json).await,
        },
        Command::Store { data, action } => match action {
            StoreCmd::Verify { json } => admin::verify(&data.data, json),
            StoreCmd::Stats => admin::stats(&data.data),
            StoreCmd::Backup { file } => admin::backup(&data.data, &file),
            StoreCmd::Restore { file } => admin::restore(&data.data, &file),
        },
        Command::Healthcheck { url } => {
            let url = format!("{}/health/ready", url.trim_end_matches('/'));
            let resp = reqwest::Client::new()
                .get(&url)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .map_err(|e| Failure::refused(format!("{url}: {e}")))?;
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            println!("{body}");
            if status.is_success() {
                Ok(())
            } else {
                Err(Failure::refused(format!("{url}: {status}")))
            }
        }
        Command::Demo => demo::demo().await,
        Command::Mcp { credential } => {
            // stdout carries the protocol: logs go to stderr only.
            init_logging("text");
            let client =
                lighthouse_client::Client::from_credential_file(&credential).map_err(|e| {
                    Failure::input(format!(
                        "cannot use credential {}: {e}",
                        credential.display()
                    ))
                })?;
            lighthouse_mcp::serve_stdio(client, lighthouse_mcp::McpConfig::default())
                .await
                .map_err(|e| Failure::error(e.to_string()))
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lighthouse-bridge: cannot start the runtime: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("lighthouse-bridge: {}", f.message);
            std::process::ExitCode::from(f.code)
        }
    }
}
