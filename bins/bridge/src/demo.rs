//! `demo`: a bridge on a free loopback port with a temporary data directory, and
//! two agents completing an elicitation over real, signed HTTP: bob listens on
//! his SSE stream, alice asks, bob is pushed the request and answers, alice's
//! long-poll returns the answer. Prints the timeline as it was measured.

use std::time::{Duration, Instant};

use lighthouse_client::{AgentPayload, Client};
use lighthouse_core::api::{CreateRequest, RespondRequest};
use lighthouse_core::setup::initialize;
use serde_json::json;

use crate::Failure;
use crate::serve::{credentials_dir, load_master_key, open};

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::error(e.to_string())
}

fn ms(t0: Instant) -> f64 {
    (t0.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

/// Runs the demo.
pub async fn demo() -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!("lighthouse-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &std::path::Path) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::error(e.to_string()))?;
    let base = format!("http://{addr}");
    let (key, _) = load_master_key(dir, true)?;
    let c = crate::config::ServeConfig {
        public_url: Some(base.clone()),
        ..Default::default()
    };
    let bridge = open(dir, key, Some(&c)).await?;
    initialize(&bridge, &credentials_dir(dir), true)
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    let (router, _streams) =
        lighthouse_http::router(bridge.clone(), lighthouse_http::HttpConfig::default());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    println!(
        "bridge on {base}, data in {} (removed afterwards)",
        dir.display()
    );

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
    println!(
        "{:>8} ms  alice created {id} (status {})",
        ms(t0),
        created.status.as_str()
    );

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
                    println!(
                        "{:>8} ms  bob was pushed elicitation.requested for {id} (event {})",
                        ms(t0),
                        ev.seq
                    );
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
        Err(lighthouse_client::Error::Refused(p)) => println!(
            "{:>8} ms  bob answered port 70000: {} {} ({})",
            ms(t0),
            p.status,
            p.code.as_str(),
            p.errors.first().map_or("", |e| e.message.as_str())
        ),
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
    println!(
        "{:>8} ms  bob answered port 8080: {}",
        ms(t0),
        done.status.as_str()
    );
    let seen = waiter.await.map_err(failed)?.map_err(failed)?;
    println!(
        "{:>8} ms  alice's long-poll returned: status {}, content {}",
        ms(t0),
        seen.status.as_str(),
        seen.response
            .as_ref()
            .and_then(|r| r.content.clone())
            .unwrap_or_default()
    );
    let verify = bridge.store().verify().map_err(failed)?;
    println!(
        "{:>8} ms  event log: {} events, integrity chain {}",
        ms(t0),
        verify.head_seq,
        if verify.ok() { "verified" } else { "BROKEN" }
    );
    server.abort();
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    Ok(())
}
