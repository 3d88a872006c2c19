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
//!
//! Without a position, the subscription records only `B` and then lists the
//! elicitations pending for the agent as of `B` in pages, by the seq of their
//! `requested` event, under the state lock one page at a time: copying a whole
//! inbox (up to `max_pending`) at once would hold the lock every create and
//! answer waits for.
//!
//! Every step does bounded work (a page of notifications, a budget of records
//! looked at) and a step that found nothing lets other tasks run before the
//! next, so resuming far back over a long log never holds a worker.

use std::collections::VecDeque;
use std::sync::Arc;

use lighthouse_event_store::{Filter, Page, Query};
use lighthouse_security::Caller;

use super::transitions::ACTING_ROLES;
use super::{ElicitationService, Shared, require_role};
use crate::error::{Error, Result, Violation};
use crate::events::{self, Requested, Resolved};
use crate::notify::{Notification, NotificationKind, PushQueue, Taken};

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
/// Bounded: live notifications wait in a queue of at most
/// [`Limits::subscription_buffer`](crate::Limits) notifications and
/// [`Limits::subscription_buffer_bytes`](crate::Limits) bytes; a consumer that
/// lets it fill is cut off: the queue is emptied at once and the next read
/// returns [`Error::Lagged`] with the position to resume from. The
/// subscription counts against the subscription limits until it is dropped.
pub struct AgentSubscription {
    shared: Arc<Shared>,
    agent: Arc<str>,
    slot: u64,
    live: Arc<PushQueue>,
    /// Notifications read back and not handed out yet (one step's worth).
    queue: VecDeque<Notification>,
    /// The initial list of a subscription without a position, while any of
    /// it is left to hand out.
    list: Option<PendingList>,
    /// The seq of the last item of the initial list handed out.
    last_listed: Option<u64>,
    /// Everything in `(after, cursor]` has been read back.
    cursor: u64,
    boundary: u64,
    position: u64,
    /// See [`AgentSubscription::replay_start`].
    replay_start: u64,
    /// The most log records one read of a catch-up step looked at.
    most_examined: usize,
}

/// One page of the initial list: each pending elicitation with the seq of its
/// `requested` event, and where the next page starts (`None`: the list is done).
type ListPage = (Vec<(u64, Arc<crate::Elicitation>)>, Option<u64>);

/// Where the listing of the pending elicitations is.
#[derive(Debug, Clone, Copy)]
struct PendingList {
    /// The seq of the last `requested` event looked at.
    after: u64,
    /// Whether the range up to the boundary is done (what is left is in the queue).
    done: bool,
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
    /// (each with the seq of its `requested` event, in that order), then live.
    ///
    /// A position beyond the last event of the store is refused
    /// ([`Error::InvalidRequest`] at `/after`): it cannot have come from this
    /// store (one restored from an older backup, say), and taking it would
    /// silently skip every event up to it once they are written.
    pub fn subscribe(&self, caller: &Caller, after: Option<u64>) -> Result<AgentSubscription> {
        require_role(caller, ACTING_ROLES, "this role has no notifications")?;
        if let Some(p) = after {
            // The head only grows: a position at or below it now stays so.
            let head = self.shared.store.head_seq();
            if p > head {
                return Err(Error::InvalidRequest {
                    errors: vec![Violation::new(
                        "/after",
                        beyond_the_head(head, "reconnect without a position"),
                    )],
                });
            }
        }
        // Both locks: the state lock keeps the applier from applying while the
        // registry learns of the subscription, so its boundary is exact.
        let st = self.shared.state.lock();
        let applied = st.proj.applied_seq;
        let reg = self.shared.subs.lock().register(&caller.agent)?;
        // The initial list goes out in ascending seq order from the oldest
        // pending at the boundary (now, under the lock), so a read-back from
        // just below it brings every item of the list.
        let lowest_pending = st.proj.lowest_pending_inbox(&caller.agent);
        drop(st);
        let (cursor, boundary, list) = match after {
            Some(p) => (p, applied.max(p), None),
            None => (
                applied,
                applied,
                Some(PendingList {
                    after: 0,
                    done: false,
                }),
            ),
        };
        let replay_start = match (after, lowest_pending) {
            (None, Some(seq)) => seq.saturating_sub(1),
            _ => cursor,
        };
        Ok(AgentSubscription {
            shared: self.shared.clone(),
            agent: Arc::from(caller.agent.as_str()),
            slot: reg.id,
            live: reg.queue,
            queue: VecDeque::new(),
            list,
            last_listed: None,
            cursor,
            boundary,
            position: cursor,
            replay_start,
            most_examined: 0,
        })
    }
}

