//! `lighthouse-bench mcp`: an elicitation round trip between two agents through
//! a bridge on loopback, once with two MCP clients (rmcp, Streamable HTTP on
//! `/mcp`) and once with two plain HTTP clients (`lighthouse-client` on the
//! REST API), both with bearer tokens, on the same bridge in the same run.
//!
//! The bridge runs in this process on a durable store in a temporary
//! directory, REST and `/mcp` merged on one listener, as `lighthouse-bridge
//! serve` mounts them. Closed loop, one round trip at a time (latency, not
//! throughput), alternating MCP and HTTP so that both see the same machine.
//!
//! - `sequential` (default): the requester creates (`lighthouse_elicit` with
//!   `wait: false` / `POST /v1/elicitations`), the target answers it by id
//!   (`lighthouse_respond_to_elicitation` / `POST .../respond`), the requester
//!   reads the outcome (`lighthouse_get_elicitation` / `GET .../{id}`): three
//!   calls, timed from the first call's start to the third's end.
//! - `blocking`: the requester makes one blocking call (`lighthouse_elicit`
//!   with `wait: true` / `POST` then `GET ?wait_ms=60000`) while the target
//!   polls its pending inbox (`lighthouse_check_elicitations` /
//!   `GET /v1/elicitations?status=pending`) back to back and answers what it
//!   finds; timed from the requester's first call to its answer.

use crate::sys::runtime;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lighthouse_client::{Client, ListElicitations, Mailbox};
use lighthouse_core::api::{CreateRequest, RespondRequest, Status};
use lighthouse_core::{Bridge, BridgeConfig};
use lighthouse_security::MasterKey;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value, json};

use crate::report::{emit, latency_histogram, percentiles};

/// Options of the mcp family.
#[derive(clap::Args)]
pub struct Args {
    /// sequential or blocking.
    #[arg(long, default_value = "sequential")]
    scenario: String,
    /// Measured round trips per transport.
    #[arg(long, default_value_t = 2_000)]
    round_trips: u64,
    /// Round trips per transport run before measuring.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
}

type Mcp = RunningService<RoleClient, ()>;

/// Runs the chosen scenario.
pub fn run(a: Args) -> Result<(), String> {
    if !["sequential", "blocking"].contains(&a.scenario.as_str()) {
        return Err(format!("unknown scenario {}", a.scenario));
    }
    runtime()?.block_on(measure(a))
}

struct Setup {
    _dir: tempfile::TempDir,
    base: String,
    tokens: [String; 2],
}

async fn start() -> Result<Setup, String> {
    let dir = tempfile::Builder::new()
        .prefix("lighthouse-bench-mcp")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let mut config = BridgeConfig::new(
        dir.path().join("data"),
        MasterKey::generate().map_err(|e| e.to_string())?,
    );
    config.public_url = base.clone();
    // The bench makes far more calls per minute than the default agent quotas.
    for role in [lighthouse_security::Role::Agent] {
        for class in lighthouse_security::ActionClass::ALL {
            config.security.rate.limits.set(
                role,
                class,
                Some(lighthouse_security::Quota::new(10_000_000, 1_000_000)),
            );
        }
    }
    let bridge = Bridge::open(config).await.map_err(|e| e.to_string())?;
    lighthouse_core::setup::initialize(&bridge, &dir.path().join("creds"), true)
        .await
        .map_err(|e| e.to_string())?;
    let token = |agent: &str| -> Result<String, String> {
        let caller = bridge.caller_for(agent).ok_or("dev agent missing")?;
        Ok(bridge
            .create_session(&caller, Some(86_400))
            .map_err(|e| e.to_string())?
            .token)
    };
    let tokens = [token("alice")?, token("bob")?];
    // As `lighthouse-bridge serve` mounts it: /mcp inside the REST router's
    // request ids, logs and metrics.
    let mcp = lighthouse_mcp::router(bridge.clone(), lighthouse_mcp::McpConfig::default());
    let (app, _shutdown) =
        lighthouse_http::router_with(bridge, lighthouse_http::HttpConfig::default(), mcp);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("lighthouse-bench mcp: server: {e}");
        }
    });
    Ok(Setup {
        _dir: dir,
        base,
        tokens,
    })
}

async fn mcp_client(base: &str, token: &str) -> Result<Mcp, String> {
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")).auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .map_err(|e| format!("mcp client: {e}"))
}

async fn tool(c: &Mcp, name: &str, args: Value) -> Result<Value, String> {
    let Value::Object(map) = args else {
        return Err("arguments must be an object".into());
    };
    let r: CallToolResult = c
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(map))
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let v = r.structured_content.unwrap_or(Value::Null);
    if r.is_error == Some(true) {
        return Err(format!("{name}: {v}"));
    }
    Ok(v)
}

fn schema() -> Value {
    json!({"type": "object",
           "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
           "required": ["port"]})
}

fn id_of(v: &Value) -> Result<String, String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no id in {v}"))
}

