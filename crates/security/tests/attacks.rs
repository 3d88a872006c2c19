//! Each attack of issue 3 as a named test asserting the specific refusal.

mod common;

use common::{Env, T0, Wire, elicit};
use lighthouse_security::{Action, AgentSecret, Refusal, Role, Signer, Unauthenticated};

const BODY: &[u8] = br#"{"to":"bob","message":"Which port?"}"#;

#[tokio::test]
async fn a_valid_signed_request_is_admitted() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let ok = env
        .admit(
            &elicit(&alice, T0, "nonce-valid-000001", BODY),
            Action::Elicit,
        )
        .unwrap();
    assert_eq!(ok.caller.agent, "alice");
    assert_eq!(ok.caller.role, Role::Agent);
    assert_eq!(ok.caller.key_id, 1);
    assert!(ok.token.is_none());
}

#[tokio::test]
async fn wrong_signature_is_bad_signature() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let mut w = elicit(&alice, T0, "nonce-wrong-sig-001", BODY);
    w.set_header("x-lighthouse-signature", "0".repeat(64).as_bytes());
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::BadSignature));
}

#[tokio::test]
async fn signature_made_with_another_agents_key_is_bad_signature() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let bob = env.agent("bob", Role::Agent).await;
    // Bob signs a request claiming to be alice, with his own secret.
    let forged = Signer::new("alice", 1, &bob.secret).sign_with_nonce(
        "POST",
        "/v1/elicitations",
        "",
        BODY,
        T0,
        "nonce-forged-00001",
    );
    let w = Wire::signed(&forged, "POST", "/v1/elicitations", "", BODY);
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::BadSignature));
    // Alice's own request with that nonce still goes through: nothing was burned.
    assert!(
        env.admit(
            &elicit(&alice, T0, "nonce-forged-00001", BODY),
            Action::Elicit
        )
        .is_ok()
    );
}

#[tokio::test]
async fn body_changed_after_signing_is_bad_signature() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let mut w = elicit(&alice, T0, "nonce-body-0000001", BODY);
    w.body = br#"{"to":"eve","message":"Which port?"}"#.to_vec();
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::BadSignature));
}

#[tokio::test]
async fn method_changed_after_signing_is_bad_signature() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let mut w = elicit(&alice, T0, "nonce-method-00001", BODY);
    w.method = "PUT".into();
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::BadSignature));
}

#[tokio::test]
async fn path_changed_after_signing_is_bad_signature() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let mut w = elicit(&alice, T0, "nonce-path-0000001", BODY);
    w.path = "/v1/messages".into();
    assert_eq!(
        env.admit(&w, Action::SendMessage),
        Err(Refusal::BadSignature)
    );
}

#[tokio::test]
async fn query_changed_after_signing_is_bad_signature() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let h = alice.signer().sign_with_nonce(
        "GET",
        "/v1/events",
        "limit=10",
        b"",
        T0,
        "nonce-query-000001",
    );
    let mut w = Wire::signed(&h, "GET", "/v1/events", "limit=10", b"");
    w.query = "limit=1000".into();
    assert_eq!(
        env.admit(&w, Action::ReadEvents),
        Err(Refusal::BadSignature)
    );
    // Adding a query where none was signed is refused too.
    let h = alice
        .signer()
        .sign_with_nonce("GET", "/v1/events", "", b"", T0, "nonce-query-000002");
    let mut w = Wire::signed(&h, "GET", "/v1/events", "", b"");
    w.query = "stream=%24agents".into();
    assert_eq!(
        env.admit(&w, Action::ReadEvents),
        Err(Refusal::BadSignature)
    );
}

#[tokio::test]
async fn timestamp_just_inside_the_window_in_the_past_is_accepted() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let w = elicit(&alice, T0 - 300, "nonce-past-inside01", BODY);
    assert!(env.admit(&w, Action::Elicit).is_ok());
}

#[tokio::test]
async fn timestamp_just_outside_the_window_in_the_past_is_stale() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let w = elicit(&alice, T0 - 301, "nonce-past-outside1", BODY);
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::StaleRequest));
}

