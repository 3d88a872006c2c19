//! `lighthouse-bench`: end-to-end benchmarks that print one JSON object per scenario.
//!
//! Each subcommand is a family of scenarios (`store`, ...). Every figure printed is
//! measured by the run that prints it; docs/PERFORMANCE.md records the commands and
//! results.

use clap::{Parser, Subcommand};

mod disk;
mod elicitation;
mod flags;
mod host;
mod mcp;
mod metrics;
mod report;
mod roundtrip;
mod security;
mod store;
mod sys;

#[derive(Parser)]
#[command(
    name = "lighthouse-bench",
    about = "Lighthouse benchmarks (JSON lines on stdout)"
)]
struct Cli {
    #[command(subcommand)]
    family: Family,
}

#[derive(Subcommand)]
enum Family {
    /// The event store: durable and buffered appends, reads, verify, reopen.
    Store(store::Args),
    /// Metrics: recording a sample, an HTTP request, a flag evaluation, the
    /// windowed tracker, rendering the catalogue, windowed stats.
    Metrics(metrics::Args),
    /// Flags: evaluation (split, variants, allow list, prerequisites, unknown,
    /// on a snapshot, concurrent), durable writes, rebuild on open.
    Flags(flags::Args),
    /// Security: admitting a signed request (signature, nonce, rate limit),
    /// verifying a token, signing, nonce memory.
    Security(security::Args),
    /// Elicitations in process on a durable store: open-loop round trips,
    /// saturation, rebuild from a large log, expiry lateness.
    Elicitation(elicitation::Args),
    /// The bridge over loopback HTTP (a spawned `lighthouse-bridge`): open-loop
    /// elicitation and message round trips, memory with many agent streams.
    Roundtrip(roundtrip::Args),
    /// MCP: an elicitation round trip between two MCP clients through the
    /// bridge (Streamable HTTP), next to the same round trip over the REST API.
    Mcp(mcp::Args),
    /// The machine itself: how late a sleeping thread wakes (the stalls that
    /// bound every latency percentile measured here).
    Host(host::Args),
    /// The disk: how long a small write plus `fdatasync` takes on its own (the
    /// floor under every durable append and its tail).
    Disk(disk::Args),
}

/// mimalloc instead of the system allocator: the request path allocates a lot of
/// small, short-lived objects across threads, where glibc malloc showed up as
/// about a sixth of the CPU in profiles (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let result = match cli.family {
        Family::Store(a) => store::run(a),
        Family::Metrics(a) => metrics::run(a),
        Family::Security(a) => security::run(a),
        Family::Flags(a) => flags::run(a),
        Family::Elicitation(a) => elicitation::run(a),
        Family::Roundtrip(a) => roundtrip::run(a),
        Family::Mcp(a) => mcp::run(a),
        Family::Host(a) => host::run(a),
        Family::Disk(a) => disk::run(a),
    };
    if let Err(e) = result {
        eprintln!("lighthouse-bench: {e}");
        std::process::exit(1);
    }
}
