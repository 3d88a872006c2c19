//! The projection applied directly to events.

use lighthouse_event_store::{Event, Timestamp};
use serde_json::{Value, json};

use super::*;
use crate::events::{ACCEPTED, CANCELLED, DECLINED, REQUESTED};

fn event(seq: u64, stream: &str, version: u64, ty: &str, data: Value) -> Event {
    Event {
        seq,
        id: format!("ev{seq}"),
        stream: stream.into(),
        version,
        event_type: ty.into(),
        time: Timestamp::from_unix_millis(seq as i64),
        agent: None,
        correlation_id: None,
        causation_id: None,
        data,
        metadata: json!({}),
    }
}

fn requested(seq: u64, id: &str, from: &str, to: &str) -> Event {
    event(
        seq,
        &format!("elicitation-{id}"),
        0,
        REQUESTED,
        json!({"id": id, "from": from, "to": to, "message": "q", "requested_schema": {"type": "object", "properties": {}},
               "schema_profile": "form", "created_at": "2026-11-26T07:00:00.000Z",
               "expires_at": "2026-11-26T07:00:30.000Z", "metadata": {}}),
    )
}

fn accepted(seq: u64, id: &str, from: &str, to: &str) -> Event {
    event(
        seq,
        &format!("elicitation-{id}"),
        1,
        ACCEPTED,
        json!({"id": id, "from": from, "to": to, "resolved_at": "2026-11-26T07:00:01.000Z", "content": {}, "by": to}),
    )
}

#[test]
fn eviction_forgets_everything_about_old_elicitations() {
    let mut p = Projection::new(Limits {
        max_retained_resolved: 3,
        ..Limits::default()
    });
    let mut seq = 0;
    for i in 0..20 {
        let id = format!("el_{i}");
        let (from, to) = (format!("a{i}"), format!("b{i}"));
        seq += 1;
        assert!(matches!(
            p.apply(&requested(seq, &id, &from, &to)),
            Change::Requested { .. }
        ));
        seq += 1;
        assert!(matches!(
            p.apply(&accepted(seq, &id, &from, &to)),
            Change::Resolved { .. }
        ));
    }
    assert_eq!(p.held_count(), 3);
    // Per-agent indexes of evicted elicitations are gone too.
    assert_eq!(p.agents.len(), 6);
    assert_eq!(p.resolved_order.len(), 3);
    assert_eq!(p.evicted_through(), 34);
    assert!(p.entry("el_16").is_none() && p.entry("el_17").is_some());
}

#[test]
fn events_apply_once_and_foreign_events_only_move_versions() {
    let mut p = Projection::new(Limits::default());
    p.apply(&requested(1, "el_x", "alice", "bob"));
    assert!(matches!(
        p.apply(&requested(1, "el_x", "alice", "bob")),
        Change::Nothing
    ));
    p.apply(&event(2, "elicitation-el_x", 1, "note.added", json!({})));
    assert_eq!(p.entry("el_x").unwrap().version, 1);
    assert_eq!(p.pending_count(), 1);
    p.apply(&event(3, "other", 0, "elicitation.accepted", json!({})));
    assert_eq!(p.applied_seq, 3);
    assert_eq!(p.pending_count(), 1);
    // A second terminal event is ignored.
    let mut acc = accepted(4, "el_x", "alice", "bob");
    acc.version = 2;
    assert!(matches!(p.apply(&acc), Change::Resolved { .. }));
    let mut again = accepted(5, "el_x", "alice", "bob");
    again.version = 3;
    assert!(matches!(p.apply(&again), Change::Nothing));
    assert_eq!(p.entry("el_x").unwrap().terminal_seq, Some(4));
    // An unreadable event is skipped, not fatal.
    assert!(matches!(
        p.apply(&event(
            6,
            "elicitation-el_y",
            0,
            REQUESTED,
            json!({"id": 1})
        )),
        Change::Nothing
    ));
    assert_eq!(p.applied_seq, 6);
}