#[tokio::test]
async fn timestamp_just_inside_the_window_in_the_future_is_accepted() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    // 999 ms into the second: still `now` in whole seconds.
    env.clock.advance_millis(999);
    let w = elicit(&alice, T0 + 300, "nonce-future-inside", BODY);
    assert!(env.admit(&w, Action::Elicit).is_ok());
}

#[tokio::test]
async fn timestamp_just_outside_the_window_in_the_future_is_stale() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let w = elicit(&alice, T0 + 301, "nonce-future-outsid", BODY);
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::StaleRequest));
}

/// A timestamp that is a well-formed decimal but beyond `i64` (or `u64`) is
/// a time far outside the window, as `i64::MAX` is: stale, not malformed.
#[tokio::test]
async fn timestamp_beyond_i64_is_stale_not_malformed() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    for ts in [
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
    ] {
        let mut w = elicit(&alice, T0, "nonce-ts-overflow-1", BODY);
        w.set_header("x-lighthouse-timestamp", ts.as_bytes());
        assert_eq!(
            env.admit(&w, Action::Elicit),
            Err(Refusal::StaleRequest),
            "{ts}"
        );
    }
    // Not a canonical decimal stays malformed, however large.
    for ts in [
        "09223372036854775808",
        "+9223372036854775808",
        "9223372036854775808 ",
    ] {
        let mut w = elicit(&alice, T0, "nonce-ts-overflow-2", BODY);
        w.set_header("x-lighthouse-timestamp", ts.as_bytes());
        assert_eq!(
            env.admit(&w, Action::Elicit),
            Err(Refusal::Unauthenticated(Unauthenticated::MalformedHeader(
                "x-lighthouse-timestamp"
            ))),
            "{ts}"
        );
    }
}

#[tokio::test]
async fn stale_check_comes_before_the_signature_check() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let mut w = elicit(&alice, T0 - 1000, "nonce-stale-badsig1", BODY);
    w.set_header("x-lighthouse-signature", "f".repeat(64).as_bytes());
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::StaleRequest));
}

#[tokio::test]
async fn replayed_nonce_with_the_same_body_is_refused() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let w = elicit(&alice, T0, "nonce-replay-same01", BODY);
    assert!(env.admit(&w, Action::Elicit).is_ok());
    env.clock.advance_millis(250_000);
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::ReplayedRequest));
}

#[tokio::test]
async fn replayed_nonce_with_a_different_body_is_refused() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    assert!(
        env.admit(
            &elicit(&alice, T0, "nonce-replay-diff01", BODY),
            Action::Elicit
        )
        .is_ok()
    );
    // Correctly signed, but the nonce was used.
    let other = elicit(&alice, T0 + 1, "nonce-replay-diff01", br#"{"to":"carol"}"#);
    assert_eq!(
        env.admit(&other, Action::Elicit),
        Err(Refusal::ReplayedRequest)
    );
}

#[tokio::test]
async fn a_replay_after_the_window_is_stale_not_accepted() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let w = elicit(&alice, T0, "nonce-replay-late01", BODY);
    assert!(env.admit(&w, Action::Elicit).is_ok());
    env.clock.advance_millis(301_000);
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::StaleRequest));
}

#[tokio::test]
async fn the_same_nonce_from_two_agents_is_allowed() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let bob = env.agent("bob", Role::Agent).await;
    assert!(
        env.admit(
            &elicit(&alice, T0, "shared-nonce-00001", BODY),
            Action::Elicit
        )
        .is_ok()
    );
    assert!(
        env.admit(
            &elicit(&bob, T0, "shared-nonce-00001", BODY),
            Action::Elicit
        )
        .is_ok()
    );
}

#[tokio::test]
async fn unknown_and_revoked_agents_get_the_same_answer() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let eve = env.agent("eve", Role::Agent).await;
    env.gate
        .registry()
        .revoke("eve", Some("admin"))
        .await
        .unwrap();
    let mallory = Signer::new("mallory", 1, &AgentSecret::from_bytes([9; 32]));
    let revoked = eve.signer();
    let wrong_key = Signer::new("alice", 1, &AgentSecret::from_bytes([9; 32]));
    let _ = alice;
    for (ts, expected) in [
        (T0, Refusal::BadSignature),
        (T0 - 301, Refusal::StaleRequest),
    ] {
        let answers: Vec<_> = [&mallory, &revoked, &wrong_key]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let nonce = format!("nonce-same-answer{i}{ts}");
                let h = s.sign_with_nonce("POST", "/v1/elicitations", "", BODY, ts, &nonce);
                env.admit(
                    &Wire::signed(&h, "POST", "/v1/elicitations", "", BODY),
                    Action::Elicit,
                )
            })
            .collect();
        assert_eq!(answers, vec![Err(expected); 3], "timestamp {ts}");
    }
}

