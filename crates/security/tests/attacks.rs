//! Each attack of issue 3 as a named test asserting the specific refusal.

mod common;

use common::{Env, T0, Wire, elicit};
use lighthouse_security::{
    Action, AgentSecret, Refusal, Role, SecurityConfig, Signer, Unauthenticated, Unavailable,
};

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

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let caller = lighthouse_security::Caller {
        agent: alice.agent.clone(),
        role: alice.role,
        key_id: alice.key_id,
    };
    let tok = env
        .gate
        .tokens()
        .issue(&caller, Some(60), env.gate.clock().now())
        .unwrap();
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
async fn token_of_a_revoked_agent_is_unauthenticated() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let caller = lighthouse_security::Caller {
        agent: alice.agent.clone(),
        role: alice.role,
        key_id: 1,
    };
    let tok = env
        .gate
        .tokens()
        .issue(&caller, None, env.gate.clock().now())
        .unwrap();
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
    let alice = env.agent("alice.bot-1", Role::Agent).await;
    let caller = lighthouse_security::Caller {
        agent: alice.agent.clone(),
        role: alice.role,
        key_id: 1,
    };
    let tok = env
        .gate
        .tokens()
        .issue(&caller, None, env.gate.clock().now())
        .unwrap();
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
async fn rate_limit_at_the_exact_burst_boundary_and_after_refill() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    // elicit: 600 per minute, burst 60, so one every 100 ms.
    for i in 0..60 {
        let w = elicit(&alice, T0, &format!("nonce-burst-{i:06}"), BODY);
        assert!(env.admit(&w, Action::Elicit).is_ok(), "request {i}");
    }
    let w = elicit(&alice, T0, "nonce-burst-over-1", BODY);
    let refused = env.admit(&w, Action::Elicit).unwrap_err();
    assert_eq!(
        refused,
        Refusal::RateLimited {
            class: lighthouse_security::ActionClass::Elicit,
            retry_after_ms: 100
        }
    );
    assert_eq!(refused.retry_after_secs(), Some(1));
    // The refused request used its nonce.
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::ReplayedRequest));
    env.clock.advance_millis(99);
    let w = elicit(&alice, T0, "nonce-burst-over-2", BODY);
    assert!(matches!(
        env.admit(&w, Action::Elicit),
        Err(Refusal::RateLimited {
            retry_after_ms: 1,
            ..
        })
    ));
    env.clock.advance_millis(1);
    assert!(
        env.admit(
            &elicit(&alice, T0, "nonce-burst-refill1", BODY),
            Action::Elicit
        )
        .is_ok()
    );
    assert!(
        env.admit(
            &elicit(&alice, T0, "nonce-burst-refill2", BODY),
            Action::Elicit
        )
        .is_err()
    );
    // A full refill takes 6 s: then the whole burst again.
    env.clock.advance_millis(6000);
    for i in 0..60 {
        let w = elicit(&alice, T0 + 6, &format!("nonce-burst2-{i:05}"), BODY);
        assert!(
            env.admit(&w, Action::Elicit).is_ok(),
            "request {i} after refill"
        );
    }
    assert!(
        env.admit(
            &elicit(&alice, T0 + 6, "nonce-burst2-over1", BODY),
            Action::Elicit
        )
        .is_err()
    );
}

#[tokio::test]
async fn quiet_agents_rate_limit_state_is_reclaimed() {
    let env = Env::new();
    let mut creds = Vec::new();
    for i in 0..50 {
        creds.push(env.agent(&format!("agent-{i}"), Role::Agent).await);
    }
    for (i, c) in creds.iter().enumerate() {
        let h = c.signer().sign_with_nonce(
            "GET",
            "/v1/events",
            "",
            b"",
            T0,
            &format!("nonce-quiet-{i:06}"),
        );
        assert!(
            env.admit(
                &Wire::signed(&h, "GET", "/v1/events", "", b""),
                Action::ReadEvents
            )
            .is_ok()
        );
    }
    assert_eq!(env.gate.limiter().tracked(), 50);
    // One read costs 10 ms of a 6000/min quota: after that the state is "rested".
    env.clock.advance_millis(10);
    env.gate.housekeeping();
    assert_eq!(env.gate.limiter().tracked(), 0);
}

