//! Tool arguments: parsed strictly (unknown arguments refused, as unknown body
//! fields are in the REST API), every complaint a `400 invalid_request` naming
//! the argument by JSON pointer.

use lighthouse_core::api::{
    ErrorCode, EventsQuery, ExpectedVersion, FieldError, Problem, RespondRequest,
};
use lighthouse_elicitation::{RespondAction, SendMessage};
use rmcp::model::JsonObject;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `lighthouse_elicit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ElicitArgs {
    pub(crate) to: String,
    pub(crate) message: String,
    pub(crate) schema: Value,
    pub(crate) timeout_seconds: Option<u64>,
    pub(crate) wait: Option<bool>,
}

/// Tools without arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoArgs {}

/// `lighthouse_respond_to_elicitation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RespondArgs {
    pub(crate) elicitation_id: String,
    pub(crate) action: RespondAction,
    pub(crate) content: Option<Value>,
    pub(crate) reason: Option<String>,
}

impl RespondArgs {
    pub(crate) fn request(self) -> (String, RespondRequest) {
        (
            self.elicitation_id,
            RespondRequest {
                action: self.action,
                content: self.content,
                reason: self.reason,
            },
        )
    }
}

/// `lighthouse_get_elicitation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetArgs {
    pub(crate) elicitation_id: String,
    pub(crate) wait_seconds: Option<u64>,
}

/// `lighthouse_cancel_elicitation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelArgs {
    pub(crate) elicitation_id: String,
    pub(crate) reason: Option<String>,
}

/// `lighthouse_send_message`: exactly the REST body.
pub(crate) type SendArgs = SendMessage;

/// `lighthouse_wait_for_messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitMessagesArgs {
    pub(crate) after: Option<u64>,
    pub(crate) wait_seconds: Option<u64>,
}

/// `lighthouse_store_event`: the REST body without a caller-chosen id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreEventArgs {
    pub(crate) stream: String,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) data: Value,
    pub(crate) metadata: Option<Value>,
    pub(crate) expected_version: Option<ExpectedVersion>,
}

/// `lighthouse_query_events`: exactly the REST query parameters.
pub(crate) type QueryArgs = EventsQuery;

/// Longest `wait_seconds` (PROTOCOL.md 12: 0 to 60).
pub(crate) const MAX_WAIT_SECONDS: u64 = 60;
/// `timeout_seconds` bounds and default (PROTOCOL.md 12).
pub(crate) const MIN_TIMEOUT_SECONDS: u64 = 1;
/// Largest `timeout_seconds`.
pub(crate) const MAX_TIMEOUT_SECONDS: u64 = 3600;
/// `timeout_seconds` when not given.
pub(crate) const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// Parses `arguments` (absent means `{}`) into `T`. The top-level arguments
/// named in `integers` take an integer-valued float (`30.0`) as that integer:
/// JSON Schema's `integer` (which the input schemas declare) accepts it, and
/// some clients send every number as a float.
pub(crate) fn parse<T: DeserializeOwned>(
    arguments: Option<JsonObject>,
    integers: &[&str],
) -> Result<T, Problem> {
    let mut arguments = arguments.unwrap_or_default();
    for name in integers {
        if let Some(v) = arguments.get_mut(*name) {
            integral(v);
        }
    }
    let value = Value::Object(arguments);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        // serde reports a missing field at the object that lacks it; the
        // pointer should name the argument itself.
        let path = match missing_field(&message) {
            Some(field) => format!("{}/{}", pointer(&e.path().to_string()), escape(field)),
            None => pointer(&e.path().to_string()),
        };
        Problem::new(
            ErrorCode::InvalidRequest,
            format!("invalid arguments: {message}"),
        )
        .with_errors(vec![FieldError { path, message }])
    })
}

/// `wait_seconds` checked against 0 to 60, in milliseconds.
pub(crate) fn wait_ms(wait_seconds: Option<u64>) -> Result<u64, Problem> {
    match wait_seconds.unwrap_or(0) {
        s if s <= MAX_WAIT_SECONDS => Ok(s * 1000),
        _ => Err(Problem::invalid("/wait_seconds", "must be 0 to 60")),
    }
}

/// `timeout_seconds` checked against 1 to 3600 (default 30).
pub(crate) fn timeout_seconds(t: Option<u64>) -> Result<u64, Problem> {
    match t.unwrap_or(DEFAULT_TIMEOUT_SECONDS) {
        s if (MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&s) => Ok(s),
        _ => Err(Problem::invalid("/timeout_seconds", "must be 1 to 3600")),
    }
}

/// Replaces a float that is exactly a non-negative integer within `u64` by
/// that integer; anything else is left for the parser to refuse.
fn integral(v: &mut Value) {
    // 2^64, the first float beyond u64.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0;
    if let Value::Number(n) = v
        && n.is_f64()
        && let Some(f) = n.as_f64()
        && f.fract() == 0.0
        && (0.0..LIMIT).contains(&f)
    {
        // Exact: `f` is an integer below 2^64.
        *v = Value::from(f as u64);
    }
}

/// The field name of serde's "missing field `name`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

