//! Elicitations and messages (PROTOCOL.md sections 4 and 6).

use std::time::Duration;

use lighthouse_core::MAX_WAIT_MS;
use lighthouse_core::api::{
    CancelRequest, CreateRequest, Elicitation, ElicitationList, MessagesPage, RespondRequest,
    SentMessage, Status,
};
use serde::Serialize;
use serde_json::Value;

use crate::client::Client;
use crate::error::Error;
use crate::transport::{Call, IDEMPOTENCY_KEY, Retry, segment};

/// Which side of the caller's elicitations to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mailbox {
    /// Addressed to me (default).
    #[default]
    Inbox,
    /// Created by me.
    Outbox,
}

impl Mailbox {
    fn as_str(self) -> &'static str {
        match self {
            Mailbox::Inbox => "inbox",
            Mailbox::Outbox => "outbox",
        }
    }
}

/// `GET /v1/elicitations` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListElicitations {
    /// Inbox or outbox.
    pub mailbox: Mailbox,
    /// Only this status.
    pub status: Option<Status>,
    /// Page size (the bridge's default when `None`).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /v1/messages` parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveMessages {
    /// Only messages with `seq > after` (default 0).
    pub after: u64,
    /// Long-poll up to this long when there are none (0 to 60 s; more is
    /// refused by [`Client::messages`] before anything is sent).
    pub wait: Duration,
    /// Most messages (the bridge's default when `None`).
    pub limit: Option<usize>,
}

/// The result of a create with an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The record.
    pub record: Elicitation,
    /// Whether the bridge answered from an earlier create with the same key
    /// (`Idempotent-Replayed: true`; `record` is then the record as that
    /// create returned it, pending) instead of creating one.
    pub replayed: bool,
}

/// `POST /v1/messages` body (PROTOCOL.md 6).
#[derive(Serialize)]
struct SendBody<'a> {
    to: &'a str,
    body: &'a Value,
}

