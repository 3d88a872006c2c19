//! Elicitations and messages (PROTOCOL.md sections 4 and 6).

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lighthouse_core::WaitMeter;
use lighthouse_core::api::{CancelRequest, CreateRequest, Problem, RespondRequest};
use lighthouse_elicitation::{Mailbox, SendMessage, Status};
use lighthouse_security::Caller;
use serde::Deserialize;

use crate::error::{ApiError, parse_json, parse_query};
use crate::state::{AppState, RequestId};
use crate::stream::while_credential_holds;

/// The idempotency header of `POST /v1/elicitations`.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header (`true`) of a create answered from an earlier one with
/// the same idempotency key (Stripe's convention); absent on a first create.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, axum::Json(v)).into_response()
}

pub(crate) async fn create(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateRequest = parse_json(&body)?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| {
                    lighthouse_event_store::validate_token(k, lighthouse_event_store::Field::Id)
                        .is_ok()
                })
                .ok_or_else(|| {
                    Problem::invalid("/Idempotency-Key", "must be 1 to 128 of [A-Za-z0-9_.:-]")
                })?;
            Some(k.to_owned())
        }
    };
    let (record, replayed) = st
        .bridge
        .elicit(&caller, &rid.0, key.as_deref(), req)
        .await?;
    if !replayed {
        return Ok(json(StatusCode::CREATED, &*record));
    }
    // A retried create answers exactly as the first did (PROTOCOL.md 4: "the
    // first result"): `201` with the record as created, pending, whatever
    // has happened to it since; only the header says it is a replay.
    let mut resp = json(StatusCode::CREATED, &record.as_pending());
    resp.headers_mut().insert(
        IDEMPOTENT_REPLAYED,
        axum::http::HeaderValue::from_static("true"),
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitParams {
    wait_ms: Option<u64>,
}

/// The request's wait meter (put on every request by the observe layer, which
/// leaves what it adds up out of request latency); a fresh one otherwise.
pub(crate) fn meter_of(m: Option<Extension<WaitMeter>>) -> WaitMeter {
    m.map(|Extension(m)| m).unwrap_or_default()
}

pub(crate) async fn get(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    meter: Option<Extension<WaitMeter>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: WaitParams = parse_query(q.as_deref())?;
    let wait_ms = p.wait_ms.unwrap_or(0);
    let meter = meter_of(meter);
    let get = st.bridge.get_elicitation(&caller, &id, wait_ms, &meter);
    let record = if wait_ms > 0 {
        while_credential_holds(&st, &caller, &headers, get).await??
    } else {
        get.await?
    };
    Ok(json(StatusCode::OK, &*record))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    #[serde(rename = "box")]
    mailbox: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(crate) async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: ListParams = parse_query(q.as_deref())?;
    let mailbox = match p.mailbox.as_deref() {
        None | Some("inbox") => Mailbox::Inbox,
        Some("outbox") => Mailbox::Outbox,
        Some(_) => return Err(Problem::invalid("/box", "must be inbox or outbox").into()),
    };
    let status = match p.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            Problem::invalid(
                "/status",
                "must be pending, accepted, declined, cancelled or expired",
            )
        })?),
    };
    let page = st
        .bridge
        .list_elicitations(&caller, mailbox, status, p.limit, p.cursor)?;
    Ok(json(StatusCode::OK, &page))
}

pub(crate) async fn respond(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RespondRequest = parse_json(&body)?;
    let record = st.bridge.respond(&caller, &rid.0, &id, req).await?;
    Ok(json(StatusCode::OK, &*record))
}

pub(crate) async fn cancel(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CancelRequest = if body.is_empty() {
        CancelRequest { reason: None }
    } else {
        parse_json(&body)?
    };
    let record = st.bridge.cancel(&caller, &rid.0, &id, req).await?;
    Ok(json(StatusCode::OK, &*record))
}

pub(crate) async fn send_message(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SendMessage = parse_json(&body)?;
    let sent = st.bridge.send_message(&caller, &rid.0, req).await?;
    Ok(json(StatusCode::CREATED, &sent))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessagesParams {
    after: Option<u64>,
    wait_ms: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn messages(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    meter: Option<Extension<WaitMeter>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: MessagesParams = parse_query(q.as_deref())?;
    let wait_ms = p.wait_ms.unwrap_or(0);
    if let Some(l) = p.limit
        && !(1..=1000).contains(&l)
    {
        return Err(Problem::invalid("/limit", "must be 1 to 1000").into());
    }
    let meter = meter_of(meter);
    let receive =
        st.bridge
            .receive_messages(&caller, p.after.unwrap_or(0), wait_ms, p.limit, &meter);
    let page = if wait_ms > 0 {
        while_credential_holds(&st, &caller, &headers, receive).await??
    } else {
        receive.await?
    };
    Ok(json(StatusCode::OK, &page))
}
