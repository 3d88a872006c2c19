//! `Control` over HTTP behaves as `Control` in process.

mod common;

use common::{TestBridge, port_schema};
use lighthouse_client::Client;
use lighthouse_core::api::{
    CreateRequest, DrainRequest, DrainThen, ErrorCode, Event, EventsQuery, ExpectedVersion,
    FlagOutcome, FlagPut, FlagSpec, Role, Status,
};
use lighthouse_core::{Control, InProcess, OPS_STREAM, OpsRecord};
use lighthouse_security::Caller;
use serde_json::json;

/// The event at `seq`, read through `c`.
async fn event_at<C: Control>(c: &C, seq: u64) -> Event {
    let page = c
        .query_events(EventsQuery {
            after: Some(seq - 1),
            limit: Some(1),
            ..EventsQuery::default()
        })
        .await
        .unwrap();
    let e = page.events.into_iter().next().expect("an event at seq");
    assert_eq!(e.seq, seq);
    e
}

/// Checks that `out` changed the flag and cites the event of that change.
async fn cites_its_change<C: Control>(c: &C, out: &FlagOutcome, event_type: &str) {
    assert!(out.changed, "{out:?}");
    let e = event_at(c, out.seq.expect("a change has a seq")).await;
    assert_eq!(
        (e.stream.as_str(), e.event_type.as_str()),
        ("$flags", event_type)
    );
    assert_eq!(
        (&e.data["key"], &e.data["version"]),
        (&json!(out.flag.key), &json!(out.flag.version))
    );
}

