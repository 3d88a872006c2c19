//! The PROTOCOL.md 2.2 test vectors, reproduced byte for byte, and accepted by the
//! server side.

mod common;

use common::{Env, Wire, vector_master};
use lighthouse_event_store::Timestamp;
use lighthouse_security::{Action, Role, Signer, SigningInput, body_hash_hex, string_to_sign};

const BODY1: &[u8] = br#"{"to":"bob","message":"Which port?","requested_schema":{"type":"object","properties":{"port":{"type":"integer","minimum":1,"maximum":65535}},"required":["port"]}}"#;

#[test]
fn protocol_vector_one_is_reproduced_byte_for_byte() {
    let secret = vector_master().agent_secret("alice", 1);
    assert_eq!(
        secret.to_hex(),
        "9c380709a83c46c059d5f94454817a9f9cb004ccb92db601f0fcfa69bb063631"
    );
    let hash = body_hash_hex(BODY1);
    assert_eq!(
        &hash,
        b"869598e19de6674add9a6e48099488bc6a277933cfea10d4a43701a7a4b46844"
    );
    let text = string_to_sign(&SigningInput {
        method: "POST",
        path: "/v1/elicitations",
        query: "",
        agent: "alice",
        key_id: b"1",
        timestamp: b"1790000000",
        nonce: "n0nce-0001-abcdef",
        body_hash: &hash,
    });
    assert_eq!(
        text,
        "LH1-HMAC-SHA256\nPOST\n/v1/elicitations\n\nalice\n1\n1790000000\nn0nce-0001-abcdef\n869598e19de6674add9a6e48099488bc6a277933cfea10d4a43701a7a4b46844"
    );
    let h = Signer::new("alice", 1, &secret).sign_with_nonce(
        "POST",
        "/v1/elicitations",
        "",
        BODY1,
        1_790_000_000,
        "n0nce-0001-abcdef",
    );
    assert_eq!(
        h.signature,
        "d2bbea5c20f77139a957cee659902328dceefb21bf4d5792d503c881df7a9a85"
    );
    assert_eq!(
        h.pairs(),
        [
            ("x-lighthouse-agent", "alice"),
            ("x-lighthouse-key-id", "1"),
            ("x-lighthouse-timestamp", "1790000000"),
            ("x-lighthouse-nonce", "n0nce-0001-abcdef"),
            (
                "x-lighthouse-signature",
                "d2bbea5c20f77139a957cee659902328dceefb21bf4d5792d503c881df7a9a85"
            ),
        ]
    );
}

#[test]
fn protocol_vector_two_with_query_is_reproduced_byte_for_byte() {
    let secret = vector_master().agent_secret("bob", 2);
    assert_eq!(
        secret.to_hex(),
        "dad9504d9ba21dea786d5285c7b4c113752e3c8b8bbef36264e67261d26a73d0"
    );
    let h = Signer::new("bob", 2, &secret).sign_with_nonce(
        "GET",
        "/v1/events",
        "stream=notes-1&since=2026-11-26T07%3A00%3A00.000Z&limit=10",
        b"",
        1_798_761_600,
        "Zx_9-abcdefghijkl",
    );
    assert_eq!(
        h.signature,
        "f24fd7872eae71dde7cdb3a37ff67fe1c4076bcea67dbcf8630ed04644ae74e7"
    );
}

#[tokio::test]
async fn the_bridge_accepts_both_vectors_as_sent() {
    let env = Env::new();
    env.agent("alice", Role::Agent).await;
    env.agent("bob", Role::Agent).await;
    env.gate
        .registry()
        .rotate("bob", Some("admin"))
        .await
        .unwrap();

    let mut w = Wire {
        method: "POST".into(),
        path: "/v1/elicitations".into(),
        query: String::new(),
        headers: vec![
            ("X-Lighthouse-Agent".into(), b"alice".to_vec()),
            ("X-Lighthouse-Key-Id".into(), b"1".to_vec()),
            ("X-Lighthouse-Timestamp".into(), b"1790000000".to_vec()),
            ("X-Lighthouse-Nonce".into(), b"n0nce-0001-abcdef".to_vec()),
            (
                "X-Lighthouse-Signature".into(),
                b"d2bbea5c20f77139a957cee659902328dceefb21bf4d5792d503c881df7a9a85".to_vec(),
            ),
        ],
        body: BODY1.to_vec(),
    };
    let ok = env.admit(&w, Action::Elicit).unwrap();
    assert_eq!((ok.caller.agent.as_str(), ok.caller.key_id), ("alice", 1));

    env.clock.set(Timestamp::from_unix_secs(1_798_761_600));
    w.method = "GET".into();
    w.path = "/v1/events".into();
    w.query = "stream=notes-1&since=2026-11-26T07%3A00%3A00.000Z&limit=10".into();
    w.body.clear();
    w.headers = vec![
        ("x-lighthouse-agent".into(), b"bob".to_vec()),
        ("x-lighthouse-key-id".into(), b"2".to_vec()),
        ("x-lighthouse-timestamp".into(), b"1798761600".to_vec()),
        ("x-lighthouse-nonce".into(), b"Zx_9-abcdefghijkl".to_vec()),
        (
            "x-lighthouse-signature".into(),
            b"f24fd7872eae71dde7cdb3a37ff67fe1c4076bcea67dbcf8630ed04644ae74e7".to_vec(),
        ),
    ];
    let ok = env.admit(&w, Action::ReadEvents).unwrap();
    assert_eq!((ok.caller.agent.as_str(), ok.caller.key_id), ("bob", 2));
}
