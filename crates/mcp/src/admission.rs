//! Which REST route an `/mcp` request counts as, for the bridge's admission
//! (rate-limit class, permission, audit record).
//!
//! A `tools/call` of a Lighthouse tool is admitted exactly as the REST route it
//! stands for (`lighthouse_elicit` as `POST /v1/elicitations` with
//! [`Action::Elicit`], ...), so an agent has the same permissions, the same
//! rate limits and the same audit trail whichever API it uses. Every other
//! message (initialize, tools/list, notifications, ping) is the transport
//! itself: `<method> /mcp` with [`Action::UseMcp`], which counts against the
//! `write` class for `POST` (PROTOCOL.md 2.4: "every other POST") and `read`
//! for `GET`.

use axum::http::{HeaderMap, header};
use lighthouse_security::{Action, append_action};
use rmcp::model::{CallToolRequestParams, RequestId};
use serde::Deserialize;
use serde_json::Value;

use crate::tools::catalogue::*;

/// The route, method and action an `/mcp` request is admitted as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteClass {
    /// The permission it needs.
    pub(crate) action: Action,
    /// The HTTP method of the REST route (decides the rate-limit class).
    pub(crate) method: &'static str,
    /// The REST route template (decides the rate-limit class; named in audit
    /// records).
    pub(crate) route: &'static str,
    /// The tool called, when the request is a `tools/call` of one of ours.
    pub(crate) tool: Option<&'static str>,
    /// The JSON-RPC id of that tool call, when it has a usable one.
    pub(crate) call_id: Option<RequestId>,
    /// The request id a `notifications/cancelled` names.
    pub(crate) cancels: Option<RequestId>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
    /// Of `notifications/cancelled`.
    #[serde(default, rename = "requestId")]
    request_id: Option<Value>,
}

/// A JSON-RPC request id as rmcp reads it (an integer or a string).
fn request_id(v: Option<Value>) -> Option<RequestId> {
    serde_json::from_value(v?).ok()
}

/// Why a `tools/call` request's `params` are not a tool call's, with the
/// request's id: rmcp reads such a request as an unknown method (`-32601`),
/// where JSON-RPC has `-32602 Invalid params`.
pub(crate) fn malformed_tool_call(body: &[u8]) -> Option<(RequestId, String)> {
    let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    if msg.get("method").and_then(Value::as_str) != Some("tools/call") {
        return None;
    }
    // Not a JSON-RPC 2.0 message: rmcp's own answer (a `400`) stands.
    if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return None;
    }
    // Without an id it is a notification, which is not answered.
    let id = serde_json::from_value::<RequestId>(msg.get("id")?.clone()).ok()?;
    /// Only `params`, read from the body itself: a `Value` keeps one of two
    /// duplicated keys, where the message is not one tool call.
    #[derive(Deserialize)]
    struct ParamsOnly {
        params: Option<CallToolRequestParams>,
    }
    match serde_json::from_slice::<ParamsOnly>(body) {
        Ok(ParamsOnly { params: Some(_) }) => None,
        Ok(ParamsOnly { params: None }) => Some((id, "tools/call requires params".to_owned())),
        Err(e) => Some((
            id,
            format!("the params of tools/call are not a tool call: {e}"),
        )),
    }
}

/// Whether rmcp would read the body of a `POST` with `headers` as JSON-RPC:
/// it takes JSON, the client accepts JSON and SSE, and any
/// `MCP-Protocol-Version` is one rmcp knows.
pub(crate) fn rmcp_reads(headers: &HeaderMap) -> bool {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let (mut accepts_json, mut accepts_sse) = (false, false);
    for essence in accepted_media_types(headers) {
        accepts_json |= essence.eq_ignore_ascii_case("application/json");
        accepts_sse |= essence.eq_ignore_ascii_case("text/event-stream");
    }
    let version_known = headers.get("mcp-protocol-version").is_none_or(|v| {
        rmcp::model::ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .any(|k| k.as_str().as_bytes() == v.as_bytes())
    });
    json && accepts_json && accepts_sse && version_known
}

