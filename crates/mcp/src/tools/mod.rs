//! The tools, written once against [`Backend`]: argument parsing, the calls,
//! the waits, and results shaped as PROTOCOL.md section 12 says (the JSON object
//! as `structuredContent` and as a text item; problems as `isError` results).

mod args;
pub mod catalogue;
mod wait;

use lighthouse_core::api::{AppendEventRequest, CancelRequest, CreateRequest, ErrorCode, Problem};
use rmcp::model::{CallToolResult, JsonObject};
use serde::Serialize;

use crate::backend::Backend;
use args::{
    CancelArgs, ElicitArgs, GetArgs, NoArgs, QueryArgs, RespondArgs, SendArgs, StoreEventArgs,
    WaitMessagesArgs, parse, rename_fields, timeout_seconds, wait_ms,
};
pub use wait::{CallContext, MIN_PROGRESS_INTERVAL};

/// A successful result: `value` as `structuredContent` and as a text item.
pub fn success<T: Serialize>(value: &T) -> CallToolResult {
    match serde_json::to_value(value) {
        Ok(v) => CallToolResult::structured(v),
        Err(e) => {
            tracing::error!(error = %e, "a tool result did not serialize");
            failure(&Problem::internal())
        }
    }
}

/// An error result: the problem body as `structuredContent` and as a text item.
pub fn failure(p: &Problem) -> CallToolResult {
    let v = serde_json::to_value(p).unwrap_or_else(|_| serde_json::json!({"code": "internal"}));
    CallToolResult::structured_error(v)
}

fn result<T: Serialize>(r: Result<T, Problem>) -> CallToolResult {
    match r {
        Ok(v) => success(&v),
        Err(p) => failure(&p),
    }
}

/// Most pending inbox items `lighthouse_check_elicitations` returns (the REST
/// listing's largest page).
pub const MAX_INBOX_ITEMS: usize = 1000;

/// Most bytes of JSON the items of one `lighthouse_check_elicitations` result
/// take (1 MiB, as a request body). PROTOCOL.md 12 gives the tool no arguments,
/// so it cannot page; a record can be about 80 KiB (message, schema and
/// metadata at their limits), so 1000 of them would be some 80 MB. At least
/// one item is always returned.
pub const MAX_INBOX_BYTES: usize = 1 << 20;

/// Runs tool `name` with `arguments` against `backend`. `None` when there is
/// no such tool (a protocol error, not a tool result).
pub async fn call<B: Backend>(
    backend: &B,
    name: &str,
    arguments: Option<JsonObject>,
    ctx: &CallContext,
) -> Option<CallToolResult> {
    use catalogue::*;
    let r = match name {
        ELICIT => result(elicit(backend, arguments, ctx).await),
        CHECK_ELICITATIONS => result(match parse::<NoArgs>(arguments, &[]) {
            Ok(_) => pending_inbox(backend, MAX_INBOX_BYTES).await,
            Err(p) => Err(p),
        }),
        RESPOND => result(
            async {
                let (id, req) = parse::<RespondArgs>(arguments, &[])?.request();
                backend.respond(&id, req).await
            }
            .await,
        ),
        GET_ELICITATION => result(get_elicitation(backend, arguments, ctx).await),
        CANCEL => result(
            async {
                let a: CancelArgs = parse(arguments, &[])?;
                let req = CancelRequest { reason: a.reason };
                backend.cancel(&a.elicitation_id, req).await
            }
            .await,
        ),
        SEND_MESSAGE => result(
            async {
                let a: SendArgs = parse(arguments, &[])?;
                backend.send_message(a).await
            }
            .await,
        ),
        WAIT_FOR_MESSAGES => result(
            async {
                let a: WaitMessagesArgs = parse(arguments, &["after", "wait_seconds"])?;
                let wait = wait_ms(a.wait_seconds)?;
                let r = ctx
                    .until_cancelled(backend.receive_messages(a.after.unwrap_or(0), wait))
                    .await?;
                r.map_err(|p| rename_fields(p, &[("/wait_ms", "/wait_seconds")]))
            }
            .await,
        ),
        STORE_EVENT => result(
            async {
                let a: StoreEventArgs = parse(arguments, &["expected_version"])?;
                backend
                    .append_event(AppendEventRequest {
                        stream: a.stream,
                        event_type: a.event_type,
                        data: a.data,
                        metadata: a.metadata,
                        expected_version: a.expected_version,
                        id: None,
                    })
                    .await
            }
            .await,
        ),
        QUERY_EVENTS => result(
            async {
                let q: QueryArgs = parse(arguments, &["after", "before", "limit"])?;
                backend.query_events(q).await
            }
            .await,
        ),
        HEALTH => result(match parse::<NoArgs>(arguments, &[]) {
            Ok(_) => backend.health().await,
            Err(p) => Err(p),
        }),
        _ => return None,
    };
    Some(r)
}

