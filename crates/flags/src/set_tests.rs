use super::*;
use crate::eval::Reason;
use crate::model::{RolloutPercent, Variant};
use lighthouse_event_store::Timestamp;

fn flag(key: &str, enabled: bool, bp: u16) -> Flag {
    Flag {
        key: key.into(),
        description: String::new(),
        enabled,
        rollout_percent: RolloutPercent::from_basis_points(bp).unwrap(),
        allow: vec![],
        deny: vec![],
        variants: vec![],
        requires: vec![],
        killed: false,
        version: 1,
        updated_at: Timestamp::EPOCH,
        updated_by: "test".into(),
    }
}

fn requiring(key: &str, requires: &[&str]) -> Flag {
    Flag {
        requires: requires.iter().map(|s| s.to_string()).collect(),
        ..flag(key, true, 10_000)
    }
}

fn set(flags: Vec<Flag>) -> FlagSet {
    FlagSet::from_flags(flags, &Limits::default()).unwrap()
}

fn reason(s: &FlagSet, key: &str, agent: &str) -> (bool, Reason) {
    let e = s.evaluate(key, agent).unwrap();
    (e.enabled, e.reason)
}

#[test]
fn unknown_flags_are_off_with_their_bucket() {
    let s = FlagSet::empty();
    let e = s.evaluate("elicitation_enabled", "alice").unwrap();
    assert_eq!(
        (e.enabled, e.reason, e.bucket, e.variant),
        (false, Reason::NotFound, 4585, None)
    );
}

#[test]
fn kill_wins_over_allow_and_everything_else() {
    let mut f = flag("f", true, 10_000);
    f.allow = vec!["alice".into()];
    f.killed = true;
    let s = set(vec![f]);
    assert_eq!(reason(&s, "f", "alice"), (false, Reason::Killed));
    assert_eq!(reason(&s, "f", "bob"), (false, Reason::Killed));
}

#[test]
fn deny_wins_over_allow_and_allow_wins_over_disabled_and_split() {
    let mut f = flag("f", false, 0);
    f.allow = vec!["alice".into(), "bob".into()];
    f.deny = vec!["bob".into()];
    let s = set(vec![f]);
    assert_eq!(reason(&s, "f", "alice"), (true, Reason::Targeting));
    assert_eq!(reason(&s, "f", "bob"), (false, Reason::Targeting));
    assert_eq!(reason(&s, "f", "carol"), (false, Reason::Disabled));
}

#[test]
fn split_uses_the_protocol_threshold() {
    // alice's bucket for elicitation_enabled is 4585, bob's 3550 (the vectors).
    let s = set(vec![flag("elicitation_enabled", true, 4585)]);
    assert_eq!(
        reason(&s, "elicitation_enabled", "alice"),
        (false, Reason::Split)
    );
    assert_eq!(
        reason(&s, "elicitation_enabled", "bob"),
        (true, Reason::Split)
    );
    let s = set(vec![flag("elicitation_enabled", true, 4586)]);
    assert_eq!(
        reason(&s, "elicitation_enabled", "alice"),
        (true, Reason::Split)
    );
    let s = set(vec![flag("elicitation_enabled", true, 0)]);
    assert_eq!(
        reason(&s, "elicitation_enabled", "bob"),
        (false, Reason::Split)
    );
}

#[test]
fn variants_follow_the_vector_slots() {
    // Slots: alice 491, bob 130 for elicitation_enabled.
    let mut f = flag("elicitation_enabled", true, 10_000);
    f.variants = vec![
        Variant::new("a", 130),
        Variant::new("b", 362),
        Variant::new("c", 508),
    ];
    let s = set(vec![f]);
    let v = |agent| s.evaluate("elicitation_enabled", agent).unwrap().variant;
    assert_eq!(v("bob").as_deref(), Some("b")); // 130 is not below 130
    assert_eq!(v("alice").as_deref(), Some("b")); // 491 < 492
    let mut f = flag("elicitation_enabled", true, 10_000);
    f.variants = vec![
        Variant::new("a", 491),
        Variant::new("zero", 0),
        Variant::new("c", 509),
    ];
    let s = set(vec![f]);
    assert_eq!(
        s.evaluate("elicitation_enabled", "alice")
            .unwrap()
            .variant
            .as_deref(),
        Some("c")
    );
    // An agent that is off gets no variant.
    let mut f = flag("elicitation_enabled", true, 0);
    f.variants = vec![Variant::new("a", 1000)];
    let s = set(vec![f]);
    assert_eq!(
        s.evaluate("elicitation_enabled", "alice").unwrap().variant,
        None
    );
}

#[test]
fn prerequisites_are_checked_transitively_before_targeting() {
    let mut base = flag("base", true, 10_000);
    base.deny = vec!["bob".into()];
    let mid = requiring("mid", &["base"]);
    let mut top = requiring("top", &["mid"]);
    top.allow = vec!["bob".into()];
    let s = set(vec![base.clone(), mid.clone(), top]);
    assert_eq!(reason(&s, "top", "alice"), (true, Reason::Split));
    // bob is denied by base, so mid and top are off for him although top allows him.
    assert_eq!(reason(&s, "mid", "bob"), (false, Reason::Prerequisite));
    assert_eq!(reason(&s, "top", "bob"), (false, Reason::Prerequisite));
    // A killed prerequisite turns dependents off with reason prerequisite.
    base.killed = true;
    let s = set(vec![base, mid, requiring("top", &["mid"])]);
    assert_eq!(reason(&s, "top", "alice"), (false, Reason::Prerequisite));
    assert_eq!(reason(&s, "base", "alice"), (false, Reason::Killed));
}