#[tokio::test]
async fn rotated_key_is_accepted_during_grace_and_refused_after() {
    let env = Env::new();
    let old = env.agent("alice", Role::Agent).await;
    let new = env
        .gate
        .registry()
        .rotate("alice", Some("admin"))
        .await
        .unwrap();
    assert_eq!(new.key_id, 2);
    let grace_ms = 24 * 3600 * 1000;
    env.clock.advance_millis(grace_ms - 1000);
    let now = env.now_s();
    let ok = env
        .admit(
            &elicit(&old, now, "nonce-grace-inside1", BODY),
            Action::Elicit,
        )
        .unwrap();
    assert_eq!(ok.caller.key_id, 1);
    env.clock.advance_millis(1000);
    let now = env.now_s();
    assert_eq!(
        env.admit(
            &elicit(&old, now, "nonce-grace-after01", BODY),
            Action::Elicit
        ),
        Err(Refusal::BadSignature)
    );
    let ok = env
        .admit(
            &elicit(&new, now, "nonce-grace-newkey1", BODY),
            Action::Elicit,
        )
        .unwrap();
    assert_eq!(ok.caller.key_id, 2);
}

#[tokio::test]
async fn revoked_agent_is_refused_with_every_key() {
    let env = Env::new();
    let k1 = env.agent("alice", Role::Agent).await;
    let k2 = env.gate.registry().rotate("alice", None).await.unwrap();
    env.gate.registry().revoke("alice", None).await.unwrap();
    for (i, c) in [k1, k2].iter().enumerate() {
        assert_eq!(
            env.admit(
                &elicit(c, T0, &format!("nonce-revoked-key{i}"), BODY),
                Action::Elicit
            ),
            Err(Refusal::BadSignature)
        );
    }
}

/// A fresh agent `agent` (role agent, key 1) and a token issued to it now.
async fn token_for(
    env: &Env,
    agent: &str,
    ttl_s: Option<u64>,
) -> (
    lighthouse_security::Caller,
    lighthouse_security::IssuedToken,
) {
    let cred = env.agent(agent, Role::Agent).await;
    let caller = lighthouse_security::Caller {
        agent: cred.agent.clone(),
        role: cred.role,
        key_id: cred.key_id,
    };
    let tok = env
        .gate
        .tokens()
        .issue(&caller, ttl_s, env.gate.clock().now())
        .unwrap();
    (caller, tok)
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let env = Env::new();
    let (caller, tok) = token_for(&env, "alice", Some(60)).await;
    let w = Wire::bearer(&tok.token, "GET", "/v1/stream");
    assert_eq!(env.admit(&w, Action::OpenOwnStream).unwrap().caller, caller);
    env.clock.advance_millis(59_999);
    assert!(env.admit(&w, Action::OpenOwnStream).is_ok());
    env.clock.advance_millis(1);
    assert_eq!(
        env.admit(&w, Action::OpenOwnStream),
        Err(Refusal::Unauthenticated(Unauthenticated::ExpiredToken))
    );
}

#[tokio::test]
async fn a_token_cannot_create_a_session_but_may_end_its_own() {
    let env = Env::new();
    let (caller, tok) = token_for(&env, "alice", Some(60)).await;
    let mint = Wire::bearer(&tok.token, "POST", "/v1/sessions");
    assert_eq!(
        env.admit(&mint, Action::ManageOwnSession),
        Err(Refusal::Unauthenticated(Unauthenticated::SignatureRequired))
    );
    let end = Wire::bearer(&tok.token, "DELETE", "/v1/sessions/current");
    assert_eq!(
        env.admit(&end, Action::ManageOwnSession).unwrap().caller,
        caller
    );
}