/// The pending inbox, oldest first, as many items as fit in `budget` bytes of
/// JSON (at least one). When they do not all fit, the listing is asked again
/// for exactly the items that do, so `next_cursor` is the bridge's own and
/// says truthfully that more are pending.
async fn pending_inbox<B: Backend>(
    backend: &B,
    budget: usize,
) -> Result<lighthouse_core::api::ElicitationList, Problem> {
    let mut limit = MAX_INBOX_ITEMS;
    loop {
        let page = backend.pending_inbox(limit).await?;
        let fit = fitting(&page.items, budget);
        // `fit` is below the page's length, itself at most `limit`: the
        // limit shrinks every round, and a page of one item always fits.
        if fit >= page.items.len() {
            return Ok(page);
        }
        limit = fit;
    }
}

/// How many leading `items` fit in `budget` bytes of JSON; at least one.
fn fitting<T: Serialize>(items: &[T], budget: usize) -> usize {
    let mut used = 0usize;
    for (i, item) in items.iter().enumerate() {
        used = used.saturating_add(serde_json::to_vec(item).map_or(usize::MAX, |v| v.len()));
        if used > budget {
            return i.max(1);
        }
    }
    items.len()
}

async fn elicit<B: Backend>(
    backend: &B,
    arguments: Option<JsonObject>,
    ctx: &CallContext,
) -> Result<lighthouse_core::api::Elicitation, Problem> {
    let a: ElicitArgs = parse(arguments, &["timeout_seconds"])?;
    let timeout_s = timeout_seconds(a.timeout_seconds)?;
    // The deadline is measured here, on a monotonic clock, so a remote bridge's
    // clock skew cannot stretch or cut the wait.
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_secs(timeout_s)
        + ctx.expiry_grace();
    let req = CreateRequest::new(a.to, a.message, a.schema).timeout_ms(timeout_s * 1000);
    let record = backend.elicit(req).await.map_err(|p| {
        rename_fields(
            p,
            &[
                ("/requested_schema", "/schema"),
                ("/timeout_ms", "/timeout_seconds"),
            ],
        )
    })?;
    if !a.wait.unwrap_or(true) {
        return Ok(record);
    }
    wait::until_terminal(backend, record, deadline, timeout_s, ctx).await
}

async fn get_elicitation<B: Backend>(
    backend: &B,
    arguments: Option<JsonObject>,
    ctx: &CallContext,
) -> Result<lighthouse_core::api::Elicitation, Problem> {
    let a: GetArgs = parse(arguments, &["wait_seconds"])?;
    let wait = wait_ms(a.wait_seconds)?;
    ctx.until_cancelled(backend.get_elicitation(&a.elicitation_id, wait))
        .await?
        .map_err(|p| rename_fields(p, &[("/wait_ms", "/wait_seconds")]))
}

