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
            Ok(_) => backend.pending_inbox(MAX_INBOX_ITEMS).await,
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
