//! The shape of `400 invalid_request` answers (PROTOCOL.md 3): each error
//! names its field by JSON pointer, through a real socket.

mod common;

use common::start;
use reqwest::Method;
use serde_json::json;

/// The pointers of a reply's `errors`.
fn paths(r: &common::Reply) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["path"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_missing_field_is_named_by_its_pointer() {
    let t = start().await;
    let (alice, admin, ops) = (t.agent("alice"), t.agent("admin"), t.agent("ops"));
    for (who, path, body, pointer) in [
        (
            &alice,
            "/v1/events",
            json!({"type": "a.b", "data": {}}),
            "/stream",
        ),
        (
            &alice,
            "/v1/events",
            json!({"stream": "p-1", "type": "a.b"}),
            "/data",
        ),
        (&alice, "/v1/messages", json!({"body": 1}), "/to"),
        (&admin, "/v1/agents", json!({"id": "zz-ptr"}), "/role"),
        (
            &alice,
            "/v1/elicitations",
            json!({"to": "bob", "message": "m"}),
            "/requested_schema",
        ),
    ] {
        let r = who.post(path, body.clone()).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{body}");
        assert_eq!(paths(&r), [pointer], "{path} {body}: {:?}", r.body);
    }
    // The same for a query parameter a route requires.
    let r = ops.get("/v1/flags/elicitation_enabled/evaluate").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(paths(&r), ["/agent"], "{:?}", r.body);
}

#[tokio::test]
async fn field_names_are_escaped_not_split() {
    let t = start().await;
    let alice = t.agent("alice");
    for (field, pointer) in [
        ("we.ird", "/we.ird"),
        ("a[0]", "/a[0]"),
        ("sl/ash", "/sl~1ash"),
        ("ti~lde", "/ti~0lde"),
    ] {
        let mut body = json!({"stream": "p-1", "type": "a.b", "data": {}});
        body[field] = json!(1);
        let r = alice.post("/v1/events", body).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{field}");
        assert_eq!(paths(&r), [pointer], "{field}: {:?}", r.body);
    }
    // Inside a nested value too (the schema's properties are a map).
    let r = alice
        .send(
            Method::POST,
            "/v1/elicitations",
            br#"{"to":"bob","message":"m","requested_schema":{"type":"object","properties":{}},"timeout_ms":1,"metadata":{},"x.y":0}"#,
        )
        .await;
    assert_eq!(paths(&r), ["/x.y"], "{:?}", r.body);
}
