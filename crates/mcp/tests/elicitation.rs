//! Two agents with rmcp clients over a real socket: the tool list, an
//! elicitation round trip, a decline, a schema mismatch, an expiry, and the
//! rule that only the target answers.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use lighthouse_core::api::EventsQuery;
use rmcp::ClientLifecycleMode;
use serde_json::json;

#[tokio::test]
async fn lists_every_tool_with_a_description_and_an_input_schema() {
    let b = start().await;
    for client in [b.client("alice").await, b.modern_client("alice").await] {
        let tools = client.list_all_tools().await.unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, lighthouse_mcp::tools::catalogue::TOOL_NAMES);
        for t in &tools {
            assert!(
                t.description.as_deref().is_some_and(|d| !d.is_empty()),
                "{}",
                t.name
            );
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        }
        let elicit = tools
            .iter()
            .find(|t| t.name == "lighthouse_elicit")
            .unwrap();
        assert_eq!(
            elicit.input_schema["required"],
            json!(["to", "message", "schema"])
        );
        assert_eq!(
            elicit.input_schema["properties"]["timeout_seconds"]["maximum"],
            3600
        );
    }
}

#[tokio::test]
async fn two_agents_complete_a_round_trip() {
    let b = start().await;
    let alice = b.client("alice").await;
    // Bob speaks the newer per-request lifecycle and sets his request id.
    let mut headers = HashMap::new();
    headers.insert(
        http::HeaderName::from_static("x-request-id"),
        http::HeaderValue::from_static("bob-answer-1"),
    );
    let bob = b
        .client_with(
            "bob",
            headers,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
            },
        )
        .await;

    let asking = tokio::spawn(async move {
        let r = call(
            &alice,
            "lighthouse_elicit",
            json!({"to": "bob", "message": "Which port?", "schema": port_schema(), "timeout_seconds": 30}),
        )
        .await;
        (alice, r)
    });
    let pending = next_pending(&bob).await;
    assert_eq!(pending["from"], "alice");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["message"], "Which port?");
    let id = pending["id"].as_str().unwrap().to_owned();

    let answered = ok(&call(
        &bob,
        "lighthouse_respond_to_elicitation",
        json!({"elicitation_id": id, "action": "accept", "content": {"port": 8080}}),
    )
    .await);
    assert_eq!(answered["status"], "accepted");

    let (_alice, r) = asking.await.unwrap();
    let record = ok(&r);
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["status"], "accepted");
    assert_eq!(
        record["response"],
        json!({"action": "accept", "content": {"port": 8080}, "reason": null, "by": "bob"})
    );
    // Bob's inbox is empty again.
    let inbox = ok(&call(&bob, "lighthouse_check_elicitations", json!({})).await);
    assert_eq!(inbox["items"], json!([]));

    // The answer was written by bob, correlated with his request id.
    let events = b
        .bridge
        .query_events(
            &b.bridge.caller_for("admin").unwrap(),
            &EventsQuery {
                stream: Some(format!("elicitation-{id}")),
                ..EventsQuery::default()
            },
        )
        .unwrap();
    let accepted = events
        .events
        .iter()
        .find(|e| e.event_type == "elicitation.accepted")
        .expect("an accepted event");
    assert_eq!(accepted.agent.as_deref(), Some("bob"));
    assert_eq!(accepted.correlation_id.as_deref(), Some("bob-answer-1"));
    let requested = &events.events[0];
    assert_eq!(requested.agent.as_deref(), Some("alice"));
    assert_eq!(
        requested.correlation_id.as_deref().map(str::len),
        Some(26),
        "a ULID"
    );
}

