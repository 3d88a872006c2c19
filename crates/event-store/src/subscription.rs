//! Subscriptions: catch-up from disk, then live, with no gap and no duplicate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::model::Event;
use crate::query::{Filter, Query};
use crate::store::EventStore;

/// Events read from disk per catch-up step (bounds the subscription's buffer).
const CATCH_UP_PAGE: usize = 256;
/// Records looked at per catch-up step at most, matching or not (bounds the
/// work between two points where the task lets others run).
const CATCH_UP_EXAMINED: usize = 4096;
/// Stored bytes one catch-up step buffers at most (at least one event): 256
/// events of up to 1 MiB each would otherwise sit in the buffer of a consumer
/// that stopped reading.
const CATCH_UP_BYTES: usize = 1 << 20;

/// What the writer publishes to live subscribers: a committed event and when
/// its group became durable.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) event: Arc<Event>,
    pub(crate) durable_at: Instant,
}

/// A stream of the events matching a filter after a position.
///
/// Created by [`EventStore::subscribe`]. It first reads committed events from disk
/// up to the head seen at creation, then delivers live events. A lag that happens
/// before the first live event is delivered (a long catch-up) is absorbed by
/// reading more from disk; a live subscriber that then falls more than the store's
/// live buffer behind gets [`Error::Lagged`] and resumes with a new subscription
/// from `last_seq`.
pub struct Subscription {
    store: EventStore,
    rx: broadcast::Receiver<Live>,
    filter: Filter,
    /// When the last event returned became durable, if it came live.
    durable_at: Option<Instant>,
    /// Every event with `seq <= examined` has been read and, if it matches,
    /// delivered or put in `buffer`.
    examined: u64,
    /// The seq of the last event handed to the caller.
    delivered: u64,
    catch_up_until: u64,
    live: bool,
    delivered_live: bool,
    buffer: VecDeque<Arc<Event>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position())
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        store: EventStore,
        rx: broadcast::Receiver<Live>,
        after: u64,
        catch_up_until: u64,
        filter: Filter,
    ) -> Self {
        Subscription {
            store,
            rx,
            filter,
            durable_at: None,
            examined: after,
            delivered: after,
            catch_up_until,
            live: false,
            delivered_live: false,
            buffer: VecDeque::new(),
        }
    }

    /// Every matching event with `seq <= position()` has been delivered; a new
    /// subscription from here continues without a gap or a duplicate.
    pub fn position(&self) -> u64 {
        match self.buffer.front() {
            Some(e) => e.seq - 1,
            None => self.examined.max(self.delivered),
        }
    }

    /// Whether catch-up from disk is over and events now arrive live.
    pub fn is_live(&self) -> bool {
        self.live && self.buffer.is_empty()
    }

    /// When the event [`next`](Self::next) returned last became durable, for an
    /// event that came live from the writer; `None` for one read back from
    /// disk (catching up), whose moment is not known here (its `time` was set
    /// just before its group was written).
    pub fn durable_at(&self) -> Option<Instant> {
        self.durable_at
    }

    /// The next matching event. Waits for one when caught up.
    pub async fn next(&mut self) -> Result<Arc<Event>> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                self.delivered = e.seq;
                self.durable_at = None;
                return Ok(e);
            }
            if !self.live {
                if !self.catch_up_step()? {
                    // A stretch of the log with nothing for this filter: let
                    // other tasks run before looking at the next stretch, so
                    // catching up over a long log never holds a worker.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(Live { event: e, .. }) if e.seq <= self.examined => continue,
                Ok(Live {
                    event: e,
                    durable_at,
                }) if e.seq == self.examined + 1 => {
                    self.examined = e.seq;
                    if self.filter.matches(&e) {
                        self.delivered = e.seq;
                        self.delivered_live = true;
                        self.durable_at = Some(durable_at);
                        return Ok(e);
                    }
                }
                // A jump in the live sequence is a lag by another name.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    if self.delivered_live {
                        return Err(Error::Lagged {
                            last_seq: self.position(),
                        });
                    }
                    // Still effectively catching up: continue from disk.
                    self.rx = self.rx.resubscribe();
                    self.catch_up_until = self.store.head_seq();
                    self.live = false;
                }
                Err(broadcast::error::RecvError::Closed) => return Err(Error::Closed),
            }
        }
    }

    /// Reads the next stretch of the log; `true` when it found events.
    fn catch_up_step(&mut self) -> Result<bool> {
        if self.examined >= self.catch_up_until {
            self.live = true;
            return Ok(true);
        }
        let q = Query {
            after: Some(self.examined),
            before: Some(self.catch_up_until + 1),
            limit: CATCH_UP_PAGE,
            ..Query::new(self.filter.clone())
        };
        let page = self
            .store
            .read_bounded(&q, CATCH_UP_EXAMINED, CATCH_UP_BYTES)?;
        self.examined = match page.next {
            Some(last) => last,
            None => self.catch_up_until,
        };
        let found = !page.events.is_empty();
        self.buffer.extend(page.events.into_iter().map(Arc::new));
        Ok(found)
    }
}
