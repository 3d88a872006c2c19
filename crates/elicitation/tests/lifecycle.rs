//! The full lifecycle of an elicitation, and every permission rule.

mod common;

use common::*;
use lighthouse_elicitation::{
    Action, CancelRequest, CreateRequest, Error, Limits, RespondRequest, Status, events,
};
use lighthouse_event_store::{Filter, Query};
use serde_json::json;

#[tokio::test]
async fn create_accept_and_both_sides_see_the_outcome() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let created = svc
        .create(&alice(), "req-1", ask("bob"), None)
        .await
        .unwrap();
    assert!(!created.replayed);
    let r = created.record;
    assert!(events::is_elicitation_id(&r.id), "{}", r.id);
    let v = serde_json::to_value(&*r).unwrap();
    assert_eq!(v["status"], "pending");
    assert_eq!(v["from"], "alice");
    assert_eq!(v["to"], "bob");
    assert_eq!(v["response"], serde_json::Value::Null);
    assert_eq!(v["resolved_at"], serde_json::Value::Null);
    assert_eq!(v["metadata"], json!({}));
    assert_eq!(v["created_at"], "2026-11-26T07:00:00.000Z");
    assert_eq!(v["expires_at"], "2026-11-26T07:00:30.000Z");

    clock.advance_millis(1500);
    let done = svc
        .respond(
            &bob(),
            "req-2",
            &r.id,
            RespondRequest::accept(json!({"port": 8080})),
        )
        .await
        .unwrap();
    let v = serde_json::to_value(&*done).unwrap();
    assert_eq!(v["status"], "accepted");
    assert_eq!(v["resolved_at"], "2026-11-26T07:00:01.500Z");
    assert_eq!(
        v["response"],
        json!({"action": "accept", "content": {"port": 8080}, "reason": null, "by": "bob"})
    );
    // The requester reads the answer.
    let seen = svc.get(&alice(), &r.id, 0).await.unwrap();
    assert_eq!(seen, done);

    // One event per transition, on the elicitation's stream, each correlated with its request.
    let evs = store
        .read_stream(&format!("elicitation-{}", r.id), 0, 10)
        .unwrap();
    let got: Vec<_> = evs
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.version,
                e.agent.as_deref(),
                e.correlation_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("elicitation.requested", 0, Some("alice"), Some("req-1")),
            ("elicitation.accepted", 1, Some("bob"), Some("req-2")),
        ]
    );
    assert_eq!(evs[1].causation_id.as_deref(), Some(evs[0].id.as_str()));
    assert_eq!(evs[0].data["from"], "alice");
    assert_eq!(evs[1].data["to"], "bob");
}

#[tokio::test]
async fn decline_and_cancel_record_who_and_why() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let a = svc
        .create(&alice(), "r1", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let d = svc
        .respond(
            &bob(),
            "r2",
            &a.id,
            RespondRequest::decline(Some("busy".into())),
        )
        .await
        .unwrap();
    assert_eq!(d.status, Status::Declined);
    let resp = d.response.clone().unwrap();
    assert_eq!(
        (
            resp.action,
            resp.content,
            resp.reason.as_deref(),
            resp.by.as_deref()
        ),
        (Action::Decline, None, Some("busy"), Some("bob"))
    );

    let b = svc
        .create(&alice(), "r3", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let c = svc
        .cancel(&alice(), "r4", &b.id, CancelRequest { reason: None })
        .await
        .unwrap();
    assert_eq!(c.status, Status::Cancelled);
    let v = serde_json::to_value(&*c).unwrap();
    assert_eq!(
        v["response"],
        json!({"action": "cancel", "content": null, "reason": null, "by": "alice"})
    );
}

#[tokio::test]
async fn a_terminal_state_never_changes() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let r = svc
        .create(&alice(), "r1", ask("bob"), None)
        .await
        .unwrap()
        .record;
    svc.respond(
        &bob(),
        "r2",
        &r.id,
        RespondRequest::accept(json!({"port": 1})),
    )
    .await
    .unwrap();
    for e in [
        svc.respond(&bob(), "r3", &r.id, RespondRequest::decline(None))
            .await
            .unwrap_err(),
        svc.respond(
            &bob(),
            "r4",
            &r.id,
            RespondRequest::accept(json!({"port": 2})),
        )
        .await
        .unwrap_err(),
        svc.cancel(&alice(), "r5", &r.id, CancelRequest::default())
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                e,
                Error::AlreadyResolved {
                    status: Status::Accepted,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.code(), "already_resolved");
    }
    assert_eq!(
        stream_types(&store, &r.id),
        vec!["elicitation.requested", "elicitation.accepted"]
    );
}

