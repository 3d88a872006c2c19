//! `demo`: a bridge on a free loopback port with a temporary data directory, and
//! two agents completing an elicitation over real, signed HTTP: bob listens on
//! his SSE stream, alice asks, bob is pushed the request and answers, alice's
//! long-poll returns the answer. Prints the timeline as it was measured.
//!
//! The demo never touches a real bridge's secrets: it generates its own master
//! key (`LIGHTHOUSE_MASTER_KEY` is ignored) and keeps everything in a fresh
//! temporary directory, removed when it ends, also on Ctrl-C.

use std::path::Path;
use std::time::{Duration, Instant};

use lighthouse_client::{AgentPayload, Client};
use lighthouse_core::Bridge;
use lighthouse_core::api::{CreateRequest, RespondRequest};
use lighthouse_core::setup::initialize;
use lighthouse_security::MasterKey;
use serde_json::json;

use crate::serve::{credentials_dir, open};
use crate::{Failure, say};

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::error(e.to_string())
}

fn ms(t0: Instant) -> f64 {
    (t0.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

/// Runs the demo.
pub async fn demo() -> Result<(), Failure> {
    let dir = tempfile::Builder::new()
        .prefix("lighthouse-demo-")
        .tempdir()
        .map_err(|e| {
            Failure::error(format!(
                "cannot create a temporary directory in {}: {e}",
                std::env::temp_dir().display()
            ))
        })?;
    let result = run(dir.path()).await;
    // The bridge is shut down by now, its files closed.
    let path = dir.path().to_path_buf();
    let removed = dir.close().map_err(|e| {
        Failure::error(format!(
            "cannot remove the demo's directory {}: {e}",
            path.display()
        ))
    });
    result.and(removed)
}

/// Opens the bridge in `dir` with a fresh key, serves it, runs the
/// elicitation until it ends or Ctrl-C, then stops the server and shuts the
/// bridge down (either way, so the directory can be removed).
async fn run(dir: &Path) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::error(e.to_string()))?;
    let base = format!("http://{addr}");
    let key = MasterKey::generate().map_err(failed)?;
    let c = crate::config::ServeConfig {
        public_url: Some(base.clone()),
        ..Default::default()
    };
    let bridge = open(dir, key, Some(&c)).await?;
    let (router, _streams) =
        lighthouse_http::router(bridge.clone(), lighthouse_http::HttpConfig::default());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let result = tokio::select! {
        r = elicitation(&bridge, dir, &base) => r,
        _ = tokio::signal::ctrl_c() => Err(Failure::interrupted()),
    };
    server.abort();
    let _ = server.await;
    let closed = bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()));
    result.and(closed)
}

/// The demo itself: two agents, one elicitation, the timeline printed.
async fn elicitation(bridge: &Bridge, dir: &Path, base: &str) -> Result<(), Failure> {
    initialize(bridge, &credentials_dir(dir), true)
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    say(format!(
        "bridge on {base}, data in {} (removed afterwards)",
        dir.display()
    ))?;

    let load = |name: &str| -> Result<Client, Failure> {
        Client::from_credential_file(credentials_dir(dir).join(format!("{name}.json")))
            .map_err(failed)
    };
    let (alice, bob) = (load("alice")?, load("bob")?);
    let t0 = Instant::now();

    // Bob listens on his stream (it resumes by itself if the connection drops).
    let mut stream = bob.agent_stream(None);
    let schema = json!({"type": "object", "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}}, "required": ["port"]});
    let created = alice
        .elicit(
            &CreateRequest::new("bob", "Which port should the service use?", schema)
                .timeout_ms(30_000),
        )
        .await
        .map_err(failed)?;
    let id = created.id.clone();
    say(format!(
        "{:>8} ms  alice created {id} (status {})",
        ms(t0),
        created.status.as_str()
    ))?;

    // Alice waits for the outcome with a long-poll while bob answers.
    let waiter = {
        let (alice, id) = (alice.clone(), id.clone());
        tokio::spawn(async move { alice.get_elicitation(&id, Duration::from_secs(10)).await })
    };
    loop {
        match stream.next().await {
            Some(Ok(ev)) => {
                if let AgentPayload::Requested(e) = &ev.payload
                    && e.id == id
                {
                    say(format!(
                        "{:>8} ms  bob was pushed elicitation.requested for {id} (event {})",
                        ms(t0),
                        ev.seq
                    ))?;
                    break;
                }
            }
            Some(Err(e)) => return Err(failed(e)),
            None => {
                return Err(Failure::error(
                    "bob's stream ended before the request arrived",
                ));
            }
        }
    }
    match bob
        .respond(&id, &RespondRequest::accept(json!({"port": 70000})))
        .await
    {
        Err(lighthouse_client::Error::Refused(p)) => say(format!(
            "{:>8} ms  bob answered port 70000: {} {} ({})",
            ms(t0),
            p.status,
            p.code.as_str(),
            p.errors.first().map_or("", |e| e.message.as_str())
        ))?,
        other => {
            return Err(Failure::error(format!(
                "a port of 70000 was not refused: {other:?}"
            )));
        }
    }
    let done = bob
        .accept(&id, json!({"port": 8080}))
        .await
        .map_err(failed)?;
    say(format!(
        "{:>8} ms  bob answered port 8080: {}",
        ms(t0),
        done.status.as_str()
    ))?;
    let seen = waiter.await.map_err(failed)?.map_err(failed)?;
    say(format!(
        "{:>8} ms  alice's long-poll returned: status {}, content {}",
        ms(t0),
        seen.status.as_str(),
        seen.response
            .as_ref()
            .and_then(|r| r.content.clone())
            .unwrap_or_default()
    ))?;
    let verify = bridge.store().verify().map_err(failed)?;
    say(format!(
        "{:>8} ms  event log: {} events, integrity chain {}",
        ms(t0),
        verify.head_seq,
        if verify.ok() { "verified" } else { "BROKEN" }
    ))?;
    Ok(())
}
