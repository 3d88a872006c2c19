//! The long-polls report only the time they were blocked waiting for another
//! agent: an answer that is there at once adds no waited time, whatever the
//! `wait_ms` asked, so the bridge's own work on it stays request latency
//! (PROTOCOL.md 9).

use std::time::Duration;

use lighthouse_core::api::{CreateRequest, RespondRequest};
use lighthouse_core::setup::initialize;
use lighthouse_core::{Bridge, BridgeConfig, WaitMeter};
use lighthouse_elicitation::SendMessage;
use lighthouse_security::{Caller, MasterKey};
use serde_json::json;

async fn bridge() -> (Bridge, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = BridgeConfig::new(dir.path().join("data"), MasterKey::generate().unwrap());
    let bridge = Bridge::open(config).await.unwrap();
    initialize(&bridge, &dir.path().join("creds"), true)
        .await
        .unwrap();
    (bridge, dir)
}

fn caller(b: &Bridge, agent: &str) -> Caller {
    b.caller_for(agent).unwrap()
}

/// Waits until `meter` shows a block in progress (its total grows by itself).
async fn until_blocked(meter: &WaitMeter) -> Duration {
    for _ in 0..2000 {
        let w = meter.waited();
        if w > Duration::ZERO {
            return w;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the long-poll never blocked");
}

async fn send(b: &Bridge, from: &str, to: &str, n: u64) -> u64 {
    let msg = SendMessage {
        to: to.into(),
        body: json!({"n": n}),
    };
    b.send_message(&caller(b, from), "req", msg)
        .await
        .unwrap()
        .seq
}

#[tokio::test]
async fn a_message_long_poll_counts_only_its_block_as_waited() {
    let (b, _dir) = bridge().await;
    let first = send(&b, "alice", "bob", 1).await;

    // There already: answered at once, nothing waited although it could wait 60 s.
    let meter = WaitMeter::new();
    let page = b
        .receive_messages(&caller(&b, "bob"), 0, 60_000, None, &meter)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(meter.waited(), Duration::ZERO);

    // Nothing after `first` yet: it blocks until alice sends, and that block
    // is what it waited.
    let meter = WaitMeter::new();
    let poll = {
        let (b, meter) = (b.clone(), meter.clone());
        tokio::spawn(async move {
            b.receive_messages(&caller(&b, "bob"), first, 60_000, None, &meter)
                .await
        })
    };
    let blocked = until_blocked(&meter).await;
    send(&b, "alice", "bob", 2).await;
    let page = poll.await.unwrap().unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].body, json!({"n": 2}));
    let waited = meter.waited();
    assert!(waited >= blocked, "{waited:?} < {blocked:?}");
    assert_eq!(meter.waited(), waited, "the block ended with the answer");
}

#[tokio::test]
async fn an_elicitation_long_poll_counts_only_its_block_as_waited() {
    let (b, _dir) = bridge().await;
    let (alice, bob) = (caller(&b, "alice"), caller(&b, "bob"));
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}});
    let (asked, _) = b
        .elicit(
            &alice,
            "req-1",
            None,
            CreateRequest::new("bob", "ok?", schema),
        )
        .await
        .unwrap();

    let meter = WaitMeter::new();
    let poll = {
        let (b, meter, id, alice) = (b.clone(), meter.clone(), asked.id.clone(), alice.clone());
        tokio::spawn(async move { b.get_elicitation(&alice, &id, 60_000, &meter).await })
    };
    let blocked = until_blocked(&meter).await;
    b.respond(
        &bob,
        "req-2",
        &asked.id,
        RespondRequest::accept(json!({"ok": true})),
    )
    .await
    .unwrap();
    let record = poll.await.unwrap().unwrap();
    assert!(record.status.is_terminal(), "{:?}", record.status);
    assert!(meter.waited() >= blocked);

    // Terminal already: answered at once, nothing waited.
    let meter = WaitMeter::new();
    let record = b
        .get_elicitation(&alice, &asked.id, 60_000, &meter)
        .await
        .unwrap();
    assert!(record.status.is_terminal());
    assert_eq!(meter.waited(), Duration::ZERO);
}

#[tokio::test]
async fn a_long_poll_cut_short_by_shutdown_keeps_its_block_as_waited() {
    let (b, _dir) = bridge().await;
    let meter = WaitMeter::new();
    let poll = {
        let (b, meter) = (b.clone(), meter.clone());
        tokio::spawn(async move {
            b.receive_messages(&caller(&b, "bob"), 0, 60_000, None, &meter)
                .await
        })
    };
    let blocked = until_blocked(&meter).await;
    b.begin_shutdown();
    let page = poll.await.unwrap().unwrap();
    assert!(page.messages.is_empty());
    let waited = meter.waited();
    assert!(waited >= blocked, "{waited:?} < {blocked:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(meter.waited(), waited, "the abandoned wait ended");
}
