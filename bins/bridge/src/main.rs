//! `lighthouse-bridge`: run the bridge and administer its data directory.
//!
//! Exit codes: 0 success; 1 the operation ran and was refused or found a
//! problem (for example `store verify` on a broken chain, `healthcheck` on an
//! unready bridge); 2 bad input or usage; 3 error; 130 `demo` interrupted.
//! A closed standard output (`agents list | head -1`) ends a command quietly
//! with the code it would have had (0 when it succeeded).
//!
//! Every command logs to standard error (`RUST_LOG`, default `rmcp=warn,info`;
//! `LIGHTHOUSE_LOG_FORMAT` or `serve --log-format`: `text` or `json`).

mod admin;
mod config;
mod demo;
mod descriptors;
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
    /// Standard output was closed by its reader: stop, print nothing, exit 0.
    pub fn output_closed() -> Self {
        Failure {
            code: 0,
            message: String::new(),
        }
    }
    /// Exit 130: interrupted (Ctrl-C).
    pub fn interrupted() -> Self {
        Failure {
            code: 130,
            message: "interrupted".into(),
        }
    }
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
    /// Data directory (before or after the subcommand).
    #[arg(
        long = "data",
        env = "LIGHTHOUSE_DATA_DIR",
        default_value = "./lighthouse-data",
        global = true
    )]
    data: PathBuf,
}

