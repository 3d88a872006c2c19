//! Invariants of evaluation, checked over generated flags and agents.

use lighthouse_event_store::Timestamp;
use lighthouse_flags::bucket::{bucket, variant_slot};
use lighthouse_flags::{Flag, FlagSet, Limits, Reason, RolloutPercent, Variant};
use proptest::prelude::*;

fn flag(key: &str, bp: u16, variants: Vec<Variant>) -> Flag {
    Flag {
        key: key.into(),
        description: String::new(),
        enabled: true,
        rollout_percent: RolloutPercent::from_basis_points(bp).unwrap(),
        allow: vec![],
        deny: vec![],
        variants,
        requires: vec![],
        killed: false,
        version: 1,
        updated_at: Timestamp::EPOCH,
        updated_by: "test".into(),
    }
}

fn one(f: Flag) -> FlagSet {
    FlagSet::from_flags([f], &Limits::default()).unwrap()
}

/// Weights of 1 to 6 variants summing to 1000.
fn weights() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(0u32..=1000, 0..=5).prop_map(|mut cuts| {
        cuts.sort_unstable();
        let mut prev = 0;
        let mut w: Vec<u32> = cuts
            .into_iter()
            .map(|c| {
                let d = c - prev;
                prev = c;
                d
            })
            .collect();
        w.push(1000 - prev);
        w
    })
}

#[test]
fn the_protocol_vectors_through_evaluation() {
    let variants = vec![
        Variant::new("v0", 491),
        Variant::new("v1", 1),
        Variant::new("v2", 508),
    ];
    let s = FlagSet::from_flags(
        [
            flag("elicitation_enabled", 10_000, variants.clone()),
            flag("new_ui", 10_000, variants),
        ],
        &Limits::default(),
    )
    .unwrap();
    for (key, agent, b, slot, variant) in [
        ("elicitation_enabled", "alice", 4585, 491, "v1"),
        ("elicitation_enabled", "bob", 3550, 130, "v0"),
        ("new_ui", "carol", 6254, 647, "v2"),
    ] {
        assert_eq!(bucket(key, agent), b);
        assert_eq!(variant_slot(key, agent), slot);
        let e = s.evaluate(key, agent).unwrap();
        assert_eq!(e.bucket, b);
        assert_eq!(e.variant.as_deref(), Some(variant), "{key}:{agent}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn raising_the_percentage_never_turns_an_agent_off(
        key in "[a-z0-9][a-z0-9._-]{0,40}",
        agent in "[a-z0-9][a-z0-9._-]{0,63}",
        a in 0u16..=10_000,
        b in 0u16..=10_000,
        w in weights(),
    ) {
        let (low, high) = (a.min(b), a.max(b));
        let variants: Vec<Variant> = w.iter().enumerate().map(|(i, &w)| Variant::new(format!("v{i}"), w)).collect();
        let at_low = one(flag(&key, low, variants.clone())).evaluate(&key, &agent).unwrap();
        let at_high = one(flag(&key, high, variants)).evaluate(&key, &agent).unwrap();
        prop_assert_eq!(at_low.bucket, at_high.bucket);
        if at_low.enabled {
            prop_assert!(at_high.enabled, "{}:{} on at {} but off at {}", key, agent, low, high);
            // Raising the percentage does not move an agent between variants either.
            prop_assert_eq!(at_low.variant, at_high.variant);
        }
        prop_assert_eq!(at_low.enabled, u32::from(low) > at_low.bucket);
        prop_assert_eq!(at_low.reason, Reason::Split);
    }
}

proptest! {
    // Each case evaluates 100,000 agents; a handful of keys is enough to show the
    // split is not tuned to one key.
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn a_quarter_of_100000_agents_is_within_one_point_of_25_percent(
        key in "[a-z0-9][a-z0-9._-]{0,30}",
        prefix in "[a-z0-9][a-z0-9-]{0,10}",
    ) {
        let s = one(flag(&key, 2_500, vec![]));
        let n = 100_000u32;
        let on = (0..n).filter(|i| s.evaluate(&key, &format!("{prefix}{i}")).unwrap().enabled).count();
        let share = on as f64 * 100.0 / f64::from(n);
        prop_assert!((share - 25.0).abs() <= 1.0, "{} agents on: {}%", on, share);
    }

    #[test]
    fn variant_shares_are_within_two_points_of_their_weights(
        key in "[a-z0-9][a-z0-9._-]{0,30}",
        w in weights(),
    ) {
        let variants: Vec<Variant> = w.iter().enumerate().map(|(i, &w)| Variant::new(format!("v{i}"), w)).collect();
        let s = one(flag(&key, 10_000, variants));
        let n = 100_000u32;
        let mut counts = vec![0u32; w.len()];
        for i in 0..n {
            let e = s.evaluate(&key, &format!("agent-{i}")).unwrap();
            let name = e.variant.expect("every agent that is on has a variant");
            let idx: usize = name[1..].parse().unwrap();
            counts[idx] += 1;
        }
        for (i, (&c, &weight)) in counts.iter().zip(&w).enumerate() {
            let share = f64::from(c) * 100.0 / f64::from(n);
            let expected = f64::from(weight) / 10.0;
            prop_assert!((share - expected).abs() <= 2.0, "v{} has {}%, weight {}", i, share, weight);
        }
    }
}