/// Drives every `Control` method on `c` and checks its outcome; `alice` has one
/// pending elicitation the drain must cancel.
async fn exercise<C: Control>(c: &C, key: &str, alice: &Client, pending: &str) {
    assert!(c.health().await.unwrap().is_ok());
    let put = FlagPut {
        spec: FlagSpec::new(true, 100.0),
        reason: Some("stage 1".into()),
        expected_version: None,
    };
    let created = c.put_flag(key, put.clone()).await.unwrap();
    let flag = created.flag.clone();
    assert_eq!((flag.version, flag.enabled, flag.killed), (1, true, false));
    cites_its_change(c, &created, "flag.created").await;
    // The same settings again (a retried deploy step): nothing changes and
    // nothing is cited.
    let same = c.put_flag(key, put).await.unwrap();
    assert_eq!((&same.flag, same.changed, same.seq), (&flag, false, None));
    assert_eq!(c.get_flag(key).await.unwrap(), flag);
    assert!(
        c.list_flags()
            .await
            .unwrap()
            .flags
            .iter()
            .any(|f| f.key == key)
    );
    // Optimistic concurrency through Control: the version expected is checked,
    // and a stale one is a 409 that says what the version is (null when the
    // flag does not exist).
    let put_at = |expected_version: Option<u64>, percent: f64| FlagPut {
        spec: FlagSpec::new(true, percent),
        reason: Some("next stage".into()),
        expected_version,
    };
    let stage2 = c.put_flag(key, put_at(Some(1), 50.0)).await.unwrap();
    assert_eq!(
        (
            stage2.flag.version,
            stage2.flag.rollout_percent.as_percent()
        ),
        (2, 50.0)
    );
    cites_its_change(c, &stage2, "flag.updated").await;
    let p = c.put_flag(key, put_at(Some(1), 75.0)).await.unwrap_err();
    assert_eq!(
        (p.code, p.status, p.actual_version),
        (ErrorCode::VersionConflict, 409, Some(Some(2)))
    );
    let p = c
        .put_flag(&format!("{key}_unwritten"), put_at(Some(3), 75.0))
        .await
        .unwrap_err();
    assert_eq!(
        (p.code, p.status, p.actual_version),
        (ErrorCode::VersionConflict, 409, Some(None))
    );
    assert_eq!(
        c.get_flag(key).await.unwrap(),
        stage2.flag,
        "nothing was written"
    );
    let flag = c.put_flag(key, put_at(Some(2), 100.0)).await.unwrap().flag;
    assert_eq!(
        (flag.version, flag.rollout_percent.as_percent()),
        (3, 100.0)
    );

    let p = c.kill_flag(key, "gate failed", Some(2)).await.unwrap_err();
    assert_eq!(
        (p.code, p.status, p.actual_version),
        (ErrorCode::VersionConflict, 409, Some(Some(3)))
    );
    let killed = c.kill_flag(key, "gate failed", Some(3)).await.unwrap();
    assert_eq!((killed.flag.killed, killed.flag.version), (true, 4));
    // "I killed it": the report cites the kill event.
    cites_its_change(c, &killed, "flag.killed").await;
    // A second kill (a retried rollback step) succeeds and changes nothing:
    // "it was already killed".
    let again = c
        .kill_flag(key, "gate failed, retried", None)
        .await
        .unwrap();
    assert_eq!(
        (&again.flag, again.changed, again.seq),
        (&killed.flag, false, None)
    );
    // An unkill decided on the flag before the kill is refused: the kill stays.
    let p = c.unkill_flag(key, "stale", Some(3)).await.unwrap_err();
    assert_eq!(
        (p.code, p.status, p.actual_version),
        (ErrorCode::VersionConflict, 409, Some(Some(4)))
    );
    assert!(c.get_flag(key).await.unwrap().killed);
    let off = c.evaluate_flag(key, "alice").await.unwrap();
    assert_eq!((off.enabled, off.reason.as_str()), (false, "killed"));
    let live = c.unkill_flag(key, "fixed", Some(4)).await.unwrap();
    assert!(!live.flag.killed);
    cites_its_change(c, &live, "flag.unkilled").await;
    let still = c.unkill_flag(key, "fixed, retried", None).await.unwrap();
    assert_eq!((still.changed, still.seq), (false, None));
    let on = c.evaluate_flag(key, "alice").await.unwrap();
    assert_eq!((on.enabled, on.reason.as_str()), (true, "split"));
    assert_eq!(
        c.get_flag("no_such_flag").await.unwrap_err().code,
        ErrorCode::NotFound
    );

    let stats = c.stats(60).await.unwrap();
    assert_eq!(stats.window_s, 60);
    assert!(stats.elicitations.created >= 1, "{stats:?}");
    assert!(stats.active_elicitations >= 1);

    // An `$ops` record with the tool's id and metadata; the same call again
    // (a retry after a transport error) returns the first result and appends
    // nothing.
    let id = format!("{key}-deploy-started");
    let started = || {
        OpsRecord::new("ops.deploy.started", json!({"flag": key}))
            .with_id(id.clone())
            .with_metadata(json!({"tool": "test"}))
    };
    let rec = c.record_ops_event(started()).await.unwrap();
    assert_eq!(rec.id, id);
    assert_eq!(c.record_ops_event(started()).await.unwrap(), rec);
    let page = c
        .query_events(EventsQuery {
            stream: Some(OPS_STREAM.into()),
            event_type: Some("ops.deploy.started".into()),
            ..EventsQuery::default()
        })
        .await
        .unwrap();
    let with_id: Vec<_> = page.events.iter().filter(|e| e.id == id).collect();
    assert_eq!(with_id.len(), 1, "recorded once");
    assert_eq!(with_id[0].seq, rec.seq);
    assert_eq!(with_id[0].data, json!({"flag": key}));
    assert_eq!(with_id[0].metadata, json!({"tool": "test"}));
    // A claim on `$ops`: appended only if nothing was appended since the
    // version read; a retry of the claim gets its first result, a rival claim
    // on the same version a conflict that says where `$ops` is.
    let claim = || {
        OpsRecord::new("ops.deploy.claimed", json!({"flag": key}))
            .with_id(format!("{key}-claim"))
            .expecting(ExpectedVersion::Exact(rec.version))
    };
    let claimed = c.record_ops_event(claim()).await.unwrap();
    assert_eq!(claimed.version, rec.version + 1);
    assert_eq!(c.record_ops_event(claim()).await.unwrap(), claimed);
    let rival = OpsRecord::new("ops.deploy.claimed", json!({"flag": key}))
        .expecting(ExpectedVersion::Exact(rec.version));
    let p = c.record_ops_event(rival).await.unwrap_err();
    assert_eq!(
        (p.code, p.status, p.actual_version),
        (ErrorCode::VersionConflict, 409, Some(Some(claimed.version)))
    );
    // Without an id or a condition, as before: each call appends.
    let a = c
        .record_ops_event(OpsRecord::new("ops.note", json!({})))
        .await
        .unwrap();
    let b = c
        .record_ops_event(OpsRecord::new("ops.note", json!({})))
        .await
        .unwrap();
    assert!(b.seq > a.seq && a.id != b.id);

    let v = c.verify().await.unwrap();
    assert!(v.ok && v.first_bad_seq.is_none() && v.head_seq >= rec.seq);

    let drained = c
        .drain(DrainRequest {
            timeout_ms: 50,
            then: DrainThen::Cancel,
            reason: Some("rollback".into()),
        })
        .await
        .unwrap();
    assert_eq!((drained.cancelled, drained.remaining), (1, 0));
    let record = alice
        .get_elicitation(pending, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(record.status, Status::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_implements_control_like_the_bridge_in_process() {
    let tb = TestBridge::start().await;
    tb.enable_elicitation().await;
    let alice = tb.client("alice", Role::Agent).await;
    tb.credential("bob", Role::Agent).await;
    let req = CreateRequest::new("bob", "Which port?", port_schema());

    let remote = tb.client("ops-remote", Role::Operator).await;
    let pending = alice.elicit(&req).await.unwrap();
    exercise(&remote, "remote_flag", &alice, &pending.id).await;
    let by = alice
        .get_elicitation(&pending.id, std::time::Duration::ZERO)
        .await
        .unwrap()
        .response
        .unwrap()
        .by;
    assert_eq!(by.as_deref(), Some("ops-remote"));

    tb.credential("ops-local", Role::Operator).await;
    let local = InProcess::new(
        tb.bridge().clone(),
        Caller {
            agent: "ops-local".into(),
            role: Role::Operator,
            key_id: 1,
        },
    );
    let pending = alice.elicit(&req).await.unwrap();
    exercise(&local, "local_flag", &alice, &pending.id).await;
    // Each in-process call has its own request id (the correlation id of what
    // it writes), even two at once.
    let (a, b) = tokio::join!(
        local.record_ops_event(OpsRecord::new("ops.test.a", json!({}))),
        local.record_ops_event(OpsRecord::new("ops.test.b", json!({}))),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let store = tb.bridge().store();
    let correlation = |seq: u64| store.get(seq).unwrap().unwrap().correlation_id.unwrap();
    let (ca, cb) = (correlation(a.seq), correlation(b.seq));
    assert_ne!(ca, cb);
    assert!(ca.starts_with("inproc-ops-local-"), "{ca}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_reports_an_unreachable_bridge_as_unavailable() {
    let tb = TestBridge::start().await;
    let mut cred = tb.credential("ops", Role::Operator).await;
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    cred.bridge = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let client = Client::builder()
        .credential(cred)
        .retry(lighthouse_client::RetryPolicy::none())
        .build()
        .unwrap();
    let p = Control::verify(&client).await.unwrap_err();
    assert_eq!((p.code, p.status), (ErrorCode::Unavailable, 503));
    // A refusal keeps the bridge's own problem.
    let agent = tb.client("alice", Role::Agent).await;
    let p = Control::verify(&agent).await.unwrap_err();
    assert_eq!((p.code, p.status), (ErrorCode::Forbidden, 403));
}
