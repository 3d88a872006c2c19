//! Notifications: what an agent's subscription delivers, and the bounded
//! registry of live subscribers the applier publishes to.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

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

impl Notification {
    /// An estimate of the memory this notification pins while queued: its
    /// record as decoded, which is what a buffer bound must count (decoded JSON
    /// takes several times its text: `[0,0,...]` is 2 bytes a number as text
    /// and 32 as a value, so a 64 KiB message can take a MiB). Shared parts are
    /// counted in full: a queue may be the last holder of an old version of a
    /// record.
    pub(crate) fn weight(&self) -> usize {
        let record = match &self.payload {
            Payload::Elicitation(e) => {
                let response = e.response.as_ref().map_or(0, |r| {
                    r.content.as_ref().map_or(0, value_weight)
                        + r.reason.as_ref().map_or(0, String::len)
                        + r.by.as_ref().map_or(0, String::len)
                });
                size_of::<Elicitation>()
                    + e.id.len()
                    + e.from.len()
                    + e.to.len()
                    + e.message.len()
                    + value_weight(&e.requested_schema)
                    + value_weight(&e.metadata)
                    + response
            }
            Payload::Message(m) => {
                size_of::<Message>()
                    + m.id.len()
                    + m.from.len()
                    + m.to.len()
                    + value_weight(&m.body)
            }
        };
        size_of::<Notification>().saturating_add(record)
    }
}

