//! The tools of PROTOCOL.md section 12: names, descriptions and input schemas.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

/// `lighthouse_elicit`.
pub const ELICIT: &str = "lighthouse_elicit";
/// `lighthouse_check_elicitations`.
pub const CHECK_ELICITATIONS: &str = "lighthouse_check_elicitations";
/// `lighthouse_respond_to_elicitation`.
pub const RESPOND: &str = "lighthouse_respond_to_elicitation";
/// `lighthouse_get_elicitation`.
pub const GET_ELICITATION: &str = "lighthouse_get_elicitation";
/// `lighthouse_cancel_elicitation`.
pub const CANCEL: &str = "lighthouse_cancel_elicitation";
/// `lighthouse_send_message`.
pub const SEND_MESSAGE: &str = "lighthouse_send_message";
/// `lighthouse_wait_for_messages`.
pub const WAIT_FOR_MESSAGES: &str = "lighthouse_wait_for_messages";
/// `lighthouse_store_event`.
pub const STORE_EVENT: &str = "lighthouse_store_event";
/// `lighthouse_query_events`.
pub const QUERY_EVENTS: &str = "lighthouse_query_events";
/// `lighthouse_health`.
pub const HEALTH: &str = "lighthouse_health";

/// Every tool name, in the order of PROTOCOL.md section 12.
pub const TOOL_NAMES: [&str; 10] = [
    ELICIT,
    CHECK_ELICITATIONS,
    RESPOND,
    GET_ELICITATION,
    CANCEL,
    SEND_MESSAGE,
    WAIT_FOR_MESSAGES,
    STORE_EVENT,
    QUERY_EVENTS,
    HEALTH,
];

const AGENT_ID: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";
const STREAM: &str = "^[A-Za-z0-9$][A-Za-z0-9_.:$-]{0,255}$";
const EVENT_TYPE: &str = "^[a-z][a-z0-9_.]{0,127}$";

fn agent(description: &str) -> Value {
    json!({"type": "string", "pattern": AGENT_ID, "description": description})
}

fn elicitation_id() -> Value {
    json!({"type": "string", "description": "The elicitation id (`el_` followed by a ULID)."})
}

fn seconds(max: u64, default: u64, description: &str) -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": max, "default": default, "description": description})
}

fn object(properties: Value, required: &[&str]) -> Arc<JsonObject> {
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    match schema {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("a json! object literal is an object"),
    }
}

fn tool(
    name: &'static str,
    title: &str,
    description: &'static str,
    schema: Arc<JsonObject>,
) -> Tool {
    Tool::new(name, description, schema).with_title(title)
}

fn annotated(t: Tool, read_only: bool, idempotent: bool) -> Tool {
    let mut a = ToolAnnotations::with_title(t.title.clone().unwrap_or_default());
    a.read_only_hint = Some(read_only);
    a.destructive_hint = Some(false);
    a.idempotent_hint = Some(idempotent);
    a.open_world_hint = Some(true);
    t.with_annotations(a)
}

