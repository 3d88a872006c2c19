use super::*;
use proptest::prelude::*;
use serde_json::json;

fn sample_flag() -> Flag {
    Flag {
        key: "elicitation_enabled".into(),
        description: "...".into(),
        enabled: true,
        rollout_percent: RolloutPercent::from_percent(25.0).unwrap(),
        allow: vec!["alice".into()],
        deny: vec![],
        variants: vec![Variant::new("control", 500), Variant::new("treatment", 500)],
        requires: vec![],
        killed: false,
        version: 7,
        updated_at: Timestamp::parse_rfc3339("2026-11-26T07:00:00.123Z").unwrap(),
        updated_by: "ops-1".into(),
    }
}

#[test]
fn flag_serializes_as_the_protocol_shows_it() {
    let text = serde_json::to_string(&sample_flag()).unwrap();
    assert_eq!(
        text,
        r#"{"key":"elicitation_enabled","description":"...","enabled":true,"rollout_percent":25.0,"allow":["alice"],"deny":[],"variants":[{"name":"control","weight":500},{"name":"treatment","weight":500}],"requires":[],"killed":false,"version":7,"updated_at":"2026-11-26T07:00:00.123Z","updated_by":"ops-1"}"#
    );
    let back: Flag = serde_json::from_str(&text).unwrap();
    assert_eq!(back, sample_flag());
}

#[test]
fn a_spec_accepts_a_flag_as_get_returns_it() {
    let text = serde_json::to_value(sample_flag()).unwrap();
    let spec: FlagSpec = serde_json::from_value(text).unwrap();
    assert_eq!(spec, sample_flag().spec());
    assert_eq!(
        spec.check("elicitation_enabled", &Limits::default())
            .unwrap()
            .basis_points(),
        2500
    );
}

#[test]
fn a_spec_refuses_unknown_fields_and_needs_enabled_and_percent() {
    let unknown = json!({"enabled": true, "rollout_percent": 5, "colour": "red"});
    assert!(serde_json::from_value::<FlagSpec>(unknown).is_err());
    let missing = json!({"enabled": true});
    assert!(serde_json::from_value::<FlagSpec>(missing).is_err());
    let minimal: FlagSpec =
        serde_json::from_value(json!({"enabled": false, "rollout_percent": 0})).unwrap();
    assert_eq!(minimal, FlagSpec::new(false, 0.0));
}