async fn mcp_sequential(alice: &Mcp, bob: &Mcp) -> Result<(), String> {
    let created = tool(
        alice,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": schema(), "wait": false}),
    )
    .await?;
    let id = id_of(&created)?;
    tool(
        bob,
        "lighthouse_respond_to_elicitation",
        json!({"elicitation_id": id, "action": "accept", "content": {"port": 8080}}),
    )
    .await?;
    let done = tool(
        alice,
        "lighthouse_get_elicitation",
        json!({"elicitation_id": id}),
    )
    .await?;
    check_accepted(done["status"].as_str())
}

async fn http_sequential(alice: &Client, bob: &Client) -> Result<(), String> {
    let created = alice
        .elicit(&CreateRequest::new("bob", "Which port?", schema()))
        .await
        .map_err(|e| e.to_string())?;
    bob.accept(&created.id, json!({"port": 8080}))
        .await
        .map_err(|e| e.to_string())?;
    let done = alice
        .get_elicitation(&created.id, Duration::ZERO)
        .await
        .map_err(|e| e.to_string())?;
    check_accepted(Some(done.status.as_str()))
}

fn check_accepted(status: Option<&str>) -> Result<(), String> {
    match status {
        Some("accepted") => Ok(()),
        other => Err(format!("round trip ended {other:?}")),
    }
}

async fn mcp_blocking(alice: &Mcp, bob: &Mcp) -> Result<(), String> {
    let ask = tool(
        alice,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": schema(), "timeout_seconds": 60}),
    );
    let answer = async {
        loop {
            let inbox = tool(bob, "lighthouse_check_elicitations", json!({})).await?;
            if let Some(first) = inbox["items"].as_array().and_then(|a| a.first()) {
                let id = id_of(first)?;
                tool(
                    bob,
                    "lighthouse_respond_to_elicitation",
                    json!({"elicitation_id": id, "action": "accept", "content": {"port": 8080}}),
                )
                .await?;
                return Ok::<(), String>(());
            }
        }
    };
    let (done, answered) = tokio::join!(ask, answer);
    answered?;
    check_accepted(done?["status"].as_str())
}

async fn http_blocking(alice: &Client, bob: &Client) -> Result<(), String> {
    let ask = async {
        let created = alice
            .elicit(&CreateRequest::new("bob", "Which port?", schema()).timeout_ms(60_000))
            .await
            .map_err(|e| e.to_string())?;
        alice
            .wait_terminal(&created.id, Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())
    };
    let answer = async {
        let pending = ListElicitations {
            mailbox: Mailbox::Inbox,
            status: Some(Status::Pending),
            limit: Some(1000),
            cursor: None,
        };
        loop {
            let inbox = bob
                .list_elicitations(&pending)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(first) = inbox.items.first() {
                bob.respond(&first.id, &RespondRequest::accept(json!({"port": 8080})))
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok::<(), String>(());
            }
        }
    };
    let (done, answered) = tokio::join!(ask, answer);
    answered?;
    check_accepted(Some(done?.status.as_str()))
}

async fn measure(a: Args) -> Result<(), String> {
    let s = start().await?;
    let (alice_mcp, bob_mcp) = (
        mcp_client(&s.base, &s.tokens[0]).await?,
        mcp_client(&s.base, &s.tokens[1]).await?,
    );
    let client = |t: &str| Client::with_token(&s.base, t.to_owned()).map_err(|e| e.to_string());
    let (alice_http, bob_http) = (client(&s.tokens[0])?, client(&s.tokens[1])?);
    let blocking = a.scenario == "blocking";
    let mut hist = [latency_histogram(), latency_histogram()];
    let started = Instant::now();
    for i in 0..(a.warmup + a.round_trips) {
        for (k, h) in hist.iter_mut().enumerate() {
            let t = Instant::now();
            match (k, blocking) {
                (0, false) => mcp_sequential(&alice_mcp, &bob_mcp).await?,
                (0, true) => mcp_blocking(&alice_mcp, &bob_mcp).await?,
                (_, false) => http_sequential(&alice_http, &bob_http).await?,
                (_, true) => http_blocking(&alice_http, &bob_http).await?,
            }
            if i >= a.warmup {
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                h.record(us.max(1)).map_err(|e| e.to_string())?;
            }
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    for (name, h) in [("mcp", &hist[0]), ("http", &hist[1])] {
        emit(line(&a, name, h, wall_s));
    }
    Ok(())
}

fn line(a: &Args, transport: &str, h: &Histogram<u64>, wall_s: f64) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("family".into(), "mcp".into());
    out.insert("scenario".into(), a.scenario.clone().into());
    out.insert("transport".into(), transport.into());
    out.insert("round_trips".into(), h.len().into());
    out.insert("warmup".into(), a.warmup.into());
    out.insert("wall_s_both_transports".into(), wall_s.into());
    percentiles(&mut out, h);
    out.insert("mean_us".into(), h.mean().round().into());
    out
}
