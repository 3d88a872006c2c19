//! Events, flags, operations, agents and sessions (PROTOCOL.md 2.3, 7 to 10).

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lighthouse_core::api::{
    AppendEventRequest, CreateAgentRequest, DrainRequest, EventsQuery, ExpectedVersion,
    FLAG_CHANGED_HEADER, FLAG_SEQ_HEADER, FlagKill, FlagOutcome, FlagPut, FlagSpec, Problem,
    RolloutPercent, SessionRequest,
};
use lighthouse_security::Caller;
use serde::Deserialize;

use crate::elicit::meter_of;
use crate::error::{ApiError, no_body, parse_json, parse_query};
use crate::state::{AppState, RequestId};
use lighthouse_core::WaitMeter;

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, axum::Json(v)).into_response()
}

pub(crate) async fn append_event(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AppendEventRequest = parse_json(&body)?;
    let out = st.bridge.append_event(&caller, &rid.0, req).await?;
    Ok(json(StatusCode::CREATED, &out))
}

pub(crate) async fn query_events(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q: EventsQuery = parse_query(q.as_deref())?;
    let page = st.bridge.query_events(&caller, &q)?;
    Ok(json(StatusCode::OK, &page))
}

pub(crate) async fn list_flags(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &st.bridge.list_flags_view(&caller)?))
}

pub(crate) async fn get_flag(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &st.bridge.get_flag(&caller, &key)?))
}

/// Fields of a flag as `GET` returns it that a `PUT` may carry and ignores.
const READ_ONLY_FLAG_FIELDS: [&str; 4] = ["version", "updated_at", "updated_by", "killed"];

pub(crate) async fn put_flag(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // `FlagPut` flattens the spec, and serde cannot refuse unknown fields
    // through a flatten; so the body is taken apart here and the spec parsed
    // on its own, where an unknown field is refused with its path.
    let mut v: serde_json::Value = parse_json(&body)?;
    let Some(o) = v.as_object_mut() else {
        return Err(Problem::invalid("", "the body must be a JSON object (a flag)").into());
    };
    check_rollout_text(&body)?;
    for f in READ_ONLY_FLAG_FIELDS {
        o.remove(f);
    }
    let reason = take_field::<Option<String>>(o, "reason")?.flatten();
    // The forms of PROTOCOL.md 7 (a number, "no_stream", "any"), mapped onto
    // the flag's version: "no_stream" is 0 (must not exist), "any" none.
    let expected_version = take_field::<Option<ExpectedVersion>>(o, "expected_version")?
        .flatten()
        .and_then(ExpectedVersion::for_flag);
    let spec: FlagSpec = parse_json(&serde_json::to_vec(&v).unwrap_or_default())?;
    let put = FlagPut {
        spec,
        reason,
        expected_version,
    };
    // 200 whether the flag was created or replaced (docs/FLAGS.md).
    Ok(flag_written(
        &st.bridge.put_flag(&caller, &rid.0, &key, put).await?,
    ))
}

/// The answer to a flag write: the flag, as PROTOCOL.md 8 has it, and what
/// the write did in two headers (docs/HTTP.md): `X-Lighthouse-Changed` always,
/// `X-Lighthouse-Seq` (the change event's seq) when it changed the flag.
fn flag_written(out: &FlagOutcome) -> Response {
    let mut r = json(StatusCode::OK, &out.flag);
    let h = r.headers_mut();
    h.insert(
        HeaderName::from_static(FLAG_CHANGED_HEADER),
        HeaderValue::from_static(if out.changed { "true" } else { "false" }),
    );
    if let Some(seq) = out.seq {
        h.insert(
            HeaderName::from_static(FLAG_SEQ_HEADER),
            HeaderValue::from(seq),
        );
    }
    r
}

/// Refuses a `rollout_percent` written with more than two decimals
/// (PROTOCOL.md 8), judged on the number's text in `body` (a JSON object, already
/// parsed once): the parsed binary64 cannot tell `25.0000000000000001` from
/// `25`, and the flag store only sees that. The exact decimal value of the text
/// counts, so trailing zeros and an exponent are fine as long as that value
/// has at most two decimals (`25.000`, `2.5e1`, `2512e-2`; not `2.5001e1`,
/// `1e-3`; docs/FLAGS.md). Anything but a number is left to the spec's parse.
fn check_rollout_text(body: &[u8]) -> Result<(), ApiError> {
    // Keys decoded and a repeated key kept last, as in the `Value` parse.
    let members: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(body)
            .map_err(|e| ApiError(Problem::invalid("", format!("invalid JSON body: {e}"))))?;
    let Some(raw) = members.get("rollout_percent") else {
        return Ok(());
    };
    let text = raw.get().trim();
    match RolloutPercent::decimal_places(text) {
        Some(places) if places > 2 => {
            let shown = if text.len() > 40 {
                format!("{}...", &text[..32])
            } else {
                text.to_owned()
            };
            Err(Problem::invalid(
                "/rollout_percent",
                format!("{shown} must have at most two decimals (it has {places})"),
            )
            .into())
        }
        _ => Ok(()),
    }
}