#[tokio::test]
async fn nonce_store_full_refuses_with_unavailable() {
    let mut config = SecurityConfig::default();
    config.nonces.per_agent_capacity = 5;
    config.nonces.capacity = 8;
    let env = Env::with_config(config);
    let alice = env.agent("alice", Role::Agent).await;
    let bob = env.agent("bob", Role::Agent).await;
    for i in 0..5 {
        assert!(
            env.admit(
                &elicit(&alice, T0, &format!("nonce-full-a-{i:04}"), BODY),
                Action::Elicit
            )
            .is_ok()
        );
    }
    let w = elicit(&alice, T0, "nonce-full-a-9999", BODY);
    assert_eq!(
        env.admit(&w, Action::Elicit),
        Err(Refusal::Unavailable(Unavailable::AgentNoncesFull))
    );
    for i in 0..3 {
        assert!(
            env.admit(
                &elicit(&bob, T0, &format!("nonce-full-b-{i:04}"), BODY),
                Action::Elicit
            )
            .is_ok()
        );
    }
    assert_eq!(
        env.admit(&elicit(&bob, T0, "nonce-full-b-9999", BODY), Action::Elicit),
        Err(Refusal::Unavailable(Unavailable::NoncesFull))
    );
    // Nothing was forgotten: the first nonce is still refused as a replay.
    assert_eq!(
        env.admit(
            &elicit(&alice, T0, "nonce-full-a-0000", BODY),
            Action::Elicit
        ),
        Err(Refusal::ReplayedRequest)
    );
    // Once the nonces expire (timestamp + window passed), there is room again.
    env.clock.advance_millis(301_000);
    assert!(
        env.admit(
            &elicit(&alice, T0 + 301, "nonce-full-a-later", BODY),
            Action::Elicit
        )
        .is_ok()
    );
    env.gate.housekeeping();
    assert_eq!(env.gate.nonces().len(), 1);
}

#[tokio::test]
async fn forbidden_action_is_refused_after_authentication() {
    let env = Env::new();
    let watcher = env.agent("watcher", Role::Observer).await;
    let w = elicit(&watcher, T0, "nonce-forbidden-001", BODY);
    let denial = env.gate.admit(&w.request(), Action::Elicit).unwrap_err();
    assert_eq!(
        denial.refusal,
        Refusal::Forbidden {
            action: Action::Elicit
        }
    );
    assert_eq!(denial.audit.len(), 1);
    let ev = &denial.audit[0];
    assert_eq!(ev.stream, "$security");
    assert_eq!(ev.event_type, "security.violation");
    assert_eq!(ev.agent.as_deref(), Some("watcher"));
    assert_eq!(ev.data["kind"], "forbidden");
    assert_eq!(ev.data["action"], "elicit");
    assert_eq!(ev.data["route"], "POST /v1/elicitations");
}

#[tokio::test]
async fn refusals_are_audited_and_floods_sampled() {
    let env = Env::new();
    let alice = env.agent("alice", Role::Agent).await;
    let mut records = Vec::new();
    for i in 0..100 {
        let mut w = elicit(&alice, T0, &format!("nonce-flood-{i:06}"), BODY);
        w.set_header("x-lighthouse-signature", "0".repeat(64).as_bytes());
        let d = env.gate.admit(&w.request(), Action::Elicit).unwrap_err();
        assert_eq!(d.refusal, Refusal::BadSignature);
        records.extend(d.audit);
    }
    assert_eq!(records.len(), 10);
    assert_eq!(records[0].data["agent"], "alice");
    assert_eq!(records[0].data["authenticated"], false);
    assert_eq!(
        records[0].agent, None,
        "an unproven claim is not the event's agent"
    );
    env.clock.advance_millis(60_000);
    let summary = env.gate.flush_audit().unwrap();
    assert_eq!(summary.data["suppressed"], 90);
    // An unknown agent's refusal names the claim but uses the anonymous budget.
    let w = elicit(
        &lighthouse_security::Credential {
            agent: "mallory".into(),
            ..alice.clone()
        },
        env.now_s(),
        "nonce-flood-unknown",
        BODY,
    );
    let d = env.gate.admit(&w.request(), Action::Elicit).unwrap_err();
    assert_eq!(d.audit[0].data["claimed_agent"], "mallory");
    assert_eq!(d.audit[0].data["agent"], serde_json::Value::Null);
}

#[tokio::test]
async fn rate_limits_and_unavailability_are_not_violations() {
    let mut config = SecurityConfig::default();
    config.nonces.per_agent_capacity = 1;
    let env = Env::with_config(config);
    let alice = env.agent("alice", Role::Agent).await;
    assert!(
        env.admit(
            &elicit(&alice, T0, "nonce-notviol-0001", BODY),
            Action::Elicit
        )
        .is_ok()
    );
    let d = env
        .gate
        .admit(
            &elicit(&alice, T0, "nonce-notviol-0002", BODY).request(),
            Action::Elicit,
        )
        .unwrap_err();
    assert_eq!(d.refusal.code(), "unavailable");
    assert!(d.audit.is_empty());
}
