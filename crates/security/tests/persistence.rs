//! State that must survive a restart: the registry, used nonces, revoked tokens.

mod common;

use common::{Env, T0, Wire, elicit};
use lighthouse_event_store::{ManualClock, Timestamp};
use lighthouse_security::{
    Action, AgentRegistry, Caller, Error, NonceConfig, NonceFlusher, NonceStore, Refusal,
    RegistryConfig, Role, SecurityConfig, TokenId, Unauthenticated, Unavailable,
};

const BODY: &[u8] = b"{}";

#[tokio::test]
async fn registry_is_rebuilt_from_the_agents_stream() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let before = {
        let env = Env::persistent(dir.path(), &clock);
        let reg = env.gate.registry();
        reg.register("alice", Role::Agent, Some("admin"))
            .await
            .unwrap();
        reg.register("ops", Role::Operator, Some("admin"))
            .await
            .unwrap();
        reg.register("eve", Role::Agent, Some("admin"))
            .await
            .unwrap();
        reg.rotate("alice", Some("admin")).await.unwrap();
        reg.revoke("eve", Some("admin")).await.unwrap();
        let events = env.store.read_stream("$agents", 0, 100).unwrap();
        let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "agent.registered",
                "agent.registered",
                "agent.registered",
                "agent.key_rotated",
                "agent.revoked"
            ]
        );
        assert!(events.iter().all(|e| e.agent.as_deref() == Some("admin")));
        assert!(
            !serde_json::to_string(&events)
                .unwrap()
                .contains(&reg.credential("alice").unwrap().secret.to_hex()),
            "no secret in the log"
        );
        reg.list()
    };
    let env = Env::persistent(dir.path(), &clock);
    let after = env.gate.registry().list();
    assert_eq!(before, after);
    let alice = env.gate.registry().get("alice").unwrap();
    assert_eq!(alice.key_id, 2);
    assert_eq!(alice.grace_keys[0].key_id, 1);
    assert_eq!(
        alice.grace_keys[0].valid_until,
        Timestamp::from_unix_secs(T0 + 24 * 3600)
    );
    assert!(env.gate.registry().get("eve").unwrap().revoked);
    // Revoked ids are never reused.
    assert!(matches!(
        env.gate.registry().register("eve", Role::Agent, None).await,
        Err(Error::AgentExists(_))
    ));
    assert!(matches!(
        env.gate.registry().rotate("eve", None).await,
        Err(Error::AgentRevoked(_))
    ));
    assert!(matches!(
        env.gate
            .registry()
            .register("Not Valid", Role::Agent, None)
            .await,
        Err(Error::InvalidAgentId(_))
    ));
}

#[tokio::test]
async fn two_registries_on_one_store_never_lose_a_change() {
    let env = Env::new();
    let other = AgentRegistry::open(
        env.store.clone(),
        common::vector_master(),
        common::shared(&env.clock),
        RegistryConfig::default(),
    )
    .unwrap();
    env.gate
        .registry()
        .register("alice", Role::Agent, None)
        .await
        .unwrap();
    // `other` has not seen alice; its append conflicts, it catches up, and decides again.
    assert!(matches!(
        other.register("alice", Role::Agent, None).await,
        Err(Error::AgentExists(_))
    ));
    other.register("bob", Role::Agent, None).await.unwrap();
    env.gate.registry().catch_up().unwrap();
    assert!(env.gate.registry().is_active("bob"));
    assert_eq!(env.store.read_stream("$agents", 0, 10).unwrap().len(), 2);
}

#[tokio::test]
async fn a_replay_is_refused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let w = {
        let env = Env::persistent(dir.path(), &clock);
        let alice = env.agent("alice", Role::Agent).await;
        let w = elicit(&alice, T0, "nonce-restart-00001", BODY);
        assert!(env.admit(&w, Action::Elicit).is_ok());
        env.gate.nonces().flush().unwrap();
        w
    };
    clock.advance_millis(120_000);
    let env = Env::persistent(dir.path(), &clock);
    assert_eq!(env.gate.nonces().len(), 1);
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::ReplayedRequest));
}

fn window(window_s: u32) -> SecurityConfig {
    SecurityConfig {
        window_s,
        ..SecurityConfig::default()
    }
}

