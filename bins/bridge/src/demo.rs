//! `demo`: a bridge on a free loopback port with a temporary data directory, and
//! two agents completing an elicitation over real, signed HTTP: bob listens on
//! his SSE stream, alice asks, bob is pushed the request and answers, alice's
//! long-poll returns the answer. Prints the timeline as it was measured.

use std::time::Instant;

use lighthouse_core::setup::initialize;
use lighthouse_security::Credential;
use serde_json::{Value, json};

use crate::Failure;
use crate::serve::{credentials_dir, load_master_key, open};

struct Agent {
    cred: Credential,
    http: reqwest::Client,
    base: String,
}

impl Agent {
    fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let h = self
            .cred
            .signer()
            .sign(method.as_str(), path, query, body, now);
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let mut rb = self.http.request(method, url);
        for (n, v) in h.pairs() {
            rb = rb.header(n, v);
        }
        if !body.is_empty() {
            rb = rb
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        rb
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        let resp = self
            .signed(method, path, query, &bytes)
            .send()
            .await
            .map_err(|e| Failure::error(e.to_string()))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .map_err(|e| Failure::error(e.to_string()))?;
        if !status.is_success() {
            return Err(Failure::refused(format!("{path}: {status} {v}")));
        }
        Ok(v)
    }
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

    let load = |name: &str| -> Result<Agent, Failure> {
        let cred = Credential::read(credentials_dir(dir).join(format!("{name}.json")))
            .map_err(|e| Failure::error(e.to_string()))?;
        Ok(Agent {
            cred,
            http: reqwest::Client::new(),
            base: base.clone(),
        })
    };
    let (alice, bob) = (load("alice")?, load("bob")?);
    let t0 = Instant::now();

    // Bob opens his stream first.
    let mut stream = bob
        .signed(reqwest::Method::GET, "/v1/stream", "", b"")
        .send()
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    println!(
        "{:>8} ms  bob opened GET /v1/stream ({})",
        ms(t0),
        stream.status()
    );

    let schema = json!({"type": "object", "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}}, "required": ["port"]});
    let created = alice
        .json(
            reqwest::Method::POST,
            "/v1/elicitations",
            "",
            Some(json!({"to": "bob", "message": "Which port should the service use?", "requested_schema": schema, "timeout_ms": 30000})),
        )
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    println!(
        "{:>8} ms  alice created {id} (status {})",
        ms(t0),
        created["status"]
    );

    // Alice waits for the outcome with a long-poll while bob answers.
    let waiter = {
        let (alice, id) = (
            Agent {
                cred: alice.cred.clone(),
                http: alice.http.clone(),
                base: alice.base.clone(),
            },
            id.clone(),
        );
        tokio::spawn(async move {
            alice
                .json(
                    reqwest::Method::GET,
                    &format!("/v1/elicitations/{id}"),
                    "wait_ms=10000",
                    None,
                )
                .await
        })
    };

    let mut buf = String::new();
    while !buf.contains("event: elicitation.requested") {
        match stream
            .chunk()
            .await
            .map_err(|e| Failure::error(e.to_string()))?
        {
            Some(c) => buf.push_str(&String::from_utf8_lossy(&c)),
            None => {
                return Err(Failure::error(
                    "bob's stream ended before the request arrived",
                ));
            }
        }
    }
    println!(
        "{:>8} ms  bob was pushed elicitation.requested for {id}",
        ms(t0)
    );

    let bad = bob
        .signed(
            reqwest::Method::POST,
            &format!("/v1/elicitations/{id}/respond"),
            "",
            br#"{"action":"accept","content":{"port":70000}}"#,
        )
        .send()
        .await
        .map_err(|e| Failure::error(e.to_string()))?;
    let status = bad.status();
    let problem: Value = bad.json().await.unwrap_or_default();
    println!(
        "{:>8} ms  bob answered port 70000: {} {} ({})",
        ms(t0),
        status.as_u16(),
        problem["code"].as_str().unwrap_or(""),
        problem["errors"][0]["message"].as_str().unwrap_or("")
    );
    let done = bob
        .json(
            reqwest::Method::POST,
            &format!("/v1/elicitations/{id}/respond"),
            "",
            Some(json!({"action": "accept", "content": {"port": 8080}})),
        )
        .await?;
    println!(
        "{:>8} ms  bob answered port 8080: {}",
        ms(t0),
        done["status"]
    );
    let seen = waiter.await.map_err(|e| Failure::error(e.to_string()))??;
    println!(
        "{:>8} ms  alice's long-poll returned: status {}, content {}",
        ms(t0),
        seen["status"],
        seen["response"]["content"]
    );
    let verify = bridge
        .store()
        .verify()
        .map_err(|e| Failure::error(e.to_string()))?;
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
