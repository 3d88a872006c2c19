//! Agent subscriptions: catch-up from a position, then live, with no gap and no
//! duplicate.
//!
//! A subscription is registered with the applier's registry under the state
//! lock, at a boundary `B` = the last applied seq: every notification with
//! `seq > B` arrives live (the applier publishes in log order, after applying
//! and outside the state lock; the subscription skips what is `<= B`), and everything
//! in `(after, B]` is read back in pages: from the projection's per-agent feed
//! when no elicitation that concerns the range was evicted from memory, from the
//! log otherwise, and from the agent's mailbox stream for messages.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use lighthouse_event_store::{Filter, Query};
use lighthouse_security::Caller;
use tokio::sync::mpsc;

use super::transitions::ACTING_ROLES;
use super::{ElicitationService, Shared, require_role};
use crate::error::{Error, Result};
use crate::events::{self, Requested, Resolved};
use crate::notify::{Notification, NotificationKind};

/// Notifications read back per catch-up step (bounds the catch-up buffer).
const CATCH_UP_PAGE: usize = 256;

/// Stored bytes read back from the log per catch-up step and kind (at least one
/// event): a stalled consumer holds at most one step, and decoded JSON can take
/// several times its stored size (a 64 KiB array of zeros is about 1 MiB of
/// values), so 256 messages of 64 KiB would pin hundreds of MiB per stream.
const CATCH_UP_BYTES: usize = 256 * 1024;

/// One agent's notifications: elicitations addressed to it, its own and those
/// addressed to it reaching a terminal state, and its messages.
///
/// Bounded: live notifications wait in a buffer of
/// [`Limits::subscription_buffer`](crate::Limits); a consumer that lets it fill
/// is cut off and, once it has read what was buffered, gets
/// [`Error::Lagged`] with the position to resume from.
pub struct AgentSubscription {
    shared: Arc<Shared>,
    agent: Arc<str>,
    slot: u64,
    rx: mpsc::Receiver<Notification>,
    cut: Arc<std::sync::atomic::AtomicBool>,
    queue: VecDeque<Notification>,
    /// The seq of the last item handed out from `queue`.
    from_queue: Option<u64>,
    cursor: u64,
    boundary: u64,
    position: u64,
    /// See [`AgentSubscription::replay_start`].
    replay_start: u64,
}

impl std::fmt::Debug for AgentSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSubscription")
            .field("agent", &self.agent)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Drop for AgentSubscription {
    fn drop(&mut self) {
        self.shared.subs.lock().remove(&self.agent, self.slot);
    }
}

impl ElicitationService {
    /// Subscribes to the caller's notifications.
    ///
    /// With `after = Some(P)`: every notification with `seq > P`, first read back,
    /// then live. With `None`: first every elicitation pending for the caller
    /// (each with the seq of its `requested` event), then live.
    pub fn subscribe(&self, caller: &Caller, after: Option<u64>) -> Result<AgentSubscription> {
        require_role(caller, ACTING_ROLES, "this role has no notifications")?;
        // Both locks: the state lock keeps the applier from applying while the
        // registry learns of the subscription, so its boundary is exact.
        let st = self.shared.state.lock();
        let applied = st.proj.applied_seq;
        let reg = self.shared.subs.lock().register(&caller.agent)?;
        let (queue, cursor, boundary) = match after {
            Some(p) => (VecDeque::new(), p, applied.max(p)),
            None => {
                let q = st
                    .proj
                    .pending_inbox(&caller.agent)
                    .into_iter()
                    .map(|(seq, r)| {
                        Notification::elicitation(
                            seq,
                            NotificationKind::ElicitationRequested,
                            r,
                            None,
                        )
                    })
                    .collect();
                (q, applied, applied)
            }
        };
        // The initial list is in ascending seq order (the projection keeps the
        // pending inbox as an ordered set), so its first item is the lowest.
        let replay_start = match queue.front() {
            Some(first) => first.seq.saturating_sub(1),
            None => cursor,
        };
        Ok(AgentSubscription {
            shared: self.shared.clone(),
            agent: Arc::from(caller.agent.as_str()),
            slot: reg.id,
            rx: reg.rx,
            cut: reg.cut,
            queue,
            from_queue: None,
            cursor,
            boundary,
            position: cursor,
            replay_start,
        })
    }
}

impl AgentSubscription {
    /// Every notification with `seq <= position()` has been delivered (or, for a
    /// subscription without a starting position, was covered by its initial list).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// A position from which a new subscription sends everything this one
    /// sends, fixed when it was made: the position it was given; without one,
    /// just below the lowest seq of its initial list of pending elicitations
    /// (each item's `requested` event is after it, so a read-back from there
    /// brings them all), or, with none pending, the boundary it went live
    /// from. What a read-back from there brings is a superset: it may add
    /// history between the listed items (an elicitation requested and resolved
    /// meanwhile), never leave a gap. The initial list goes out in ascending
    /// seq order, so a consumer that handed out part of it and resumes after
    /// the last one it handed out gets no gap and no duplicate either.
    pub fn replay_start(&self) -> u64 {
        self.replay_start
    }

    /// Notifications read back and not handed out yet (at most one catch-up
    /// step's worth); for tests and diagnostics.
    #[doc(hidden)]
    pub fn read_back_held(&self) -> usize {
        self.queue.len()
    }