#[tokio::test]
async fn a_replay_is_refused_after_a_restart_with_a_larger_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let (alice, w) = {
        let env = Env::persistent_with(dir.path(), &clock, window(300));
        let alice = env.agent("alice", Role::Agent).await;
        let w = elicit(&alice, T0, "nonce-widened-00001", BODY);
        assert!(env.admit(&w, Action::Elicit).is_ok());
        env.gate.nonces().flush().unwrap();
        (alice, w)
    };
    // Past the first run's window, inside the second's: the nonce is still kept.
    clock.advance_millis(310_000);
    let env = Env::persistent_with(dir.path(), &clock, window(600));
    assert_eq!(env.admit(&w, Action::Elicit), Err(Refusal::ReplayedRequest));
    let fresh = elicit(&alice, T0 + 310, "nonce-widened-00002", BODY);
    assert!(env.admit(&fresh, Action::Elicit).is_ok());
}

#[tokio::test]
async fn a_smaller_window_then_a_larger_one_never_reopens_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let (alice, first) = {
        let env = Env::persistent_with(dir.path(), &clock, window(300));
        let alice = env.agent("alice", Role::Agent).await;
        let w = elicit(&alice, T0, "nonce-narrowed-0001", BODY);
        assert!(env.admit(&w, Action::Elicit).is_ok());
        env.gate.nonces().flush().unwrap();
        (alice, w)
    };
    clock.advance_millis(120_000);
    let second = {
        // A smaller window works as before: the first request is stale, its
        // segment deleted, and a new request accepted and kept.
        let env = Env::persistent_with(dir.path(), &clock, window(100));
        assert_eq!(env.gate.nonces().len(), 0);
        assert_eq!(
            env.admit(&first, Action::Elicit),
            Err(Refusal::StaleRequest)
        );
        let w = elicit(&alice, T0 + 120, "nonce-narrowed-0002", BODY);
        assert!(env.admit(&w, Action::Elicit).is_ok());
        env.gate.nonces().flush().unwrap();
        w
    };
    clock.advance_millis(10_000);
    let env = Env::persistent_with(dir.path(), &clock, window(600));
    // The first nonce was deleted under the small window; the floor written
    // before deleting it keeps its request stale under the large one.
    assert_eq!(
        env.admit(&first, Action::Elicit),
        Err(Refusal::StaleRequest)
    );
    assert_eq!(
        env.admit(&second, Action::Elicit),
        Err(Refusal::ReplayedRequest)
    );
}

#[tokio::test]
async fn a_clock_that_ran_ahead_and_came_back_does_not_reopen_replays_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let (alice, sent) = {
        let env = Env::persistent(dir.path(), &clock);
        let alice = env.agent("alice", Role::Agent).await;
        let sent: Vec<Wire> = (0..3)
            .map(|i| elicit(&alice, T0 + i, &format!("nonce-clockjump-{i:04}"), BODY))
            .collect();
        for w in &sent {
            assert!(env.admit(w, Action::Elicit).is_ok());
        }
        env.gate.nonces().flush().unwrap();
        // The clock steps far ahead: the next flush seals the segment and
        // deletes it, every nonce in it being expired by then.
        clock.set(Timestamp::from_unix_secs(T0 + 1000));
        env.gate.nonces().flush().unwrap();
        let segments = std::fs::read_dir(dir.path().join("nonces"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_str().unwrap().starts_with("nonces-")
            })
            .count();
        assert_eq!(segments, 0);
        (alice, sent)
    };
    // Corrected, then a restart: the requests are inside the window again.
    clock.set(Timestamp::from_unix_secs(T0 + 20));
    let env = Env::persistent(dir.path(), &clock);
    for w in &sent {
        assert_eq!(env.admit(w, Action::Elicit), Err(Refusal::StaleRequest));
    }
    let fresh = elicit(&alice, T0 + 20, "nonce-clockjump-0009", BODY);
    assert!(env.admit(&fresh, Action::Elicit).is_ok());
}

#[test]
fn the_flusher_persists_without_being_asked_and_expired_nonces_are_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory the store creates (an existing one without a floor is
    // taken for an earlier version's, which refuses what was signed before).
    let dir = tmp.path().join("nonces");
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let config = NonceConfig::default();
    {
        let store =
            std::sync::Arc::new(NonceStore::open(&dir, config, common::shared(&clock)).unwrap());
        let flusher =
            NonceFlusher::start(store.clone(), std::time::Duration::from_millis(5)).unwrap();
        store
            .check_and_insert("alice", "nonce-flusher-0001", T0, clock.now_ts())
            .unwrap();
        store
            .check_and_insert("alice", "nonce-flusher-0002", T0 - 200, clock.now_ts())
            .unwrap();
        // Dropping the flusher flushes once more and stops it.
        drop(flusher);
    }
    clock.advance_millis(150_000);
    let store = NonceStore::open(&dir, config, common::shared(&clock)).unwrap();
    // The second nonce expired at T0 - 200 + 300 = T0 + 100.
    assert_eq!(store.len(), 1);
    assert_eq!(
        store.check_and_insert("alice", "nonce-flusher-0001", T0, clock.now_ts()),
        Err(lighthouse_security::NonceRefusal::Replayed)
    );
    assert!(
        store
            .check_and_insert("alice", "nonce-flusher-0002", T0 + 150, clock.now_ts())
            .is_ok()
    );
}

