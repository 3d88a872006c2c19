//! The flag routes of PROTOCOL.md 8 over HTTP: `expected_version` in every
//! form, the status of a create, and the limits' refusals (`400
//! invalid_request` with `errors`).

mod common;

use common::start_with;
use serde_json::{Value, json};

fn flag(percent: f64, expected_version: Option<Value>) -> Value {
    let mut body = json!({"enabled": true, "rollout_percent": percent, "reason": "test"});
    if let Some(v) = expected_version {
        body["expected_version"] = v;
    }
    body
}

#[tokio::test]
async fn expected_version_takes_every_form_of_the_events_route() {
    let t = start_with(|_| {}).await;
    let ops = t.agent("ops");
    // "no_stream": the flag must not exist yet. A create answers 200.
    let r = ops
        .put("/v1/flags/g", flag(1.0, Some(json!("no_stream"))))
        .await;
    assert_eq!(
        (r.status, &r.body["version"]),
        (200, &json!(1)),
        "{:?}",
        r.body
    );
    let r = ops
        .put("/v1/flags/g", flag(2.0, Some(json!("no_stream"))))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "version_conflict"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["actual_version"], 1);
    // A number: the flag's current version.
    let r = ops.put("/v1/flags/g", flag(2.0, Some(json!(1)))).await;
    assert_eq!(
        (r.status, &r.body["version"]),
        (200, &json!(2)),
        "{:?}",
        r.body
    );
    let r = ops.put("/v1/flags/g", flag(3.0, Some(json!(1)))).await;
    assert_eq!((r.status, r.code()), (409, "version_conflict"));
    assert_eq!(r.body["actual_version"], 2);
    // 0 is "must not exist" too.
    let r = ops.put("/v1/flags/g", flag(3.0, Some(json!(0)))).await;
    assert_eq!((r.status, r.code()), (409, "version_conflict"));
    let r = ops.put("/v1/flags/h", flag(3.0, Some(json!(0)))).await;
    assert_eq!(
        (r.status, &r.body["version"]),
        (200, &json!(1)),
        "{:?}",
        r.body
    );
    // "any", null and absent: no condition.
    for (v, version) in [(Some(json!("any")), 3), (Some(Value::Null), 4), (None, 5)] {
        let r = ops.put("/v1/flags/g", flag(f64::from(version), v)).await;
        assert_eq!(
            (r.status, &r.body["version"]),
            (200, &json!(version)),
            "{:?}",
            r.body
        );
    }
    // Anything else is refused by name, and nothing changes.
    for bad in [
        json!("no-stream"),
        json!(-1),
        json!("5"),
        json!(1.5),
        json!([]),
    ] {
        let r = ops.put("/v1/flags/g", flag(9.0, Some(bad.clone()))).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{bad}");
        assert_eq!(r.body["errors"][0]["path"], "/expected_version", "{bad}");
    }
    assert_eq!(ops.get("/v1/flags/g").await.body["version"], 5);
}

#[tokio::test]
async fn too_many_flags_is_refused_with_errors() {
    let t = start_with(|c| c.flags.max_flags = 3).await;
    let ops = t.agent("ops");
    let existing = ops.get("/v1/flags").await.body["flags"]
        .as_array()
        .unwrap()
        .len();
    for i in existing..3 {
        let r = ops.put(&format!("/v1/flags/f{i}"), flag(1.0, None)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = ops.put("/v1/flags/one-too-many", flag(1.0, None)).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    let errors = r.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{:?}", r.body);
    assert_eq!(errors[0]["path"], "");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("max_flags"),
        "{:?}",
        r.body
    );
    assert_eq!(ops.get("/v1/flags/one-too-many").await.status, 404);
}

#[tokio::test]
async fn a_flag_past_the_total_size_is_refused_with_errors_and_the_list_is_shared() {
    let t = start_with(|c| c.flags.max_total_flag_bytes = 4_096).await;
    let ops = t.agent("ops");
    // ~5 KB of ids, over the 4 KB limit.
    let ids: Vec<String> = (0..100)
        .map(|i| format!("agent-{i:03}-{}", "x".repeat(40)))
        .collect();
    let mut big = flag(1.0, None);
    big["allow"] = json!(ids);
    let r = ops.put("/v1/flags/big", big).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["errors"][0]["path"], "");
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("max_total_flag_bytes"),
        "{:?}",
        r.body
    );
    assert_eq!(ops.get("/v1/flags/big").await.status, 404);
    // A small one fits; the list (serialized from the shared snapshot) is
    // every flag exactly as GET of each returns it.
    let mut small = flag(1.0, None);
    small["allow"] = json!(["alice"]);
    assert_eq!(ops.put("/v1/flags/small", small).await.status, 200);
    let list = ops.get("/v1/flags").await;
    assert_eq!(list.status, 200);
    let flags = list.body["flags"].as_array().unwrap();
    assert!(flags.len() >= 2);
    for f in flags {
        let key = f["key"].as_str().unwrap();
        assert_eq!(&ops.get(&format!("/v1/flags/{key}")).await.body, f);
    }
}

