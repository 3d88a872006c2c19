//! Property tests: hostile headers never panic and never authenticate; a token
//! with any byte changed is refused; the nonce store never accepts a replay inside
//! the window (against a model, with a clock that also steps back), nor, when
//! persisted, a request twice across restarts that change the window or follow a
//! clock stepping back; GCRA never allows more than burst plus refill.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Env, T0};
use lighthouse_event_store::{ManualClock, Timestamp};
use lighthouse_security::{
    Action, ActionClass, AuthHeaders, Caller, NonceConfig, NonceRefusal, NonceStore, Quota,
    RateConfig, RateLimiter, Refusal, Request, Role, Unauthenticated,
};
use proptest::prelude::*;

const NAMES: [&str; 6] = [
    "x-lighthouse-agent",
    "X-Lighthouse-Key-Id",
    "x-lighthouse-timestamp",
    "X-LIGHTHOUSE-NONCE",
    "x-lighthouse-signature",
    "authorization",
];

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Plausible values, some nearly valid.
        Just(b"alice".to_vec()),
        Just(b"1".to_vec()),
        Just(T0.to_string().into_bytes()),
        Just(b"n0nce-0001-abcdef".to_vec()),
        Just("ab".repeat(32).into_bytes()),
        Just(b"Bearer lh1.alice.1.1790003600.00000000000000000000000000000000.00".to_vec()),
        // Arbitrary bytes, non-ASCII included.
        proptest::collection::vec(any::<u8>(), 0..100),
        // Very long.
        (1usize..200_000).prop_map(|n| vec![b'7'; n]),
        "[a-z0-9._-]{1,70}".prop_map(String::into_bytes),
        "[0-9a-fA-F]{60,68}".prop_map(String::into_bytes),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
    proptest::collection::vec((0usize..6, header_value()), 0..9)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn hostile_headers_never_panic_and_never_authenticate(
        hs in headers(),
        method in "[A-Za-z]{0,10}",
        path in "/[ -~]{0,40}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let env = Env::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(env.agent("alice", Role::Agent));
        let pairs: Vec<(&str, &[u8])> = hs.iter().map(|(i, v)| (NAMES[*i], v.as_slice())).collect();
        let req = Request {
            method: &method,
            path: &path,
            query: "",
            headers: AuthHeaders::from_pairs(pairs),
            body: &body,
        };
        let out = env.gate.admit(&req, Action::ReadEvents).map_err(|d| d.refusal);
        prop_assert!(
            matches!(
                out,
                Err(Refusal::Unauthenticated(_) | Refusal::StaleRequest | Refusal::BadSignature)
            ),
            "{:?}",
            out
        );
        // Anything other than exactly one well-formed value per header is step 1.
        let mut counts = [0usize; 6];
        for (i, _) in &hs {
            counts[*i] += 1;
        }
        if counts.iter().any(|&c| c > 1) {
            prop_assert!(matches!(out, Err(Refusal::Unauthenticated(_))));
        }
    }

    #[test]
    fn a_token_with_any_byte_changed_is_refused(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let env = Env::new();
        let caller = Caller { agent: "alice".into(), role: Role::Agent, key_id: 7 };
        let now = Timestamp::from_unix_secs(T0);
        let token = env.gate.tokens().issue(&caller, None, now).unwrap().token.into_bytes();
        let i = pos.index(token.len());
        prop_assume!(token[i] != byte);
        let mut t = token.clone();
        t[i] = byte;
        prop_assert_eq!(env.gate.tokens().check(&t, now), Err(Unauthenticated::InvalidToken));
        // Truncating or extending is refused too.
        prop_assert!(env.gate.tokens().check(&token[..i], now).is_err());
        let mut longer = token.clone();
        longer.insert(i, byte);
        prop_assert!(env.gate.tokens().check(&longer, now).is_err());
    }

    #[test]
    fn the_nonce_store_never_accepts_a_replay_inside_the_window(
        ops in proptest::collection::vec((-60i64..400, 0usize..3, 0usize..6, -300i64..=300), 1..300)
    ) {
        const W: i64 = 300;
        let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
        let store = NonceStore::in_memory(
            NonceConfig { shards: 2, ..NonceConfig::default() },
            Arc::new(clock.clone()),
        ).unwrap();
        let mut model: HashMap<(usize, usize), i64> = HashMap::new();
        let mut high = store.effective_now_s(Timestamp::from_unix_secs(T0));
        let mut now = T0;
        for (step, agent, nonce, offset) in ops {
            now += step;
            clock.set(Timestamp::from_unix_secs(now));
            // The verifier checks the window against the store's time, which
            // never goes back.
            let eff = store.effective_now_s(Timestamp::from_unix_secs(now));
            high = high.max(now);
            prop_assert_eq!(eff, high);
            let ts = eff + offset;
            let a = format!("agent-{agent}");
            let n = format!("nonce-number-{nonce:04}");
            let got = store.check_and_insert(&a, &n, ts, Timestamp::from_unix_secs(now));
            let live = model.get(&(agent, nonce)).is_some_and(|&exp| exp >= eff);
            if live {
                prop_assert_eq!(got, Err(NonceRefusal::Replayed));
            } else {
                prop_assert_eq!(got, Ok(()));
                model.insert((agent, nonce), ts + W);
            }
        }
        store.purge_expired(Timestamp::from_unix_secs(now));
        let live = model.values().filter(|&&exp| exp >= high).count();
        prop_assert_eq!(store.len(), live);
    }

    #[test]
    fn gcra_never_allows_more_than_burst_plus_refill(
        gaps in proptest::collection::vec(0i64..300, 1..400),
        per_minute in 60u32..6000,
        burst in 1u32..20,
    ) {
        let mut config = RateConfig::default();
        config.limits.set(Role::Agent, ActionClass::Write, Some(Quota::new(per_minute, burst)));
        let limiter = RateLimiter::new(config).unwrap();
        let interval_us = 60_000_000 / i64::from(per_minute);
        let mut t_ms = 0i64;
        let mut allowed = 0i64;
        for gap in gaps {
            t_ms += gap;
            let now = Timestamp::from_unix_millis(1_790_000_000_000 + t_ms);
            match limiter.check("a", Role::Agent, ActionClass::Write, now) {
                Ok(()) => allowed += 1,
                Err(lighthouse_security::RateRefusal::Limited { retry_after_ms }) => {
                    prop_assert!(retry_after_ms >= 1);
                    prop_assert!(retry_after_ms as i64 * 1000 <= interval_us + 1000);
                }
                Err(other) => prop_assert!(false, "{:?}", other),
            }
            prop_assert!(allowed <= i64::from(burst) + t_ms * 1000 / interval_us);
        }
    }
}