#[test]
fn a_failing_journal_refuses_new_nonces_until_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("nonces");
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let store =
        NonceStore::open(&journal_dir, NonceConfig::default(), common::shared(&clock)).unwrap();
    store
        .check_and_insert("alice", "nonce-failing-0001", T0, clock.now_ts())
        .unwrap();
    std::fs::remove_dir_all(&journal_dir).unwrap();
    assert!(store.flush().is_err());
    assert!(store.journal_failing());
    assert_eq!(
        store.check_and_insert("alice", "nonce-failing-0002", T0, clock.now_ts()),
        Err(lighthouse_security::NonceRefusal::Unavailable(
            Unavailable::NonceJournalFailing
        ))
    );
    std::fs::create_dir(&journal_dir).unwrap();
    store.flush().unwrap();
    assert!(!store.journal_failing());
    store
        .check_and_insert("alice", "nonce-failing-0002", T0, clock.now_ts())
        .unwrap();
    store.flush().unwrap();
    drop(store);
    // The payload whose write failed was written on the retry.
    let store =
        NonceStore::open(&journal_dir, NonceConfig::default(), common::shared(&clock)).unwrap();
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn a_revoked_token_stays_revoked_across_a_restart_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let caller = Caller {
        agent: "alice".into(),
        role: Role::Agent,
        key_id: 1,
    };
    let (revoked, kept) = {
        let env = Env::persistent(dir.path(), &clock);
        env.agent("alice", Role::Agent).await;
        let now = env.gate.clock().now();
        let a = env.gate.tokens().issue(&caller, Some(600), now).unwrap();
        let b = env.gate.tokens().issue(&caller, Some(600), now).unwrap();
        let auth = env
            .admit(
                &Wire::bearer(&a.token, "DELETE", "/v1/sessions/current"),
                Action::ManageOwnSession,
            )
            .unwrap();
        let id: TokenId = auth.token.unwrap();
        env.gate
            .tokens()
            .revoke(&id, Some("alice"), now)
            .await
            .unwrap();
        assert_eq!(
            env.admit(
                &Wire::bearer(&a.token, "GET", "/v1/stream"),
                Action::OpenOwnStream
            ),
            Err(Refusal::Unauthenticated(Unauthenticated::RevokedToken))
        );
        (a.token, b.token)
    };
    clock.advance_millis(60_000);
    let env = Env::persistent(dir.path(), &clock);
    assert_eq!(env.gate.tokens().revoked_len(), 1);
    assert_eq!(
        env.admit(
            &Wire::bearer(&revoked, "GET", "/v1/stream"),
            Action::OpenOwnStream
        ),
        Err(Refusal::Unauthenticated(Unauthenticated::RevokedToken))
    );
    assert!(
        env.admit(
            &Wire::bearer(&kept, "GET", "/v1/stream"),
            Action::OpenOwnStream
        )
        .is_ok()
    );
    // After expiry the revocation is no longer loaded (the token is refused as expired).
    drop(env);
    clock.advance_millis(600_000);
    let env = Env::persistent(dir.path(), &clock);
    assert_eq!(env.gate.tokens().revoked_len(), 0);
    assert_eq!(
        env.admit(
            &Wire::bearer(&revoked, "GET", "/v1/stream"),
            Action::OpenOwnStream
        ),
        Err(Refusal::Unauthenticated(Unauthenticated::ExpiredToken))
    );
}

trait NowTs {
    fn now_ts(&self) -> Timestamp;
}

impl NowTs for ManualClock {
    fn now_ts(&self) -> Timestamp {
        use lighthouse_event_store::Clock;
        self.now()
    }
}

#[tokio::test]
async fn registry_and_token_futures_are_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let env = Env::new();
    assert_send(env.gate.registry().register("alice", Role::Agent, None))
        .await
        .unwrap();
    assert_send(env.gate.registry().rotate("alice", None))
        .await
        .unwrap();
    let id = TokenId {
        agent: "alice".into(),
        key_id: 1,
        expires_s: T0 + 60,
        token_id: [1; 16],
    };
    let now = Timestamp::from_unix_secs(T0);
    assert_send(env.gate.tokens().revoke(&id, None, now))
        .await
        .unwrap();
    assert_send(env.gate.registry().revoke("alice", None))
        .await
        .unwrap();
    assert!(!env.gate.registry().is_active("alice"));
}