#[tokio::test]
async fn token_of_a_revoked_agent_is_unauthenticated() {
    let env = Env::new();
    let (_, tok) = token_for(&env, "alice", None).await;
    let w = Wire::bearer(&tok.token, "GET", "/v1/stream");
    assert!(env.admit(&w, Action::OpenOwnStream).is_ok());
    env.gate
        .registry()
        .revoke("alice", Some("admin"))
        .await
        .unwrap();
    assert_eq!(
        env.admit(&w, Action::OpenOwnStream),
        Err(Refusal::Unauthenticated(Unauthenticated::TokenKeyInactive))
    );
}

#[tokio::test]
async fn token_with_any_single_byte_changed_is_refused() {
    let env = Env::new();
    let (_, tok) = token_for(&env, "alice.bot-1", None).await;
    let now = env.gate.clock().now();
    assert!(env.gate.tokens().check(tok.token.as_bytes(), now).is_ok());
    let bytes = tok.token.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b'0', b'a', b'f', b'A', b'.', b'z', 0x80, b'1'] {
            if bytes[i] == replacement {
                continue;
            }
            let mut t = bytes.to_vec();
            t[i] = replacement;
            assert_eq!(
                env.gate.tokens().check(&t, now),
                Err(Unauthenticated::InvalidToken),
                "byte {i} set to {replacement}"
            );
        }
    }
}

#[tokio::test]
async fn malformed_headers_are_unauthenticated() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let good = elicit(&alice, T0, "nonce-malformed-001", BODY);
    let long = vec![b'a'; 100_000];
    for (name, value) in [
        ("x-lighthouse-signature", b"zz".repeat(32)),
        ("x-lighthouse-signature", "é".repeat(32).into_bytes()),
        ("x-lighthouse-key-id", b"one".to_vec()),
        ("x-lighthouse-timestamp", b"1790000000.5".to_vec()),
        ("x-lighthouse-nonce", long.clone()),
        ("x-lighthouse-agent", long.clone()),
        ("x-lighthouse-agent", "älice".as_bytes().to_vec()),
    ] {
        let mut w = Wire {
            headers: good.headers.clone(),
            ..elicit(&alice, T0, "x-unused-nonce-000", BODY)
        };
        w.set_header(name, &value);
        assert!(
            matches!(
                env.admit(&w, Action::Elicit),
                Err(Refusal::Unauthenticated(Unauthenticated::MalformedHeader(n))) if n == name
            ),
            "{name}"
        );
    }
    let mut dup = elicit(&alice, T0, "nonce-malformed-002", BODY);
    dup.headers
        .push(("X-Lighthouse-Timestamp".into(), T0.to_string().into_bytes()));
    assert_eq!(
        env.admit(&dup, Action::Elicit),
        Err(Refusal::Unauthenticated(Unauthenticated::DuplicatedHeader(
            "x-lighthouse-timestamp"
        )))
    );
}

#[tokio::test]
async fn a_clock_stepping_back_revives_no_expired_or_revoked_token() {
    let env = Env::new();
    let (_, tok) = token_for(&env, "alice", Some(60)).await;
    let w = Wire::bearer(&tok.token, "GET", "/v1/stream");
    let id = env.admit(&w, Action::OpenOwnStream).unwrap().token.unwrap();
    env.gate
        .tokens()
        .revoke(&id, Some("alice"), env.gate.clock().now())
        .await
        .unwrap();
    assert_eq!(env.gate.tokens().revoked_len(), 1);
    // Past its expiry, housekeeping forgets the revocation...
    env.clock.advance_millis(61_000);
    env.gate.housekeeping();
    assert_eq!(env.gate.tokens().revoked_len(), 0);
    // ...and then the clock steps back (NTP) to before the expiry: the token
    // is still refused, as expired.
    env.clock.advance_millis(-30_000);
    assert_eq!(
        env.admit(&w, Action::OpenOwnStream),
        Err(Refusal::Unauthenticated(Unauthenticated::ExpiredToken))
    );
    let verifier = env.gate.verifier();
    assert!(
        verifier
            .verify_bearer(
                format!("Bearer {}", tok.token).as_bytes(),
                env.gate.clock().now()
            )
            .is_err()
    );
}
