//! `POST /v1/events`, `GET /v1/events` and the event stream, with the write
//! rules and visibility rules of PROTOCOL.md section 7.

use lighthouse_event_store::{
    Event, ExpectedVersion as StoreExpected, Filter, NewEvent, Order, Query,
};
use lighthouse_security::{Action, Caller, Role};

use crate::api::{
    AppendEventRequest, AppendEventResponse, EventOrder, EventsPage, EventsQuery, ExpectedVersion,
    Problem,
};
use crate::bridge::Bridge;
use crate::problem::from_store;

/// Largest page of `GET /v1/events`.
pub const MAX_EVENTS_LIMIT: usize = 1000;
/// Type prefixes only the bridge writes.
pub const RESERVED_TYPE_PREFIXES: [&str; 6] = [
    "elicitation.",
    "message.",
    "flag.",
    "agent.",
    "security.",
    "ops.",
];
/// The detail of the `403` for an append to a stream or type only the bridge writes.
pub(crate) const RESERVED_DETAIL: &str = "streams starting with $, elicitation- or mailbox- and types elicitation.*, message.*, flag.*, agent.*, security.*, ops.* are written by the bridge only (operators may append to $ops)";
/// The operations stream, open to operators and admins.
pub const OPS_STREAM: &str = "$ops";
/// How many records one `GET /v1/events` looks at, at most: filters that match
/// little (two exact filters, or an agent's view of others' events) end the page
/// early with a `next` cursor instead of scanning without bound.
const MAX_EXAMINED_PER_PAGE: usize = 10_000;
/// Stored bytes of events one `GET /v1/events` page holds at most (at least
/// one event; the page then ends with `next`): 1,000 events of up to 1 MiB
/// each would otherwise be a GiB in memory, twice over once serialised.
pub const MAX_EVENTS_PAGE_BYTES: usize = 8 << 20;

impl Bridge {
    /// `POST /v1/events`.
    pub async fn append_event(
        &self,
        caller: &Caller,
        request_id: &str,
        req: AppendEventRequest,
    ) -> Result<AppendEventResponse, Problem> {
        // Reserved streams and types are written by the bridge only.
        let action = lighthouse_security::append_action(&req.stream, &req.event_type)
            .unwrap_or(Action::AppendReservedEvent);
        self.check(caller, action)?;
        // PROTOCOL.md 7: an event's metadata is an object (`null`, read as
        // absent, is stored as `{}`).
        if req.metadata.as_ref().is_some_and(|m| !m.is_object()) {
            return Err(Problem::invalid(
                "/metadata",
                "must be a JSON object (or null, or absent, for {})",
            ));
        }
        let stream = req.stream.clone();
        let mut e = NewEvent::new(req.stream, req.event_type, req.data)
            .with_agent(caller.agent.clone())
            .with_correlation_id(request_id)
            .expect(match req.expected_version.unwrap_or_default() {
                ExpectedVersion::Any => StoreExpected::Any,
                ExpectedVersion::NoStream => StoreExpected::NoStream,
                ExpectedVersion::Exact(n) => StoreExpected::Exact(n),
            });
        if let Some(m) = req.metadata {
            e = e.with_metadata(m);
        }
        if let Some(id) = req.id {
            e = e.with_id(id);
        }
        let out = self.store().append(vec![e]).await.map_err(|e| match e {
            // The encoded event is over the limit: its data is what the
            // caller controls (PROTOCOL.md 3: errors name the field).
            lighthouse_event_store::Error::TooLarge {
                what: "event",
                actual,
                limit,
            } => Problem::invalid(
                "/data",
                format!(
                    "the event is {actual} bytes once stored, over the limit of {limit}; \
                     send less data or metadata"
                ),
            ),
            e => from_store(e),
        })?;
        let a = out
            .events
            .into_iter()
            .next()
            .ok_or_else(Problem::internal)?;
        if out.deduplicated {
            self.check_replayed_id(caller, &stream, a.seq)?;
        }
        Ok(AppendEventResponse {
            seq: a.seq,
            id: a.id,
            version: a.version,
        })
    }

    /// A repeated event id returns the original result only to its own retry:
    /// the same agent appending to the same stream. Ids are global in the
    /// store, so without this check anyone who learned an id would be told
    /// where another agent's event sits, and their own event would be dropped.
    fn check_replayed_id(&self, caller: &Caller, stream: &str, seq: u64) -> Result<(), Problem> {
        let original = self
            .store()
            .get(seq)
            .map_err(from_store)?
            .ok_or_else(Problem::internal)?;
        if original.stream == stream && original.agent.as_deref() == Some(caller.agent.as_str()) {
            Ok(())
        } else {
            Err(Problem::invalid(
                "/id",
                "this id is already taken by another event; a retry must repeat the stream it was first sent to, and a new event needs a new id",
            ))
        }
    }

