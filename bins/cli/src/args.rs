//! The command line, as clap derives it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The Lighthouse command line for agents and operators.
///
/// Every command acts as the agent of the credential file. Output is
/// human-readable; `--json` prints the JSON bodies (one per line for streams).
/// Exit codes: 0 success; 1 the bridge refused (its problem is printed to
/// stderr), or `ops verify` found the log broken; 2 bad usage or input; 3 the
/// bridge could not be reached or answered something unreadable, or a write
/// was answered with a 5xx: it may or may not have taken effect.
///
/// A leaked credential: `lighthouse agents revoke ID` (admin credential)
/// refuses every key and token of the agent at once, while the bridge runs.
#[derive(Debug, Parser)]
#[command(name = "lighthouse", version, about, long_about)]
pub struct Cli {
    /// Credential file of the agent to act as.
    #[arg(
        long,
        env = "LIGHTHOUSE_CREDENTIAL",
        global = true,
        value_name = "FILE"
    )]
    pub credential: Option<PathBuf>,
    /// The bridge's base URL, overriding the credential's `bridge`.
    #[arg(long, env = "LIGHTHOUSE_BRIDGE", global = true, value_name = "URL")]
    pub bridge: Option<String>,
    /// Print JSON bodies instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask another agent a question whose answer must match a schema.
    Elicit(ElicitArgs),
    /// List elicitations addressed to me.
    Inbox(ListArgs),
    /// List elicitations I created.
    Outbox(ListArgs),
    /// Show one elicitation, optionally waiting for it to be resolved.
    Get {
        /// Elicitation id.
        id: String,
        /// Wait up to this long (0 to 60000) for it to become terminal.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
    },
    /// Answer an elicitation addressed to me.
    Respond(RespondArgs),
    /// Cancel an elicitation I created.
    Cancel {
        /// Elicitation id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Follow my stream (elicitations and messages), resuming after disconnects.
    Watch {
        /// Start after this sequence (default: what is pending for me, then live).
        #[arg(long)]
        after: Option<u64>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send a message (the mailbox path).
    Send {
        /// Recipient agent.
        #[arg(long)]
        to: String,
        /// The body: JSON, or @FILE.
        #[arg(long)]
        body: String,
    },
    /// Read my messages, long-polling when there are none.
    Messages {
        /// Only messages after this sequence.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Wait up to this long (0 to 60000) when there are none.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// Most messages.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Query or follow the event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Read and change feature flags.
    #[command(subcommand)]
    Flags(FlagsCommand),
    /// Operations: stats, drain, verify.
    #[command(subcommand)]
    Ops(OpsCommand),
    /// Manage agents (admin): list, add, rotate, revoke (a leaked credential:
    /// `agents revoke ID`).
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Who the credential is.
    Me,
}

/// `elicit`.
#[derive(Debug, Args)]
pub struct ElicitArgs {
    /// Target agent.
    #[arg(long)]
    pub to: String,
    /// The question.
    #[arg(long)]
    pub message: String,
    /// The requested schema: JSON, or @FILE.
    #[arg(long)]
    pub schema: String,
    /// Time to answer in milliseconds (1000 to 3600000; bridge default 30000).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Metadata object: JSON, or @FILE.
    #[arg(long)]
    pub metadata: Option<String>,
    /// Validate the answer with full JSON Schema 2020-12 instead of the MCP form profile.
    #[arg(long)]
    pub json_schema: bool,
    /// Idempotency key, 1 to 128 of [A-Za-z0-9_.:-] (default: a fresh one, so
    /// retries cannot create twice; printed when the outcome is unknown).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait for the answer and print the final record (the id goes to stderr
    /// first).
    #[arg(long)]
    pub wait: bool,
}

/// `inbox` and `outbox`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status: pending, accepted, declined, cancelled, expired.
    #[arg(long)]
    pub status: Option<String>,
    /// Page size.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The cursor of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

/// `respond`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["accept", "decline"])))]
pub struct RespondArgs {
    /// Elicitation id.
    pub id: String,
    /// Accept with this content: JSON, or @FILE.
    #[arg(long, value_name = "JSON")]
    pub accept: Option<String>,
    /// Decline.
    #[arg(long)]
    pub decline: bool,
    /// Why (with --decline).
    #[arg(long, requires = "decline")]
    pub reason: Option<String>,
}

/// `events`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// One page of events matching the filters.
    Query(QueryArgs),
    /// Events as they are appended (catch-up from --after first), resuming after
    /// disconnects.
    Tail {
        /// Exactly this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Exactly this type.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Start after this sequence (default: from the beginning).
        #[arg(long)]
        after: Option<u64>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// `events query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only `seq > after`.
    #[arg(long)]
    pub after: Option<u64>,
    /// Only `seq < before`.
    #[arg(long)]
    pub before: Option<u64>,
    /// Exactly this stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Exactly this type.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Exactly this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Exactly this correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Newest first.
    #[arg(long)]
    pub desc: bool,
    /// Most events (1 to 1000).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// `flags`.
#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// Every flag.
    List,
    /// One flag.
    Get {
        /// Flag key.
        key: String,
    },
    /// Create a flag or change some of its fields (the others are kept).
    Set(FlagSetArgs),
    /// Turn a flag off for every agent.
    Kill {
        /// Flag key.
        key: String,
        /// Why (recorded in the history).
        #[arg(long)]
        reason: String,
        /// Only if the flag is at this version (`flags get` shows it); else
        /// refused with version_conflict (exit 1).
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Lift a kill.
    Unkill {
        /// Flag key.
        key: String,
        /// Why (recorded in the history).
        #[arg(long)]
        reason: String,
        /// Only if the flag is at this version, so that an unkill decided on
        /// what you read cannot lift a kill made since; else refused with
        /// version_conflict (exit 1).
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Every change of a flag.
    History {
        /// Flag key.
        key: String,
    },
    /// Evaluate a flag for an agent.
    Evaluate {
        /// Flag key.
        key: String,
        /// The agent.
        #[arg(long)]
        agent: String,
    },
}

/// `flags set`.
#[derive(Debug, Args)]
pub struct FlagSetArgs {
    /// Flag key.
    pub key: String,
    /// Why (recorded in the history).
    #[arg(long)]
    pub reason: String,
    /// Whether the percentage split applies.
    #[arg(long)]
    pub enabled: Option<bool>,
    /// Percentage of agents on (at most two decimals).
    #[arg(long, value_name = "PERCENT", value_parser = rollout_arg)]
    pub rollout: Option<f64>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Agents always on (comma-separated; an empty value clears).
    #[arg(long, value_delimiter = ',')]
    pub allow: Option<Vec<String>>,
    /// Agents always off (comma-separated; an empty value clears).
    #[arg(long, value_delimiter = ',')]
    pub deny: Option<Vec<String>>,
    /// Prerequisite flags (comma-separated; an empty value clears).
    #[arg(long, value_delimiter = ',')]
    pub requires: Option<Vec<String>>,
    /// Variants as NAME=WEIGHT, weights summing to 1000 (repeat; replaces all).
    #[arg(long = "variant", value_name = "NAME=WEIGHT")]
    pub variants: Vec<String>,
    /// Only if the flag is at this version (0: only if it does not exist).
    /// Default: the version just read, so a concurrent change is not overwritten.
    #[arg(long)]
    pub expected_version: Option<u64>,
}

/// `ops`.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Measured figures over the last window.
    Stats {
        /// Window in seconds (1 to 900).
        #[arg(long, default_value_t = 60)]
        window_s: u64,
    },
    /// Wait for pending elicitations to resolve, then optionally cancel the rest.
    Drain {
        /// How long to wait, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        /// Cancel what is still pending afterwards.
        #[arg(long)]
        cancel: bool,
        /// Recorded on every cancellation.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Walk the log's integrity chain.
    Verify,
}

/// `agents` (admin).
#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Every agent: id, role, current key id, whether revoked.
    List,
    /// Register an agent and write its credential file.
    Add {
        /// Agent id (`[a-z0-9][a-z0-9._-]{0,63}`).
        id: String,
        /// agent, observer, operator or admin.
        #[arg(long)]
        role: String,
        /// The credential file to create (default `./ID.json`); an existing
        /// file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Make a new key current and write its credential file (the previous key
    /// stays valid for the bridge's grace period, 24 h by default).
    Rotate {
        /// Agent id.
        id: String,
        /// The credential file to create (default `./ID.json`); an existing
        /// file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Refuse every key and token of an agent at once (a leaked credential).
    /// The id cannot be registered again.
    Revoke {
        /// Agent id.
        id: String,
    },
}

/// `--rollout`: refused when its text has more than two decimals, as the
/// bridge refuses it (PROTOCOL.md 8). Judged on the text, since the parsed
/// number cannot tell `25.0000000000000001` from `25` and would be sent as `25`.
fn rollout_arg(text: &str) -> Result<f64, String> {
    let text = text.trim();
    match lighthouse_core::api::RolloutPercent::decimal_places(text) {
        None => Err(format!("{text:?} is not a number")),
        Some(places) if places > 2 => Err(format!(
            "{text} has {places} decimals; a percentage has at most two"
        )),
        Some(_) => text
            .parse()
            .map_err(|_| format!("{text:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn rollout(text: &str) -> Result<Option<f64>, String> {
        let cli = Cli::try_parse_from([
            "lighthouse",
            "flags",
            "set",
            "f",
            "--reason",
            "r",
            "--rollout",
            text,
        ])
        .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Flags(FlagsCommand::Set(a)) => Ok(a.rollout),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn rollout_is_judged_on_its_decimal_text() {
        for (text, value) in [
            ("25", 25.0),
            ("33.33", 33.33),
            ("25.000", 25.0),
            ("2.5e1", 25.0),
        ] {
            assert_eq!(rollout(text), Ok(Some(value)), "{text}");
        }
        for text in ["25.0000000000000001", "25.001", "1e-3", "many", "25."] {
            let e = rollout(text).unwrap_err();
            assert!(e.contains("--rollout"), "{text}: {e}");
        }
    }
}