#[tokio::test]
async fn rollout_percent_is_judged_on_its_decimal_text() {
    let t = start_with(|_| {}).await;
    let ops = t.agent("ops");
    let put = |percent: &str| {
        let body = format!(r#"{{"enabled": true, "rollout_percent": {percent}, "reason": "r"}}"#);
        let ops = &ops;
        async move {
            ops.send(reqwest::Method::PUT, "/v1/flags/p", body.as_bytes())
                .await
        }
    };
    // More than two decimals is refused even where the text rounds to a
    // two-decimal binary64 (25.0000000000000001 parses to exactly 25.0).
    for bad in [
        "25.0000000000000001",
        "25.001",
        "0.125",
        "2.5001e1",
        "1e-3",
        "25000001e-6",
        "0.000000000000000000001",
    ] {
        let r = put(bad).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request"),
            "{bad}: {:?}",
            r.body
        );
        assert_eq!(r.body["errors"][0]["path"], "/rollout_percent", "{bad}");
        assert!(
            r.body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("two decimals"),
            "{bad}: {:?}",
            r.body
        );
    }
    assert_eq!(ops.get("/v1/flags/p").await.status, 404, "nothing written");
    // The value the text denotes counts, not its spelling: trailing zeros and
    // exponents that leave at most two decimals are fine.
    for (good, expected) in [
        ("25", 25.0),
        ("25.5", 25.5),
        ("33.33", 33.33),
        ("25.000", 25.0),
        ("2.5e1", 25.0),
        ("2.512E1", 25.12),
        ("2512e-2", 25.12),
        ("1250.0E-2", 12.5),
        ("0.0", 0.0),
        ("0e-400", 0.0),
        ("100", 100.0),
    ] {
        let r = put(good).await;
        assert_eq!(r.status, 200, "{good}: {:?}", r.body);
        assert_eq!(r.body["rollout_percent"], json!(expected), "{good}");
    }
}

