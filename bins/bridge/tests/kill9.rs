//! The bridge process is killed with SIGKILL in the middle of traffic and started
//! again: every acknowledged elicitation, message and event is there with the
//! right state, and pending elicitations continue.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, spawn, wait_ready};

use lighthouse_security::Credential;
use reqwest::Method;
use serde_json::{Value, json};

struct Agent {
    cred: Credential,
    http: reqwest::Client,
    base: String,
}

impl Agent {
    async fn call(
        &self,
        method: Method,
        path_q: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let (path, query) = path_q.split_once('?').unwrap_or((path_q, ""));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let h = self
            .cred
            .signer()
            .sign(method.as_str(), path, query, &bytes, now);
        let mut rb = self.http.request(method, format!("{}{path_q}", self.base));
        for (n, v) in h.pairs() {
            rb = rb.header(n, v);
        }
        if !bytes.is_empty() {
            rb = rb.header("content-type", "application/json").body(bytes);
        }
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }
}

#[tokio::test]
async fn acknowledged_state_survives_sigkill_and_pending_work_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(&data, port);
    wait_ready(&base).await;
    let load = |n: &str| Agent {
        cred: Credential::read(data.join("credentials").join(format!("{n}.json"))).unwrap(),
        http: reqwest::Client::new(),
        base: base.clone(),
    };
    let (alice, bob) = (load("alice"), load("bob"));
    let schema =
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});

    // Traffic from three tasks; the bridge is killed while it runs.
    let mut acked_elicitations: Vec<(String, &'static str)> = Vec::new();
    let mut acked_messages: Vec<u64> = Vec::new();
    let mut acked_events: Vec<(u64, i64)> = Vec::new();
    // Killed once 700 ms have passed and some elicitations are acknowledged (a
    // debug build on a busy machine can take longer to get there), or at the
    // latest after 30 s, when the assertion below fails.
    let kill_at = Instant::now() + Duration::from_millis(700);
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut i = 0i64;
    loop {
        i += 1;
        let now = Instant::now();
        if (now >= kill_at && acked_elicitations.len() >= 5) || now >= give_up {
            child.0.kill().unwrap(); // SIGKILL
            child.0.wait().unwrap();
            break;
        }
        let el = alice
            .call(Method::POST, "/v1/elicitations", Some(json!({"to": "bob", "message": format!("q{i}"), "requested_schema": schema, "timeout_ms": 600000})))
            .await;
        if let Ok((201, v)) = el {
            let id = v["id"].as_str().unwrap().to_owned();
            // Every other one is answered, the rest stay pending.
            if i % 2 == 0 {
                if let Ok((200, _)) = bob
                    .call(
                        Method::POST,
                        &format!("/v1/elicitations/{id}/respond"),
                        Some(json!({"action": "accept", "content": {"ok": true}})),
                    )
                    .await
                {
                    acked_elicitations.push((id, "accepted"));
                } else {
                    acked_elicitations.push((id, "?"));
                }
            } else {
                acked_elicitations.push((id, "pending"));
            }
        }
        if let Ok((201, v)) = alice
            .call(
                Method::POST,
                "/v1/messages",
                Some(json!({"to": "bob", "body": {"i": i}})),
            )
            .await
        {
            acked_messages.push(v["seq"].as_u64().unwrap());
        }
        if let Ok((201, v)) = alice
            .call(
                Method::POST,
                "/v1/events",
                Some(json!({"stream": "notes-1", "type": "note.added", "data": {"i": i}})),
            )
            .await
        {
            acked_events.push((v["seq"].as_u64().unwrap(), i));
        }
    }
    assert!(acked_elicitations.len() >= 5, "traffic ran before the kill");

    let _child = spawn(&data, port);
    wait_ready(&base).await;
    for (id, state) in &acked_elicitations {
        let (status, v) = alice
            .call(Method::GET, &format!("/v1/elicitations/{id}"), None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{id} lost");
        if *state != "?" {
            assert_eq!(v["status"], *state, "{id}");
        }
    }
    let (_, msgs) = bob
        .call(Method::GET, "/v1/messages?after=0&limit=1000", None)
        .await
        .unwrap();
    let got: Vec<u64> = msgs["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    for s in &acked_messages {
        assert!(got.contains(s), "message {s} lost");
    }
    let (_, evs) = alice
        .call(Method::GET, "/v1/events?stream=notes-1&limit=1000", None)
        .await
        .unwrap();
    for (seq, i) in &acked_events {
        let e = evs["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["seq"] == *seq)
            .unwrap_or_else(|| panic!("event {seq} lost"));
        assert_eq!(e["data"], json!({"i": i}));
    }
    // Pending work continues: bob answers one that was pending before the kill.
    let (pending, _) = acked_elicitations
        .iter()
        .find(|(_, s)| *s == "pending")
        .unwrap();
    let (status, v) = bob
        .call(
            Method::POST,
            &format!("/v1/elicitations/{pending}/respond"),
            Some(json!({"action": "accept", "content": {"ok": false}})),
        )
        .await
        .unwrap();
    assert_eq!((status, v["status"].as_str()), (200, Some("accepted")));
    let ops = load("ops");
    let (_, verify) = ops
        .call(Method::POST, "/v1/ops/verify", Some(json!({})))
        .await
        .unwrap();
    assert_eq!(verify["ok"], true);
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(&data, port);
    wait_ready(&base).await;
    // SAFETY: sends SIGTERM to our own child process.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn serve_mounts_mcp_next_to_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _child = spawn(&data, port);
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    // No token: refused before any tool runs.
    let r = http
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // /mcp is inside the REST API's observability: a request id is echoed...
    assert!(
        r.headers().contains_key("x-request-id"),
        "{:?}",
        r.headers()
    );
    // ...and the request is counted under its route.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lighthouse_http_requests_total{")
                && l.contains("route=\"/mcp\"")),
        "no /mcp series in /metrics"
    );
    // A token from the REST API is accepted by /mcp.
    let alice = Agent {
        cred: Credential::read(data.join("credentials").join("alice.json")).unwrap(),
        http: http.clone(),
        base: base.clone(),
    };
    let (status, session) = alice
        .call(Method::POST, "/v1/sessions", Some(json!({})))
        .await
        .unwrap();
    assert_eq!(status, 201);
    let token = session["token"].as_str().unwrap();
    let r = http
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A browser origin that is not allowed is refused.
    let r = http
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("origin", "http://evil.example")
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// A second SIGTERM during the shutdown grace ends the wait for in-flight
/// requests at once (it used to be ignored until the grace ran out), and the
/// bridge's own shutdown, snapshot and flush, still runs.
#[tokio::test]
async fn a_second_signal_cuts_the_grace_short_but_not_the_final_flush() {
    use std::io::Read;
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = common::command(
        &["serve", "--dev", "--listen", &addr, "--data"],
        &[
            ("RUST_LOG", "info"),
            ("LIGHTHOUSE_SHUTDOWN_GRACE_MS", "120000"),
            ("LIGHTHOUSE_BODY_READ_TIMEOUT_MS", "120000"),
        ],
    )
    .arg(&data)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut child = common::Proc(child);
    let mut stderr = child.0.stderr.take().unwrap();
    wait_ready(&format!("http://{addr}")).await;
    // A request whose body stops half way: in flight until the body read
    // timeout, far beyond this test.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"stream\":",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.0.id() as i32;
    let term = || {
        // SAFETY: sends SIGTERM to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    };
    term();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the grace waits for the stalled request"
    );
    let started = Instant::now();
    term();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the second signal did not end the grace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(log.contains("second stop signal"), "{log}");
    // The bridge's own shutdown ran after it: its last line.
    assert!(
        log.lines().last().is_some_and(|l| l.contains("stopped")),
        "{log}"
    );
}