#[tokio::test]
async fn a_mismatched_answer_lists_every_violation_and_leaves_it_pending() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let schema = json!({"type": "object", "properties": {
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "host": {"type": "string", "format": "uri"}}, "required": ["port", "host"]});
    let r = svc
        .create(
            &alice(),
            "r1",
            CreateRequest::new("bob", "where?", schema),
            None,
        )
        .await
        .unwrap()
        .record;
    let e = svc
        .respond(
            &bob(),
            "r2",
            &r.id,
            RespondRequest::accept(json!({"port": 70000, "extra": true})),
        )
        .await
        .unwrap_err();
    let Error::SchemaMismatch { errors } = e else {
        panic!("{e:?}")
    };
    let got: Vec<_> = errors
        .iter()
        .map(|v| (v.path.as_str(), v.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/extra", "is not a property of the requested schema"),
            ("/host", "is a required property"),
            ("/port", "70000 is greater than the maximum of 65535"),
        ]
    );
    assert_eq!(
        svc.get(&alice(), &r.id, 0).await.unwrap().status,
        Status::Pending
    );
    assert_eq!(stream_types(&store, &r.id), vec!["elicitation.requested"]);
    // A correct answer still goes through.
    let ok = svc
        .respond(
            &bob(),
            "r3",
            &r.id,
            RespondRequest::accept(json!({"port": 80, "host": "http://h"})),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, Status::Accepted);
}