/// Removes `name` from a JSON object and parses it, a type error naming the field.
fn take_field<T: serde::de::DeserializeOwned>(
    o: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    o.remove(name)
        .map(|v| {
            serde_json::from_value(v)
                .map_err(|e| ApiError(Problem::invalid(format!("/{name}"), e.to_string())))
        })
        .transpose()
}

async fn kill(
    st: AppState,
    caller: Caller,
    rid: RequestId,
    key: String,
    body: Bytes,
    on: bool,
) -> Result<Response, ApiError> {
    let r: FlagKill = parse_json(&body)?;
    Ok(flag_written(
        &st.bridge.kill_flag(&caller, &rid.0, &key, on, &r).await?,
    ))
}

pub(crate) async fn kill_flag(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    kill(st, caller, rid, key, body, true).await
}

pub(crate) async fn unkill_flag(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    kill(st, caller, rid, key, body, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    before: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn flag_history(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: HistoryParams = parse_query(q.as_deref())?;
    let limit = p.limit.unwrap_or(lighthouse_core::MAX_FLAG_HISTORY);
    Ok(json(
        StatusCode::OK,
        &st.bridge
            .flag_history_page(&caller, &key, p.before, limit)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvaluateParams {
    agent: String,
}

pub(crate) async fn evaluate_flag(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: EvaluateParams = parse_query(q.as_deref())?;
    Ok(json(
        StatusCode::OK,
        &st.bridge.evaluate_flag(&caller, &key, &p.agent)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsParams {
    window_s: Option<u64>,
}

pub(crate) async fn stats(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: StatsParams = parse_query(q.as_deref())?;
    Ok(json(
        StatusCode::OK,
        &st.bridge.stats(&caller, p.window_s.unwrap_or(60))?,
    ))
}

pub(crate) async fn drain(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    meter: Option<Extension<WaitMeter>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: DrainRequest = parse_json(&body)?;
    // Waiting for others to resolve is not the bridge's latency (PROTOCOL.md
    // 9): the wait goes on the request's meter, which the observe layer leaves
    // out, whether the drain answers, fails part way, or is given up on.
    let meter = meter_of(meter);
    let report = st
        .bridge
        .drain_metered(&caller, &rid.0, req, &meter)
        .await?;
    Ok(json(StatusCode::OK, &report))
}

pub(crate) async fn verify(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    meter: Option<Extension<WaitMeter>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    no_body(&body)?;
    // The walk of the log goes on the request's meter, like a drain's wait:
    // long and rare, it would otherwise be the p99 of a quiet bridge's
    // `http.latency_ms` (docs/HTTP.md).
    let meter = meter_of(meter);
    Ok(json(
        StatusCode::OK,
        &st.bridge.verify_metered(&caller, &meter).await?,
    ))
}

pub(crate) async fn list_agents(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &st.bridge.list_agents(&caller)?))
}

pub(crate) async fn add_agent(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateAgentRequest = parse_json(&body)?;
    let cred = st
        .bridge
        .add_agent_correlated(&caller, &rid.0, &req.id, req.role)
        .await?;
    Ok(json(StatusCode::CREATED, &cred))
}

pub(crate) async fn rotate_agent(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    no_body(&body)?;
    Ok(json(
        StatusCode::OK,
        &st.bridge
            .rotate_agent_correlated(&caller, &rid.0, &id)
            .await?,
    ))
}

pub(crate) async fn revoke_agent(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    no_body(&body)?;
    st.bridge
        .revoke_agent_correlated(&caller, &rid.0, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn revoke_agent_named_me(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, ApiError> {
    no_body(&body)?;
    st.bridge
        .revoke_agent_correlated(&caller, &rid.0, lighthouse_security::ME_AGENT)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn me(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &st.bridge.me(&caller)?))
}

pub(crate) async fn create_session(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SessionRequest = if body.is_empty() {
        SessionRequest::default()
    } else {
        parse_json(&body)?
    };
    Ok(json(
        StatusCode::CREATED,
        &st.bridge.create_session(&caller, req.ttl_s)?,
    ))
}

pub(crate) async fn end_session(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    no_body(&body)?;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .ok_or_else(|| {
            Problem::invalid(
                "/Authorization",
                "DELETE /v1/sessions/current must be made with the token to revoke",
            )
        })?;
    st.bridge
        .end_session_correlated(&caller, &rid.0, token)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
