//! Notifications: what an agent's subscription delivers, and the bounded
//! registry of live subscribers the applier publishes to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::record::{Elicitation, Message};

/// The three event kinds of the agent stream (PROTOCOL.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// An elicitation addressed to the subscriber was created.
    ElicitationRequested,
    /// An elicitation the subscriber created or is addressed by reached a terminal state.
    ElicitationResolved,
    /// A message arrived in the subscriber's mailbox.
    MessageReceived,
}

impl NotificationKind {
    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::ElicitationRequested => "elicitation.requested",
            NotificationKind::ElicitationResolved => "elicitation.resolved",
            NotificationKind::MessageReceived => "message.received",
        }
    }
}

/// The record a notification carries, serialized as the bare record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    /// The elicitation as of the event (a `requested` notification shows `pending`).
    Elicitation(Arc<Elicitation>),
    /// The message.
    Message(Arc<Message>),
}

/// One notification of an agent's subscription.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The store sequence of the event that produced it (the SSE `id:`).
    pub seq: u64,
    /// Its kind (the SSE `event:`).
    pub kind: NotificationKind,
    /// Its record (the SSE `data:`).
    pub payload: Payload,
    /// When the producing event became durable (the start of `delivery_ms`),
    /// shared by every copy of the push; `None` for catch-up.
    pub(crate) delivery: Option<Arc<Delivery>>,
}

/// The timing of one push, shared by its copies for an agent's streams: the
/// first stream that takes a copy records `delivery_ms`, the others do not
/// count it again (a slow or cut stream opened earlier does not decide it).
#[derive(Debug)]
pub(crate) struct Delivery {
    durable_at: Instant,
    counted: AtomicBool,
}

impl Notification {
    /// When the producing event became durable, for live notifications (the
    /// start of PROTOCOL.md's `delivery_ms`); `None` for catch-up.
    pub fn durable_at(&self) -> Option<Instant> {
        self.delivery.as_ref().map(|d| d.durable_at)
    }

    /// When the producing event became durable, the first time any copy of
    /// this push asks: the push is timed once, by the stream that took it first.
    pub(crate) fn first_delivery(&self) -> Option<Instant> {
        let d = self.delivery.as_ref()?;
        (!d.counted.swap(true, Ordering::AcqRel)).then_some(d.durable_at)
    }

    pub(crate) fn elicitation(
        seq: u64,
        kind: NotificationKind,
        record: Arc<Elicitation>,
        durable_at: Option<Instant>,
    ) -> Self {
        Notification {
            seq,
            kind,
            payload: Payload::Elicitation(record),
            delivery: timing(durable_at),
        }
    }

    pub(crate) fn message(message: Arc<Message>, durable_at: Option<Instant>) -> Self {
        Notification {
            seq: message.seq,
            kind: NotificationKind::MessageReceived,
            payload: Payload::Message(message),
            delivery: timing(durable_at),
        }
    }
}

fn timing(durable_at: Option<Instant>) -> Option<Arc<Delivery>> {
    durable_at.map(|durable_at| {
        Arc::new(Delivery {
            durable_at,
            counted: AtomicBool::new(false),
        })
    })
}

/// A live subscriber's end, held by the registry.
#[derive(Debug)]
struct Slot {
    id: u64,
    tx: mpsc::Sender<Notification>,
    cut: Arc<AtomicBool>,
}

/// What a new subscription receives from the registry.
#[derive(Debug)]
pub(crate) struct Registration {
    pub id: u64,
    pub rx: mpsc::Receiver<Notification>,
    pub cut: Arc<AtomicBool>,
}

/// Live subscribers by agent. Bounded: at most `max` subscriptions, each with a
/// buffer of `buffer` notifications; a subscriber whose buffer is full is cut off
/// (it gets [`Error::Lagged`] after draining what it has, and may resume).
#[derive(Debug)]
pub(crate) struct Subscribers {
    by_agent: HashMap<Arc<str>, Vec<Slot>>,
    count: usize,
    next_id: u64,
    max: usize,
    per_agent: usize,
    buffer: usize,
}

impl Subscribers {
    pub(crate) fn new(max: usize, per_agent: usize, buffer: usize) -> Self {
        Subscribers {
            by_agent: HashMap::new(),
            count: 0,
            next_id: 0,
            max,
            per_agent,
            buffer: buffer.max(1),
        }
    }

