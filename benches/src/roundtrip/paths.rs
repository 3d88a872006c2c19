//! The two round trips under load.
//!
//! Elicitations: the requester `POST /v1/elicitations`, then at once long-polls
//! `GET /v1/elicitations/{id}?wait_ms=..`; the target, holding `GET /v1/stream`
//! open, receives `elicitation.requested` and `POST .../respond`s; the round
//! trip ends when the requester's long-poll returns the accepted record.
//!
//! Messages (the legacy path): the requester `POST /v1/messages`; the target,
//! long-polling `GET /v1/messages`, receives it and replies with a message; the
//! round trip ends when the requester's own long-poll on `GET /v1/messages`
//! returns the reply.
//!
//! Every request carries its slot's planned and actual send times (in the
//! elicitation's `metadata`, in the message `body`), so whoever sees it can
//! record the latency without shared state. A failure on the target's side is a
//! connection error; the slot itself fails on the requester's side (its
//! long-poll returns the elicitation still pending, or no reply ever comes).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::client::Agent;
use super::stats::Ctx;

/// How long the messages pollers wait per long-poll.
const POLL_WAIT_MS: u64 = 20_000;
/// Pause before reopening a failed stream or poll.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Deserialize, Default)]
struct Stamp {
    #[serde(default)]
    planned_us: u64,
    #[serde(default)]
    sent_us: u64,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize)]
struct Record {
    id: String,
    status: String,
    #[serde(default)]
    metadata: Option<Stamp>,
}

#[derive(Deserialize)]
struct Message {
    from: String,
    #[serde(default)]
    body: Stamp,
}

#[derive(Deserialize)]
struct MessagesPage {
    messages: Vec<Message>,
    next_after: u64,
}

/// The schema every elicitation asks its answer to satisfy.
static SCHEMA: LazyLock<Box<RawValue>> = LazyLock::new(|| {
    RawValue::from_string(
        r#"{"type":"object","properties":{"port":{"type":"integer","minimum":1,"maximum":65535}},"required":["port"]}"#
            .to_owned(),
    )
    .expect("the schema is valid JSON")
});

/// The target's answer to every elicitation.
const ACCEPT: &[u8] = br#"{"action":"accept","content":{"port":8080}}"#;

/// The bodies the bench sends are built from these (serialised straight to
/// bytes, without a `serde_json::Value` in between).
#[derive(Serialize)]
struct NewElicitation<'a> {
    to: &'a str,
    message: &'static str,
    requested_schema: &'static RawValue,
    metadata: SentStamp,
}

#[derive(Serialize)]
struct SentStamp {
    planned_us: u64,
    sent_us: u64,
}

#[derive(Serialize)]
struct NewMessage<'a> {
    to: &'a str,
    body: MessageStamp,
}

#[derive(Serialize)]
struct MessageStamp {
    kind: &'static str,
    planned_us: u64,
    sent_us: u64,
}

