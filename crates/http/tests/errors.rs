//! The shape of `400 invalid_request` answers (PROTOCOL.md 3): every one has
//! `errors`, and each error names its field by JSON pointer, through a real
//! socket.

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
async fn a_repeated_field_is_named_by_its_pointer() {
    let t = start().await;
    let alice = t.agent("alice");
    let r = alice
        .send(
            Method::POST,
            "/v1/events",
            br#"{"stream":"p-1","type":"a.b","data":{},"stream":"p-2"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(paths(&r), ["/stream"], "{:?}", r.body);
    let r = alice.get("/v1/events?limit=1&limit=2").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(paths(&r), ["/limit"], "{:?}", r.body);
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

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_named() {
    let t = start().await;
    let (alice, ops) = (t.agent("alice"), t.agent("ops"));
    for (who, path, pointer) in [
        (&ops, "/v1/flags/%C3%28", "/key"),
        (&ops, "/v1/flags/%C3%28/history", "/key"),
        (&alice, "/v1/elicitations/%FF", "/id"),
        (&alice, "/v1/elicitations/%FF/cancel", "/id"),
    ] {
        let method = if path.ends_with("cancel") {
            Method::POST
        } else {
            Method::GET
        };
        let r = who.send(method, path, b"").await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request"),
            "{path}: {:?}",
            r.body
        );
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(paths(&r), [pointer], "{path}: {:?}", r.body);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains("not valid UTF-8"), "{path}: {detail}");
    }
}

/// Sends `head` and `body` on a fresh connection, closes its sending side,
/// and reads the answer's status and problem body.
async fn raw_exchange(base: &str, head: &str, body: &[u8]) -> (String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_end(&mut answer),
    )
    .await
    .expect("an answer in time")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test]
async fn a_body_that_cannot_be_read_is_named_at_the_root() {
    let t = start().await;
    for (what, head, body) in [
        (
            "cut short",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
            &br#"{"stream""#[..],
        ),
        (
            "broken chunked framing",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
        ),
    ] {
        let (status, problem) = raw_exchange(&t.base, head, body).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{what}: {status}");
        assert_eq!(problem["code"], "invalid_request", "{what}: {problem}");
        let errors = problem["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{what}: {problem}");
        assert_eq!(errors[0]["path"], "", "{what}: {problem}");
        assert!(
            !errors[0]["message"].as_str().unwrap().is_empty(),
            "{what}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("the request body could not be read ("),
            "{what}: {problem}"
        );
    }
}

#[tokio::test]
async fn a_body_too_slow_to_arrive_is_named_at_the_root() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = common::start_tuned(
        |_| {},
        |h| h.body_read_timeout = std::time::Duration::from_millis(200),
    )
    .await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Half the body, then nothing (the connection stays open).
    s.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{\"a\"",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_end(&mut answer),
    )
    .await
    .expect("an answer in time")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let problem: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["errors"][0]["path"], "", "{problem}");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("did not arrive within 200 ms"),
        "{problem}"
    );
}

/// PROTOCOL.md 7: an event's `metadata` is an object. Anything else is
/// refused naming it; `null` is taken as absent and stored as `{}`. An
/// elicitation's `metadata` is held to the same rule.
#[tokio::test]
async fn metadata_that_is_not_an_object_is_refused() {
    let t = start().await;
    let (alice, admin) = (t.agent("alice"), t.agent("admin"));
    for metadata in [json!(5), json!("str"), json!([1]), json!(true)] {
        let r = alice
            .post(
                "/v1/events",
                json!({"stream": "meta-1", "type": "a.b", "data": {}, "metadata": metadata}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request"),
            "{metadata}: {:?}",
            r.body
        );
        assert_eq!(paths(&r), ["/metadata"], "{metadata}: {:?}", r.body);
        let r = alice
            .post(
                "/v1/elicitations",
                json!({"to": "bob", "message": "m", "requested_schema": common::port_schema(), "metadata": metadata}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request"),
            "{metadata}: {:?}",
            r.body
        );
        assert_eq!(paths(&r), ["/metadata"], "{metadata}: {:?}", r.body);
    }
    let nothing_stored = admin.get("/v1/events?stream=meta-1").await;
    assert_eq!(nothing_stored.body["events"], json!([]));
    for (metadata, stored) in [
        (json!(null), json!({})),
        (json!({"k": [1]}), json!({"k": [1]})),
    ] {
        let r = alice
            .post(
                "/v1/events",
                json!({"stream": "meta-1", "type": "a.b", "data": {}, "metadata": metadata}),
            )
            .await;
        assert_eq!(r.status, 201, "{metadata}: {:?}", r.body);
        let seq = r.body["seq"].as_u64().unwrap();
        let page = admin
            .get(&format!("/v1/events?after={}&limit=1", seq - 1))
            .await;
        assert_eq!(page.body["events"][0]["metadata"], stored, "{metadata}");
    }
}

/// `me` is reserved as `local-admin` is: `GET /v1/agents/me` means the
/// caller, so an agent named `me` could not be named by its own path (its
/// rotate and revoke would act on it while `GET` meant someone else).
#[tokio::test]
async fn reserved_agent_ids_are_refused_naming_the_id() {
    let t = start().await;
    let admin = t.agent("admin");
    for id in ["me", "local-admin"] {
        let r = admin
            .post("/v1/agents", json!({"id": id, "role": "agent"}))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request"),
            "{id}: {:?}",
            r.body
        );
        assert_eq!(paths(&r), ["/id"], "{id}: {:?}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("reserved"), "{id}: {message}");
    }
    assert_eq!(
        admin.post("/v1/agents/me/rotate", json!({})).await.status,
        404
    );
    let list = admin.get("/v1/agents").await;
    let ids: Vec<&str> = list.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"me"), "{ids:?}");
    // `GET /v1/agents/me` is still "who am I".
    let me = admin.get("/v1/agents/me").await;
    assert_eq!(me.body["agent"], "admin");
}
