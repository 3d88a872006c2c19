//! Every error code of PROTOCOL.md section 3, flags gating, events, ops, agents
//! and sessions, through a real socket.

mod common;

use common::{now_secs, port_schema, start};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn authentication_failures_have_their_codes() {
    let t = start().await;
    let alice = t.agent("alice");
    // No credentials at all.
    let r = common::reply(
        reqwest::get(format!("{}/v1/agents/me", t.base))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // Stale timestamp.
    let r = common::reply(
        alice
            .request_at(Method::GET, "/v1/agents/me", b"", now_secs() - 301)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "stale_request"));
    // Body changed after signing.
    let signed = alice.request(Method::POST, "/v1/messages", br#"{"to":"bob","body":1}"#);
    let mut req = signed.build().unwrap();
    *req.body_mut() = Some(br#"{"to":"bob","body":2}"#.to_vec().into());
    let r = common::reply(alice.http.execute(req).await.unwrap()).await;
    assert_eq!((r.status, r.code()), (401, "bad_signature"));
    // Replay.
    let req = alice
        .request(Method::GET, "/v1/agents/me", b"")
        .build()
        .unwrap();
    let again = req.try_clone().unwrap();
    assert_eq!(alice.http.execute(req).await.unwrap().status(), 200);
    let r = common::reply(alice.http.execute(again).await.unwrap()).await;
    assert_eq!((r.status, r.code()), (401, "replayed_request"));
    // Role: an agent may not read ops stats.
    let r = alice.get("/v1/ops/stats").await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    // Unknown and revoked agents answer like a wrong key.
    let admin = t.agent("admin");
    let mut ghost = alice.clone();
    ghost.cred.agent = "ghost".into();
    let r = ghost.get("/v1/agents/me").await;
    assert_eq!((r.status, r.code()), (401, "bad_signature"));
    assert_eq!(admin.delete("/v1/agents/carol").await.status, 204);
    let r = t.agent("carol").get("/v1/agents/me").await;
    assert_eq!((r.status, r.code()), (401, "bad_signature"));
    // The last active admin stays: revoking it would end agent management.
    let r = admin.delete("/v1/agents/admin").await;
    assert_eq!(
        (r.status, r.code()),
        (409, "version_conflict"),
        "{:?}",
        r.body
    );
    assert_eq!(admin.get("/v1/agents/me").await.status, 200);
}

#[tokio::test]
async fn request_errors_have_their_codes() {
    let t = start().await;
    let alice = t.agent("alice");
    // invalid_request: an unknown field (a body naming the caller does not exist).
    let r = alice
        .post("/v1/elicitations", json!({"to": "bob", "from": "mallory", "message": "m", "requested_schema": port_schema()}))
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"));
    // invalid_request: a field out of range, named by pointer.
    let r = alice
        .post("/v1/elicitations", json!({"to": "bob", "message": "m", "requested_schema": port_schema(), "timeout_ms": 10}))
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"));
    assert_eq!(r.body["errors"][0]["path"], "/timeout_ms");
    // invalid_schema, naming keyword and path.
    let bad = json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "a+"}}});
    let r = alice
        .post(
            "/v1/elicitations",
            json!({"to": "bob", "message": "m", "requested_schema": bad}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_schema"));
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("pattern"),
        "{:?}",
        r.body
    );
    // not_found: unregistered target.
    let r = alice
        .post(
            "/v1/elicitations",
            json!({"to": "nobody", "message": "m", "requested_schema": port_schema()}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    // payload_too_large: over 1 MiB.
    let big = vec![b' '; (1 << 20) + 10];
    let r = alice.send(Method::POST, "/v1/messages", &big).await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
    // version_conflict with actual_version.
    let r = alice.post("/v1/events", json!({"stream": "notes-1", "type": "note.added", "data": {}, "expected_version": "no_stream"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = alice
        .post(
            "/v1/events",
            json!({"stream": "notes-1", "type": "note.added", "data": {}, "expected_version": 5}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "version_conflict"));
    assert_eq!(r.body["actual_version"], 0);
    let r = alice
        .post(
            "/v1/events",
            json!({"stream": "notes-2", "type": "note.added", "data": {}, "expected_version": 0}),
        )
        .await;
    assert_eq!(r.body["actual_version"], serde_json::Value::Null);
    // Reserved streams and types: 403.
    for (stream, ty) in [
        ("$flags", "note.x"),
        ("notes-1", "elicitation.requested"),
        ("$ops", "ops.deploy"),
    ] {
        let r = alice
            .post(
                "/v1/events",
                json!({"stream": stream, "type": ty, "data": {}}),
            )
            .await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{stream} {ty}");
        if stream != "$ops" {
            assert!(
                r.body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("written by the bridge only"),
                "{:?}",
                r.body
            );
        }
    }
    // Each is a step-7 refusal: counted as a security violation.
    let m = reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l == "lighthouse_security_violations_total{kind=\"forbidden\"} 3"),
        "{}",
        m.lines()
            .filter(|l| l.contains("violations"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The writer reports its group commits (agents were registered: events).
    let commits = m
        .lines()
        .find_map(|l| l.strip_prefix("lighthouse_event_store_commit_duration_seconds_count "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(commits.is_some_and(|c| c >= 1.0), "{commits:?}");
    // Operators may append to $ops.
    let r = t
        .agent("ops")
        .post(
            "/v1/events",
            json!({"stream": "$ops", "type": "ops.deploy_started", "data": {"flag": "x"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // An unknown route is a problem too.
    let r = alice.get("/v1/nothing-here").await;
    assert_eq!(r.status, 404);
    // So is a method a route does not take (405 keeps its Allow header)...
    let r = alice.send(Method::PUT, "/v1/stream", b"").await;
    assert_eq!(
        (r.status, r.code()),
        (405, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body["status"], 405);
    assert!(r.headers.contains_key("allow"));
    // ...and a path segment axum cannot decode.
    let r = alice.get("/v1/elicitations/%FF%FE").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // A route without query parameters refuses them rather than ignore them.
    let r = alice.get("/v1/agents/me?verbose=1").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    let r = alice
        .post("/v1/messages?urgent=1", json!({"to": "bob", "body": 1}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    // HEAD needs what GET needs.
    let r = alice.send(Method::HEAD, "/v1/ops/stats", b"").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        t.agent("ops")
            .send(Method::HEAD, "/v1/ops/stats", b"")
            .await
            .status,
        200
    );
    // `me` is reserved, but a store from before may hold an agent "me":
    // DELETE /v1/agents/me revokes it (admin only).
    let admin = t.agent("admin");
    t.bridge
        .store()
        .append_one(lighthouse_event_store::NewEvent::new(
            lighthouse_security::AGENTS_STREAM,
            lighthouse_security::AGENT_REGISTERED,
            json!({"agent": "me", "role": "agent", "key_id": 1}),
        ))
        .await
        .unwrap();
    t.bridge.gate().registry().catch_up().unwrap();
    assert_eq!(alice.delete("/v1/agents/me").await.status, 403);
    assert_eq!(admin.delete("/v1/agents/me").await.status, 204);
    assert!(!t.bridge.gate().registry().is_active("me"));
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let t = start().await;
    let alice = t.agent("alice");
    // The session class allows a burst of 10.
    let mut last = None;
    for _ in 0..12 {
        last = Some(alice.post("/v1/sessions", json!({})).await);
    }
    let r = last.unwrap();
    assert_eq!((r.status, r.code()), (429, "rate_limited"));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
}

#[tokio::test]
async fn the_flag_gates_creation_per_agent_and_changes_take_effect_at_once() {
    let t = start().await;
    let (alice, ops) = (t.agent("alice"), t.agent("ops"));
    let ask = || {
        alice.post(
            "/v1/elicitations",
            json!({"to": "bob", "message": "m", "requested_schema": port_schema()}),
        )
    };
    assert_eq!(ask().await.status, 201);
    let flag = ops.get("/v1/flags/elicitation_enabled").await;
    assert_eq!(flag.body["rollout_percent"], 100.0);
    let mut put = flag.body.clone();
    put["rollout_percent"] = json!(0);
    put["allow"] = json!(["bob"]);
    put["reason"] = json!("stage 0");
    // A misspelt field is refused by name, not silently dropped.
    let mut typo = put.clone();
    typo["rollout_precent"] = json!(0);
    let r = ops.put("/v1/flags/elicitation_enabled", typo).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("rollout_precent"),
        "{:?}",
        r.body
    );
    let mut bad_reason = put.clone();
    bad_reason["reason"] = json!(7);
    let r = ops.put("/v1/flags/elicitation_enabled", bad_reason).await;
    assert_eq!(r.body["errors"][0]["path"], "/reason");
    let r = ops.put("/v1/flags/elicitation_enabled", put).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = ask().await;
    assert_eq!((r.status, r.code()), (403, "feature_disabled"));
    assert!(r.body["detail"].as_str().unwrap().contains("/v1/messages"));
    // bob is on the allow list.
    let r = t
        .agent("bob")
        .post(
            "/v1/elicitations",
            json!({"to": "alice", "message": "m", "requested_schema": port_schema()}),
        )
        .await;
    assert_eq!(r.status, 201);
    let e = ops
        .get("/v1/flags/elicitation_enabled/evaluate?agent=alice")
        .await;
    assert_eq!(e.body["enabled"], false);
    assert_eq!(e.body["bucket"], 4585, "PROTOCOL.md vector");
    // Kill wins over the allow list; history records every change.
    ops.post(
        "/v1/flags/elicitation_enabled/kill",
        json!({"reason": "incident"}),
    )
    .await;
    let e = ops
        .get("/v1/flags/elicitation_enabled/evaluate?agent=bob")
        .await;
    assert_eq!(
        (e.body["enabled"].as_bool(), e.body["reason"].as_str()),
        (Some(false), Some("killed"))
    );
    let h = ops.get("/v1/flags/elicitation_enabled/history").await;
    assert_eq!(h.body["changes"].as_array().unwrap().len(), 3);
    assert_eq!(h.body["next"], serde_json::Value::Null);
    // Paged: the newest two, then what came before them.
    let newest = ops
        .get("/v1/flags/elicitation_enabled/history?limit=2")
        .await;
    let versions = |r: &common::Reply| -> Vec<u64> {
        r.body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["version"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(versions(&newest), vec![2, 3]);
    assert_eq!(newest.body["next"], 2);
    let older = ops
        .get("/v1/flags/elicitation_enabled/history?limit=2&before=2")
        .await;
    assert_eq!(versions(&older), vec![1]);
    assert_eq!(older.body["next"], serde_json::Value::Null);
    for bad in ["limit=0", "limit=1001", "colour=red"] {
        let r = ops
            .get(&format!("/v1/flags/elicitation_enabled/history?{bad}"))
            .await;
        assert_eq!(r.code(), "invalid_request", "{bad}");
    }
    // Flags are read by observers and written by operators (PROTOCOL.md 8):
    // an agent may do neither.
    for path in [
        "/v1/flags",
        "/v1/flags/elicitation_enabled",
        "/v1/flags/elicitation_enabled/history",
        "/v1/flags/elicitation_enabled/evaluate?agent=alice",
    ] {
        let r = alice.get(path).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "GET {path}");
    }
    let r = alice
        .post(
            "/v1/flags/elicitation_enabled/unkill",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    // The refused unkill changed nothing.
    let f = ops.get("/v1/flags/elicitation_enabled").await;
    assert_eq!(
        (f.body["killed"].as_bool(), f.body["version"].as_u64()),
        (Some(true), Some(3))
    );
}

#[tokio::test]
async fn events_query_with_visibility() {
    let t = start().await;
    let (alice, bob, carol, ops) = (
        t.agent("alice"),
        t.agent("bob"),
        t.agent("carol"),
        t.agent("ops"),
    );
    alice
        .post(
            "/v1/elicitations",
            json!({"to": "bob", "message": "m", "requested_schema": port_schema()}),
        )
        .await;
    alice
        .post(
            "/v1/events",
            json!({"stream": "notes-1", "type": "note.added", "data": {"n": 1}}),
        )
        .await;
    let types = |r: &common::Reply| -> Vec<String> {
        r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ops.get("/v1/events?limit=1000").await;
    assert!(
        types(&all).iter().any(|t| t.starts_with("agent.")),
        "operators see $agents"
    );
    let bobs = bob.get("/v1/events?limit=1000").await;
    assert_eq!(types(&bobs), vec!["elicitation.requested", "note.added"]);
    let carols = carol.get("/v1/events?limit=1000").await;
    assert_eq!(types(&carols), vec!["note.added"]);
    let by_type = carol.get("/v1/events?type=note.added&stream=notes-1").await;
    assert_eq!(by_type.body["events"][0]["data"], json!({"n": 1}));
    assert_eq!(by_type.body["events"][0]["agent"], "alice");
    let r = carol.get("/v1/events?limit=5000").await;
    assert_eq!(r.code(), "invalid_request");
    let r = carol.get("/v1/events?colour=red").await;
    assert_eq!(r.code(), "invalid_request");
    let r = carol.get("/v1/events?stream=").await;
    assert_eq!(r.code(), "invalid_request");
    assert_eq!(r.body["errors"][0]["path"], "/stream");
    let r = carol.get("/v1/events?order=desc&limit=1").await;
    assert_eq!(types(&r), vec!["note.added"]);
}

#[tokio::test]
async fn a_repeated_event_id_replays_only_for_its_own_retry() {
    let t = start().await;
    let (alice, bob) = (t.agent("alice"), t.agent("bob"));
    let body = json!({"stream": "notes-1", "type": "note.added", "data": {}, "id": "note-0001"});
    let first = alice.post("/v1/events", body.clone()).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let retry = alice.post("/v1/events", body.clone()).await;
    assert_eq!(retry.body, first.body, "a retry gets the original result");
    // Another agent reusing the id learns nothing of alice's event.
    let r = bob.post("/v1/events", body).await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"));
    assert_eq!(r.body["errors"][0]["path"], "/id");
    assert!(r.body.get("seq").is_none());
    // Nor does alice's own id on another stream pass as a retry.
    let r = alice
        .post(
            "/v1/events",
            json!({"stream": "notes-2", "type": "note.added", "data": {}, "id": "note-0001"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"));
    let page = alice.get("/v1/events?type=note.added").await;
    assert_eq!(page.body["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_event_query_looks_at_a_bounded_number_of_records_and_resumes() {
    let t = start().await;
    let ops = t.agent("ops");
    for (stream, ty) in [("notes-1", "note.added"), ("notes-2", "note.other")] {
        for batch in 0..11 {
            let events = (0..1000)
                .map(|i| {
                    lighthouse_event_store::NewEvent::new(
                        stream,
                        ty,
                        json!({"n": batch * 1000 + i}),
                    )
                })
                .collect();
            t.bridge.store().append(events).await.unwrap();
        }
    }
    // Two exact filters, each matching 11,000 events and together none: the
    // candidates are not all read in one request.
    let r = ops
        .get("/v1/events?stream=notes-1&type=note.other&limit=10")
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["events"], json!([]));
    let next = r.body["next"].as_u64().expect("a cursor to resume from");
    let r = ops
        .get(&format!(
            "/v1/events?stream=notes-1&type=note.other&limit=10&after={next}"
        ))
        .await;
    assert_eq!(r.body["events"], json!([]));
    assert_eq!(
        r.body["next"],
        json!(null),
        "the second page reaches the end"
    );
}

#[tokio::test]
async fn a_retried_create_gets_its_first_result_after_the_gates_close() {
    let t = start().await;
    let (alice, ops, admin) = (t.agent("alice"), t.agent("ops"), t.agent("admin"));
    let body = json!({"to": "bob", "message": "m", "requested_schema": port_schema()});
    let bytes = serde_json::to_vec(&body).unwrap();
    let create = || async {
        common::reply(
            alice
                .request(Method::POST, "/v1/elicitations", &bytes)
                .header("idempotency-key", "retry-1")
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let first = create().await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    // The flag turns off for alice, and the target is revoked.
    let mut flag = ops.get("/v1/flags/elicitation_enabled").await.body;
    flag["rollout_percent"] = json!(0);
    flag["reason"] = json!("test");
    assert_eq!(
        ops.put("/v1/flags/elicitation_enabled", flag).await.status,
        200
    );
    assert_eq!(admin.delete("/v1/agents/bob").await.status, 204);
    let retry = create().await;
    assert_eq!(retry.status, 201, "{:?}", retry.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.body, first.body);
    // Without the key it is a new create, and the gates apply.
    let r = alice.post("/v1/elicitations", body).await;
    assert_eq!((r.status, r.code()), (403, "feature_disabled"));
}

#[tokio::test]
async fn operations_and_sessions() {
    let t = start().await;
    let (alice, ops) = (t.agent("alice"), t.agent("ops"));
    for _ in 0..3 {
        alice
            .post(
                "/v1/elicitations",
                json!({"to": "bob", "message": "m", "requested_schema": port_schema()}),
            )
            .await;
    }
    let s = ops.get("/v1/ops/stats?window_s=60").await;
    assert_eq!(s.status, 200, "{:?}", s.body);
    assert_eq!(s.body["elicitations"]["created"], 3);
    assert_eq!(s.body["active_elicitations"], 3);
    assert!(s.body["http"]["requests"].as_u64().unwrap() >= 3);
    assert!(s.body["store"]["head_seq"].as_u64().unwrap() > 3);
    assert_eq!(
        ops.get("/v1/ops/stats?window_s=901").await.code(),
        "invalid_request"
    );
    // A stream is not an API request's latency: opening one leaves the
    // windowed `http` figures alone (the stats call between counts once).
    let requests = |b: &serde_json::Value| b["http"]["requests"].as_u64().unwrap();
    let before = requests(&ops.get("/v1/ops/stats?window_s=60").await.body);
    drop(alice.stream("/v1/stream", None).await);
    // Nor do health probes and metrics scrapes, which are not API requests,
    // nor requests that match no route (a load balancer probing `/`).
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let r = reqwest::get(format!("{}{path}", t.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    for path in ["/", "/nope"] {
        let r = reqwest::get(format!("{}{path}", t.base)).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let stats = ops.get("/v1/ops/stats?window_s=900").await.body;
    assert_eq!(requests(&stats), before + 1);
    // A bridge up for seconds says how much of a 900 s window it measured.
    let covered = stats["covered_s"].as_u64().unwrap();
    assert!((1..900).contains(&covered), "{stats}");
    // A drain's wait for others is not the bridge's latency.
    let d = ops
        .post(
            "/v1/ops/drain",
            json!({"timeout_ms": 1000, "then": "cancel", "reason": "test"}),
        )
        .await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    assert_eq!(
        (d.body["cancelled"].as_u64(), d.body["remaining"].as_u64()),
        (Some(3), Some(0))
    );
    assert!(d.body["elapsed_ms"].as_u64().unwrap() >= 1000);
    assert!(d.body.get("waited_ms").is_none(), "not on the wire");
    let stats = ops.get("/v1/ops/stats?window_s=60").await.body;
    let max = stats["http"]["latency_ms"]["max"].as_f64().unwrap();
    assert!(max < 1000.0, "{stats}");
    let v = ops.post("/v1/ops/verify", json!({})).await;
    assert_eq!(v.body["ok"], true);
    assert!(v.body["checked"].as_u64().unwrap() > 3);

    // A bearer token works where a signature does, and can revoke itself.
    let s = alice.post("/v1/sessions", json!({"ttl_s": 60})).await;
    assert_eq!(s.status, 201);
    let token = s.body["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let me = common::reply(
        http.get(format!("{}/v1/agents/me", t.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        me.body,
        json!({"agent": "alice", "role": "agent", "key_id": 1})
    );
    // Only a signed request creates a session: a token cannot mint its successor.
    let mint = common::reply(
        http.post(format!("{}/v1/sessions", t.base))
            .bearer_auth(&token)
            .json(&json!({"ttl_s": 60}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((mint.status, mint.code()), (401, "unauthenticated"));
    // The auth scheme is case-insensitive (RFC 9110 11.1), here as everywhere.
    let del = http
        .delete(format!("{}/v1/sessions/current", t.base))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let me = common::reply(
        http.get(format!("{}/v1/agents/me", t.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((me.status, me.code()), (401, "unauthenticated"));
    let r = alice.post("/v1/sessions", json!({"ttl_s": 100000})).await;
    assert_eq!(r.code(), "invalid_request");
}

#[tokio::test]
async fn agents_admin() {
    let t = start().await;
    let dave = t.add_agent("dave", "agent").await;
    assert_eq!(dave.get("/v1/agents/me").await.body["agent"], "dave");
    let admin = t.agent("admin");
    let rotated = admin.post("/v1/agents/dave/rotate", json!({})).await;
    assert_eq!(rotated.body["key_id"], 2);
    // The old key still works during its grace period.
    assert_eq!(dave.get("/v1/agents/me").await.status, 200);
    let list = admin.get("/v1/agents").await;
    assert!(
        list.body["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "dave")
    );
    assert_eq!(t.agent("alice").get("/v1/agents").await.status, 403);
    assert_eq!(
        admin
            .post("/v1/agents", json!({"id": "dave", "role": "agent"}))
            .await
            .status,
        409
    );
}

/// `X-Request-Id` is the `correlation_id` of the events a request writes
/// (docs/HTTP.md), agent management and a token's revocation included.
#[tokio::test]
async fn agent_and_session_changes_carry_the_request_id() {
    let t = start().await;
    let admin = t.agent("admin");
    let with_id = |rb: reqwest::RequestBuilder, id: &str| rb.header("x-request-id", id);
    let send =
        |rb: reqwest::RequestBuilder| async move { common::reply(rb.send().await.unwrap()).await };
    let r = send(with_id(
        admin.request(
            Method::POST,
            "/v1/agents",
            br#"{"id":"dave","role":"agent"}"#,
        ),
        "rid-register",
    ))
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = send(with_id(
        admin.request(Method::POST, "/v1/agents/dave/rotate", b""),
        "rid-rotate",
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = send(with_id(
        admin.request(Method::DELETE, "/v1/agents/dave", b""),
        "rid-revoke",
    ))
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let token = t.agent("alice").post("/v1/sessions", json!({})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = send(
        reqwest::Client::new()
            .delete(format!("{}/v1/sessions/current", t.base))
            .bearer_auth(&token)
            .header("x-request-id", "rid-logout"),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    for (id, stream, event_type, agent) in [
        ("rid-register", "$agents", "agent.registered", "admin"),
        ("rid-rotate", "$agents", "agent.key_rotated", "admin"),
        ("rid-revoke", "$agents", "agent.revoked", "admin"),
        ("rid-logout", "$sessions", "security.token_revoked", "alice"),
    ] {
        let page = admin.get(&format!("/v1/events?correlation_id={id}")).await;
        let events = page.body["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{id}: {:?}", page.body);
        assert_eq!(
            (
                &events[0]["stream"],
                &events[0]["type"],
                &events[0]["agent"]
            ),
            (&json!(stream), &json!(event_type), &json!(agent)),
            "{id}"
        );
    }
}

#[tokio::test]
async fn health_metrics_and_request_ids() {
    let t = start().await;
    let http = reqwest::Client::new();
    let live = common::reply(
        http.get(format!("{}/health/live", t.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(live.body, json!({"status": "ok"}));
    let ready = common::reply(
        http.get(format!("{}/health/ready", t.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready.body["status"], "ok");
    assert_eq!(ready.body["components"]["store"], "ok");
    let alice = t.agent("alice");
    let r = common::reply(
        alice
            .request(Method::GET, "/v1/agents/me", b"")
            .header("x-request-id", "trace-123")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "trace-123");
    let m = http
        .get(format!("{}/metrics", t.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "lighthouse_elicitations_total{outcome=\"expired\"} 0",
        "lighthouse_security_violations_total{kind=\"replayed_request\"} 0",
        "lighthouse_http_requests_total{route=\"/v1/agents/me\",status=\"200\"}",
        "process_resident_memory_bytes",
    ] {
        assert!(m.contains(name), "missing {name}");
    }
    // Shutting down turns readiness to 503.
    t.bridge.begin_shutdown();
    let ready = common::reply(
        http.get(format!("{}/health/ready", t.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (503, Some("unavailable"))
    );
}

/// A bridge whose request bodies share 100 bytes and must arrive within 300 ms.
async fn small_body_budget() -> common::TestBridge {
    common::start_tuned(
        |_| {},
        |h| {
            h.max_buffered_body_bytes = 100;
            h.body_read_timeout = std::time::Duration::from_millis(300);
        },
    )
    .await
}

#[tokio::test]
async fn request_bodies_share_a_memory_budget() {
    let t = small_body_budget().await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    // A client declares 100 bytes and sends none: it holds the whole budget
    // until its body times out.
    let mut hog = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut hog,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // A signed request waits for the budget rather than growing memory past it,
    // and is served once the stalled body gives its share back.
    let started = std::time::Instant::now();
    let r = t
        .agent("alice")
        .post("/v1/messages", json!({"to": "bob", "body": 1}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(150),
        "served before the stalled body released the budget"
    );
    // A declared length over the limit is refused before anything is read.
    let mut big = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut big,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_exact(&mut big, &mut head),
    )
    .await
    .expect("answered without waiting for the body")
    .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
}

#[tokio::test]
async fn a_long_poll_does_not_hold_its_body_in_the_budget() {
    let t = small_body_budget().await;
    // A 90-byte body on a GET that waits two seconds: the body is only hashed
    // for the signature, and its share of the budget is given back at once.
    let bob = t.agent("bob");
    let junk = vec![b' '; 90];
    let poll = tokio::spawn(async move {
        bob.send(Method::GET, "/v1/messages?after=0&wait_ms=2000", &junk)
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = t
        .agent("alice")
        .post("/v1/messages", json!({"to": "carol", "body": 1}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(poll.await.unwrap().status, 200);
}

#[tokio::test]
async fn a_full_nonce_store_answers_unavailable_rather_than_forgetting() {
    let t = common::start_with(|c| c.security.nonces.per_agent_capacity = 3).await;
    let alice = t.agent("alice");
    for _ in 0..3 {
        assert_eq!(alice.get("/v1/agents/me").await.status, 200);
    }
    let r = alice.get("/v1/agents/me").await;
    assert_eq!((r.status, r.code()), (503, "unavailable"));
}

#[tokio::test]
async fn a_damaged_store_answers_internal_without_leaking_details() {
    let t = start().await;
    let alice = t.agent("alice");
    let r = alice
        .post(
            "/v1/events",
            json!({"stream": "notes-1", "type": "note.added", "data": {"secret": "s3cr3t"}}),
        )
        .await;
    let seq = r.body["seq"].as_u64().unwrap();
    // Cut the record's header so it cannot be decoded.
    t.bridge.store().tamper_raw(seq, Some(&[1, 2, 3])).unwrap();
    let r = alice.get("/v1/events?stream=notes-1").await;
    assert_eq!((r.status, r.code()), (500, "internal"));
    let text = r.body.to_string();
    assert!(
        !text.contains("seq") && !text.contains("s3cr3t") && !text.contains("sled"),
        "{text}"
    );
    // The operator's verify names the damage.
    let v = t.agent("ops").post("/v1/ops/verify", json!({})).await;
    assert_eq!(
        (v.body["ok"].as_bool(), v.body["first_bad_seq"].as_u64()),
        (Some(false), Some(seq))
    );
}

/// An open stream is admitted once; it must not outlive its credential
/// (PROTOCOL.md 2.1, 2.3): a revoked token ends it, and so does revoking the
/// agent, with a final `unauthenticated` event saying where to resume.
#[tokio::test]
async fn open_streams_end_when_their_credential_stops_holding() {
    let t = common::start_tuned(
        |_| {},
        |h| h.credential_recheck = std::time::Duration::from_millis(100),
    )
    .await;
    let (alice, admin) = (t.agent("alice"), t.agent("admin"));
    // A stream opened with a bearer token, then the token revoked.
    let token = alice.post("/v1/sessions", json!({"ttl_s": 60})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/v1/events/stream?after=0", t.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut by_token = common::Sse::from_response(resp);
    let del = http
        .delete(format!("{}/v1/sessions/current", t.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let end = loop {
        let e = by_token.next_within(5).await.expect("the stream ends");
        if e.id.is_none() {
            break e;
        }
    };
    assert_eq!(end.event, "unauthenticated");
    assert!(end.data["resume_after"].is_u64(), "{:?}", end.data);
    assert!(by_token.next_within(2).await.is_none());
    // A signed stream of an agent that is then revoked.
    let mut signed = alice.stream("/v1/stream", None).await;
    assert_eq!(admin.delete("/v1/agents/alice").await.status, 204);
    let end = loop {
        let e = signed.next_within(5).await.expect("the stream ends");
        if e.id.is_none() && e.event != "elicitation.requested" {
            break e;
        }
    };
    assert_eq!(end.event, "unauthenticated");
    assert!(signed.next_within(2).await.is_none());
}

/// A long-poll is held to the same rule as a stream (PROTOCOL.md 2.1, 2.3): a
/// token revoked, or an agent revoked, while its request waits gets `401`
/// instead of the answer it was waiting for.
#[tokio::test]
async fn long_polls_end_when_their_credential_stops_holding() {
    let t = common::start_tuned(
        |_| {},
        |h| h.credential_recheck = std::time::Duration::from_millis(100),
    )
    .await;
    let (alice, admin) = (t.agent("alice"), t.agent("admin"));
    let token = alice.post("/v1/sessions", json!({"ttl_s": 60})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let waiting = {
        let (http, url, token) = (
            http.clone(),
            format!("{}/v1/messages?after=0&wait_ms=30000", t.base),
            token.clone(),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let del = http
        .delete(format!("{}/v1/sessions/current", t.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let started = std::time::Instant::now();
    let r = waiting.await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the wait outlived its token by {:?}",
        started.elapsed()
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");
    // A signed wait for an elicitation, then the agent revoked.
    let created = alice
        .post(
            "/v1/elicitations",
            json!({"to": "bob", "message": "port?", "requested_schema": {"type": "object", "properties": {"port": {"type": "integer"}}}}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let waiting = {
        let alice = alice.clone();
        tokio::spawn(async move {
            alice
                .get(&format!("/v1/elicitations/{id}?wait_ms=30000"))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(admin.delete("/v1/agents/alice").await.status, 204);
    let r = waiting.await.unwrap();
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));
    // A registry that cannot read back a change cannot judge a credential:
    // a valid agent's wait then ends as a new request would be answered
    // (`503`, retryable), not as if it had been revoked.
    let bob = t.agent("bob");
    let waiting = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.get("/v1/messages?after=0&wait_ms=30000").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    t.bridge.gate().registry().mark_unread(1_000_000);
    let r = waiting.await.unwrap();
    assert_eq!((r.status, r.code()), (503, "unavailable"));
}

/// `GET /v1/events/stream?after=0` as `agent`, tried every 50 ms for up to
/// 5 s until one of its stream slots is free: the open response, or `None`.
async fn event_stream_once_a_slot_frees(agent: &common::Agent) -> Option<reqwest::Response> {
    for _ in 0..100 {
        let r = agent
            .request(reqwest::Method::GET, "/v1/events/stream?after=0", b"")
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return Some(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    None
}

/// Open event streams are bounded per agent (and in all): each can pin a
/// catch-up stretch while its client is slow. One over the agent's own limit
/// is the caller's doing, `429` with `Retry-After`, and no server error in
/// the figures deploy gates read; one over the total is `503`. Closing one
/// frees its slot.
#[tokio::test]
async fn event_streams_are_bounded_per_agent() {
    let t = common::start_tuned(
        |_| {},
        |h| {
            h.max_event_streams_per_agent = 2;
            h.max_event_streams = 3;
        },
    )
    .await;
    let (alice, bob, carol) = (t.agent("alice"), t.agent("bob"), t.agent("carol"));
    let first = alice.stream("/v1/events/stream?after=0", None).await;
    let _second = alice.stream("/v1/events/stream?after=0", None).await;
    let third = alice.get("/v1/events/stream?after=0").await;
    assert_eq!((third.status, third.code()), (429, "rate_limited"));
    assert_eq!(third.headers["retry-after"], "5");
    assert_eq!(third.body["retry_after_s"], 5);
    let detail = third.body["detail"].as_str().unwrap();
    assert!(detail.contains("2 event streams"), "{detail}");
    let stats = t.agent("ops").get("/v1/ops/stats?window_s=60").await;
    assert_eq!(stats.body["http"]["errors_5xx"], 0, "{:?}", stats.body);
    // Another agent has slots of its own, up to the total.
    let _bobs = bob.stream("/v1/events/stream?after=0", None).await;
    let over = carol.get("/v1/events/stream?after=0").await;
    assert_eq!((over.status, over.code()), (503, "unavailable"));
    assert!(!over.headers.contains_key("retry-after"));
    drop(first);
    let reopened = event_stream_once_a_slot_frees(&alice).await;
    assert!(reopened.is_some(), "a closed stream's slot was not freed");
}

/// An HTTP/2 client that stops reading one event stream withholds that
/// stream's flow-control window while its connection stays healthy, so no
/// socket write ever stalls: the stream's watchdog ends it after
/// `stream_stall_timeout` and frees its slot (before, it held the slot until
/// the connection ended). A stream that is read is not ended.
#[tokio::test]
async fn an_http2_stream_whose_client_stopped_reading_is_ended_and_frees_its_slot() {
    let t = common::start_tuned(
        |_| {},
        |h| {
            h.max_event_streams_per_agent = 1;
            h.stream_stall_timeout = std::time::Duration::from_millis(600);
        },
    )
    .await;
    let mut alice = t.agent("alice");
    // Prior-knowledge HTTP/2 over plain TCP, with a 1 KiB stream window that
    // this client never opens again (it reads nothing of the body).
    alice.http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(1024)
        .http2_initial_connection_window_size(1 << 20)
        .build()
        .unwrap();
    let stalled = alice
        .request(reqwest::Method::GET, "/v1/events/stream?after=0", b"")
        .send()
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);
    assert_eq!(stalled.version(), reqwest::Version::HTTP_2);
    let busy = alice.get("/v1/events/stream?after=0").await;
    assert_eq!((busy.status, busy.code()), (429, "rate_limited"));
    // More than the window: the stream's frames stop being taken.
    let note = "n".repeat(2048);
    for i in 0..8 {
        let r = alice
            .post(
                "/v1/events",
                json!({"stream": "notes-h2", "type": "note.h2", "data": {"i": i, "note": note}}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.code());
    }
    let reopened = event_stream_once_a_slot_frees(&alice)
        .await
        .expect("a stalled HTTP/2 stream kept its slot");
    let metrics = reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "lighthouse_streams_stalled_total 1"),
        "the stalled stream is not counted"
    );
    drop(stalled);
    // A stream that is read keeps going past the stall timeout.
    let mut read = common::Sse::from_response(reopened);
    let mut seen = 0;
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        if read.next_within(1).await.is_some() {
            seen += 1;
        }
    }
    assert!(seen >= 8, "the read stream delivered {seen} events");
    let r = alice
        .post(
            "/v1/events",
            json!({"stream": "notes-h2", "type": "note.h2", "data": {"i": 8}}),
        )
        .await;
    assert_eq!(r.status, 201);
    loop {
        let e = read
            .next_within(5)
            .await
            .expect("the read stream was ended");
        if e.data["data"]["i"] == json!(8) {
            break;
        }
    }
}

/// `GET /v1/events` pages are bounded in bytes too (PROTOCOL.md 5/7: memory is
/// never allowed to grow without bound): large events end a page early with
/// `next`, and following it returns every event once, for an operator (who
/// sees everything) and for an agent (whose reads skip what it may not see).
#[tokio::test]
async fn event_pages_are_bounded_in_bytes() {
    let t = start().await;
    let (alice, ops) = (t.agent("alice"), t.agent("ops"));
    let blob = "x".repeat(900 << 10);
    for i in 0..12 {
        let r = alice
            .post(
                "/v1/events",
                json!({"stream": "notes-big", "type": "note.big", "data": {"i": i, "blob": blob}}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.code());
    }
    for reader in [&ops, &alice] {
        let mut path = "/v1/events?stream=notes-big&limit=1000".to_owned();
        let mut seen = Vec::new();
        let mut first_page = None;
        loop {
            let r = reader.get(&path).await;
            assert_eq!(r.status, 200, "{:?}", r.code());
            let events = r.body["events"].as_array().unwrap();
            first_page.get_or_insert(events.len());
            seen.extend(events.iter().map(|e| e["data"]["i"].as_u64().unwrap()));
            match r.body["next"].as_u64() {
                Some(n) => path = format!("/v1/events?stream=notes-big&limit=1000&after={n}"),
                None => break,
            }
        }
        // 8 MiB of records is passed by the tenth event of ~900 KiB.
        assert!(first_page.unwrap() <= 10, "{first_page:?}");
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn bodies_are_json_whole_and_routes_without_one_refuse_fields() {
    let t = start().await;
    let (alice, admin) = (t.agent("alice"), t.agent("admin"));
    // Trailing bytes after the JSON value: not a JSON body.
    let r = alice
        .send(Method::POST, "/v1/messages", br#"{"to":"bob","body":1}zzz"#)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    let r = alice
        .send(
            Method::POST,
            "/v1/events",
            br#"{"stream":"$agents","type":"agent.registered","data":{}}x"#,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    // The elicitation service's streams are written by the bridge only: a
    // 409 there would tell how many messages bob has.
    for stream in ["mailbox-bob", "elicitation-el_01"] {
        let r = alice
            .post(
                "/v1/events",
                json!({"stream": stream, "type": "probe", "data": {}, "expected_version": "no_stream"}),
            )
            .await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{stream}");
    }
    // A route that takes no body refuses fields it would ignore; `{}` is fine.
    let r = admin
        .post("/v1/agents/bob/rotate", json!({"grace_s": 0}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(
        admin.post("/v1/agents/bob/rotate", json!({})).await.status,
        200
    );
    assert_eq!(
        admin
            .send(Method::POST, "/v1/agents/bob/rotate", b"")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_body_cut_short_is_a_bad_request_not_a_large_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start().await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"to\":\"bo",
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut head))
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 400");
}

#[tokio::test]
async fn an_event_over_the_stored_size_limit_names_its_data() {
    let t = start().await;
    let alice = t.agent("alice");
    // Under the 1 MiB body limit, over the store's 1 MiB per event once the
    // record's own fields are added.
    let head = r#"{"stream":"notes-1","type":"note.big","data":""#;
    let fill = 1_048_576 - head.len() - 2;
    let body = format!("{head}{}\"}}", "x".repeat(fill));
    assert_eq!(body.len(), 1_048_576);
    let r = alice
        .send(Method::POST, "/v1/events", body.as_bytes())
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["errors"][0]["path"], "/data", "{:?}", r.body);
}

/// A `405` names the methods the route takes in its detail, as its `Allow`
/// header does (axum sets the header after the router's own layers ran).
#[tokio::test]
async fn a_method_a_route_does_not_take_names_those_it_takes() {
    let t = start().await;
    let (alice, ops) = (t.agent("alice"), t.agent("ops"));
    // (Each is sent by a caller the route would admit, so that nothing but
    // the method is wrong.)
    for (who, method, path, allowed) in [
        (
            &alice,
            Method::PATCH,
            "/v1/elicitations",
            ["GET", "HEAD", "POST"].as_slice(),
        ),
        (
            &alice,
            Method::PUT,
            "/v1/stream",
            ["GET", "HEAD"].as_slice(),
        ),
        (&alice, Method::GET, "/v1/ops/drain", ["POST"].as_slice()),
        (
            &ops,
            Method::POST,
            "/v1/flags/x",
            ["GET", "HEAD", "PUT"].as_slice(),
        ),
        (
            &alice,
            Method::PUT,
            "/health/live",
            ["GET", "HEAD"].as_slice(),
        ),
    ] {
        let r = who.send(method.clone(), path, b"").await;
        assert_eq!(
            (r.status, r.code()),
            (405, "invalid_request"),
            "{method} {path}: {:?}",
            r.body
        );
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert!(
            r.headers.contains_key("x-request-id"),
            "{method} {path}: the request id is echoed on every response"
        );
        assert_eq!(r.body["status"], 405);
        let mut header: Vec<&str> = r.headers["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(str::trim)
            .collect();
        header.sort_unstable();
        assert_eq!(header, allowed, "{method} {path}");
        let detail = r.body["detail"].as_str().unwrap();
        let (_, listed) = detail
            .split_once("it takes: ")
            .unwrap_or_else(|| panic!("{detail}"));
        let mut listed: Vec<&str> = listed.split(", ").collect();
        listed.sort_unstable();
        assert_eq!(listed, allowed, "{method} {path}: {detail}");
    }
}

/// A body that is not JSON (a syntax error, or one that ends early) is the
/// document's error, named by the root pointer; a well-formed body with a
/// wrong field names that field.
#[tokio::test]
async fn parse_errors_name_the_document_and_data_errors_the_field() {
    let t = start().await;
    let alice = t.agent("alice");
    for body in [
        &br#"{"to":"#[..],
        br#"{"to": "bob", "message": "#,
        br#"{"to": bob}"#,
        br#"{"to": "bob",}"#,
        br#"{"requested_schema": {"type": "object""#,
    ] {
        let r = alice.send(Method::POST, "/v1/elicitations", body).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{shown}");
        assert_eq!(r.body["errors"][0]["path"], "", "{shown}: {:?}", r.body);
    }
    for (body, path) in [
        (
            json!({"to": 5, "message": "m", "requested_schema": port_schema()}),
            "/to",
        ),
        (
            json!({"to": "bob", "message": "m", "requested_schema": port_schema(), "from": "x"}),
            "/from",
        ),
        (
            json!({"to": "bob", "message": "m", "requested_schema": port_schema(), "timeout_ms": "soon"}),
            "/timeout_ms",
        ),
    ] {
        let r = alice.post("/v1/elicitations", body.clone()).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{body}");
        assert_eq!(r.body["errors"][0]["path"], path, "{body}: {:?}", r.body);
    }
    // Well-formed, but a number no field can hold: the field's error (serde
    // files it as a syntax error).
    let r = alice
        .send(
            Method::POST,
            "/v1/elicitations",
            br#"{"to":"bob","message":"m","requested_schema":{"type":"object"},"timeout_ms":1e400}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["errors"][0]["path"], "/timeout_ms", "{:?}", r.body);
}