/// A fresh idempotency key: `lhk-` and 24 random URL-safe characters (144 bits).
pub fn idempotency_key() -> String {
    format!("lhk-{}", lighthouse_security::fresh_nonce())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A long-poll's wait, checked against the protocol's range (0 to
/// [`MAX_WAIT_MS`]) before anything is sent: the bridge would refuse a longer
/// one, and the request timeout is extended by it.
fn wait_ms(wait: Duration) -> Result<u64, Error> {
    let ms = millis(wait);
    if wait > Duration::from_millis(MAX_WAIT_MS) {
        return Err(Error::Config(format!(
            "a long-poll waits at most {MAX_WAIT_MS} ms, not {ms} ms"
        )));
    }
    Ok(ms)
}

impl Client {
    /// `POST /v1/elicitations` with a fresh idempotency key, so that the retries
    /// this call makes after an ambiguous failure return the first result
    /// instead of creating a second elicitation.
    pub async fn elicit(&self, req: &CreateRequest) -> Result<Elicitation, Error> {
        Ok(self.elicit_with_key(req, &idempotency_key()).await?.record)
    }

    /// `POST /v1/elicitations` with the caller's idempotency key (1 to 128 of
    /// `[A-Za-z0-9_.:-]`): calling again with the same key within 24 hours, from
    /// this or any later process, returns the first result.
    pub async fn elicit_with_key(&self, req: &CreateRequest, key: &str) -> Result<Created, Error> {
        let call = Call::post("/v1/elicitations")
            .json(req)?
            .header(IDEMPOTENCY_KEY, key)
            .retry(Retry::Safe);
        let answer = self.answer(call).await?;
        // The header, or a bridge from before it: a create never answers
        // 200, so a 200 is a replay.
        let replayed = answer.replayed || answer.status == 200;
        Ok(Created {
            record: answer.decode()?,
            replayed,
        })
    }

    /// `GET /v1/elicitations/{id}`, long-polling up to `wait` (0 to 60 s) for it
    /// to become terminal. A longer `wait` is [`Error::Config`], before anything
    /// is sent.
    pub async fn get_elicitation(&self, id: &str, wait: Duration) -> Result<Elicitation, Error> {
        let wait_ms = wait_ms(wait)?;
        let call = Call::get(format!("/v1/elicitations/{}", segment(id)))
            .query("wait_ms", (wait_ms > 0).then_some(wait_ms))
            .wait(wait);
        self.json(call).await
    }

    /// Long-polls `id` until it is terminal or `deadline` passes, in waits of at
    /// most 60 s; returns the last record seen.
    pub async fn wait_terminal(&self, id: &str, within: Duration) -> Result<Elicitation, Error> {
        let started = tokio::time::Instant::now();
        loop {
            let left = within.saturating_sub(started.elapsed());
            let wait = left.min(Duration::from_secs(60));
            let record = self.get_elicitation(id, wait).await?;
            if record.status != Status::Pending || left.is_zero() {
                return Ok(record);
            }
        }
    }

    /// `GET /v1/elicitations?box=&status=&limit=&cursor=`.
    pub async fn list_elicitations(&self, q: &ListElicitations) -> Result<ElicitationList, Error> {
        let call = Call::get("/v1/elicitations")
            .query("box", Some(q.mailbox.as_str()))
            .query("status", q.status.map(|s| s.as_str()))
            .query("limit", q.limit)
            .query("cursor", q.cursor.as_deref());
        self.json(call).await
    }

    /// My inbox, optionally only one status.
    pub async fn inbox(&self, status: Option<Status>) -> Result<ElicitationList, Error> {
        self.list_elicitations(&ListElicitations {
            status,
            ..ListElicitations::default()
        })
        .await
    }

    /// `POST /v1/elicitations/{id}/respond`. Not retried after an ambiguous
    /// failure: a second attempt would be told `409 already_resolved`; read the
    /// record instead.
    pub async fn respond(&self, id: &str, req: &RespondRequest) -> Result<Elicitation, Error> {
        let call = Call::post(format!("/v1/elicitations/{}/respond", segment(id))).json(req)?;
        self.json(call).await
    }

    /// Accepts `id` with `content`.
    pub async fn accept(&self, id: &str, content: Value) -> Result<Elicitation, Error> {
        self.respond(id, &RespondRequest::accept(content)).await
    }

    /// Declines `id`.
    pub async fn decline(&self, id: &str, reason: Option<&str>) -> Result<Elicitation, Error> {
        self.respond(id, &RespondRequest::decline(reason.map(str::to_owned)))
            .await
    }

    /// `POST /v1/elicitations/{id}/cancel` (requester only). Not retried after an
    /// ambiguous failure.
    pub async fn cancel(&self, id: &str, reason: Option<&str>) -> Result<Elicitation, Error> {
        let body = CancelRequest {
            reason: reason.map(str::to_owned),
        };
        let call = Call::post(format!("/v1/elicitations/{}/cancel", segment(id))).json(&body)?;
        self.json(call).await
    }

    /// `POST /v1/messages`. The protocol has no idempotency key for messages, so
    /// this is retried only when the request provably never reached the bridge.
    pub async fn send_message(&self, to: &str, body: &Value) -> Result<SentMessage, Error> {
        self.json(Call::post("/v1/messages").json(&SendBody { to, body })?)
            .await
    }

    /// `GET /v1/messages?after=&wait_ms=&limit=`, long-polling up to `wait` (0
    /// to 60 s; a longer one is [`Error::Config`], before anything is sent).
    pub async fn messages(&self, q: &ReceiveMessages) -> Result<MessagesPage, Error> {
        let wait_ms = wait_ms(q.wait)?;
        let call = Call::get("/v1/messages")
            .query("after", Some(q.after))
            .query("wait_ms", (wait_ms > 0).then_some(wait_ms))
            .query("limit", q.limit)
            .wait(q.wait);
        self.json(call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_fresh_and_acceptable_to_the_bridge() {
        let a = idempotency_key();
        assert_ne!(a, idempotency_key());
        assert!(a.len() <= 128);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        );
    }
}