#[tokio::test]
async fn requests_are_checked_field_by_field() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let limits = Limits::default();
    let cases: Vec<(CreateRequest, &str)> = vec![
        (CreateRequest::new("Bob!", "q", port_schema()), "/to"),
        (
            CreateRequest::new(
                "bob",
                "x".repeat(limits.max_message_bytes + 1),
                port_schema(),
            ),
            "/message",
        ),
        (ask("bob").timeout_ms(999), "/timeout_ms"),
        (ask("bob").timeout_ms(3_600_001), "/timeout_ms"),
        (
            CreateRequest {
                metadata: Some(json!([1])),
                ..ask("bob")
            },
            "/metadata",
        ),
        (
            CreateRequest {
                metadata: Some(json!({"k": "v".repeat(limits.max_metadata_bytes)})),
                ..ask("bob")
            },
            "/metadata",
        ),
    ];
    for (req, path) in cases {
        match svc.create(&alice(), "r", req, None).await {
            Err(Error::InvalidRequest { errors }) => assert_eq!(errors[0].path, path),
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(
        svc.create(&alice(), "r", ask("bob").timeout_ms(1000), None)
            .await
            .is_ok()
    );
    assert!(
        svc.create(&alice(), "r", ask("bob").timeout_ms(3_600_000), None)
            .await
            .is_ok()
    );
    // Respond bodies too.
    let r = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let bad = [
        (
            RespondRequest {
                content: None,
                ..RespondRequest::accept(json!({}))
            },
            "/content",
        ),
        (
            RespondRequest {
                reason: Some("x".into()),
                ..RespondRequest::accept(json!({"port": 1}))
            },
            "/reason",
        ),
        (
            RespondRequest {
                content: Some(json!({})),
                ..RespondRequest::decline(None)
            },
            "/content",
        ),
        (
            RespondRequest::decline(Some("r".repeat(limits.max_reason_bytes + 1))),
            "/reason",
        ),
        (
            RespondRequest::accept(json!({"port": 1, "pad": "p".repeat(limits.max_content_bytes)})),
            "/content",
        ),
    ];
    for (req, path) in bad {
        match svc.respond(&bob(), "r", &r.id, req).await {
            Err(Error::InvalidRequest { errors }) => assert_eq!(errors[0].path, path),
            other => panic!("{path}: {other:?}"),
        }
    }
    // Unknown body fields are refused by the serde types.
    assert!(
        serde_json::from_value::<CreateRequest>(
            json!({"to": "bob", "message": "q", "requested_schema": {}, "from": "mallory"})
        )
        .is_err()
    );
    assert!(
        serde_json::from_value::<RespondRequest>(
            json!({"action": "accept", "content": {}, "responding_agent": "x"})
        )
        .is_err()
    );
    // A bad schema is invalid_schema and writes nothing.
    let before = store.head_seq();
    let e = svc
        .create(
            &alice(),
            "r",
            CreateRequest::new(
                "bob",
                "q",
                json!({"type": "object", "properties": {"a": {"type": "object"}}}),
            ),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_schema");
    assert_eq!(store.head_seq(), before);
    assert!(
        svc.create(&alice(), "bad id!", ask("bob"), None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn json_schema_profile_end_to_end() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let req = CreateRequest {
        schema_profile: Some(lighthouse_elicitation::SchemaProfile::JsonSchema),
        ..CreateRequest::new(
            "bob",
            "q",
            json!({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5}}, "additionalProperties": false}),
        )
    };
    let r = svc.create(&alice(), "r", req, None).await.unwrap().record;
    let e = svc
        .respond(&bob(), "r", &r.id, RespondRequest::accept(json!({"n": 7})))
        .await
        .unwrap_err();
    let Error::SchemaMismatch { errors } = e else {
        panic!()
    };
    assert_eq!(errors[0].path, "/n");
    assert!(
        svc.respond(&bob(), "r", &r.id, RespondRequest::accept(json!({"n": 10})))
            .await
            .is_ok()
    );
    // The profile is kept in the event, not on the record.
    let ev = &store
        .read(&Query::new(Filter::stream(format!("elicitation-{}", r.id))))
        .unwrap()
        .events[0];
    assert_eq!(ev.data["schema_profile"], "json-schema");
    assert!(
        serde_json::to_value(&*r)
            .unwrap()
            .get("schema_profile")
            .is_none()
    );
    // A remote reference is refused, and nothing was fetched.
    let req = CreateRequest {
        schema_profile: Some(lighthouse_elicitation::SchemaProfile::JsonSchema),
        ..CreateRequest::new("bob", "q", json!({"$ref": "http://127.0.0.1:1/x.json"}))
    };
    assert_eq!(
        svc.create(&alice(), "r", req, None)
            .await
            .unwrap_err()
            .code(),
        "invalid_schema"
    );
    assert_eq!(svc.refused_retrievals(), 1);
}

#[tokio::test]
async fn a_null_answer_is_an_answer_where_the_schema_allows_it() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let req = CreateRequest {
        schema_profile: Some(lighthouse_elicitation::SchemaProfile::JsonSchema),
        ..CreateRequest::new("bob", "q", json!({"type": ["object", "null"]}))
    };
    let r = svc.create(&alice(), "r", req, None).await.unwrap().record;
    let parse = |v| serde_json::from_value::<RespondRequest>(v).unwrap();
    // No content at all is still refused.
    let missing = parse(json!({"action": "accept"}));
    assert_eq!(
        svc.respond(&bob(), "r", &r.id, missing)
            .await
            .unwrap_err()
            .code(),
        "invalid_request"
    );
    let null = parse(json!({"action": "accept", "content": null}));
    assert_eq!(null.content, Some(serde_json::Value::Null));
    let done = svc.respond(&bob(), "r", &r.id, null).await.unwrap();
    assert_eq!(done.status, Status::Accepted);
    assert_eq!(
        serde_json::to_value(&*done).unwrap()["response"]["content"],
        serde_json::Value::Null
    );
    // A decline with `content: null` is read as a decline without content.
    let decline = parse(json!({"action": "decline", "content": null}));
    let r = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    assert!(svc.respond(&bob(), "r", &r.id, decline).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_on_a_create_written_but_not_applied_yet_waits_for_it() {
    let clock = manual_clock();
    let (svc, store) = open_temp(&clock).await;
    let model = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let first = &store
        .read(&Query::new(Filter::stream(format!(
            "elicitation-{}",
            model.id
        ))))
        .unwrap()
        .events[0];
    // Creates written to the log by hand (as another writer would): the
    // applier follows the log, so each is acted on at once, possibly before
    // the projection has it. That is not "already resolved" while pending.
    for i in 0..20 {
        let id = format!("el_{}", ulid::Ulid::generate());
        let mut data = first.data.clone();
        data["id"] = json!(id);
        store
            .append_one(lighthouse_event_store::NewEvent::new(
                format!("elicitation-{id}"),
                "elicitation.requested",
                data,
            ))
            .await
            .unwrap();
        let done = if i % 2 == 0 {
            svc.respond(&bob(), "r", &id, RespondRequest::accept(json!({"port": 1})))
                .await
        } else {
            svc.cancel(&alice(), "r", &id, CancelRequest::default())
                .await
        };
        assert!(done.is_ok(), "{i}: {done:?}");
    }
}
