//! The projection applied directly to events.

use lighthouse_event_store::{Event, Timestamp};
use serde_json::{Value, json};

use super::*;
use crate::events::{ACCEPTED, REQUESTED};

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
    let (items, next) = p.list("bob", Mailbox::Inbox, None, 0, 1);
    assert_eq!((&*items[0].id, next), ("el_a", Some(1)));
    let (items, next) = p.list("bob", Mailbox::Inbox, None, 1, 1);
    assert_eq!((&*items[0].id, next), ("el_b", None));
    let (items, _) = p.list("bob", Mailbox::Inbox, Some(Status::Pending), 0, 10);
    assert_eq!(
        items.iter().map(|r| &*r.id).collect::<Vec<_>>(),
        vec!["el_b"]
    );
    assert_eq!(
        p.pending_inbox("bob")
            .iter()
            .map(|x| x.0)
            .collect::<Vec<_>>(),
        vec![2]
    );
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
    assert_eq!(q.list("bob", Mailbox::Inbox, None, 0, 10).0.len(), 2);
    assert_eq!(p.export(), q.export());
    assert_eq!(q.pending_count(), 1);
    assert!(q.entry("el_b").unwrap().live.is_some());
    assert!(Projection::from_snapshot(b"{}", Limits::default()).is_err());
}