    /// `GET /v1/events`: every filter, with the caller's visibility applied.
    pub fn query_events(&self, caller: &Caller, q: &EventsQuery) -> Result<EventsPage, Problem> {
        self.check(caller, Action::ReadEvents)?;
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_EVENTS_LIMIT).contains(&limit) {
            return Err(Problem::invalid("/limit", "must be 1 to 1000"));
        }
        refuse_empty_filters(&[
            ("stream", &q.stream),
            ("type", &q.event_type),
            ("agent", &q.agent),
            ("correlation_id", &q.correlation_id),
        ])?;
        let filter = Filter {
            stream: q.stream.clone(),
            event_type: q.event_type.clone(),
            agent: q.agent.clone(),
            correlation_id: q.correlation_id.clone(),
            ..Filter::default()
        };
        let order = match q.order.unwrap_or_default() {
            EventOrder::Asc => Order::Ascending,
            EventOrder::Desc => Order::Descending,
        };
        let mut query = Query {
            filter,
            after: q.after,
            before: q.before,
            since: q.since,
            until: q.until,
            order,
            limit,
            ..Query::default()
        };
        if Self::sees_everything(caller) {
            let page = self
                .store()
                .read_bounded(&query, MAX_EXAMINED_PER_PAGE, MAX_EVENTS_PAGE_BYTES)
                .map_err(from_store)?;
            return Ok(EventsPage {
                events: page.events,
                next: page.next,
            });
        }
        // An agent: read on, dropping what it may not see, until the page is
        // full, the log is exhausted, or the examination bound is reached.
        let mut events = Vec::with_capacity(limit);
        let mut examined = 0usize;
        // Counts every event read, seen or not: the bound is on what the
        // bridge holds, and a read may return events this caller drops.
        let mut bytes = 0usize;
        loop {
            let page = self
                .store()
                .read_bounded(
                    &query,
                    MAX_EXAMINED_PER_PAGE - examined,
                    MAX_EVENTS_PAGE_BYTES - bytes,
                )
                .map_err(from_store)?;
            examined += page.examined;
            bytes = bytes.saturating_add(page.bytes).min(MAX_EVENTS_PAGE_BYTES);
            for e in page.events {
                if visible_to(&caller.agent, &e) {
                    let seq = e.seq;
                    events.push(e);
                    if events.len() == limit {
                        return Ok(EventsPage {
                            next: Some(seq),
                            events,
                        });
                    }
                }
            }
            match page.next {
                Some(n) if examined < MAX_EXAMINED_PER_PAGE && bytes < MAX_EVENTS_PAGE_BYTES => {
                    query = query.resume(n);
                }
                // The budget ran out: the client resumes where the store stopped.
                next => return Ok(EventsPage { events, next }),
            }
        }
    }

    /// A subscription for `GET /v1/events/stream`; pair it with
    /// [`Bridge::event_visible`] on every event.
    pub fn subscribe_events(
        &self,
        caller: &Caller,
        after: u64,
        stream: Option<String>,
        event_type: Option<String>,
    ) -> Result<lighthouse_event_store::Subscription, Problem> {
        self.check(caller, Action::ReadEvents)?;
        refuse_empty_filters(&[("stream", &stream), ("type", &event_type)])?;
        Ok(self.store().subscribe(
            after,
            Filter {
                stream,
                event_type,
                ..Filter::default()
            },
        ))
    }

    /// Whether `caller` may see `e` (PROTOCOL.md section 7).
    pub fn event_visible(caller: &Caller, e: &Event) -> bool {
        Self::sees_everything(caller) || visible_to(&caller.agent, e)
    }

    fn sees_everything(caller: &Caller) -> bool {
        matches!(caller.role, Role::Observer | Role::Operator | Role::Admin)
    }
}

/// An empty filter value would match the empty string, so nothing, silently:
/// it is refused, naming the parameter.
fn refuse_empty_filters(filters: &[(&str, &Option<String>)]) -> Result<(), Problem> {
    match filters.iter().find(|(_, v)| v.as_deref() == Some("")) {
        Some((name, _)) => Err(Problem::invalid(
            format!("/{name}"),
            "must not be empty; leave the parameter out to match every value",
        )),
        None => Ok(()),
    }
}

/// An agent sees events of streams not starting with `$`, except bridge-written
/// `elicitation.*` and `message.*` events where it is neither `from` nor `to`.
fn visible_to(agent: &str, e: &Event) -> bool {
    if e.stream.starts_with('$') {
        return false;
    }
    if e.event_type.starts_with("elicitation.") || e.event_type.starts_with("message.") {
        let party = |k: &str| e.data.get(k).and_then(|v| v.as_str()) == Some(agent);
        return party("from") || party("to");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use lighthouse_event_store::Timestamp;
    use serde_json::json;

    fn ev(stream: &str, t: &str, data: serde_json::Value) -> Event {
        Event {
            seq: 1,
            id: "x".into(),
            stream: stream.into(),
            version: 0,
            event_type: t.into(),
            time: Timestamp::EPOCH,
            agent: None,
            correlation_id: None,
            causation_id: None,
            data,
            metadata: json!({}),
        }
    }

    #[test]
    fn agents_see_only_their_own_bridge_events_and_no_reserved_streams() {
        let mine = ev(
            "elicitation-el_1",
            "elicitation.requested",
            json!({"from": "alice", "to": "bob"}),
        );
        assert!(visible_to("alice", &mine));
        assert!(visible_to("bob", &mine));
        assert!(!visible_to("carol", &mine));
        assert!(!visible_to(
            "carol",
            &ev(
                "mailbox-bob",
                "message.sent",
                json!({"from": "alice", "to": "bob"})
            )
        ));
        assert!(visible_to("carol", &ev("notes-1", "note.added", json!({}))));
        assert!(!visible_to(
            "carol",
            &ev("$flags", "flag.changed", json!({}))
        ));
    }
}
