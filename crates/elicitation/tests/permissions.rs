//! Every permission rule: who may see, respond to, cancel, create and drain.

mod common;

use std::sync::Arc;

use common::*;
use lighthouse_elicitation::{
    CancelRequest, ElicitationService, Error, Limits, ListQuery, Mailbox, RespondRequest,
    ServiceOptions, Status,
};
use lighthouse_event_store::{EventStore, StoreOptions};
use lighthouse_security::Role;
use serde_json::json;

#[tokio::test]
async fn permission_rules() {
    let clock = manual_clock();
    let (svc, _store) = open_temp(&clock).await;
    let r = svc
        .create(&alice(), "r1", ask("bob"), None)
        .await
        .unwrap()
        .record;
    let accept = || RespondRequest::accept(json!({"port": 1}));

    // A third party learns nothing: not found for read, respond and cancel.
    for e in [
        svc.get(&carol(), &r.id, 0).await.unwrap_err(),
        svc.respond(&carol(), "x", &r.id, accept())
            .await
            .unwrap_err(),
        svc.cancel(&carol(), "x", &r.id, CancelRequest::default())
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                e,
                Error::NotFound {
                    what: "elicitation"
                }
            ),
            "{e:?}"
        );
    }
    // Not even an admin or an operator sees someone else's elicitation here.
    assert!(matches!(
        svc.get(&caller("root", Role::Admin), &r.id, 0).await,
        Err(Error::NotFound { .. })
    ));
    // The target may see it but not cancel; the requester may not respond.
    assert!(matches!(
        svc.cancel(&bob(), "x", &r.id, CancelRequest::default())
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        svc.respond(&alice(), "x", &r.id, accept()).await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        svc.respond(&alice(), "x", &r.id, RespondRequest::decline(None))
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert_eq!(
        svc.get(&bob(), &r.id, 0).await.unwrap().status,
        Status::Pending
    );
    // Roles: observers and operators do not elicit, respond or cancel; admins do.
    for role in [Role::Observer, Role::Operator] {
        let c = caller("alice", role);
        assert!(matches!(
            svc.create(&c, "x", ask("bob"), None).await,
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            svc.cancel(&c, "x", &r.id, CancelRequest::default()).await,
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            svc.respond(&caller("bob", role), "x", &r.id, accept())
                .await,
            Err(Error::Forbidden { .. })
        ));
    }
    assert!(
        svc.create(&caller("root", Role::Admin), "x", ask("bob"), None)
            .await
            .is_ok()
    );
    // Unknown ids, malformed or not, are not found.
    for id in ["el_01JDX3ABCDEFGHJKMNPQRSTVWX", "nope", "../etc"] {
        assert!(
            matches!(svc.get(&alice(), id, 0).await, Err(Error::NotFound { .. })),
            "{id}"
        );
    }
    // Listings show only the caller's own boxes.
    let q = |mailbox| ListQuery {
        mailbox,
        status: None,
        limit: None,
        cursor: None,
    };
    assert_eq!(
        svc.list(&carol(), &q(Mailbox::Inbox)).unwrap().items.len(),
        0
    );
    assert_eq!(
        svc.list(&carol(), &q(Mailbox::Outbox)).unwrap().items.len(),
        0
    );
    assert_eq!(svc.list(&bob(), &q(Mailbox::Inbox)).unwrap().items.len(), 2);
    assert_eq!(
        svc.list(&alice(), &q(Mailbox::Outbox)).unwrap().items.len(),
        1
    );
    // Drain is for operators and admins.
    let drain = lighthouse_elicitation::DrainRequest {
        timeout_ms: 0,
        then: lighthouse_elicitation::DrainThen::None,
        reason: None,
    };
    assert!(matches!(
        svc.drain(&alice(), "x", drain.clone()).await,
        Err(Error::Forbidden { .. })
    ));
    assert!(svc.drain(&ops(), "x", drain).await.is_ok());
}

#[tokio::test]
async fn the_target_must_be_an_active_agent() {
    let clock = manual_clock();
    let store = EventStore::open_temporary(StoreOptions::new(KEY)).unwrap();
    let dir = Arc::new(|a: &str| a != "ghost");
    let svc = ElicitationService::open(
        store,
        ServiceOptions::new()
            .clock(Arc::new(clock.clone()))
            .directory(dir),
    )
    .await
    .unwrap();
    assert!(matches!(
        svc.create(&alice(), "r", ask("ghost"), None).await,
        Err(Error::NotFound { what: "agent" })
    ));
    assert!(svc.create(&alice(), "r", ask("bob"), None).await.is_ok());
}

#[tokio::test]
async fn visibility_holds_for_elicitations_no_longer_in_memory() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_retained_resolved: 1,
        ..Limits::default()
    };
    let svc = open_at(dir.path(), &clock, limits).await;
    let first = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    svc.cancel(&alice(), "r", &first.id, CancelRequest::default())
        .await
        .unwrap();
    for _ in 0..3 {
        let r = svc
            .create(&alice(), "r", ask("bob"), None)
            .await
            .unwrap()
            .record;
        svc.respond(&bob(), "r", &r.id, RespondRequest::decline(None))
            .await
            .unwrap();
    }
    assert_eq!(svc.memory_counts().held_elicitations, 1);
    // Read back from the log, with the same rules.
    let r = svc.get(&bob(), &first.id, 0).await.unwrap();
    assert_eq!(r.status, Status::Cancelled);
    assert!(matches!(
        svc.get(&carol(), &first.id, 0).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        svc.respond(&carol(), "r", &first.id, RespondRequest::decline(None))
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        svc.cancel(&bob(), "r", &first.id, CancelRequest::default())
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        svc.respond(&bob(), "r", &first.id, RespondRequest::decline(None))
            .await,
        Err(Error::AlreadyResolved {
            status: Status::Cancelled,
            ..
        })
    ));
    svc.abort().await;
}

#[tokio::test]
async fn others_events_on_an_elicitations_stream_do_not_hide_its_outcome() {
    let clock = manual_clock();
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(dir.path(), &clock);
    let limits = Limits {
        max_retained_resolved: 1,
        ..Limits::default()
    };
    let svc = ElicitationService::open(store.clone(), options(&clock, limits))
        .await
        .unwrap();
    let first = svc
        .create(&alice(), "r", ask("bob"), None)
        .await
        .unwrap()
        .record;
    // Agents may write their own types to any stream not starting with `$`:
    // more of them than a read of the whole stream used to look at.
    let stream = format!("elicitation-{}", first.id);
    for _ in 0..11 {
        let notes = (0..1000)
            .map(|_| lighthouse_event_store::NewEvent::new(stream.as_str(), "note.x", json!({})))
            .collect();
        store.append(notes).await.unwrap();
    }
    svc.respond(&bob(), "r", &first.id, RespondRequest::decline(None))
        .await
        .unwrap();
    // Pushed out of memory by later resolutions, it is read back from the log.
    for _ in 0..3 {
        let r = svc
            .create(&alice(), "r", ask("bob"), None)
            .await
            .unwrap()
            .record;
        svc.cancel(&alice(), "r", &r.id, CancelRequest::default())
            .await
            .unwrap();
    }
    assert_eq!(svc.memory_counts().held_elicitations, 1);
    let r = svc.get(&alice(), &first.id, 0).await.unwrap();
    assert_eq!(r.status, Status::Declined);
    assert!(matches!(
        svc.cancel(&alice(), "r", &first.id, CancelRequest::default())
            .await,
        Err(Error::AlreadyResolved {
            status: Status::Declined,
            ..
        })
    ));
}