/// The problem returned to a call the client cancelled (it is normally never
/// delivered: the client has stopped listening).
pub(crate) fn cancelled() -> Problem {
    Problem::new(
        ErrorCode::Unavailable,
        "the client cancelled this tool call; an elicitation it created stays pending until answered, cancelled or expired",
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use lighthouse_core::api::{
        AppendEventResponse, CreateRequest, Elicitation, ElicitationList, EventsPage, EventsQuery,
        Health, MessagesPage, RespondRequest, SentMessage, Status, Timestamp,
    };
    use lighthouse_elicitation::SendMessage;
    use serde_json::json;

    use super::*;

    /// An inbox of `n` pending elicitations of about 10 KiB each; records the
    /// limits it was asked for.
    struct Inbox {
        n: usize,
        limits: Mutex<Vec<usize>>,
    }

    fn record(i: usize) -> Elicitation {
        Elicitation {
            id: format!("el_{i}").into(),
            from: "alice".into(),
            to: "bob".into(),
            message: "x".repeat(10 << 10).into(),
            requested_schema: json!({}).into(),
            status: Status::Pending,
            created_at: Timestamp::EPOCH,
            expires_at: Timestamp::EPOCH,
            resolved_at: None,
            response: None,
            metadata: json!({}).into(),
        }
    }

    const ONLY: &str = "this test double serves only the pending inbox";

    impl Backend for Inbox {
        async fn pending_inbox(&self, limit: usize) -> Result<ElicitationList, Problem> {
            self.limits.lock().unwrap().push(limit);
            let items: Vec<_> = (0..self.n.min(limit)).map(record).collect();
            let next_cursor = (self.n > limit).then(|| limit.to_string());
            Ok(ElicitationList { items, next_cursor })
        }
        async fn elicit(&self, _: CreateRequest) -> Result<Elicitation, Problem> {
            unreachable!("{ONLY}")
        }
        async fn get_elicitation(&self, _: &str, _: u64) -> Result<Elicitation, Problem> {
            unreachable!("{ONLY}")
        }
        async fn respond(&self, _: &str, _: RespondRequest) -> Result<Elicitation, Problem> {
            unreachable!("{ONLY}")
        }
        async fn cancel(&self, _: &str, _: CancelRequest) -> Result<Elicitation, Problem> {
            unreachable!("{ONLY}")
        }
        async fn send_message(&self, _: SendMessage) -> Result<SentMessage, Problem> {
            unreachable!("{ONLY}")
        }
        async fn receive_messages(&self, _: u64, _: u64) -> Result<MessagesPage, Problem> {
            unreachable!("{ONLY}")
        }
        async fn append_event(
            &self,
            _: AppendEventRequest,
        ) -> Result<AppendEventResponse, Problem> {
            unreachable!("{ONLY}")
        }
        async fn query_events(&self, _: EventsQuery) -> Result<EventsPage, Problem> {
            unreachable!("{ONLY}")
        }
        async fn health(&self) -> Result<Health, Problem> {
            unreachable!("{ONLY}")
        }
    }

    #[tokio::test]
    async fn the_pending_inbox_result_is_bounded_in_bytes() {
        let inbox = Inbox {
            n: 500,
            limits: Mutex::new(Vec::new()),
        };
        let page = pending_inbox(&inbox, MAX_INBOX_BYTES).await.unwrap();
        let bytes = serde_json::to_vec(&page.items).unwrap().len();
        assert!(bytes <= MAX_INBOX_BYTES, "{bytes}");
        assert!(page.items.len() > 90, "{}", page.items.len());
        // Asked again for exactly what fits, so the cursor is the bridge's.
        let limits = inbox.limits.lock().unwrap().clone();
        assert_eq!(limits, vec![MAX_INBOX_ITEMS, page.items.len()]);
        assert_eq!(page.next_cursor, Some(page.items.len().to_string()));
        // A small inbox is returned whole in one call; one huge item still is.
        let small = Inbox {
            n: 3,
            limits: Mutex::new(Vec::new()),
        };
        let page = pending_inbox(&small, MAX_INBOX_BYTES).await.unwrap();
        assert_eq!((page.items.len(), page.next_cursor), (3, None));
        let page = pending_inbox(&small, 100).await.unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next_cursor, Some("1".into()));
    }
}