/// RFC 6901 escape of one pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// `a.b[0].c` (serde_path_to_error) to `/a/b/0/c`.
fn pointer(path: &str) -> String {
    if path == "." || path.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for part in path.split(['.', '[']) {
        let part = part.trim_end_matches(']');
        if part.is_empty() {
            continue;
        }
        out.push('/');
        out.push_str(&escape(part));
    }
    out
}

/// Renames the REST field names in a problem's pointers to the tool's
/// argument names (`/requested_schema/...` to `/schema/...`).
pub(crate) fn rename_fields(mut p: Problem, renames: &[(&str, &str)]) -> Problem {
    for e in &mut p.errors {
        for (from, to) in renames {
            if e.path == *from || e.path.starts_with(&format!("{from}/")) {
                e.path = format!("{to}{}", &e.path[from.len()..]);
                break;
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Option<JsonObject> {
        match v {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn unknown_and_mistyped_arguments_name_the_argument() {
        let e =
            parse::<GetArgs>(obj(json!({"elicitation_id": "el_1", "from": "x"})), &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.detail.contains("unknown field `from`"), "{}", e.detail);
        let e = parse::<GetArgs>(obj(json!({"elicitation_id": 3})), &[]).unwrap_err();
        assert_eq!(e.errors[0].path, "/elicitation_id");
        let e = parse::<ElicitArgs>(None, &[]).unwrap_err();
        assert!(e.detail.contains("missing field"), "{}", e.detail);
        assert!(parse::<NoArgs>(None, &[]).is_ok());
        assert!(parse::<NoArgs>(obj(json!({"x": 1})), &[]).is_err());
    }

    #[test]
    fn store_event_takes_every_expected_version_form() {
        for (v, want) in [
            (json!(3), ExpectedVersion::Exact(3)),
            (json!("no_stream"), ExpectedVersion::NoStream),
            (json!("any"), ExpectedVersion::Any),
        ] {
            let a: StoreEventArgs = parse(
                obj(json!({"stream": "s-1", "type": "x.y", "data": {}, "expected_version": v})),
                &[],
            )
            .unwrap();
            assert_eq!(a.expected_version, Some(want));
        }
        assert!(
            parse::<StoreEventArgs>(
                obj(json!({"stream": "s", "type": "t", "data": 1, "id": "x"})),
                &[]
            )
            .is_err()
        );
    }

    /// A missing argument is named by its own pointer, not `""`.
    #[test]
    fn a_missing_argument_is_named() {
        let e = parse::<ElicitArgs>(obj(json!({"to": "bob", "schema": {}})), &[]).unwrap_err();
        assert_eq!(e.errors[0].path, "/message");
        assert_eq!(e.errors[0].message, "missing field `message`");
        let e = parse::<GetArgs>(None, &[]).unwrap_err();
        assert_eq!(e.errors[0].path, "/elicitation_id");
    }

    /// `30.0` is the integer 30 for an integer argument; `30.5`, `-1.0` and
    /// 2^64 are still refused, and other arguments are left as they are.
    #[test]
    fn integral_floats_are_integers() {
        let a: ElicitArgs = parse(
            obj(
                json!({"to": "bob", "message": "?", "schema": {"x": 1.0}, "timeout_seconds": 30.0}),
            ),
            &["timeout_seconds"],
        )
        .unwrap();
        assert_eq!(a.timeout_seconds, Some(30));
        assert_eq!(a.schema, json!({"x": 1.0}));
        let a: WaitMessagesArgs = parse(
            obj(json!({"after": 1e15, "wait_seconds": 0.0})),
            &["after", "wait_seconds"],
        )
        .unwrap();
        assert_eq!(
            (a.after, a.wait_seconds),
            (Some(1_000_000_000_000_000), Some(0))
        );
        for bad in [
            json!(30.5),
            json!(-1.0),
            json!(18_446_744_073_709_551_616.0_f64),
        ] {
            let e = parse::<GetArgs>(
                obj(json!({"elicitation_id": "el_1", "wait_seconds": bad})),
                &["wait_seconds"],
            )
            .unwrap_err();
            assert_eq!(e.errors[0].path, "/wait_seconds", "{bad}");
        }
        // Without the name in the list, a float is refused as before.
        assert!(
            parse::<GetArgs>(
                obj(json!({"elicitation_id": "e", "wait_seconds": 1.0})),
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn bounds_of_waits_and_timeouts() {
        assert_eq!(wait_ms(None).unwrap(), 0);
        assert_eq!(wait_ms(Some(60)).unwrap(), 60_000);
        assert_eq!(
            wait_ms(Some(61)).unwrap_err().errors[0].path,
            "/wait_seconds"
        );
        assert_eq!(timeout_seconds(None).unwrap(), 30);
        assert!(timeout_seconds(Some(0)).is_err());
        assert_eq!(timeout_seconds(Some(3600)).unwrap(), 3600);
        assert!(timeout_seconds(Some(3601)).is_err());
    }

    #[test]
    fn rest_field_names_become_argument_names() {
        let p = Problem::invalid("/requested_schema/properties/x", "bad");
        let p = rename_fields(p, &[("/requested_schema", "/schema")]);
        assert_eq!(p.errors[0].path, "/schema/properties/x");
        let p = rename_fields(
            Problem::invalid("/requested_schemas", "x"),
            &[("/requested_schema", "/schema")],
        );
        assert_eq!(p.errors[0].path, "/requested_schemas");
    }
}