/// `value` split at `delimiter`s outside double quotes (as rmcp splits
/// `Accept`).
fn split_unquoted(value: &str, delimiter: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    value.split(move |c| {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == delimiter {
            return true;
        }
        false
    })
}

/// The media types `Accept` lists, but those weighted exactly zero, as rmcp
/// reads them: each compared whole, not as a substring.
fn accepted_media_types(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| split_unquoted(v, ','))
        .filter_map(|entry| {
            let mut parts = split_unquoted(entry, ';');
            let essence = parts.next()?.trim();
            parts
                .all(|param| match param.split_once('=') {
                    Some((name, q)) if name.trim().eq_ignore_ascii_case("q") => {
                        weight_is_acceptable(q.trim())
                    }
                    _ => true,
                })
                .then_some(essence)
        })
}

/// Whether a `q` weight leaves its media range acceptable: only an explicit
/// zero excludes it (a malformed weight is ignored, as rmcp does).
fn weight_is_acceptable(q: &str) -> bool {
    let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|d| d.is_ascii_digit()) {
        return true;
    }
    whole != "0" || fraction.bytes().any(|d| d != b'0')
}

/// The route an `/mcp` request with `http_method` and `body` counts as.
pub(crate) fn classify(http_method: &str, body: &[u8]) -> RouteClass {
    let transport = RouteClass {
        action: Action::UseMcp,
        method: match http_method {
            "GET" => "GET",
            "DELETE" => "DELETE",
            _ => "POST",
        },
        route: "/mcp",
        tool: None,
        call_id: None,
        cancels: None,
    };
    if http_method != "POST" {
        return transport;
    }
    let Ok(msg) = serde_json::from_slice::<Message>(body) else {
        return transport;
    };
    if msg.method.as_deref() == Some("notifications/cancelled") && msg.id.is_none() {
        return RouteClass {
            cancels: request_id(msg.params.and_then(|p| p.request_id)),
            ..transport
        };
    }
    if msg.method.as_deref() != Some("tools/call") {
        return transport;
    }
    let Some(params) = msg.params else {
        return transport;
    };
    let Some(tool) = params
        .name
        .as_deref()
        .and_then(|n| TOOL_NAMES.iter().copied().find(|t| *t == n))
    else {
        return transport;
    };
    let (action, method, route) = match tool {
        ELICIT => (Action::Elicit, "POST", "/v1/elicitations"),
        CHECK_ELICITATIONS => (Action::ReadElicitations, "GET", "/v1/elicitations"),
        RESPOND => (Action::Respond, "POST", "/v1/elicitations/{id}/respond"),
        GET_ELICITATION => (Action::ReadElicitations, "GET", "/v1/elicitations/{id}"),
        CANCEL => (Action::Cancel, "POST", "/v1/elicitations/{id}/cancel"),
        SEND_MESSAGE => (Action::SendMessage, "POST", "/v1/messages"),
        WAIT_FOR_MESSAGES => (Action::ReadMessages, "GET", "/v1/messages"),
        STORE_EVENT => {
            let arg = |k: &str| {
                params
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            // As REST: a reserved target is refused at step 7 (403, counted
            // and audited as a security violation).
            let action =
                append_action(&arg("stream"), &arg("type")).unwrap_or(Action::AppendReservedEvent);
            (action, "POST", "/v1/events")
        }
        QUERY_EVENTS => (Action::ReadEvents, "GET", "/v1/events"),
        // Health is open in REST; through MCP it needs only the transport.
        _ => (Action::UseMcp, "POST", "/mcp"),
    };
    RouteClass {
        action,
        method,
        route,
        tool: Some(tool),
        call_id: request_id(msg.id),
        cancels: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lighthouse_security::ActionClass;
    use serde_json::json;

    fn call(name: &str, args: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": args}}))
        .unwrap()
    }

    fn class(c: &RouteClass) -> ActionClass {
        ActionClass::for_route(c.method, c.route)
    }

    #[test]
    fn tool_calls_count_as_their_rest_routes() {
        let c = classify("POST", &call(ELICIT, json!({})));
        assert_eq!(
            (c.action, class(&c), c.tool),
            (Action::Elicit, ActionClass::Elicit, Some(ELICIT))
        );
        let c = classify("POST", &call(RESPOND, json!({})));
        assert_eq!(
            (c.action, class(&c)),
            (Action::Respond, ActionClass::Respond)
        );
        let c = classify("POST", &call(CANCEL, json!({})));
        assert_eq!(
            (c.action, class(&c)),
            (Action::Cancel, ActionClass::Respond)
        );
        for t in [
            CHECK_ELICITATIONS,
            GET_ELICITATION,
            WAIT_FOR_MESSAGES,
            QUERY_EVENTS,
        ] {
            assert_eq!(
                class(&classify("POST", &call(t, json!({})))),
                ActionClass::Read,
                "{t}"
            );
        }
        let c = classify("POST", &call(SEND_MESSAGE, json!({})));
        assert_eq!(
            (c.action, class(&c)),
            (Action::SendMessage, ActionClass::Write)
        );
        let c = classify(
            "POST",
            &call(STORE_EVENT, json!({"stream": "$ops", "type": "ops.deploy"})),
        );
        assert_eq!(
            (c.action, class(&c)),
            (Action::AppendOpsEvent, ActionClass::Write)
        );
        let c = classify(
            "POST",
            &call(STORE_EVENT, json!({"stream": "$agents", "type": "x"})),
        );
        assert_eq!(c.action, Action::AppendReservedEvent);
        let c = classify("POST", &call(HEALTH, json!({})));
        assert_eq!((c.action, c.tool), (Action::UseMcp, Some(HEALTH)));
    }

    #[test]
    fn tool_calls_whose_params_are_not_a_tool_call_are_found() {
        let id = |b: &[u8]| malformed_tool_call(b).map(|(id, _)| id);
        assert_eq!(id(&call(HEALTH, json!({}))), None);
        assert_eq!(id(&call("not_ours", json!({"a": 1}))), None);
        assert_eq!(id(&call(HEALTH, json!([1]))), Some(RequestId::Number(1)));
        let (id2, why) = malformed_tool_call(
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"a","name":"b"}}"#,
        )
        .unwrap();
        assert_eq!(id2, RequestId::String("x".into()));
        assert!(why.contains("duplicate field `name`"), "{why}");
        assert!(
            id(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#) == Some(RequestId::Number(3))
        );
        // Not requests of tools/call, or not answerable: left to rmcp.
        for body in [
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"arguments":[1]}}"#.to_vec(),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}"#.to_vec(),
            br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":[1]}"#.to_vec(),
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]"#.to_vec(),
            b"garbage".to_vec(),
        ] {
            assert_eq!(id(&body), None, "{}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn tool_call_ids_and_cancellations_are_read() {
        let c = classify("POST", &call(ELICIT, json!({})));
        assert_eq!((c.call_id, c.cancels), (Some(RequestId::Number(1)), None));
        let c = classify(
            "POST",
            br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"lighthouse_health"}}"#,
        );
        assert_eq!(c.call_id, Some(RequestId::String("a-1".into())));
        let c = classify(
            "POST",
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":42,"reason":"x"}}"#,
        );
        assert_eq!(
            (c.action, c.tool, c.cancels),
            (Action::UseMcp, None, Some(RequestId::Number(42)))
        );
        // A request (with an id) is not the notification; a float id is not
        // an id rmcp reads.
        for body in [
            br#"{"jsonrpc":"2.0","id":1,"method":"notifications/cancelled","params":{"requestId":42}}"#.to_vec(),
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4.5}}"#.to_vec(),
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#.to_vec(),
        ] {
            assert_eq!(classify("POST", &body).cancels, None);
        }
    }

    #[test]
    fn everything_else_is_the_transport() {
        for body in [
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#.to_vec(),
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(),
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.to_vec(),
            call("not_ours", json!({})),
            br#"[1,2]"#.to_vec(),
            b"garbage".to_vec(),
        ] {
            let c = classify("POST", &body);
            assert_eq!((c.action, c.route, c.tool), (Action::UseMcp, "/mcp", None));
            assert_eq!(class(&c), ActionClass::Write);
        }
        assert_eq!(class(&classify("GET", b"")), ActionClass::Read);
    }
}