fn to_vec(v: &impl Serialize) -> Vec<u8> {
    // Serialising these structs (no maps with non-string keys) cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// One elicitation round trip for the slot planned at `planned_us`.
pub async fn elicit(ctx: Arc<Ctx>, me: Agent, to: String, planned_us: u64) {
    let sent_us = ctx.now_us();
    let body = to_vec(&NewElicitation {
        to: &to,
        message: "Which port?",
        requested_schema: &SCHEMA,
        metadata: SentStamp {
            planned_us,
            sent_us,
        },
    });
    let limit = ctx.timeout + Duration::from_secs(5);
    let created: Record = match ctx
        .http
        .call(&me, Method::POST, "/v1/elicitations", &body, 201, limit)
        .await
    {
        Ok(r) => r,
        Err(k) => return ctx.failed(planned_us, &format!("create_{k}")),
    };
    let wait_ms = u64::try_from(ctx.timeout.as_millis()).unwrap_or(60_000);
    let path = format!("/v1/elicitations/{}?wait_ms={wait_ms}", created.id);
    match ctx
        .http
        .call::<Record>(&me, Method::GET, &path, b"", 200, limit)
        .await
    {
        Ok(r) if r.status == "accepted" => ctx.completed(planned_us, sent_us),
        Ok(r) if r.status == "pending" => ctx.failed(planned_us, "timeout"),
        Ok(r) => ctx.failed(planned_us, &format!("status_{}", r.status)),
        Err(k) => ctx.failed(planned_us, &format!("wait_{k}")),
    }
}

/// A target: holds its stream open and accepts every elicitation pushed to it,
/// reconnecting from the last event id if the stream ends, until `stop`.
/// `ready` is sent once the first stream is open.
pub async fn target_stream(
    ctx: Arc<Ctx>,
    me: Agent,
    mut stop: watch::Receiver<bool>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let mut last_id: Option<u64> = None;
    let mut ready = Some(ready);
    while !*stop.borrow() {
        let mut reader = match ctx.http.open_stream(&me, last_id).await {
            Ok(r) => r,
            Err(k) => {
                ctx.connection_error(&format!("stream_{k}"));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        if let Some(r) = ready.take() {
            let _ = r.send(()).await;
        }
        loop {
            let ev = tokio::select! {
                ev = reader.next() => ev,
                _ = stop.changed() => return,
            };
            let ev = match ev {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    ctx.connection_error("stream_ended");
                    break;
                }
                Err(k) => {
                    ctx.connection_error(&format!("stream_{k}"));
                    break;
                }
            };
            if ev.id.is_some() {
                last_id = ev.id;
            }
            match ev.event.as_str() {
                "elicitation.requested" => answer(&ctx, &me, &ev.data),
                "lagged" | "shutdown" => {
                    ctx.connection_error(&format!("stream_{}", ev.event));
                    break;
                }
                _ => {}
            }
        }
    }
}

/// Records the delivery of a pushed elicitation and accepts it (in its own task,
/// so a slow answer does not hold up the stream).
fn answer(ctx: &Arc<Ctx>, me: &Agent, data: &str) {
    let Ok(r) = serde_json::from_str::<Record>(data) else {
        ctx.connection_error("stream_bad_event");
        return;
    };
    let stamp = r.metadata.unwrap_or_default();
    ctx.delivered(stamp.planned_us, stamp.sent_us);
    let (ctx, me) = (ctx.clone(), me.clone());
    tokio::spawn(async move {
        let path = format!("/v1/elicitations/{}/respond", r.id);
        let limit = ctx.timeout + Duration::from_secs(5);
        let res = ctx
            .http
            .call::<serde::de::IgnoredAny>(&me, Method::POST, &path, ACCEPT, 200, limit)
            .await;
        if let Err(k) = res {
            ctx.connection_error(&format!("respond_{k}"));
        }
    });
}

/// One message round trip: sends the request; the target's and the requester's
/// pollers do the rest.
pub async fn send_message(ctx: Arc<Ctx>, me: Agent, to: String, planned_us: u64) {
    let sent_us = ctx.now_us();
    let body = to_vec(&NewMessage {
        to: &to,
        body: MessageStamp {
            kind: "request",
            planned_us,
            sent_us,
        },
    });
    let limit = ctx.timeout + Duration::from_secs(5);
    if let Err(k) = ctx
        .http
        .call::<serde::de::IgnoredAny>(&me, Method::POST, "/v1/messages", &body, 201, limit)
        .await
    {
        ctx.failed(planned_us, &format!("send_{k}"));
    }
}

/// Which side of the messages path a poller is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Receives requests and replies to each.
    Target,
    /// Receives replies and completes round trips.
    Requester,
}

/// Long-polls `GET /v1/messages` for `me` until `stop`. `ready` is sent once the
/// first long-poll has been sent.
pub async fn message_poller(
    ctx: Arc<Ctx>,
    me: Agent,
    side: Side,
    mut stop: watch::Receiver<bool>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let limit = Duration::from_millis(POLL_WAIT_MS) + Duration::from_secs(10);
    let mut after = skip_old_messages(&ctx, &me, limit).await;
    let mut ready = Some(ready);
    while !*stop.borrow() {
        let path = format!("/v1/messages?after={after}&wait_ms={POLL_WAIT_MS}&limit=1000");
        let call = ctx
            .http
            .call::<MessagesPage>(&me, Method::GET, &path, b"", 200, limit);
        if let Some(r) = ready.take() {
            // The request is built and about to be sent; the bridge sees it
            // within the first poll of the future below.
            let _ = r.send(()).await;
        }
        let page = tokio::select! {
            p = call => p,
            _ = stop.changed() => return,
        };
        let page = match page {
            Ok(p) => p,
            Err(k) => {
                ctx.connection_error(&format!("poll_{k}"));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        after = page.next_after;
        for m in page.messages {
            match (side, m.body.kind.as_str()) {
                (Side::Target, "request") => reply(&ctx, &me, m),
                (Side::Requester, "reply") => ctx.completed(m.body.planned_us, m.body.sent_us),
                _ => ctx.connection_error("poll_unexpected_message"),
            }
        }
    }
}

/// The position after every message already in `me`'s mailbox (a reused data
/// directory holds earlier runs' messages).
async fn skip_old_messages(ctx: &Ctx, me: &Agent, limit: Duration) -> u64 {
    let mut after = 0;
    loop {
        let path = format!("/v1/messages?after={after}&limit=1000");
        match ctx
            .http
            .call::<MessagesPage>(me, Method::GET, &path, b"", 200, limit)
            .await
        {
            Ok(p) if !p.messages.is_empty() => after = p.next_after,
            Ok(_) => return after,
            Err(k) => {
                ctx.connection_error(&format!("poll_{k}"));
                return after;
            }
        }
    }
}

fn reply(ctx: &Arc<Ctx>, me: &Agent, m: Message) {
    ctx.delivered(m.body.planned_us, m.body.sent_us);
    let (ctx, me) = (ctx.clone(), me.clone());
    tokio::spawn(async move {
        let body = to_vec(&NewMessage {
            to: &m.from,
            body: MessageStamp {
                kind: "reply",
                planned_us: m.body.planned_us,
                sent_us: m.body.sent_us,
            },
        });
        let limit = ctx.timeout + Duration::from_secs(5);
        if let Err(k) = ctx
            .http
            .call::<serde::de::IgnoredAny>(&me, Method::POST, "/v1/messages", &body, 201, limit)
            .await
        {
            ctx.connection_error(&format!("reply_{k}"));
        }
    });
}