    pub(crate) fn register(&mut self, agent: &str) -> Result<Registration, Error> {
        if self.count >= self.max {
            return Err(Error::Capacity {
                what: "subscriptions",
                limit: self.max,
            });
        }
        // A subscription leaves its slot when dropped (`remove`), so the slots
        // held are the agent's open subscriptions.
        if self
            .by_agent
            .get(agent)
            .is_some_and(|slots| slots.len() >= self.per_agent)
        {
            return Err(Error::Capacity {
                what: "subscriptions of one agent",
                limit: self.per_agent,
            });
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        let cut = Arc::new(AtomicBool::new(false));
        self.next_id += 1;
        let id = self.next_id;
        self.by_agent
            .entry(Arc::from(agent))
            .or_default()
            .push(Slot {
                id,
                tx,
                cut: cut.clone(),
            });
        self.count += 1;
        Ok(Registration { id, rx, cut })
    }

    pub(crate) fn remove(&mut self, agent: &str, id: u64) {
        if let Some(slots) = self.by_agent.get_mut(agent) {
            let before = slots.len();
            slots.retain(|s| s.id != id);
            self.count -= before - slots.len();
            if slots.is_empty() {
                self.by_agent.remove(agent);
            }
        }
    }

    /// Offers `n` to every subscriber of `agent`; cuts off those that are full.
    pub(crate) fn publish(&mut self, agent: &str, n: &Notification) {
        let Some(slots) = self.by_agent.get_mut(agent) else {
            return;
        };
        let before = slots.len();
        slots.retain(|s| match s.tx.try_send(n.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.cut.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.count -= before - slots.len();
        if slots.is_empty() {
            self.by_agent.remove(agent);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Message;
    use lighthouse_event_store::Timestamp;
    use serde_json::json;

    fn msg(seq: u64) -> Notification {
        Notification::message(
            Arc::new(Message {
                id: format!("msg_{seq}"),
                seq,
                from: "a".into(),
                to: "b".into(),
                body: json!(seq),
                created_at: Timestamp::EPOCH,
            }),
            None,
        )
    }

    #[test]
    fn registry_is_bounded_and_cuts_off_full_subscribers() {
        let mut s = Subscribers::new(2, 8, 3);
        let mut a = s.register("b").unwrap();
        let _b = s.register("c").unwrap();
        assert!(matches!(s.register("d"), Err(Error::Capacity { .. })));
        for seq in 1..=3 {
            s.publish("b", &msg(seq));
        }
        assert_eq!(s.len(), 2);
        assert!(!a.cut.load(Ordering::Acquire));
        // The fourth does not fit: the subscriber is cut off and its slot freed.
        s.publish("b", &msg(4));
        assert!(a.cut.load(Ordering::Acquire));
        assert_eq!(s.len(), 1);
        for seq in 1..=3 {
            assert_eq!(a.rx.try_recv().unwrap().seq, seq);
        }
        assert!(a.rx.try_recv().is_err());
        // A dropped receiver is pruned on the next publish.
        s.remove("c", 99);
        assert_eq!(s.len(), 1);
        drop(_b);
        s.publish("c", &msg(5));
        assert_eq!(s.len(), 0);
        assert!(s.register("x").is_ok());
    }

    #[test]
    fn a_push_is_timed_once_by_whichever_stream_takes_it_first() {
        let mut s = Subscribers::new(8, 8, 3);
        let mut streams: Vec<_> = (0..3).map(|_| s.register("b").unwrap()).collect();
        let mut timed = msg(4);
        timed.delivery = timing(Some(Instant::now()));
        s.publish("b", &timed);
        let mut copies: Vec<Notification> = streams
            .iter_mut()
            .map(|r| r.rx.try_recv().unwrap())
            .collect();
        assert!(copies.iter().all(|c| c.durable_at().is_some()));
        // The last stream opened reads first: it times the push, nobody else.
        let last = copies.pop().unwrap();
        assert!(last.first_delivery().is_some());
        assert!(copies.iter().all(|c| c.first_delivery().is_none()));
        assert!(last.first_delivery().is_none());
    }
}