#[test]
fn invalid_agents_are_refused() {
    let s = set(vec![flag("f", true, 10_000)]);
    for bad in ["", "Alice", "-x", &"a".repeat(65)] {
        assert!(
            matches!(s.evaluate("f", bad), Err(Error::Invalid { .. })),
            "{bad}"
        );
        assert!(!s.is_enabled("f", bad));
    }
}

#[test]
fn cycles_are_refused_with_their_path() {
    let err = FlagSet::from_flags(vec![requiring("a", &["a"])], &Limits::default()).unwrap_err();
    assert!(
        matches!(err, Error::PrerequisiteCycle { ref path } if path == &["a", "a"]),
        "{err}"
    );
    let err = FlagSet::from_flags(
        vec![
            requiring("a", &["b"]),
            requiring("b", &["c"]),
            requiring("c", &["a"]),
            requiring("d", &["a"]),
        ],
        &Limits::default(),
    )
    .unwrap_err();
    match err {
        Error::PrerequisiteCycle { path } => {
            assert_eq!(path.len(), 4);
            assert_eq!(path.first(), path.last());
            let mut members: Vec<_> = path[..3].to_vec();
            members.sort();
            assert_eq!(members, ["a", "b", "c"]);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_diamond_is_not_a_cycle_and_counts_each_flag_once() {
    let flags = vec![
        requiring("top", &["left", "right"]),
        requiring("left", &["bottom"]),
        requiring("right", &["bottom"]),
        flag("bottom", true, 10_000),
    ];
    let limits = Limits {
        max_prerequisites: 3,
        ..Limits::default()
    };
    let s = FlagSet::from_flags(flags.clone(), &limits).unwrap();
    assert_eq!(s.entry("top").unwrap().closure.len(), 3);
    let tight = Limits {
        max_prerequisites: 2,
        ..Limits::default()
    };
    let err = FlagSet::from_flags(flags, &tight).unwrap_err();
    assert!(
        matches!(err, Error::TooManyPrerequisites { ref key, count: 3, limit: 2 } if key == "top"),
        "{err}"
    );
}

#[test]
fn unknown_prerequisites_are_refused() {
    let err =
        FlagSet::from_flags(vec![requiring("a", &["ghost"])], &Limits::default()).unwrap_err();
    assert!(
        matches!(err, Error::UnknownPrerequisite { ref key, ref missing } if key == "a" && missing == "ghost")
    );
}

#[test]
fn a_long_chain_does_not_overflow_the_stack() {
    let n = 50_000;
    let mut flags = vec![flag("k0", true, 10_000)];
    for i in 1..n {
        flags.push(requiring(&format!("k{i}"), &[&format!("k{}", i - 1)]));
    }
    let limits = Limits {
        max_prerequisites: 3,
        ..Limits::default()
    };
    let err = FlagSet::from_flags(flags, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooManyPrerequisites {
                count: 4,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn sets_list_flags_sorted_by_key() {
    let s = set(vec![
        flag("b", true, 1),
        flag("a", true, 1),
        flag("c", true, 1),
    ]);
    let keys: Vec<_> = s.flags().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(s.len(), 3);
    assert!(s.get("b").is_some() && s.get("z").is_none());
}

#[test]
fn evaluations_serialize_as_the_protocol_names_them() {
    let mut f = flag("elicitation_enabled", true, 10_000);
    f.variants = vec![Variant::new("a", 491), Variant::new("b", 509)];
    let s = set(vec![f]);
    let on = serde_json::to_value(s.evaluate("elicitation_enabled", "alice").unwrap()).unwrap();
    assert_eq!(
        on,
        serde_json::json!({"enabled": true, "variant": "b", "reason": "split", "bucket": 4585})
    );
    let off = serde_json::to_value(s.evaluate("missing", "alice").unwrap()).unwrap();
    assert_eq!(off["variant"], serde_json::Value::Null);
    assert_eq!(off["reason"], "not_found");
    for (r, name) in [
        (Reason::NotFound, "not_found"),
        (Reason::Killed, "killed"),
        (Reason::Prerequisite, "prerequisite"),
        (Reason::Targeting, "targeting"),
        (Reason::Disabled, "disabled"),
        (Reason::Split, "split"),
    ] {
        assert_eq!(serde_json::to_value(r).unwrap(), name);
        assert_eq!(r.as_str(), name);
    }
}

#[test]
fn a_set_refuses_a_variant_name_it_cannot_hold() {
    let mut f = flag("f", true, 10_000);
    f.variants = vec![Variant::new("ok", 500), Variant::new("v".repeat(65), 500)];
    let err = FlagSet::from_flags(vec![f], &Limits::default()).unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref errors } if errors[0].path == "/variants/1/name"),
        "{err}"
    );
}