    /// Where a new subscription must start to continue this one with no gap
    /// and no duplicate: [`position`](Self::position), except while the initial
    /// list of pending elicitations is only partly handed out (its items carry
    /// seqs below the position). Then it is the last item handed out, from which
    /// a read-back also brings the rest of the list; or `None` when none was, and
    /// a new subscription without a position starts the list over.
    pub fn resume_position(&self) -> Option<u64> {
        if self.queue.is_empty() {
            Some(self.position)
        } else {
            self.from_queue
        }
    }

    /// The next notification; waits for one when caught up.
    pub async fn next(&mut self) -> Result<Notification> {
        loop {
            if let Some(n) = self.queue.pop_front() {
                self.position = self.position.max(n.seq);
                self.from_queue = Some(n.seq);
                return Ok(n);
            }
            // Everything read back so far has been delivered.
            self.position = self.position.max(self.cursor);
            if self.cursor < self.boundary {
                self.catch_up_step()?;
                continue;
            }
            match self.rx.recv().await {
                Some(n) if n.seq <= self.boundary => continue,
                Some(n) => {
                    self.position = n.seq;
                    if let Some(at) = n.first_delivery() {
                        self.shared
                            .hooks
                            .notification_delivered(n.kind, at.elapsed());
                    }
                    return Ok(n);
                }
                None if self.cut.load(Ordering::Acquire) => {
                    return Err(Error::Lagged {
                        last_seq: self.position,
                    });
                }
                None => return Err(Error::Closed),
            }
        }
    }

    /// Reads back the next page of `(cursor, boundary]`.
    fn catch_up_step(&mut self) -> Result<()> {
        let (mut elicitations, h_e) = self.elicitations_page()?;
        let (mut messages, h_m) = self.messages_page()?;
        let horizon = h_e.min(h_m);
        elicitations.retain(|n| n.seq <= horizon);
        messages.retain(|n| n.seq <= horizon);
        let mut merged: Vec<Notification> = elicitations.into_iter().chain(messages).collect();
        merged.sort_by_key(|n| n.seq);
        self.queue.extend(merged);
        self.cursor = horizon;
        Ok(())
    }

    /// The next elicitation notifications, and how far they cover.
    fn elicitations_page(&self) -> Result<(Vec<Notification>, u64)> {
        let (after, until) = (self.cursor, self.boundary);
        {
            let st = self.shared.state.lock();
            if after >= st.proj.evicted_through() {
                let items = st.proj.feed(&self.agent, after, until, CATCH_UP_PAGE);
                let h = if items.len() == CATCH_UP_PAGE {
                    items.last().map_or(until, |i| i.0)
                } else {
                    until
                };
                let out = items
                    .into_iter()
                    .map(|(seq, requested, r)| {
                        let kind = if requested {
                            NotificationKind::ElicitationRequested
                        } else {
                            NotificationKind::ElicitationResolved
                        };
                        Notification::elicitation(seq, kind, r, None)
                    })
                    .collect();
                return Ok((out, h));
            }
        }
        // Part of the range concerns elicitations no longer held: read the log.
        let q = Query {
            after: Some(after),
            before: Some(until + 1),
            limit: CATCH_UP_PAGE,
            ..Query::new(Filter {
                stream_prefix: Some(events::ELICITATION_STREAM_PREFIX.into()),
                type_prefix: Some("elicitation.".into()),
                ..Filter::default()
            })
        };
        let page = self
            .shared
            .store
            .read_bounded(&q, usize::MAX, CATCH_UP_BYTES)?;
        let h = page.next.unwrap_or(until);
        let mut out = Vec::new();
        for e in &page.events {
            if e.event_type == events::REQUESTED {
                let r: Requested = events::decode(e)?;
                if *r.to == *self.agent {
                    out.push(Notification::elicitation(
                        e.seq,
                        NotificationKind::ElicitationRequested,
                        Arc::new(r.into_record()),
                        None,
                    ));
                }
            } else if events::terminal_action(&e.event_type).is_some() {
                let r: Resolved = events::decode(e)?;
                if *r.to == *self.agent || *r.from == *self.agent {
                    let svc_record = self.record(&r.id)?;
                    out.push(Notification::elicitation(
                        e.seq,
                        NotificationKind::ElicitationResolved,
                        svc_record,
                        None,
                    ));
                }
            }
        }
        Ok((out, h))
    }

    /// The final record of a terminal elicitation (terminal records never change).
    fn record(&self, id: &str) -> Result<Arc<crate::Elicitation>> {
        if let Some(e) = self.shared.state.lock().proj.entry(id) {
            return Ok(e.record.clone());
        }
        events::read_back(&self.shared.store, id)?
            .map(Arc::new)
            .ok_or(Error::NotFound {
                what: "elicitation",
            })
    }

    /// The next messages, and how far they cover.
    fn messages_page(&self) -> Result<(Vec<Notification>, u64)> {
        let (after, until) = (self.cursor, self.boundary);
        let q = Query {
            after: Some(after),
            before: Some(until + 1),
            limit: CATCH_UP_PAGE,
            ..Query::new(Filter {
                stream: Some(events::mailbox_stream(&self.agent)),
                event_type: Some(events::MESSAGE_SENT.into()),
                ..Filter::default()
            })
        };
        let page = self
            .shared
            .store
            .read_bounded(&q, usize::MAX, CATCH_UP_BYTES)?;
        let h = page.next.unwrap_or(until);
        let out = page
            .events
            .iter()
            .map(|e| events::message_of(e).map(|m| Notification::message(m, None)))
            .collect::<Result<_>>()?;
        Ok((out, h))
    }
}
