//! Reads: [`Filter`], [`Query`] and the [`Page`] they return.

use crate::clock::Timestamp;
use crate::model::Event;

/// Which events a read or a subscription wants. Every field that is set must match.
///
/// The exact-match fields (`stream`, `event_type`, `agent`, `correlation_id`) are
/// served by indexes. The prefix fields are checked per event: use them together
/// with an exact field or a position range when the log is large.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exactly this stream.
    pub stream: Option<String>,
    /// Exactly this type.
    pub event_type: Option<String>,
    /// Exactly this agent.
    pub agent: Option<String>,
    /// Exactly this correlation id.
    pub correlation_id: Option<String>,
    /// Streams starting with this prefix.
    pub stream_prefix: Option<String>,
    /// Types starting with this prefix.
    pub type_prefix: Option<String>,
}

impl Filter {
    /// Every event.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Events of one stream.
    pub fn stream(stream: impl Into<String>) -> Self {
        Filter {
            stream: Some(stream.into()),
            ..Filter::default()
        }
    }

    /// Events of one type.
    pub fn event_type(t: impl Into<String>) -> Self {
        Filter {
            event_type: Some(t.into()),
            ..Filter::default()
        }
    }

    /// Whether `e` passes every condition.
    pub fn matches(&self, e: &Event) -> bool {
        self.matches_parts(
            &e.stream,
            &e.event_type,
            e.agent.as_deref(),
            e.correlation_id.as_deref(),
        )
    }

    pub(crate) fn matches_parts(
        &self,
        stream: &str,
        event_type: &str,
        agent: Option<&str>,
        correlation_id: Option<&str>,
    ) -> bool {
        self.stream.as_deref().is_none_or(|s| s == stream)
            && self.event_type.as_deref().is_none_or(|t| t == event_type)
            && self.agent.as_deref().is_none_or(|a| Some(a) == agent)
            && self
                .correlation_id
                .as_deref()
                .is_none_or(|c| Some(c) == correlation_id)
            && self
                .stream_prefix
                .as_deref()
                .is_none_or(|p| stream.starts_with(p))
            && self
                .type_prefix
                .as_deref()
                .is_none_or(|p| event_type.starts_with(p))
    }
}

/// Direction of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first.
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// A read of the log: a filter, bounds, a direction and a limit.
///
/// Bounds combine: the result lies inside every bound given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Which events.
    pub filter: Filter,
    /// Only `seq > after`.
    pub after: Option<u64>,
    /// Only `seq < before`.
    pub before: Option<u64>,
    /// Only `time >= since`.
    pub since: Option<Timestamp>,
    /// Only `time < until`.
    pub until: Option<Timestamp>,
    /// With `filter.stream`: only `version >= min_version`.
    pub min_version: Option<u64>,
    /// With `filter.stream`: only `version <= max_version`.
    pub max_version: Option<u64>,
    /// Direction.
    pub order: Order,
    /// Most events returned (capped at [`Query::MAX_LIMIT`]).
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            filter: Filter::default(),
            after: None,
            before: None,
            since: None,
            until: None,
            min_version: None,
            max_version: None,
            order: Order::Ascending,
            limit: 100,
        }
    }
}

impl Query {
    /// The largest page a single read returns.
    pub const MAX_LIMIT: usize = 10_000;

    /// A query for `filter`, ascending, limit 100.
    pub fn new(filter: Filter) -> Self {
        Query {
            filter,
            ..Query::default()
        }
    }

    /// The same query continued after a page's `next` cursor.
    pub fn resume(mut self, next: u64) -> Self {
        match self.order {
            Order::Ascending => self.after = Some(next),
            Order::Descending => self.before = Some(next),
        }
        self
    }
}

/// One page of a read.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events, in the query's order.
    pub events: Vec<Event>,
    /// When the page is full, or a [`read_within`](crate::EventStore::read_within)
    /// budget ran out first: the cursor to pass to [`Query::resume`] for the rest.
    pub next: Option<u64>,
    /// How many records the read looked at (matching or not).
    pub examined: usize,
    /// Stored bytes of the records returned (what a byte budget counts).
    pub bytes: usize,
}