/// Every tool with its description and input schema.
pub fn tools() -> Vec<Tool> {
    vec![
        annotated(
            tool(
                ELICIT,
                "Ask another agent",
                "Ask another agent a structured question through the Lighthouse bridge. The answer must match `schema` (an MCP form schema: {\"type\": \"object\", \"properties\": {...}, \"required\": [...]}, flat properties of type string, number, integer, boolean or enums). With wait=true (default) the call returns the elicitation record as soon as the other agent accepts or declines, the request is cancelled, or it expires after timeout_seconds; read `status` and `response.content`. With wait=false it returns the pending record at once; poll it with lighthouse_get_elicitation.",
                object(
                    json!({
                        "to": agent("The agent to ask (its agent id)."),
                        "message": {"type": "string", "description": "The question, in plain words (at most 8 KiB)."},
                        "schema": {"type": "object", "description": "JSON Schema of the answer: MCP 2025-11-25 form profile, {\"type\": \"object\", \"properties\": {...}, \"required\": [...]}."},
                        "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 30, "description": "How long the other agent has to answer."},
                        "wait": {"type": "boolean", "default": true, "description": "Wait for the outcome (true) or return the pending record at once (false)."},
                    }),
                    &["to", "message", "schema"],
                ),
            ),
            false,
            false,
        ),
        annotated(
            tool(
                CHECK_ELICITATIONS,
                "Check my questions",
                "List the elicitations addressed to me that are still pending (my inbox), oldest first: {\"items\": [records], \"next_cursor\": ...}. Answer each with lighthouse_respond_to_elicitation.",
                object(json!({}), &[]),
            ),
            true,
            true,
        ),
        annotated(
            tool(
                RESPOND,
                "Answer a question",
                "Answer an elicitation addressed to me: action \"accept\" with `content` matching its requested_schema, or action \"decline\" with an optional `reason`. Returns the resolved record. A content that does not match the schema is an error (schema_mismatch) listing each violation, and the elicitation stays pending.",
                object(
                    json!({
                        "elicitation_id": elicitation_id(),
                        "action": {"type": "string", "enum": ["accept", "decline"], "description": "accept (with content) or decline."},
                        "content": {"description": "The answer (accept only): an object matching the elicitation's requested_schema."},
                        "reason": {"type": "string", "description": "Why (decline only)."},
                    }),
                    &["elicitation_id", "action"],
                ),
            ),
            false,
            false,
        ),
        annotated(
            tool(
                GET_ELICITATION,
                "Read a question",
                "Read one elicitation I asked or was asked. With wait_seconds > 0 the call returns as soon as it is resolved, or after wait_seconds with it still pending.",
                object(
                    json!({
                        "elicitation_id": elicitation_id(),
                        "wait_seconds": seconds(60, 0, "Wait up to this long for the outcome (0 to 60)."),
                    }),
                    &["elicitation_id"],
                ),
            ),
            true,
            true,
        ),
        annotated(
            tool(
                CANCEL,
                "Withdraw a question",
                "Cancel a pending elicitation that I asked. Returns the cancelled record.",
                object(
                    json!({
                        "elicitation_id": elicitation_id(),
                        "reason": {"type": "string", "description": "Why (kept on the record)."},
                    }),
                    &["elicitation_id"],
                ),
            ),
            false,
            false,
        ),
        annotated(
            tool(
                SEND_MESSAGE,
                "Send a message",
                "Send a message (any JSON body, at most 64 KiB) to another agent's mailbox. Returns {\"id\", \"seq\"}.",
                object(
                    json!({
                        "to": agent("The recipient (its agent id)."),
                        "body": {"description": "Any JSON value."},
                    }),
                    &["to", "body"],
                ),
            ),
            false,
            false,
        ),
        annotated(
            tool(
                WAIT_FOR_MESSAGES,
                "Read my messages",
                "Read my messages with seq greater than `after`, oldest first, waiting up to wait_seconds when there are none: {\"messages\": [...], \"next_after\": SEQ}. Pass next_after as `after` next time.",
                object(
                    json!({
                        "after": {"type": "integer", "minimum": 0, "default": 0, "description": "Only messages with a greater seq."},
                        "wait_seconds": seconds(60, 0, "Wait up to this long when there are none (0 to 60)."),
                    }),
                    &[],
                ),
            ),
            true,
            true,
        ),
        annotated(
            tool(
                STORE_EVENT,
                "Record an event",
                "Append an event to a stream of the durable, tamper-evident log. Returns {\"seq\", \"id\", \"version\"}. Streams starting with $ and types elicitation.*, message.*, flag.*, agent.*, security.*, ops.* are written by the bridge only.",
                object(
                    json!({
                        "stream": {"type": "string", "pattern": STREAM, "description": "The stream, e.g. notes-1."},
                        "type": {"type": "string", "pattern": EVENT_TYPE, "description": "The event type, e.g. note.added."},
                        "data": {"description": "The payload: any JSON."},
                        "metadata": {"type": "object", "description": "Optional metadata object."},
                        "expected_version": {
                            "description": "Append only if the stream's last version is this number, or the stream does not exist (\"no_stream\"); \"any\" (default) always appends.",
                            "oneOf": [
                                {"type": "integer", "minimum": 0},
                                {"type": "string", "enum": ["no_stream", "any"]},
                            ],
                        },
                    }),
                    &["stream", "type", "data"],
                ),
            ),
            false,
            false,
        ),
        annotated(
            tool(
                QUERY_EVENTS,
                "Query events",
                "Read events of the log I may see, with the filters of GET /v1/events: {\"events\": [...], \"next\": SEQ or null}. Pass `next` as `after` (ascending) or `before` (descending) for the next page.",
                object(
                    json!({
                        "after": {"type": "integer", "minimum": 0, "description": "Only seq > after."},
                        "before": {"type": "integer", "minimum": 0, "description": "Only seq < before."},
                        "stream": {"type": "string", "description": "Exactly this stream."},
                        "type": {"type": "string", "description": "Exactly this event type."},
                        "agent": {"type": "string", "description": "Exactly this agent."},
                        "correlation_id": {"type": "string", "description": "Exactly this correlation id."},
                        "since": {"type": "string", "format": "date-time", "description": "Only events at or after this time (RFC 3339)."},
                        "until": {"type": "string", "format": "date-time", "description": "Only events before this time (RFC 3339)."},
                        "order": {"type": "string", "enum": ["asc", "desc"], "default": "asc"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    }),
                    &[],
                ),
            ),
            true,
            true,
        ),
        annotated(
            tool(
                HEALTH,
                "Bridge health",
                "Readiness of the bridge: {\"status\": \"ok\" or \"unavailable\", \"components\": {...}}, each component \"ok\" or a short reason.",
                object(json!({}), &[]),
            ),
            true,
            true,
        ),
    ]
}

/// The tool called `name`.
pub fn tool_named(name: &str) -> Option<Tool> {
    tools().into_iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The argument names of PROTOCOL.md section 12, exactly.
    #[test]
    fn arguments_are_those_of_the_protocol() {
        let expected: [(&str, &[&str]); 10] = [
            (
                ELICIT,
                &["to", "message", "schema", "timeout_seconds", "wait"],
            ),
            (CHECK_ELICITATIONS, &[]),
            (RESPOND, &["elicitation_id", "action", "content", "reason"]),
            (GET_ELICITATION, &["elicitation_id", "wait_seconds"]),
            (CANCEL, &["elicitation_id", "reason"]),
            (SEND_MESSAGE, &["to", "body"]),
            (WAIT_FOR_MESSAGES, &["after", "wait_seconds"]),
            (
                STORE_EVENT,
                &["stream", "type", "data", "metadata", "expected_version"],
            ),
            (
                QUERY_EVENTS,
                &[
                    "after",
                    "before",
                    "stream",
                    "type",
                    "agent",
                    "correlation_id",
                    "since",
                    "until",
                    "order",
                    "limit",
                ],
            ),
            (HEALTH, &[]),
        ];
        let tools = tools();
        assert_eq!(tools.len(), expected.len());
        for (t, (name, args)) in tools.iter().zip(expected) {
            assert_eq!(t.name, name);
            assert!(
                t.description.as_ref().is_some_and(|d| d.len() > 40),
                "{name}"
            );
            let props = t.input_schema["properties"]
                .as_object()
                .expect("properties");
            let mut got: Vec<&str> = props.keys().map(String::as_str).collect();
            let mut want = args.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{name}");
            assert_eq!(
                t.input_schema["additionalProperties"],
                json!(false),
                "{name}"
            );
        }
        assert_eq!(
            tools.iter().map(|t| t.name.as_ref()).collect::<Vec<_>>(),
            TOOL_NAMES
        );
    }
}
