//! The messages mailbox (PROTOCOL.md section 6): send, and long-poll receive.
//!
//! Messages live only in the log (stream `mailbox-<recipient>`, read through the
//! store's stream index); memory holds just the waiters of long-polls.

use std::sync::Arc;
use std::time::Duration;

use lighthouse_event_store::{Filter, NewEvent, Query};
use lighthouse_security::Caller;
use tokio::sync::Notify;

use super::transitions::ACTING_ROLES;
use super::{ElicitationService, Shared, require_role};
use crate::error::{Error, Result, Violation};
use crate::events::{self, Sent};
use crate::record::Message;
use crate::request::{
    MessagesPage, ReceiveQuery, SendMessage, SentMessage, check_request_id, page_limit, wait_ms,
};
use crate::wait::WaitMeter;

/// Unregisters a long-poll waiter.
struct MailWaiter<'a> {
    shared: &'a Shared,
    agent: Arc<str>,
}

impl Drop for MailWaiter<'_> {
    fn drop(&mut self) {
        let mut waiters = self.shared.mail_waiters.lock();
        if let Some((_, n)) = waiters.get_mut(&self.agent) {
            *n -= 1;
            if *n == 0 {
                waiters.remove(&self.agent);
            }
        }
    }
}

impl ElicitationService {
    /// Sends a message (`POST /v1/messages`): `{id, seq}` once it is durable.
    pub async fn send_message(
        &self,
        caller: &Caller,
        request_id: &str,
        req: SendMessage,
    ) -> Result<SentMessage> {
        let s = &*self.shared;
        require_role(caller, ACTING_ROLES, "this role may not send messages")?;
        check_request_id(request_id)?;
        if lighthouse_event_store::validate_agent(&req.to).is_err() {
            return Err(Error::invalid(
                "/to",
                "must be an agent id: 1 to 64 of [a-z0-9._-], starting with a-z or 0-9",
            ));
        }
        let size = crate::request::json_size(&req.body);
        if size > s.limits.max_message_body_bytes {
            return Err(Error::invalid(
                "/body",
                format!(
                    "is {size} bytes, more than the limit of {}",
                    s.limits.max_message_body_bytes
                ),
            ));
        }
        if !s.directory.is_active(&req.to) {
            return Err(Error::NotFound { what: "agent" });
        }
        let now = s.clock.now();
        let id = events::new_id("msg_", now);
        let data = Sent {
            id: id.clone(),
            from: caller.agent.clone(),
            to: req.to.clone(),
            body: req.body,
            created_at: now,
        };
        let data =
            serde_json::to_value(&data).map_err(|e| Error::invalid("/body", e.to_string()))?;
        let ev = NewEvent::new(events::mailbox_stream(&req.to), events::MESSAGE_SENT, data)
            .with_agent(caller.agent.as_str())
            .with_correlation_id(request_id);
        let a = s.store.append_one(ev).await?;
        Ok(SentMessage { id, seq: a.seq })
    }

    /// The caller's messages with `seq > after`, oldest first
    /// (`GET /v1/messages`), long-polling up to `wait_ms` when there are none.
    pub async fn receive_messages(&self, caller: &Caller, q: ReceiveQuery) -> Result<MessagesPage> {
        self.receive_messages_metered(caller, q, &WaitMeter::new())
            .await
    }

    /// [`receive_messages`](Self::receive_messages), adding the time it is
    /// blocked waiting for a message to `meter` (reading the mailbox is not).
    pub async fn receive_messages_metered(
        &self,
        caller: &Caller,
        q: ReceiveQuery,
        meter: &WaitMeter,
    ) -> Result<MessagesPage> {
        let s = &*self.shared;
        require_role(caller, ACTING_ROLES, "this role may not receive messages")?;
        let limit = page_limit(q.limit, &s.limits)?;
        let wait = wait_ms(q.wait_ms, &s.limits, "/wait_ms")?;
        // As on the agent stream: a position this store never gave (one
        // restored from an older backup, say) would silently skip every
        // message up to it once they are written.
        let head = s.store.head_seq();
        if q.after > head {
            return Err(Error::InvalidRequest {
                errors: vec![Violation::new(
                    "/after",
                    super::subscribe::beyond_the_head(
                        head,
                        &format!("receive from a position at most {head}"),
                    ),
                )],
            });
        }
        let first = self.read_mailbox(&caller.agent, q.after, limit)?;
        if !first.messages.is_empty() || wait == 0 {
            return Ok(first);
        }
        // Past any unreadable events the read skipped: the wait goes on from
        // there (a page of nothing must not end a long-poll, PROTOCOL.md 6).
        let mut after = first.next_after;
        let agent: Arc<str> = Arc::from(caller.agent.as_str());
        let notify = {
            let mut waiters = s.mail_waiters.lock();
            let len = waiters.len();
            match waiters.get_mut(&agent) {
                Some((n, count)) => {
                    *count += 1;
                    n.clone()
                }
                None if len >= s.limits.max_message_waiters => {
                    return Err(Error::Capacity {
                        what: "message waiters",
                        limit: s.limits.max_message_waiters,
                    });
                }
                None => {
                    let n = Arc::new(Notify::new());
                    waiters.insert(agent.clone(), (n.clone(), 1));
                    n
                }
            }
        };
        let _waiter = MailWaiter { shared: s, agent };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        loop {
            // Registered before reading, so a message applied in between wakes it.
            let notified = notify.notified();
            let page = self.read_mailbox(&caller.agent, after, limit)?;
            if !page.messages.is_empty() {
                return Ok(page);
            }
            after = page.next_after;
            if meter
                .blocked(tokio::time::timeout_at(deadline, notified))
                .await
                .is_err()
            {
                return Ok(page);
            }
        }
    }

    fn read_mailbox(&self, agent: &str, after: u64, limit: usize) -> Result<MessagesPage> {
        let q = Query {
            after: Some(after),
            limit,
            ..Query::new(Filter {
                stream: Some(events::mailbox_stream(agent)),
                event_type: Some(events::MESSAGE_SENT.into()),
                ..Filter::default()
            })
        };
        // Bounded in bytes too: 1,000 messages of 64 KiB would be a 64 MiB
        // page (past a client's response limit, so it could never be read).
        let max_bytes = self.shared.limits.max_list_page_bytes;
        let page = self.shared.store.read_bounded(&q, usize::MAX, max_bytes)?;
        // A `message.sent` this service cannot read (only the bridge writes
        // the type, so this takes a store written by something else) is
        // skipped and logged, as the projection does: failing the read would
        // stop the mailbox at it for good, since every read from before it
        // meets it again. The page still moves past it (`next_after`).
        let messages: Vec<Arc<Message>> = page
            .events
            .iter()
            .filter_map(|e| match events::message_of(e) {
                Ok(m) => Some(m),
                Err(err) => {
                    tracing::warn!(seq = e.seq, error = %err, "skipping a message the mailbox cannot read");
                    None
                }
            })
            .collect();
        let next_after = page.events.last().map_or(after, |e| e.seq);
        Ok(MessagesPage {
            messages,
            next_after,
        })
    }
}
