//! Rate limits, the nonce store's capacity, authorization and the audit of
//! refusals, through the gate (attacks of issue 3, continued from attacks.rs).

mod common;

use common::{Env, T0, Wire, elicit};
use lighthouse_security::{Action, Refusal, Role, SecurityConfig, Unavailable};

const BODY: &[u8] = br#"{"to":"bob","message":"Which port?"}"#;

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
    // Bob fills the store (8) and then some: past it, an agent below its fair
    // share (8 / 2 holders) still gets in.
    for i in 0..4 {
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