#[test]
fn feed_and_listings_follow_sequence_order() {
    let mut p = Projection::new(Limits::default());
    p.apply(&requested(1, "el_a", "alice", "bob"));
    p.apply(&requested(2, "el_b", "carol", "bob"));
    p.apply(&requested(3, "el_c", "bob", "alice"));
    p.apply(&accepted(4, "el_a", "alice", "bob"));
    let feed: Vec<_> = p
        .feed("bob", 0, 10, 10)
        .into_iter()
        .map(|(s, req, r)| (s, req, r.status))
        .collect();
    assert_eq!(
        feed,
        vec![
            (1, true, Status::Pending),
            (2, true, Status::Pending),
            (4, false, Status::Accepted)
        ]
    );
    assert_eq!(p.feed("bob", 1, 2, 10).len(), 1);
    assert_eq!(
        p.feed("alice", 0, 10, 10)
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    let (items, next) = p.list("bob", Mailbox::Inbox, None, 0, 1, usize::MAX);
    assert_eq!((&*items[0].1.id, next), ("el_a", Some(1)));
    let (items, next) = p.list("bob", Mailbox::Inbox, None, 1, 1, usize::MAX);
    assert_eq!((&*items[0].1.id, next), ("el_b", None));
    let (items, _) = p.list(
        "bob",
        Mailbox::Inbox,
        Some(Status::Pending),
        0,
        10,
        usize::MAX,
    );
    assert_eq!(
        items.iter().map(|(_, r)| &*r.id).collect::<Vec<_>>(),
        vec!["el_b"]
    );
    // Pending at 4: el_b. Pending at 3: el_a too, as it was then.
    let page = |boundary, after, limit, budget| {
        let (items, next) = p.pending_inbox_page("bob", after, boundary, limit, budget);
        let items: Vec<_> = items.iter().map(|(s, r)| (*s, r.status)).collect();
        (items, next)
    };
    assert_eq!(page(4, 0, 10, 10), (vec![(2, Status::Pending)], None));
    assert_eq!(
        page(3, 0, 10, 10),
        (vec![(1, Status::Pending), (2, Status::Pending)], None)
    );
    // Pages by count and by what they look at, resuming where they stopped.
    assert_eq!(page(3, 0, 1, 10), (vec![(1, Status::Pending)], Some(1)));
    assert_eq!(page(3, 1, 1, 10), (vec![(2, Status::Pending)], Some(2)));
    assert_eq!(page(3, 2, 1, 10), (vec![], None));
    assert_eq!(page(4, 0, 10, 1), (vec![], Some(1)));
    assert_eq!(page(4, 1, 10, 1), (vec![(2, Status::Pending)], Some(2)));
    // Requested after the boundary: not on its list.
    assert_eq!(page(1, 0, 10, 10), (vec![(1, Status::Pending)], None));
}

#[test]
fn a_snapshot_round_trips() {
    let mut p = Projection::new(Limits::default());
    p.apply(&requested(1, "el_a", "alice", "bob"));
    p.apply(&requested(2, "el_b", "carol", "bob"));
    p.apply(&accepted(3, "el_a", "alice", "bob"));
    let bytes = p.capture().encode().unwrap();
    let mut q = Projection::from_snapshot(&bytes, Limits::default()).unwrap();
    q.set_indexing(true);
    assert_eq!(
        q.list("bob", Mailbox::Inbox, None, 0, 10, usize::MAX)
            .0
            .len(),
        2
    );
    assert_eq!(p.export(), q.export());
    assert_eq!(q.pending_count(), 1);
    assert!(q.entry("el_b").unwrap().live.is_some());
    assert!(Projection::from_snapshot(b"{}", Limits::default()).is_err());
}

/// `e` as the store keeps it.
fn stored(e: &Event) -> Vec<u8> {
    use lighthouse_event_store::NewEvent;
    use lighthouse_event_store::codec::{ChainKey, GENESIS, Prepared};
    let new = NewEvent::new(e.stream.clone(), e.event_type.clone(), e.data.clone())
        .with_metadata(e.metadata.clone());
    let key = ChainKey::new(b"projection test key");
    Prepared::new(new)
        .unwrap()
        .finish(&key, &GENESIS, e.seq, e.version, e.time, &e.id)
        .0
}

fn decoded(d: &mut ReplayDecoder, e: &Event) -> ReplayEvent {
    let bytes = stored(e);
    let view = lighthouse_event_store::codec::RecordView::parse(&bytes).unwrap();
    d.decode(&view).unwrap()
}

#[test]
fn a_replay_of_stored_records_builds_what_applying_the_events_builds() {
    let with = |mut e: Event, version: u64| {
        e.version = version;
        e
    };
    let mut other = requested(11, "el_c", "carol", "dave");
    other.data["requested_schema"] =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    other.data["metadata"] = json!({"k": [1, "x\"y"]});
    other.data["idempotency_key"] = json!("key-1");
    other.data["request_hash"] = json!("abc");
    let mut mismatched = requested(7, "el_q", "alice", "bob");
    mismatched.stream = "elicitation-el_z".into();
    let events = vec![
        requested(1, "el_a", "alice", "bob"),
        requested(2, "el_b", "carol", "bob"),
        event(
            3,
            "elicitation-el_a",
            1,
            "note.added",
            json!({"any": "thing"}),
        ),
        with(accepted(4, "el_a", "alice", "bob"), 2),
        with(accepted(5, "el_a", "alice", "bob"), 3),
        event(6, "elicitation-el_y", 0, REQUESTED, json!({"id": 1})),
        mismatched,
        accepted(8, "el_missing", "alice", "bob"),
        event(
            9,
            "elicitation-el_b",
            1,
            DECLINED,
            json!({"resolved_at": 5}),
        ),
        with(requested(10, "el_a", "alice", "bob"), 4),
        other,
        event(
            12,
            "elicitation-el_c",
            1,
            CANCELLED,
            json!({"id": "el_c", "from": "carol", "to": "dave", "resolved_at": "2026-11-26T07:00:02.000Z",
                   "reason": "no longer needed", "by": "carol"}),
        ),
    ];
    let limits = Limits {
        max_retained_resolved: 1,
        ..Limits::default()
    };
    let mut applied = Projection::new(limits.clone());
    let mut replayed = Projection::new(limits);
    let mut decoder = ReplayDecoder::default();
    for e in &events {
        applied.apply(e);
        replayed.apply_decoded(decoded(&mut decoder, e));
        assert_eq!(applied.export(), replayed.export(), "after seq {}", e.seq);
        if e.seq == 2 {
            // Equal schema texts are parsed once and shared.
            let schema = |id: &str| replayed.entry(id).unwrap().record.requested_schema.clone();
            assert!(Arc::ptr_eq(&schema("el_a"), &schema("el_b")));
        }
    }
    assert_eq!(replayed.applied_seq, 12);
    assert_eq!(replayed.since_snapshot, applied.since_snapshot);
    for id in ["el_a", "el_b", "el_c"] {
        assert_eq!(
            replayed.entry(id).map(|e| e.version),
            applied.entry(id).map(|e| e.version),
            "{id}"
        );
    }
    assert_eq!(replayed.entry("el_b").unwrap().version, 1);
    assert_eq!(
        replayed.entry("el_b").unwrap().record.status,
        Status::Pending
    );
    assert!(replayed.entry("el_y").is_none() && replayed.entry("el_z").is_none());
    assert_eq!(replayed.idempotency_len(), 1);
    assert!(replayed.entry("el_a").is_none(), "evicted");
    assert_eq!(
        *replayed.entry("el_c").unwrap().record.metadata,
        json!({"k": [1, "x\"y"]})
    );
}

#[test]
fn a_replay_refuses_a_record_whose_data_or_metadata_is_not_json() {
    let mut d = ReplayDecoder::default();
    for (ty, field) in [
        (REQUESTED, "data"),
        (ACCEPTED, "data"),
        ("note.added", "data"),
        ("note.added", "metadata"),
    ] {
        let mut e = event(7, "elicitation-el_a", 0, ty, json!("dat"));
        e.metadata = json!("met");
        let mut bytes = stored(&e);
        let marker: &[u8] = if field == "data" {
            b"\"dat\""
        } else {
            b"\"met\""
        };
        let at = bytes.windows(5).position(|w| w == marker).unwrap();
        bytes[at] = b'\'';
        bytes[at + 4] = b'\'';
        let view = lighthouse_event_store::codec::RecordView::parse(&bytes).unwrap();
        let r = d.decode(&view);
        assert!(
            matches!(
                r,
                Err(lighthouse_event_store::Error::Corrupt { seq: 7, .. })
            ),
            "{ty} {field}: {r:?}"
        );
    }
    // JSON of the wrong shape is not the store's concern: applying skips it.
    let e = event(8, "elicitation-el_a", 0, REQUESTED, json!([1, 2]));
    let r = decoded(&mut d, &e);
    assert!(matches!(r.payload, Decoded::Requested(Err(_))));
}

#[test]
fn a_replay_remembers_a_bounded_number_of_schema_texts() {
    use super::decoded::{SHARED_VALUE_MAX_LEN, SHARED_VALUES};
    let mut d = ReplayDecoder::default();
    let mut most = 0;
    for i in 0..(3 * SHARED_VALUES as u64) {
        let mut e = requested(i + 1, &format!("el_{i}"), "alice", "bob");
        e.data["requested_schema"] = json!({"type": "object", "title": format!("t{i}")});
        let r = decoded(&mut d, &e);
        let Decoded::Requested(Ok(req)) = r.payload else {
            panic!("not decoded: {:?}", r.payload);
        };
        assert_eq!(req.requested_schema["title"], format!("t{i}"));
        most = most.max(d.remembered().0);
    }
    // Every schema was distinct; every metadata was `{}`.
    assert_eq!(most, SHARED_VALUES);
    assert_eq!(d.remembered().1, 1);
    let mut e = requested(1_000, "el_big", "alice", "bob");
    e.data["requested_schema"] = json!({"title": "x".repeat(SHARED_VALUE_MAX_LEN)});
    let before = d.remembered();
    assert!(matches!(
        decoded(&mut d, &e).payload,
        Decoded::Requested(Ok(_))
    ));
    assert_eq!(d.remembered(), before, "a long text is not remembered");
}