/// The estimated bytes of a decoded JSON value: every node's own size, the text
/// of its strings and keys, and a map entry's bookkeeping. Walked with an
/// explicit stack of iterators (one per level, not one per node), so neither a
/// deep value nor a wide one costs more than its depth in extra memory.
fn value_weight(v: &Value) -> usize {
    /// A map entry beyond its key's text and its value: the key's `String` and
    /// the tree's share of node links and spare slots, roughly.
    const ENTRY_OVERHEAD: usize = size_of::<String>() + 2 * size_of::<usize>();
    enum Level<'a> {
        Array(std::slice::Iter<'a, Value>),
        Object(serde_json::map::Iter<'a>),
    }
    let mut total = 0usize;
    let mut levels: Vec<Level<'_>> = Vec::new();
    let mut next = Some(v);
    loop {
        if let Some(v) = next.take() {
            total = total.saturating_add(size_of::<Value>());
            match v {
                Value::String(s) => total = total.saturating_add(s.len()),
                Value::Array(a) => levels.push(Level::Array(a.iter())),
                Value::Object(o) => levels.push(Level::Object(o.iter())),
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        let Some(level) = levels.last_mut() else {
            return total;
        };
        next = match level {
            Level::Array(items) => items.next(),
            Level::Object(entries) => entries.next().map(|(k, v)| {
                total = total.saturating_add(ENTRY_OVERHEAD + k.len());
                v
            }),
        };
        if next.is_none() {
            levels.pop();
        }
    }
}

/// The live notifications waiting for one subscription: the registry pushes,
/// the subscription takes. Bounded by count and by estimated bytes.
///
/// When a push does not fit, the subscriber is cut off and what it held is
/// dropped at once: a consumer that stopped reading may never come back for it
/// (a client that stops reading an SSE stream is not polled again), and one that
/// does gets [`Error::Lagged`] at its next read and resumes from its position,
/// reading the gap back from the log.
#[derive(Debug, Default)]
pub(crate) struct PushQueue {
    queued: Mutex<Queued>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Queued {
    /// Each notification with its weight.
    items: VecDeque<(Notification, usize)>,
    bytes: usize,
    cut: bool,
}

/// What a subscription takes from its queue.
#[derive(Debug)]
pub(crate) enum Taken {
    /// The next live notification.
    Notification(Notification),
    /// The subscriber was cut off; nothing more comes.
    Cut,
}

impl PushQueue {
    /// Queues `n` unless the subscriber is cut off; cuts it off when `n` does
    /// not fit (a lone notification always fits, whatever its weight, so the
    /// byte bound is exceeded by at most one).
    fn offer(&self, n: &Notification, weight: usize, max_items: usize, max_bytes: usize) {
        let mut q = self.queued.lock();
        if q.cut {
            return;
        }
        let fits = q.items.len() < max_items
            && (q.items.is_empty() || q.bytes.saturating_add(weight) <= max_bytes);
        let dropped = if fits {
            q.items.push_back((n.clone(), weight));
            q.bytes += weight;
            VecDeque::new()
        } else {
            q.cut = true;
            q.bytes = 0;
            std::mem::take(&mut q.items)
        };
        drop(q);
        // Freed outside the queue's lock, which the consumer takes.
        drop(dropped);
        self.ready.notify_one();
    }

    /// Whether the subscriber was cut off.
    pub(crate) fn is_cut(&self) -> bool {
        self.queued.lock().cut
    }

    /// The next notification, or [`Taken::Cut`] once cut off (at once: a cut
    /// queue holds nothing). Cancel-safe: a notification is only taken by a
    /// call that returns it.
    pub(crate) async fn take(&self) -> Taken {
        loop {
            {
                let mut q = self.queued.lock();
                if let Some((n, weight)) = q.items.pop_front() {
                    q.bytes -= weight;
                    return Taken::Notification(n);
                }
                if q.cut {
                    return Taken::Cut;
                }
            }
            // One consumer: a push between the check above and this wait
            // leaves a permit, so it is not missed.
            self.ready.notified().await;
        }
    }

    /// Notifications queued and their estimated bytes.
    pub(crate) fn held(&self) -> (usize, usize) {
        let q = self.queued.lock();
        (q.items.len(), q.bytes)
    }
}

/// A live subscriber's end, held by the registry.
#[derive(Debug)]
struct Slot {
    id: u64,
    queue: Arc<PushQueue>,
}

/// What a new subscription receives from the registry.
#[derive(Debug)]
pub(crate) struct Registration {
    pub id: u64,
    pub queue: Arc<PushQueue>,
}

/// Live subscribers by agent. Bounded: at most `max` subscriptions (`per_agent`
/// of one agent), each queueing at most `buffer` notifications and `buffer_bytes`
/// of them (estimated, see [`Notification::weight`]). A subscriber whose queue
/// cannot take a push is cut off: its queue is emptied at once and it gets
/// [`Error::Lagged`] at its next read. It keeps its slot, and so counts against
/// both limits, until its subscription is dropped: otherwise a client that
/// stopped reading would hold a stream the limits no longer see.
#[derive(Debug)]
pub(crate) struct Subscribers {
    by_agent: HashMap<Arc<str>, Vec<Slot>>,
    count: usize,
    next_id: u64,
    max: usize,
    per_agent: usize,
    buffer: usize,
    buffer_bytes: usize,
}

impl Subscribers {
    pub(crate) fn new(max: usize, per_agent: usize, buffer: usize, buffer_bytes: usize) -> Self {
        Subscribers {
            by_agent: HashMap::new(),
            count: 0,
            next_id: 0,
            max,
            per_agent,
            buffer: buffer.max(1),
            buffer_bytes,
        }
    }

    pub(crate) fn register(&mut self, agent: &str) -> Result<Registration, Error> {
        if self.count >= self.max {
            return Err(Error::Capacity {
                what: "subscriptions",
                limit: self.max,
            });
        }
        // A subscription leaves its slot only when dropped (`remove`), cut off
        // or not, so the slots held are the agent's open subscriptions.
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
        let queue = Arc::new(PushQueue::default());
        self.next_id += 1;
        let id = self.next_id;
        self.by_agent
            .entry(Arc::from(agent))
            .or_default()
            .push(Slot {
                id,
                queue: queue.clone(),
            });
        self.count += 1;
        Ok(Registration { id, queue })
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

    /// Offers `n` to every subscriber of `agent`; cuts off those it does not fit.
    pub(crate) fn publish(&mut self, agent: &str, n: &Notification) {
        let Some(slots) = self.by_agent.get(agent) else {
            return;
        };
        let weight = n.weight();
        for s in slots {
            s.queue.offer(n, weight, self.buffer, self.buffer_bytes);
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

    async fn taken(q: &PushQueue) -> Notification {
        match q.take().await {
            Taken::Notification(n) => n,
            Taken::Cut => panic!("cut off"),
        }
    }

    #[tokio::test]
    async fn a_cut_subscriber_keeps_its_slot_and_its_queue_is_freed_at_once() {
        let mut s = Subscribers::new(2, 8, 3, usize::MAX);
        let a = s.register("b").unwrap();
        let c = s.register("c").unwrap();
        assert!(matches!(s.register("d"), Err(Error::Capacity { .. })));
        for seq in 1..=3 {
            s.publish("b", &msg(seq));
        }
        assert_eq!(a.queue.held().0, 3);
        assert!(!a.queue.is_cut());
        // The fourth does not fit: the subscriber is cut off and what it held
        // is dropped now, not when (if ever) it reads again.
        s.publish("b", &msg(4));
        assert!(a.queue.is_cut());
        assert_eq!(a.queue.held(), (0, 0));
        assert!(matches!(a.queue.take().await, Taken::Cut));
        // Nothing more is queued for it...
        s.publish("b", &msg(5));
        assert_eq!(a.queue.held(), (0, 0));
        // ...but it holds its slot until its subscription is dropped.
        assert_eq!(s.len(), 2);
        assert!(matches!(s.register("d"), Err(Error::Capacity { .. })));
        s.remove("b", a.id);
        assert_eq!(s.len(), 1);
        // Removing an unknown id changes nothing.
        s.remove("c", 99);
        assert_eq!(s.len(), 1);
        assert!(s.register("d").is_ok());
        assert!(matches!(s.register("e"), Err(Error::Capacity { .. })));
        s.remove("c", c.id);
        assert!(s.register("e").is_ok());
    }

    #[tokio::test]
    async fn a_queue_is_bounded_by_bytes_too() {
        let one = msg(1).weight();
        let mut s = Subscribers::new(8, 8, 1_000, 2 * one);
        let a = s.register("b").unwrap();
        s.publish("b", &msg(1));
        s.publish("b", &msg(2));
        assert_eq!(a.queue.held(), (2, 2 * one));
        assert_eq!(taken(&a.queue).await.seq, 1);
        assert_eq!(a.queue.held(), (1, one));
        s.publish("b", &msg(3));
        assert_eq!(a.queue.held(), (2, 2 * one));
        // Two of them are the bound: a third is over it, well below the count.
        s.publish("b", &msg(4));
        assert!(a.queue.is_cut());
        assert_eq!(a.queue.held(), (0, 0));
        // A lone notification heavier than the bound still goes through (it
        // could never be delivered live otherwise), the next one cuts.
        let c = s.register("c").unwrap();
        let mut big = msg(5);
        if let Payload::Message(m) = &mut big.payload {
            Arc::make_mut(m).body = json!("x".repeat(4 * one));
        }
        s.publish("c", &big);
        assert!(!c.queue.is_cut());
        assert_eq!(c.queue.held(), (1, big.weight()));
        s.publish("c", &msg(6));
        assert!(c.queue.is_cut());
    }

    #[test]
    fn a_value_weighs_its_decoded_size() {
        let v = size_of::<Value>();
        assert_eq!(value_weight(&json!(null)), v);
        assert_eq!(value_weight(&json!("abc")), v + 3);
        assert_eq!(value_weight(&json!([1, [2, []]])), 5 * v);
        assert_eq!(
            value_weight(&json!({"ab": {"c": true}})),
            3 * v + 2 * (size_of::<String>() + 2 * size_of::<usize>()) + 3
        );
        // 64 KiB of text, as a message body: about a MiB decoded.
        let zeros = Value::Array(vec![json!(0); 32 * 1024]);
        assert_eq!(serde_json::to_string(&zeros).unwrap().len(), 64 * 1024 + 1);
        assert!(value_weight(&zeros) >= 1 << 20);
    }

    #[tokio::test]
    async fn a_push_is_timed_once_by_whichever_stream_takes_it_first() {
        let mut s = Subscribers::new(8, 8, 3, usize::MAX);
        let streams: Vec<_> = (0..3).map(|_| s.register("b").unwrap()).collect();
        let mut timed = msg(4);
        timed.delivery = timing(Some(Instant::now()));
        s.publish("b", &timed);
        let mut copies = Vec::new();
        for r in &streams {
            copies.push(taken(&r.queue).await);
        }
        assert!(copies.iter().all(|c| c.durable_at().is_some()));
        // The last stream opened reads first: it times the push, nobody else.
        let last = copies.pop().unwrap();
        assert!(last.first_delivery().is_some());
        assert!(copies.iter().all(|c| c.first_delivery().is_none()));
        assert!(last.first_delivery().is_none());
    }
}