#[tokio::test]
async fn kill_and_unkill_take_an_expected_version() {
    let t = start_with(|_| {}).await;
    let ops = t.agent("ops");
    assert_eq!(ops.put("/v1/flags/k", flag(50.0, None)).await.status, 200);
    // An operator reads version 1 and decides to kill; a kill at version 1
    // goes through (version 2), then is lifted (version 3).
    let r = ops
        .post(
            "/v1/flags/k/kill",
            json!({"reason": "incident", "expected_version": 1}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["killed"], &r.body["version"]),
        (200, &json!(true), &json!(2)),
        "{:?}",
        r.body
    );
    let r = ops
        .post(
            "/v1/flags/k/unkill",
            json!({"reason": "fixed", "expected_version": 2}),
        )
        .await;
    assert_eq!((r.status, &r.body["version"]), (200, &json!(3)));
    // A newer kill (version 4); an unkill decided on version 3 is refused
    // and the kill stays.
    let r = ops
        .post("/v1/flags/k/kill", json!({"reason": "incident again"}))
        .await;
    assert_eq!((r.status, &r.body["version"]), (200, &json!(4)));
    let r = ops
        .post(
            "/v1/flags/k/unkill",
            json!({"reason": "stale", "expected_version": 3}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "version_conflict"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["actual_version"], 4);
    let f = ops.get("/v1/flags/k").await;
    assert_eq!(
        (&f.body["killed"], &f.body["version"]),
        (&json!(true), &json!(4))
    );
    // The forms of PUT: "any", null and absent are no condition; "no_stream"
    // and 0 mean "must not exist", which a flag being killed does.
    for v in [json!("any"), json!(null)] {
        let r = ops
            .post(
                "/v1/flags/k/kill",
                json!({"reason": "again", "expected_version": v}),
            )
            .await;
        assert_eq!((r.status, &r.body["version"]), (200, &json!(4)), "{v}");
    }
    for v in [json!("no_stream"), json!(0)] {
        let r = ops
            .post(
                "/v1/flags/k/kill",
                json!({"reason": "again", "expected_version": v}),
            )
            .await;
        assert_eq!((r.status, r.code()), (409, "version_conflict"), "{v}");
        assert_eq!(r.body["actual_version"], 4, "{v}");
    }
    for bad in [json!(-1), json!("4"), json!(1.5), json!([])] {
        let r = ops
            .post(
                "/v1/flags/k/unkill",
                json!({"reason": "x", "expected_version": bad.clone()}),
            )
            .await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{bad}");
        assert_eq!(r.body["errors"][0]["path"], "/expected_version", "{bad}");
    }
    // An unknown flag is not found, whatever version was expected.
    let r = ops
        .post(
            "/v1/flags/ghost/kill",
            json!({"reason": "x", "expected_version": 3}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    assert_eq!(ops.get("/v1/flags/k").await.body["version"], 4);
}

#[tokio::test]
async fn a_flag_write_says_in_its_headers_what_it_did() {
    let t = start_with(|_| {}).await;
    let ops = t.agent("ops");
    let header =
        |r: &common::Reply, name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let seq_of =
        |r: &common::Reply| -> u64 { header(r, "x-lighthouse-seq").unwrap().parse().unwrap() };
    let head =
        || async { ops.get("/v1/events?order=desc&limit=1").await.body["events"][0].clone() };
    let r = ops.put("/v1/flags/w", flag(5.0, None)).await;
    assert_eq!(header(&r, "x-lighthouse-changed").as_deref(), Some("true"));
    let created = head().await;
    assert_eq!(seq_of(&r), created["seq"].as_u64().unwrap());
    assert_eq!(
        (&created["stream"], &created["type"]),
        (&json!("$flags"), &json!("flag.created"))
    );
    // The body is the flag, as GET returns it (PROTOCOL.md 8).
    assert_eq!(r.body, ops.get("/v1/flags/w").await.body);
    // The same settings again: nothing changed, no seq.
    let r = ops.put("/v1/flags/w", flag(5.0, None)).await;
    assert_eq!(header(&r, "x-lighthouse-changed").as_deref(), Some("false"));
    assert_eq!(header(&r, "x-lighthouse-seq"), None);
    let r = ops.post("/v1/flags/w/kill", json!({"reason": "r"})).await;
    assert_eq!(header(&r, "x-lighthouse-changed").as_deref(), Some("true"));
    assert_eq!(seq_of(&r), head().await["seq"].as_u64().unwrap());
    let r = ops.post("/v1/flags/w/kill", json!({"reason": "r"})).await;
    assert_eq!(
        (
            header(&r, "x-lighthouse-changed").as_deref(),
            header(&r, "x-lighthouse-seq")
        ),
        (Some("false"), None)
    );
    let r = ops.post("/v1/flags/w/unkill", json!({"reason": "r"})).await;
    assert_eq!(header(&r, "x-lighthouse-changed").as_deref(), Some("true"));
    assert_eq!(seq_of(&r), head().await["seq"].as_u64().unwrap());
    // A refused write says nothing of the kind.
    let r = ops
        .post(
            "/v1/flags/w/kill",
            json!({"reason": "r", "expected_version": 1}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(header(&r, "x-lighthouse-changed"), None);
}