#[tokio::test]
async fn a_decline_ends_the_wait_with_the_reason() {
    let b = start().await;
    let alice = b.client("alice").await;
    let bob = b.client("bob").await;
    let asking = tokio::spawn(async move {
        call(
            &alice,
            "lighthouse_elicit",
            json!({"to": "bob", "message": "Deploy now?", "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}),
        )
        .await
    });
    let id = next_pending(&bob).await["id"].as_str().unwrap().to_owned();
    let declined = ok(&call(
        &bob,
        "lighthouse_respond_to_elicitation",
        json!({"elicitation_id": id, "action": "decline", "reason": "not during the freeze"}),
    )
    .await);
    assert_eq!(declined["status"], "declined");
    let record = ok(&asking.await.unwrap());
    assert_eq!(record["status"], "declined");
    assert_eq!(record["response"]["action"], "decline");
    assert_eq!(record["response"]["reason"], "not during the freeze");
    assert_eq!(record["response"]["content"], json!(null));
}

#[tokio::test]
async fn a_mismatching_answer_is_refused_and_the_question_stays_pending() {
    let b = start().await;
    let alice = b.client("alice").await;
    let bob = b.client("bob").await;
    let created = ok(&call(
        &alice,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": port_schema(), "wait": false}),
    )
    .await);
    assert_eq!(created["status"], "pending");
    let id = created["id"].as_str().unwrap();

    let p = problem(
        &call(
            &bob,
            "lighthouse_respond_to_elicitation",
            json!({"elicitation_id": id, "action": "accept", "content": {"port": 70000}}),
        )
        .await,
    );
    assert_eq!(p["code"], "schema_mismatch");
    assert_eq!(p["status"], 422);
    assert_eq!(p["type"], "urn:lighthouse:error:schema_mismatch");
    assert_eq!(p["errors"][0]["path"], "/port");

    let still = ok(&call(
        &alice,
        "lighthouse_get_elicitation",
        json!({"elicitation_id": id}),
    )
    .await);
    assert_eq!(still["status"], "pending");
    // A correct answer still works, and the requester's wait sees it.
    ok(&call(
        &bob,
        "lighthouse_respond_to_elicitation",
        json!({"elicitation_id": id, "action": "accept", "content": {"port": 443}}),
    )
    .await);
    let done = ok(&call(
        &alice,
        "lighthouse_get_elicitation",
        json!({"elicitation_id": id, "wait_seconds": 5}),
    )
    .await);
    assert_eq!(done["response"]["content"], json!({"port": 443}));
}

#[tokio::test]
async fn an_unanswered_question_expires_and_the_wait_returns_it() {
    let b = start().await;
    let alice = b.client("alice").await;
    let started = Instant::now();
    let record = ok(&call(
        &alice,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Anyone?", "schema": port_schema(), "timeout_seconds": 1}),
    )
    .await);
    let waited = started.elapsed();
    assert_eq!(record["status"], "expired");
    assert_eq!(
        record["response"],
        json!({"action": "expire", "content": null, "reason": null, "by": null})
    );
    assert!(
        waited >= Duration::from_millis(900),
        "returned after {waited:?}"
    );
    // Answering it now is a conflict.
    let bob = b.client("bob").await;
    let p = problem(
        &call(
            &bob,
            "lighthouse_respond_to_elicitation",
            json!({"elicitation_id": record["id"], "action": "accept", "content": {"port": 1}}),
        )
        .await,
    );
    assert_eq!(
        (p["code"].as_str(), p["status"].as_u64()),
        (Some("expired"), Some(409))
    );
}

#[tokio::test]
async fn only_the_target_answers_and_others_do_not_see_it() {
    let b = start().await;
    let alice = b.client("alice").await;
    let carol = b.client("carol").await;
    let created = ok(&call(
        &alice,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "Which port?", "schema": port_schema(), "wait": false}),
    )
    .await);
    let id = created["id"].as_str().unwrap();
    let answer = json!({"elicitation_id": id, "action": "accept", "content": {"port": 1}});

    // Carol is neither party: it does not exist for her.
    let p = problem(&call(&carol, "lighthouse_respond_to_elicitation", answer.clone()).await);
    assert_eq!(
        (p["code"].as_str(), p["status"].as_u64()),
        (Some("not_found"), Some(404))
    );
    let p = problem(
        &call(
            &carol,
            "lighthouse_get_elicitation",
            json!({"elicitation_id": id}),
        )
        .await,
    );
    assert_eq!(p["code"], "not_found");
    assert_eq!(
        ok(&call(&carol, "lighthouse_check_elicitations", json!({})).await)["items"],
        json!([])
    );
    // Alice asked: she may read and cancel it, not answer it.
    let p = problem(&call(&alice, "lighthouse_respond_to_elicitation", answer).await);
    assert_eq!(
        (p["code"].as_str(), p["status"].as_u64()),
        (Some("forbidden"), Some(403))
    );
    let cancelled = ok(&call(
        &alice,
        "lighthouse_cancel_elicitation",
        json!({"elicitation_id": id, "reason": "asked the wrong agent"}),
    )
    .await);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["response"]["by"], "alice");
    assert_eq!(cancelled["response"]["reason"], "asked the wrong agent");
}

#[tokio::test]
async fn argument_errors_are_problems_naming_the_argument() {
    let b = start().await;
    let alice = b.client("alice").await;
    let p = problem(
        &call(
            &alice,
            "lighthouse_elicit",
            json!({"to": "bob", "message": "x", "schema": port_schema(), "timeout_seconds": 0}),
        )
        .await,
    );
    assert_eq!(p["code"], "invalid_request");
    assert_eq!(p["errors"][0]["path"], "/timeout_seconds");
    let p = problem(&call(
        &alice,
        "lighthouse_elicit",
        json!({"to": "bob", "message": "x", "schema": {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}}),
    )
    .await);
    assert_eq!(p["code"], "invalid_schema");
    assert!(
        p["errors"][0]["path"]
            .as_str()
            .unwrap()
            .starts_with("/schema/"),
        "{p}"
    );
    let p = problem(
        &call(
            &alice,
            "lighthouse_elicit",
            json!({"to": "bob", "message": "x", "schema": port_schema(), "from": "mallory"}),
        )
        .await,
    );
    assert_eq!(p["code"], "invalid_request");
    let p = problem(
        &call(
            &alice,
            "lighthouse_elicit",
            json!({"to": "nobody", "message": "x", "schema": port_schema()}),
        )
        .await,
    );
    assert_eq!(p["code"], "not_found");
}