/// What happens to a persisted nonce store, in the tests below.
#[derive(Debug, Clone)]
enum JournalOp {
    /// A signed request, as the verifier passes it on (step 3 is checked first).
    Request {
        agent: usize,
        nonce: usize,
        ts: i64,
    },
    /// The clock is set, forward or back.
    ClockTo(i64),
    Flush,
    /// Flush, drop, and open again with this window.
    Restart(u32),
}

fn journal_op() -> impl Strategy<Value = JournalOp> {
    // Timestamps and clock settings on a 50 s grid, so that requests repeat.
    prop_oneof![
        6 => (0usize..2, 0usize..4, 0i64..40).prop_map(|(agent, nonce, k)| {
            JournalOp::Request { agent, nonce, ts: T0 + k * 50 }
        }),
        3 => (-10i64..50).prop_map(|k| JournalOp::ClockTo(T0 + k * 50)),
        1 => Just(JournalOp::Flush),
        2 => proptest::sample::select(vec![60u32, 300, 600, 1200]).prop_map(JournalOp::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_persisted_request_is_accepted_at_most_once_whatever_the_windows_and_clock(
        ops in proptest::collection::vec(journal_op(), 1..80)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
        let open = |window_s| {
            let config = NonceConfig {
                window_s,
                shards: 2,
                segment_span_s: 50,
                ..NonceConfig::default()
            };
            NonceStore::open(dir.path(), config, Arc::new(clock.clone())).unwrap()
        };
        let mut window_s = 300;
        let mut store = open(window_s);
        let mut accepted = std::collections::HashSet::new();
        for op in ops {
            match op {
                JournalOp::Request { agent, nonce, ts } => {
                    use lighthouse_event_store::Clock;
                    let now = clock.now();
                    if store.effective_now_s(now).abs_diff(ts) > u64::from(window_s) {
                        continue;
                    }
                    let n = format!("nonce-number-{nonce:04}");
                    if store.check_and_insert(&format!("agent-{agent}"), &n, ts, now).is_ok() {
                        prop_assert!(
                            accepted.insert((agent, nonce, ts)),
                            "agent-{} {} at {} accepted twice", agent, n, ts
                        );
                    }
                }
                JournalOp::ClockTo(s) => clock.set(Timestamp::from_unix_secs(s)),
                JournalOp::Flush => store.flush().unwrap(),
                JournalOp::Restart(w) => {
                    store.flush().unwrap();
                    drop(store);
                    window_s = w;
                    store = open(window_s);
                }
            }
        }
    }
}

#[test]
fn waiting_the_advertised_retry_after_is_exactly_enough() {
    let mut config = RateConfig::default();
    config
        .limits
        .set(Role::Agent, ActionClass::Write, Some(Quota::new(7, 3)));
    let limiter = RateLimiter::new(config).unwrap();
    let t0 = Timestamp::from_unix_secs(T0);
    for _ in 0..3 {
        limiter
            .check("a", Role::Agent, ActionClass::Write, t0)
            .unwrap();
    }
    let Err(lighthouse_security::RateRefusal::Limited { retry_after_ms }) =
        limiter.check("a", Role::Agent, ActionClass::Write, t0)
    else {
        panic!("expected a refusal");
    };
    // 60 s / 7 = 8571.428 ms, rounded to whole microseconds then up to ms.
    assert_eq!(retry_after_ms, 8572);
    let almost = t0.add_millis(retry_after_ms as i64 - 1);
    assert!(
        limiter
            .check("a", Role::Agent, ActionClass::Write, almost)
            .is_err()
    );
    let then = t0.add_millis(retry_after_ms as i64);
    assert!(
        limiter
            .check("a", Role::Agent, ActionClass::Write, then)
            .is_ok()
    );
}