fn paths(err: Error) -> Vec<String> {
    match err {
        Error::Invalid { errors } => errors.into_iter().map(|e| e.path).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn more_than_two_decimals_is_a_typed_error_naming_the_field() {
    let limits = Limits::default();
    for bad in [25.125, 0.001, 1e-9, 100.01, -1.0, 33.333] {
        let err = FlagSpec::new(true, bad).check("f", &limits).unwrap_err();
        assert_eq!(paths(err), vec!["/rollout_percent"], "{bad}");
    }
    for (ok, bp) in [
        (25.12, 2512),
        (33.33, 3333),
        (0.01, 1),
        (100.0, 10_000),
        (0.0, 0),
        (99.99, 9999),
    ] {
        assert_eq!(
            FlagSpec::new(true, ok)
                .check("f", &limits)
                .unwrap()
                .basis_points(),
            bp,
            "{ok}"
        );
    }
}

#[test]
fn every_broken_rule_is_reported_with_its_pointer() {
    let limits = Limits::default();
    let mut spec = FlagSpec::new(true, 10.0);
    spec.key = Some("other".into());
    spec.allow = vec!["alice".into(), "Bob".into(), "alice".into()];
    spec.deny = vec!["-x".into()];
    spec.requires = vec!["UPPER".into()];
    spec.variants = vec![
        Variant::new("a", 600),
        Variant::new("a", 300),
        Variant::new("", 0),
    ];
    spec.description = "d".repeat(limits.max_description_bytes + 1);
    let got = paths(spec.check("f", &limits).unwrap_err());
    assert_eq!(
        got,
        vec![
            "/key",
            "/description",
            "/allow/1",
            "/allow/2",
            "/deny/0",
            "/requires/0",
            "/variants/1/name",
            "/variants/2/name",
            "/variants",
        ]
    );
    assert_eq!(
        paths(
            FlagSpec::new(true, 1.0)
                .check("Bad Key", &limits)
                .unwrap_err()
        ),
        vec!["/key"]
    );
}

#[test]
fn list_sizes_are_bounded_by_the_limits() {
    let limits = Limits {
        max_targets: 2,
        max_variants: 2,
        max_requires: 1,
        ..Limits::default()
    };
    let mut spec = FlagSpec::new(true, 1.0);
    spec.allow = vec!["a".into(), "b".into()];
    spec.deny = vec!["a".into(), "b".into()];
    spec.requires = vec!["x".into()];
    spec.variants = vec![Variant::new("a", 500), Variant::new("b", 500)];
    assert!(spec.check("f", &limits).is_ok());
    spec.allow.push("c".into());
    spec.deny.push("c".into());
    spec.requires.push("y".into());
    spec.variants.push(Variant::new("c", 0));
    assert_eq!(
        paths(spec.check("f", &limits).unwrap_err()),
        vec!["/allow", "/deny", "/requires", "/variants"]
    );
}

#[test]
fn variant_weights_must_sum_to_1000() {
    let limits = Limits::default();
    let mut spec = FlagSpec::new(true, 1.0);
    spec.variants = vec![Variant::new("a", 999)];
    assert_eq!(
        paths(spec.check("f", &limits).unwrap_err()),
        vec!["/variants"]
    );
    spec.variants = vec![Variant::new("a", u32::MAX), Variant::new("b", u32::MAX)];
    assert_eq!(
        paths(spec.check("f", &limits).unwrap_err()),
        vec!["/variants"]
    );
    spec.variants = vec![Variant::new("a", 1000), Variant::new("off", 0)];
    assert!(spec.check("f", &limits).is_ok());
}

proptest! {
    #[test]
    fn every_two_decimal_percent_round_trips_through_json(bp in 0u16..=10_000) {
        let p = RolloutPercent::from_basis_points(bp).unwrap();
        let text = serde_json::to_string(&p).unwrap();
        let back: RolloutPercent = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, p);
        // The text an operator would type parses to the same value.
        let typed = format!("{}.{:02}", bp / 100, bp % 100);
        let parsed: f64 = typed.parse().unwrap();
        prop_assert_eq!(RolloutPercent::from_percent(parsed).unwrap(), p);
    }

    #[test]
    fn a_third_decimal_is_refused(bp in 0u32..10_000, third in 1u32..10) {
        let text = format!("{}.{:02}{}", bp / 100, bp % 100, third);
        let p: f64 = text.parse().unwrap();
        prop_assert!(RolloutPercent::from_percent(p).is_err(), "{} accepted", text);
    }
}

#[test]
fn decimal_places_counts_the_decimals_of_the_exact_value_of_the_text() {
    for (text, places) in [
        ("25", 0),
        ("-25", 0),
        ("0", 0),
        ("25.5", 1),
        ("33.33", 2),
        ("25.000", 0),
        ("25.120", 2),
        ("25.0000000000000001", 16),
        ("0.125", 3),
        ("2.5e1", 0),
        ("2.5E+1", 0),
        ("2.512e1", 2),
        ("2.5001e1", 3),
        ("2512e-2", 2),
        ("2512e-3", 3),
        ("2500e-2", 0),
        ("1250.0E-2", 1),
        ("1e-3", 3),
        ("1e-0003", 3),
        ("0e-400", 0),
        ("0.000e5", 0),
        ("1e400", 0),
        ("1e-99999999999999999999999999999999999999", u64::MAX),
        ("0.000000000000000000001", 21),
    ] {
        assert_eq!(RolloutPercent::decimal_places(text), Some(places), "{text}");
    }
    for not_a_number in [
        "", "-", ".5", "5.", "01", "1e", "1e+", "+1", "1.2.3", "null", "\"5\"", "1_0",
    ] {
        assert_eq!(
            RolloutPercent::decimal_places(not_a_number),
            None,
            "{not_a_number}"
        );
    }
}

proptest! {
    /// Every two-decimal percentage, however written (trailing zeros, an
    /// exponent), has at most two decimals; one more nonzero digit gives three.
    #[test]
    fn decimal_places_agrees_with_the_basis_points(
        bp in 0u32..=10_000,
        zeros in 0usize..5,
        shift in 0usize..4,
        extra in 1u32..10,
    ) {
        let plain = format!("{}.{:02}{}", bp / 100, bp % 100, "0".repeat(zeros));
        prop_assert!(RolloutPercent::decimal_places(&plain).unwrap() <= 2, "{}", plain);
        // The same value as whole digits and a negative exponent.
        let digits = format!("{bp}");
        let scaled = format!("{digits}{}e-{}", "0".repeat(shift), 2 + shift);
        prop_assert!(RolloutPercent::decimal_places(&scaled).unwrap() <= 2, "{}", scaled);
        let finer = format!("{}.{:02}{extra}", bp / 100, bp % 100);
        prop_assert_eq!(RolloutPercent::decimal_places(&finer), Some(3), "{}", finer);
    }
}