/// The URL written into credential files.
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8765";

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    ///
    /// Configuration: a TOML file (--config), then LIGHTHOUSE_* environment
    /// variables, then these flags; later wins. File keys and their variables:
    /// listen (LIGHTHOUSE_LISTEN), data_dir (LIGHTHOUSE_DATA_DIR), public_url
    /// (LIGHTHOUSE_PUBLIC_URL), log_format (LIGHTHOUSE_LOG_FORMAT), durability
    /// (LIGHTHOUSE_DURABILITY: durable or buffered), window_s
    /// (LIGHTHOUSE_WINDOW_S), shutdown_grace_ms (LIGHTHOUSE_SHUTDOWN_GRACE_MS),
    /// mcp_allowed_origins (LIGHTHOUSE_MCP_ALLOWED_ORIGINS, comma-separated),
    /// max_connections (LIGHTHOUSE_MAX_CONNECTIONS), max_connections_per_peer
    /// (LIGHTHOUSE_MAX_CONNECTIONS_PER_PEER), listen_backlog
    /// (LIGHTHOUSE_LISTEN_BACKLOG), header_read_timeout_ms
    /// (LIGHTHOUSE_HEADER_READ_TIMEOUT_MS), body_read_timeout_ms
    /// (LIGHTHOUSE_BODY_READ_TIMEOUT_MS), write_stall_timeout_ms
    /// (LIGHTHOUSE_WRITE_STALL_TIMEOUT_MS), write_stall_min_bytes
    /// (LIGHTHOUSE_WRITE_STALL_MIN_BYTES), http1_max_head_bytes
    /// (LIGHTHOUSE_HTTP1_MAX_HEAD_BYTES), http1_max_headers
    /// (LIGHTHOUSE_HTTP1_MAX_HEADERS), http2_max_concurrent_streams
    /// (LIGHTHOUSE_HTTP2_MAX_CONCURRENT_STREAMS), http2_max_header_list_bytes
    /// (LIGHTHOUSE_HTTP2_MAX_HEADER_LIST_BYTES), http2_stream_window_bytes
    /// (LIGHTHOUSE_HTTP2_STREAM_WINDOW_BYTES), http2_connection_window_bytes
    /// (LIGHTHOUSE_HTTP2_CONNECTION_WINDOW_BYTES), http2_send_buffer_bytes
    /// (LIGHTHOUSE_HTTP2_SEND_BUFFER_BYTES), [rate_limits.<role>] tables
    /// (file only), and a [flags] table of flag limits, each key also
    /// LIGHTHOUSE_FLAGS_<KEY>: max_flags (1 to 100000, default 10000),
    /// max_targets (0 to 2000, 1000), max_variants (0 to 100, 32),
    /// max_requires (0 to 64, 16), max_prerequisites (0 to 256, 32),
    /// max_description_bytes (0 to 4096, 1024), max_reason_bytes (1 to 4096,
    /// 1024), max_history_page (1 to 1000, 1000), and in bytes from 65536 to
    /// 268435456: max_history_page_bytes (default 8 MiB), max_total_flag_bytes
    /// (16 MiB), max_replay_page_bytes (8 MiB). The master key is LIGHTHOUSE_MASTER_KEY (64 hex) or
    /// <data>/master.key; RUST_LOG sets the log filter. Without --dev the data
    /// directory must hold a store (`lighthouse-bridge init`).
    #[command(about = "Run the HTTP server", verbatim_doc_comment)]
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory [default: ./lighthouse-data].
        #[arg(long = "data")]
        data: Option<PathBuf>,
        /// Listen address [default: 127.0.0.1:8765].
        #[arg(long)]
        listen: Option<String>,
        /// URL written into credential files, an absolute http(s) URL
        /// [default: http:// and the listen address].
        #[arg(long)]
        public_url: Option<String>,
        /// text or json [default: text].
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
        /// URL written into credential files (absolute http or https),
        /// remembered in <data>/public-url for `agents add`/`rotate` and
        /// `serve` (default http://127.0.0.1:8765, not remembered).
        #[arg(long, env = "LIGHTHOUSE_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Manage agents (bridge stopped; while it runs use `lighthouse agents`
    /// with an admin credential, e.g. `lighthouse agents revoke ID`).
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
        /// The bridge's base URL (GET <url>/health/ready is asked).
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
        /// Agent id (`[a-z0-9][a-z0-9._-]{0,63}`).
        id: String,
        /// agent, observer, operator or admin.
        #[arg(long, default_value = "agent")]
        role: String,
        /// The credential file to write (default <data>/credentials/<id>.json);
        /// a file name, not a directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// URL written into the credential (absolute http or https); without
        /// it, the one `init` was given or `serve` was last configured with
        /// (<data>/public-url), else http://127.0.0.1:8765.
        #[arg(long, env = "LIGHTHOUSE_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Make a new key current (the old one stays valid for the grace period).
    Rotate {
        /// Agent id.
        id: String,
        /// The credential file to write (default <data>/credentials/<id>.json);
        /// a file name, not a directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// URL written into the credential (absolute http or https); without
        /// it, the `bridge` URL of the agent's existing credential file (--out,
        /// else the default one), else <data>/public-url, else
        /// http://127.0.0.1:8765.
        #[arg(long, env = "LIGHTHOUSE_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Refuse every key and token of an agent.
    Revoke {
        /// Agent id.
        id: String,
    },
    /// List agents.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Walk the integrity chain (exit 1 when broken).
    Verify {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Head, streams, size.
    Stats,
    /// Write a consistent backup file (mode 0600; replaces FILE atomically).
    Backup {
        /// The backup file to write.
        file: PathBuf,
        /// Write the backup even when the store holds no events (by default
        /// refused, so a wrong --data does not replace a good backup with an
        /// empty one).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Restore a backup into <data>/store (must not exist: stop the bridge and
    /// move it aside first), under the master key the backup was made with
    /// (copy the original master.key, or set LIGHTHOUSE_MASTER_KEY). Agents
    /// revoked after the backup was taken are active again: revoke them again.
    Restore {
        /// The backup file to restore from.
        file: PathBuf,
    },
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

/// Writes `text` and a newline to standard output. A reader that went away
/// (EPIPE: `agents list | head -1`) is [`Failure::output_closed`], which ends
/// the command quietly, instead of the panic `println!` would give.
pub fn say(text: impl std::fmt::Display) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::output_closed()),
        Err(e) => Err(Failure::error(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Logs to standard error: `RUST_LOG` (default `info`), as text or JSON.
fn init_logging(format: &str) {
    // rmcp logs every MCP notification at info (docs/MCP.md).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("rmcp=warn,info"));
    // Colours only for a person at a terminal: not into journald, docker logs
    // or a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The log format of the commands other than `serve` (which reads it from its
/// configuration): `LIGHTHOUSE_LOG_FORMAT`, else text.
fn log_format_from_env() -> Result<String, Failure> {
    match std::env::var("LIGHTHOUSE_LOG_FORMAT") {
        Err(_) => Ok("text".into()),
        Ok(f) if f == "text" || f == "json" => Ok(f),
        Ok(f) => Err(Failure::input(format!(
            "LIGHTHOUSE_LOG_FORMAT must be text or json, not {f:?}"
        ))),
    }
}

/// `url` when it is a valid `public_url` (an absolute http or https URL).
fn checked_url(url: String) -> Result<String, Failure> {
    config::check_public_url(&url).map_err(Failure::input)?;
    Ok(url)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // `serve` reads its log format from its configuration, below.
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging(&log_format_from_env()?);
    }
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
        Command::Init { data, public_url } => {
            serve::init(&data.data, public_url.map(checked_url).transpose()?).await
        }
        Command::Agents { data, action } => match action {
            AgentsCmd::Add {
                id,
                role,
                out,
                public_url,
            } => {
                let public_url = public_url.map(checked_url).transpose()?;
                admin::add(
                    &data.data,
                    &id,
                    parse_role(&role)?,
                    out.as_deref(),
                    public_url,
                )
                .await
            }
            AgentsCmd::Rotate {
                id,
                out,
                public_url,
            } => {
                let public_url = public_url.map(checked_url).transpose()?;
                admin::rotate(&data.data, &id, out.as_deref(), public_url).await
            }
            AgentsCmd::Revoke { id } => admin::revoke(&data.data, &id).await,
            AgentsCmd::List { json } => admin::list(&data.data, json).await,
        },
        Command::Store { data, action } => match action {
            StoreCmd::Verify { json } => admin::verify(&data.data, json),
            StoreCmd::Stats => admin::stats(&data.data),
            StoreCmd::Backup { file, allow_empty } => admin::backup(&data.data, &file, allow_empty),
            StoreCmd::Restore { file } => admin::restore(&data.data, &file),
        },
        Command::Healthcheck { url } => {
            // A base URL; one that already names the probe is taken as is.
            let base = url.trim_end_matches('/');
            let base = base
                .strip_suffix("/health/ready")
                .or_else(|| base.strip_suffix("/health/live"))
                .unwrap_or(base);
            config::check_public_url(base).map_err(|why| {
                Failure::input(format!(
                    "--url must be the bridge's base URL, like http://127.0.0.1:8765: {why}"
                ))
            })?;
            let url = format!("{base}/health/ready");
            let resp = reqwest::Client::new()
                .get(&url)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .map_err(|e| Failure::refused(format!("{url}: {e}")))?;
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            // The status decides the exit code even when nobody reads the body.
            let printed = say(body);
            if status.is_success() {
                printed
            } else {
                Err(Failure::refused(format!("{url}: {status}")))
            }
        }
        Command::Demo => demo::demo().await,
        Command::Mcp { credential } => {
            // stdout carries the protocol: logs go to stderr only.
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
            if !f.message.is_empty() {
                eprintln!("lighthouse-bridge: {}", f.message);
            }
            std::process::ExitCode::from(f.code)
        }
    }
}