/// Why a position beyond the store's last event (`head`) is refused, and
/// `then`, what the client should do next.
pub(crate) fn beyond_the_head(head: u64, then: &str) -> String {
    format!(
        "is beyond the last event of the store ({head}), which may have been restored from an \
         older backup; {then}"
    )
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

    /// Live notifications waiting and their estimated bytes; for tests and
    /// diagnostics.
    #[doc(hidden)]
    pub fn live_held(&self) -> (usize, usize) {
        self.live.held()
    }

    /// The most log records one read of a catch-up step looked at so far; for
    /// tests and diagnostics.
    #[doc(hidden)]
    pub fn most_examined(&self) -> usize {
        self.most_examined
    }

    /// Whether the initial list of pending elicitations is only partly handed out.
    fn listing(&self) -> bool {
        self.list.is_some_and(|l| !l.done || !self.queue.is_empty())
    }

    /// Where a new subscription must start to continue this one with no gap
    /// and no duplicate: [`position`](Self::position), except while the initial
    /// list of pending elicitations is only partly handed out (its items carry
    /// seqs below the position). Then it is the last item handed out, from which
    /// a read-back also brings the rest of the list; or `None` when none was, and
    /// a new subscription without a position starts the list over.
    pub fn resume_position(&self) -> Option<u64> {
        if self.listing() {
            self.last_listed
        } else {
            Some(self.position)
        }
    }

    /// The next notification; waits for one when caught up.
    ///
    /// Once cut off, it returns [`Error::Lagged`] at once, dropping whatever
    /// was read back (the resume reads it again); a subscription still handing
    /// out its initial list with none of it out yet first hands out one item,
    /// so that there is a position to resume from.
    pub async fn next(&mut self) -> Result<Notification> {
        loop {
            if self.live.is_cut()
                && let Some(last_seq) = self.resume_position()
            {
                self.queue = VecDeque::new();
                return Err(Error::Lagged { last_seq });
            }
            if let Some(n) = self.queue.pop_front() {
                if self.list.is_some() {
                    self.last_listed = Some(n.seq);
                } else {
                    self.position = self.position.max(n.seq);
                }
                return Ok(n);
            }
            if let Some(list) = self.list {
                if list.done {
                    // Handed out whole; its items are all below the boundary.
                    self.list = None;
                } else if !self.list_step(list)? {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            // Everything read back so far has been delivered.
            self.position = self.position.max(self.cursor);
            if self.cursor < self.boundary {
                if !self.catch_up_step()? {
                    // A stretch with nothing for this agent: let other tasks
                    // run before the next one.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            match self.live.take().await {
                Taken::Notification(n) if n.seq <= self.boundary => continue,
                Taken::Notification(n) => {
                    self.position = n.seq;
                    if let Some(at) = n.first_delivery() {
                        self.shared
                            .hooks
                            .notification_delivered(n.kind, at.elapsed());
                    }
                    return Ok(n);
                }
                // The top of the loop answers it.
                Taken::Cut => continue,
            }
        }
    }

    /// Reads the next page of the initial list; `true` when it found any.
    fn list_step(&mut self, list: PendingList) -> Result<bool> {
        let budget = self.shared.limits.catch_up_examined;
        let from_memory = {
            let st = self.shared.state.lock();
            // Nothing pending at the boundary can have been evicted since
            // unless eviction went past it (the oldest resolution goes first).
            (st.proj.evicted_through() <= self.boundary).then(|| {
                st.proj.pending_inbox_page(
                    &self.agent,
                    list.after,
                    self.boundary,
                    CATCH_UP_PAGE,
                    budget,
                )
            })
        };
        let (items, next) = match from_memory {
            Some(page) => page,
            None => self.pending_from_log(list.after)?,
        };
        let found = !items.is_empty();
        self.queue.extend(items.into_iter().map(|(seq, r)| {
            Notification::elicitation(seq, NotificationKind::ElicitationRequested, r, None)
        }));
        self.list = Some(match next {
            Some(after) => PendingList { after, done: false },
            None => PendingList {
                after: self.boundary,
                done: true,
            },
        });
        Ok(found)
    }

    /// The next page of the initial list from the log, for when elicitations
    /// pending at the boundary may have left memory since.
    fn pending_from_log(&mut self, after: u64) -> Result<ListPage> {
        let q = Query {
            after: Some(after),
            before: Some(self.boundary + 1),
            limit: CATCH_UP_PAGE,
            ..Query::new(Filter {
                stream_prefix: Some(events::ELICITATION_STREAM_PREFIX.into()),
                event_type: Some(events::REQUESTED.into()),
                ..Filter::default()
            })
        };
        let page = self.read(&q)?;
        let mut out = Vec::new();
        for e in &page.events {
            let Some(r) = skip_unreadable(events::decode::<Requested>(e))? else {
                continue;
            };
            if *r.to == *self.agent && self.pending_at_boundary(&r.id)? {
                out.push((e.seq, Arc::new(r.into_record())));
            }
        }
        Ok((out, page.next))
    }

    /// Whether elicitation `id` had no terminal event at or before the boundary.
    fn pending_at_boundary(&self, id: &str) -> Result<bool> {
        if let Some(e) = self.shared.state.lock().proj.entry(id) {
            return Ok(e.terminal_seq.is_none_or(|t| t > self.boundary));
        }
        // Not held: resolved and evicted. Its first terminal event decides.
        let q = Query {
            limit: 16,
            ..Query::new(Filter {
                stream: Some(events::elicitation_stream(id)),
                type_prefix: Some("elicitation.".into()),
                ..Filter::default()
            })
        };
        let events = self.shared.store.read(&q)?.events;
        Ok(events
            .iter()
            .find(|e| events::terminal_action(&e.event_type).is_some())
            .is_none_or(|e| e.seq > self.boundary))
    }

    /// Reads the next page of `(cursor, boundary]`; `true` when it found any.
    fn catch_up_step(&mut self) -> Result<bool> {
        let (mut elicitations, h_e) = self.elicitations_page()?;
        let (mut messages, h_m) = self.messages_page()?;
        let horizon = h_e.min(h_m);
        elicitations.retain(|n| n.seq <= horizon);
        messages.retain(|n| n.seq <= horizon);
        let mut merged: Vec<Notification> = elicitations.into_iter().chain(messages).collect();
        merged.sort_by_key(|n| n.seq);
        let found = !merged.is_empty();
        self.queue.extend(merged);
        self.cursor = horizon;
        Ok(found)
    }

    /// One read of the log for a catch-up step: at most a page, its bytes, and
    /// [`Limits::catch_up_examined`](crate::Limits) records looked at (then the
    /// page ends early with `next` where it stopped).
    fn read(&mut self, q: &Query) -> Result<Page> {
        let budget = self.shared.limits.catch_up_examined;
        let page = self.shared.store.read_bounded(q, budget, CATCH_UP_BYTES)?;
        self.most_examined = self.most_examined.max(page.examined);
        Ok(page)
    }

    /// The next elicitation notifications, and how far they cover.
    fn elicitations_page(&mut self) -> Result<(Vec<Notification>, u64)> {
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
        let page = self.read(&q)?;
        let h = page.next.unwrap_or(until);
        let mut out = Vec::new();
        for e in &page.events {
            if e.event_type == events::REQUESTED {
                let Some(r) = skip_unreadable(events::decode::<Requested>(e))? else {
                    continue;
                };
                if *r.to == *self.agent {
                    out.push(Notification::elicitation(
                        e.seq,
                        NotificationKind::ElicitationRequested,
                        Arc::new(r.into_record()),
                        None,
                    ));
                }
            } else if events::terminal_action(&e.event_type).is_some() {
                let Some(r) = skip_unreadable(events::decode::<Resolved>(e))? else {
                    continue;
                };
                if *r.to == *self.agent || *r.from == *self.agent {
                    let Some(svc_record) = skip_unreadable(self.record(&r.id))? else {
                        continue;
                    };
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
    fn messages_page(&mut self) -> Result<(Vec<Notification>, u64)> {
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
        let page = self.read(&q)?;
        let h = page.next.unwrap_or(until);
        let mut out = Vec::with_capacity(page.events.len());
        for e in &page.events {
            if let Some(m) = skip_unreadable(events::message_of(e))? {
                out.push(Notification::message(m, None));
            }
        }
        Ok((out, h))
    }
}

/// An event whose data this version cannot read (written by an embedder
/// straight to the store, or damaged in a way its MAC did not catch) is
/// skipped with a warning, as the projection's replay, the live applier and
/// the mailbox skip it: otherwise every resume from before it would fail at
/// it forever, while live subscribers never notice it.
/// Only [`Error::Corrupt`] (data of the wrong shape) is skipped; any other
/// error (a failed read) is returned, since skipping it would leave a gap.
fn skip_unreadable<T>(decoded: Result<T>) -> Result<Option<T>> {
    match decoded {
        Ok(t) => Ok(Some(t)),
        Err(err @ Error::Corrupt { .. }) => {
            tracing::warn!(error = %err, "skipping an event the agent stream cannot read");
            Ok(None)
        }
        Err(err) => Err(err),
    }
}
