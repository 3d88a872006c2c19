//! Bearer tokens: lifetimes, key retirement, bounded revocations.

mod common;

use common::{Env, Wire};
use lighthouse_security::{
    Action, Caller, Error, Refusal, Role, SecurityConfig, TokenId, Unauthenticated,
};

fn caller(key_id: u64) -> Caller {
    Caller {
        agent: "alice".into(),
        role: Role::Agent,
        key_id,
    }
}

#[tokio::test]
async fn token_lifetimes_follow_the_protocol() {
    let env = Env::new();
    env.agent("alice", Role::Agent).await;
    let now = env.gate.clock().now();
    let t = env.gate.tokens().issue(&caller(1), None, now).unwrap();
    assert_eq!(t.expires_at, now.add_millis(3_600_000));
    assert!(
        env.gate
            .tokens()
            .issue(&caller(1), Some(86_400), now)
            .is_ok()
    );
    for bad in [0, 86_401] {
        assert!(matches!(
            env.gate.tokens().issue(&caller(1), Some(bad), now),
            Err(Error::InvalidTtl { .. })
        ));
    }
    assert!(t.token.starts_with("lh1.alice.1."));
}

#[tokio::test]
async fn a_retired_key_kills_its_tokens_after_the_grace_period() {
    let mut config = SecurityConfig::default();
    config.registry.key_grace_ms = 3_600_000;
    let env = Env::with_config(config);
    env.agent("alice", Role::Agent).await;
    let now = env.gate.clock().now();
    let t = env
        .gate
        .tokens()
        .issue(&caller(1), Some(86_400), now)
        .unwrap();
    env.gate.registry().rotate("alice", None).await.unwrap();
    let w = Wire::bearer(&t.token, "GET", "/v1/stream");
    assert_eq!(
        env.admit(&w, Action::OpenOwnStream).unwrap().caller.key_id,
        1
    );
    env.clock.advance_millis(3_600_000 - 1);
    assert!(env.admit(&w, Action::OpenOwnStream).is_ok());
    env.clock.advance_millis(1);
    assert_eq!(
        env.admit(&w, Action::OpenOwnStream),
        Err(Refusal::Unauthenticated(Unauthenticated::TokenKeyInactive))
    );
}

#[tokio::test]
async fn a_token_for_an_unknown_agent_is_refused() {
    let env = Env::new();
    let now = env.gate.clock().now();
    let t = env.gate.tokens().issue(&caller(1), None, now).unwrap();
    assert_eq!(
        env.admit(
            &Wire::bearer(&t.token, "GET", "/v1/stream"),
            Action::OpenOwnStream
        ),
        Err(Refusal::Unauthenticated(Unauthenticated::TokenKeyInactive))
    );
}

#[tokio::test]
async fn garbage_bearer_tokens_are_invalid() {
    let env = Env::new();
    for t in ["", "x", "lh1.", "lh1.alice.1.2.3.4", &"a".repeat(10_000)] {
        assert_eq!(
            env.admit(&Wire::bearer(t, "GET", "/v1/stream"), Action::OpenOwnStream),
            Err(Refusal::Unauthenticated(if t.is_empty() {
                Unauthenticated::MalformedHeader("authorization")
            } else {
                Unauthenticated::InvalidToken
            })),
            "{t:.20}"
        );
    }
}

#[tokio::test]
async fn token_requests_are_rate_limited_and_authorized_too() {
    let env = Env::new();
    env.agent("watcher", Role::Observer).await;
    let c = Caller {
        agent: "watcher".into(),
        role: Role::Observer,
        key_id: 1,
    };
    let t = env
        .gate
        .tokens()
        .issue(&c, None, env.gate.clock().now())
        .unwrap();
    assert_eq!(
        env.admit(
            &Wire::bearer(&t.token, "POST", "/v1/elicitations"),
            Action::Elicit
        ),
        Err(Refusal::Forbidden {
            action: Action::Elicit
        })
    );
    // The observer's read burst is 600 (PROTOCOL.md 2.4).
    for i in 0..600 {
        let r = env.admit(
            &Wire::bearer(&t.token, "GET", "/v1/events"),
            Action::ReadEvents,
        );
        assert!(r.is_ok(), "request {i}: {r:?}");
    }
    assert!(matches!(
        env.admit(
            &Wire::bearer(&t.token, "GET", "/v1/events"),
            Action::ReadEvents
        ),
        Err(Refusal::RateLimited { .. })
    ));
}

#[tokio::test]
async fn revoked_tokens_are_bounded_and_never_forgotten_early() {
    let mut config = SecurityConfig::default();
    config.tokens.max_revoked = 3;
    let env = Env::with_config(config);
    env.agent("alice", Role::Agent).await;
    let now = env.gate.clock().now();
    let mut ids = Vec::new();
    for ttl in [60, 60, 600, 600] {
        let t = env.gate.tokens().issue(&caller(1), Some(ttl), now).unwrap();
        let auth = env
            .admit(
                &Wire::bearer(&t.token, "GET", "/v1/stream"),
                Action::OpenOwnStream,
            )
            .unwrap();
        ids.push(auth.token.unwrap());
    }
    let tokens = env.gate.tokens();
    for id in &ids[..3] {
        tokens.revoke(id, None, now).await.unwrap();
    }
    let full: Result<(), Error> = tokens.revoke(&ids[3], None, now).await;
    assert!(matches!(full, Err(Error::RevocationsFull { capacity: 3 })));
    assert_eq!(tokens.revoked_len(), 3);
    // Once two of them expired, there is room again.
    let later = now.add_millis(61_000);
    let id: &TokenId = &ids[3];
    tokens.revoke(id, None, later).await.unwrap();
    assert_eq!(tokens.revoked_len(), 2);
}
