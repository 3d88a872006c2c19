//! The wire types of PROTOCOL.md, shared by the server (`lighthouse-http`), the
//! client (`lighthouse-client`) and the MCP tools, so the format is defined once.
//!
//! Elicitation, message, flag and stats records are defined by the crates that own
//! them and re-exported here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use lighthouse_elicitation::{
    Action, CancelRequest, CreateRequest, DrainReport, DrainRequest, DrainThen, Elicitation,
    Message, RespondRequest, Response, SchemaProfile, SentMessage, Status,
};
pub use lighthouse_event_store::{Event, Timestamp};
pub use lighthouse_flags::{Flag, FlagChange, FlagSpec, RolloutPercent, Variant};
pub use lighthouse_security::{Credential, Role};

/// The codes of PROTOCOL.md section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: missing or malformed credentials, or a bad token.
    Unauthenticated,
    /// 401: timestamp outside the window.
    StaleRequest,
    /// 401: signature does not match.
    BadSignature,
    /// 401: nonce already used.
    ReplayedRequest,
    /// 403: the role does not permit this.
    Forbidden,
    /// 404.
    NotFound,
    /// 400: with `errors` naming fields by JSON pointer.
    InvalidRequest,
    /// 400: the requested schema is not allowed.
    InvalidSchema,
    /// 422: the answer does not match the schema.
    SchemaMismatch,
    /// 409: terminal already.
    AlreadyResolved,
    /// 409: deadline passed.
    Expired,
    /// 409: optimistic concurrency failed.
    VersionConflict,
    /// 403: a feature flag is off for the caller.
    FeatureDisabled,
    /// 413: body over 1 MiB.
    PayloadTooLarge,
    /// 429.
    RateLimited,
    /// 503.
    Unavailable,
    /// 500: nothing internal leaked.
    Internal,
}

impl ErrorCode {
    /// The HTTP status of this code (PROTOCOL.md section 3).
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            Unauthenticated | StaleRequest | BadSignature | ReplayedRequest => 401,
            Forbidden | FeatureDisabled => 403,
            NotFound => 404,
            InvalidRequest | InvalidSchema => 400,
            SchemaMismatch => 422,
            AlreadyResolved | Expired | VersionConflict => 409,
            PayloadTooLarge => 413,
            RateLimited => 429,
            Unavailable => 503,
            Internal => 500,
        }
    }

    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Unauthenticated => "unauthenticated",
            StaleRequest => "stale_request",
            BadSignature => "bad_signature",
            ReplayedRequest => "replayed_request",
            Forbidden => "forbidden",
            NotFound => "not_found",
            InvalidRequest => "invalid_request",
            InvalidSchema => "invalid_schema",
            SchemaMismatch => "schema_mismatch",
            AlreadyResolved => "already_resolved",
            Expired => "expired",
            VersionConflict => "version_conflict",
            FeatureDisabled => "feature_disabled",
            PayloadTooLarge => "payload_too_large",
            RateLimited => "rate_limited",
            Unavailable => "unavailable",
            Internal => "internal",
        }
    }

    /// Parses a code.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }

    fn title(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Unauthenticated => "Authentication required",
            StaleRequest => "Request timestamp outside the allowed window",
            BadSignature => "Signature does not match",
            ReplayedRequest => "Nonce already used",
            Forbidden => "Not permitted for this caller",
            NotFound => "Not found",
            InvalidRequest => "Invalid request",
            InvalidSchema => "Requested schema is not allowed",
            SchemaMismatch => "Response does not match the requested schema",
            AlreadyResolved => "Elicitation already resolved",
            Expired => "Elicitation expired",
            VersionConflict => "Version conflict",
            FeatureDisabled => "Feature disabled",
            PayloadTooLarge => "Payload too large",
            RateLimited => "Rate limited",
            Unavailable => "Service unavailable",
            Internal => "Internal error",
        }
    }
}

/// One field-level problem: a JSON pointer and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer (`/port`, `/requested_schema/properties/x/pattern`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// An `application/problem+json` body (RFC 9457, PROTOCOL.md section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:lighthouse:error:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the code.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// The code.
    pub code: ErrorCode,
    /// What happened and what to do next.
    pub detail: String,
    /// Field-level problems (always present, possibly empty).
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// For `version_conflict`: the stream's actual version (`null` on the wire,
    /// `Some(None)` here, when it does not exist); `None` (absent) for every
    /// other problem.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub actual_version: Option<Option<u64>>,
    /// For `rate_limited`: seconds until the next permitted request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

/// A field that may be absent (`None`, through `#[serde(default)]`), present
/// as `null` (`Some(None)`) or present with a value. Plain `Option<Option<T>>`
/// reads `null` as absent, so a remote client would see `None` where the
/// bridge meant "this stream does not exist".
fn present_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `Retry-After` (seconds) of a caller refused at a limit on what it holds
/// open itself (its open streams): a slot frees when one of its own streams
/// closes, which no clock predicts, and a few seconds keep a retry loop from
/// hammering the bridge meanwhile.
pub const AGENT_LIMIT_RETRY_AFTER_S: u64 = 5;

impl Problem {
    /// A problem with `code` and `detail`.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: format!("urn:lighthouse:error:{}", code.as_str()),
            title: code.title().to_owned(),
            status: code.status(),
            code,
            detail: detail.into(),
            errors: Vec::new(),
            actual_version: None,
            retry_after_s: None,
        }
    }

    /// Adds field errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// `400 invalid_request` naming one field.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Problem::new(ErrorCode::InvalidRequest, message.clone()).with_errors(vec![FieldError {
            path: path.into(),
            message,
        }])
    }

    /// `429 rate_limited` with `Retry-After: 5` ([`AGENT_LIMIT_RETRY_AFTER_S`])
    /// for a caller at a per-agent limit on what it holds open (its own
    /// streams): the caller's doing, so neither a `503` nor a server error in
    /// `/v1/ops/stats`, which deploy gates read. `detail` names the limit.
    /// Bridge-wide capacity stays `503 unavailable`.
    pub fn agent_limit(detail: impl Into<String>) -> Self {
        let mut p = Problem::new(ErrorCode::RateLimited, detail);
        p.retry_after_s = Some(AGENT_LIMIT_RETRY_AFTER_S);
        p
    }

    /// `404 not_found`.
    pub fn not_found(what: &str) -> Self {
        Problem::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// `500 internal`, with nothing of the cause (which is logged instead).
    pub fn internal() -> Self {
        Problem::new(
            ErrorCode::Internal,
            "the bridge failed to handle this request; it was logged",
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.as_str(),
            self.status,
            self.detail
        )?;
        for e in &self.errors {
            write!(f, "; {} {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// `GET /v1/elicitations` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElicitationList {
    /// Records, oldest first (by the sequence of their `requested` event).
    pub items: Vec<Elicitation>,
    /// Cursor for the next page (`None` on the last page).
    pub next_cursor: Option<String>,
}

/// `GET /v1/messages` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesPage {
    /// Messages with `seq > after`, oldest first.
    pub messages: Vec<Message>,
    /// The last `seq` returned, else the `after` given.
    pub next_after: u64,
}

/// `expected_version` of `POST /v1/events`: a number, `"no_stream"` or `"any"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectedVersion {
    /// No condition (default).
    #[default]
    Any,
    /// The stream must not exist.
    NoStream,
    /// The stream's last version.
    Exact(u64),
}

impl Serialize for ExpectedVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExpectedVersion::Any => s.serialize_str("any"),
            ExpectedVersion::NoStream => s.serialize_str("no_stream"),
            ExpectedVersion::Exact(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectedVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "any" => Ok(ExpectedVersion::Any),
            Value::String(s) if s == "no_stream" => Ok(ExpectedVersion::NoStream),
            Value::Number(n) => n.as_u64().map(ExpectedVersion::Exact).ok_or_else(|| {
                serde::de::Error::custom("expected_version must be a non-negative integer")
            }),
            _ => Err(serde::de::Error::custom(
                "expected_version must be a number, \"no_stream\" or \"any\"",
            )),
        }
    }
}

impl ExpectedVersion {
    /// This condition as `PUT /v1/flags/{key}` means it, in the form the flag
    /// store takes (`Option<u64>`, `Some(0)`: the flag must not exist). A flag's
    /// version counts its changes from 1, so `"no_stream"` ("must not exist
    /// yet") is version 0, `"any"` is no condition, and a number N is that
    /// version (0 too meaning "must not exist").
    pub fn for_flag(self) -> Option<u64> {
        match self {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(n) => Some(n),
        }
    }
}

/// Reads `expected_version` of a flag write in every form of PROTOCOL.md 7
/// (a number, `"no_stream"`, `"any"`, or `null` for none).
fn flag_expected_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<ExpectedVersion>::deserialize(d)?.and_then(ExpectedVersion::for_flag))
}

/// `POST /v1/events` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendEventRequest {
    /// Target stream.
    pub stream: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Payload (any JSON).
    pub data: Value,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Optimistic concurrency condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<ExpectedVersion>,
    /// Caller-chosen id: a repeat returns the original result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `POST /v1/events` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEventResponse {
    /// Global position.
    pub seq: u64,
    /// Event id.
    pub id: String,
    /// Stream version.
    pub version: u64,
}

/// Order of `GET /v1/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOrder {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// `GET /v1/events` parameters (all optional).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only `seq > after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Only `seq < before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Exactly this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Exactly this type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Exactly this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Exactly this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Only `time >= since` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Only `time < until` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// `asc` (default) or `desc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<EventOrder>,
    /// 1 to 1000, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `GET /v1/events` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsPage {
    /// The events.
    pub events: Vec<Event>,
    /// When more may follow: pass as `after` (asc) or `before` (desc).
    pub next: Option<u64>,
}

/// `PUT /v1/flags/{key}` body: the flag as `GET` returns it (read-only fields
/// ignored), plus `reason` and an optional `expected_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagPut {
    /// The flag's writable fields.
    #[serde(flatten)]
    pub spec: FlagSpec,
    /// Why (recorded in the history).
    #[serde(default)]
    pub reason: Option<String>,
    /// Optimistic concurrency on the flag's version (`Some(0)`: the flag must
    /// not exist). On the wire also `"no_stream"` (as 0) and `"any"` (as none),
    /// the forms of `POST /v1/events` (see [`ExpectedVersion::for_flag`]).
    #[serde(
        default,
        deserialize_with = "flag_expected_version",
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_version: Option<u64>,
}

/// What a flag write (`PUT`, kill, unkill) did: the flag after it, whether it
/// changed anything, and the position of the event it appended.
///
/// Over HTTP the body stays the flag (PROTOCOL.md 8); `changed` and `seq` are
/// the headers [`FLAG_CHANGED_HEADER`] and [`FLAG_SEQ_HEADER`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagOutcome {
    /// The flag after the write.
    pub flag: Flag,
    /// `false` when the flag already was as asked (a `PUT` of its settings, a
    /// kill of a killed flag, an unkill of a live one): nothing was appended
    /// and the version did not move. A retried step can tell "I did it" from
    /// "it was already so".
    pub changed: bool,
    /// `seq` of the appended change event (in stream `$flags`), when
    /// `changed`: what a report cites.
    pub seq: Option<u64>,
}

/// Response header of a flag write: `true` or `false`, [`FlagOutcome::changed`].
pub const FLAG_CHANGED_HEADER: &str = "x-lighthouse-changed";

/// Response header of a flag write that changed the flag: the `seq` of its
/// event, [`FlagOutcome::seq`]; absent when nothing changed.
pub const FLAG_SEQ_HEADER: &str = "x-lighthouse-seq";

/// `POST /v1/flags/{key}/kill` and `/unkill` body: `{reason, expected_version?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagKill {
    /// Why (recorded in the history).
    #[serde(default)]
    pub reason: Option<String>,
    /// Optimistic concurrency on the flag's version, as for [`FlagPut`] (an
    /// extension of PROTOCOL.md 8, docs/FLAGS.md): the kill or unkill applies
    /// only if the flag is at this version, else `409 version_conflict`. An
    /// unkill decided on a stale read cannot lift a newer kill.
    #[serde(
        default,
        deserialize_with = "flag_expected_version",
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_version: Option<u64>,
}

impl FlagKill {
    /// A kill or unkill for `reason`, without a version condition.
    pub fn new(reason: impl Into<String>) -> Self {
        FlagKill {
            reason: Some(reason.into()),
            expected_version: None,
        }
    }

    /// Only if the flag is at `version`.
    pub fn expecting(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// `GET /v1/flags/{key}/evaluate?agent=a` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagEvaluation {
    /// On or off.
    pub enabled: bool,
    /// The variant, when the flag has variants and is on.
    pub variant: Option<String>,
    /// `not_found`, `killed`, `prerequisite`, `targeting`, `disabled`, `split`.
    pub reason: String,
    /// The agent's bucket (0 to 9999).
    pub bucket: u32,
}

/// `GET /v1/flags` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagList {
    /// Every flag.
    pub flags: Vec<Flag>,
}

/// `GET /v1/flags` result as the server sends it: the JSON of [`FlagList`],
/// written straight from a snapshot of the flags, which shares each flag
/// instead of copying it (the flags may total
/// [`max_total_flag_bytes`](lighthouse_flags::Limits::max_total_flag_bytes)).
#[derive(Debug, Clone)]
pub struct FlagListView(pub std::sync::Arc<lighthouse_flags::FlagSet>);

impl Serialize for FlagListView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Flags<'a>(&'a lighthouse_flags::FlagSet);
        impl Serialize for Flags<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.flags().map(|f| &**f))
            }
        }
        let mut list = s.serialize_struct("FlagList", 1)?;
        list.serialize_field("flags", &Flags(&self.0))?;
        list.end()
    }
}

/// `GET /v1/flags/{key}/history` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagHistory {
    /// The changes, oldest first: every change, up to the page's limit (the
    /// newest ones when there are more).
    pub changes: Vec<FlagChange>,
    /// When older changes were left out: pass as `before` for the page before.
    #[serde(default)]
    pub next: Option<u64>,
}

/// A latency summary in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// `GET /v1/ops/stats` elicitation figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElicitationStats {
    /// Created in the window.
    pub created: u64,
    /// Accepted in the window.
    pub accepted: u64,
    /// Declined in the window.
    pub declined: u64,
    /// Cancelled in the window.
    pub cancelled: u64,
    /// Expired in the window.
    pub expired: u64,
    /// Requested-durable to pushed-to-target latency.
    pub delivery_ms: Latency,
    /// Create to accept or decline.
    pub answer_ms: Latency,
}

/// `GET /v1/ops/stats` HTTP figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpStats {
    /// API requests finished in the window.
    pub requests: u64,
    /// Of which 5xx.
    pub errors_5xx: u64,
    /// `errors_5xx / requests` (`null` with no requests).
    pub error_ratio: Option<f64>,
    /// Time spent on API requests (streams and long-poll waits excluded).
    pub latency_ms: Latency,
}

/// `GET /v1/ops/stats` store figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Last committed seq.
    pub head_seq: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Append latency (hand-off to acknowledgement).
    pub append_ms: Latency,
}

/// `GET /v1/ops/stats` result: measured over the last `window_s` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpsStats {
    /// The window.
    pub window_s: u64,
    /// Seconds of the window the bridge has measured: less than `window_s`
    /// while it has been up for less than that, so that a report's figures are
    /// not read as covering time before a restart. Absent from older bridges.
    #[serde(default)]
    pub covered_s: u64,
    /// Elicitations.
    pub elicitations: ElicitationStats,
    /// HTTP.
    pub http: HttpStats,
    /// Pending now.
    pub active_elicitations: u64,
    /// Open agent and event streams now.
    pub connected_streams: u64,
    /// Store.
    pub store: StoreStats,
}

/// `POST /v1/ops/verify` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// Whether the whole chain is intact.
    pub ok: bool,
    /// Records checked.
    pub checked: u64,
    /// The head the walk covered.
    pub head_seq: u64,
    /// The first bad position.
    pub first_bad_seq: Option<u64>,
    /// Time taken.
    pub elapsed_ms: u64,
}

/// `POST /v1/sessions` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Lifetime in seconds (default 3600, max 86400).
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// `POST /v1/sessions` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The bearer token.
    pub token: String,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// `POST /v1/agents` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    /// Agent id.
    pub id: String,
    /// Role.
    pub role: Role,
}

/// One agent of `GET /v1/agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent id.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Current key id.
    pub key_id: u64,
    /// Whether revoked.
    pub revoked: bool,
}

/// `GET /v1/agents` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    /// Every agent.
    pub agents: Vec<AgentInfo>,
}

/// `GET /v1/agents/me` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    /// Agent id.
    pub agent: String,
    /// Role.
    pub role: Role,
    /// Key id of this request's credential.
    pub key_id: u64,
}

/// `GET /health/ready` body (also `lighthouse_health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Each component: `ok` or a short reason.
    pub components: BTreeMap<String, String>,
}

impl Health {
    /// Whether every component is ok.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Kinds of agent stream events (PROTOCOL.md section 5).
pub const STREAM_EVENT_KINDS: [&str; 3] = [
    "elicitation.requested",
    "elicitation.resolved",
    "message.received",
];

#[cfg(test)]
mod flag_put_tests {
    use super::*;
    use serde_json::json;

    fn expected(v: Option<Value>) -> Result<Option<u64>, serde_json::Error> {
        let mut body = json!({"enabled": true, "rollout_percent": 1.0, "reason": "r"});
        if let Some(v) = v {
            body["expected_version"] = v;
        }
        serde_json::from_value::<FlagPut>(body).map(|p| p.expected_version)
    }

    #[test]
    fn a_flag_put_reads_every_form_of_expected_version() {
        assert_eq!(expected(Some(json!(3))).unwrap(), Some(3));
        assert_eq!(expected(Some(json!(0))).unwrap(), Some(0));
        assert_eq!(expected(Some(json!("no_stream"))).unwrap(), Some(0));
        assert_eq!(expected(Some(json!("any"))).unwrap(), None);
        assert_eq!(expected(Some(Value::Null)).unwrap(), None);
        assert_eq!(expected(None).unwrap(), None);
        for bad in [json!(-1), json!("3"), json!("no-stream"), json!(1.5)] {
            assert!(expected(Some(bad.clone())).is_err(), "{bad}");
        }
        // What a client sends (a number, or nothing) reads back the same.
        let put = FlagPut {
            spec: FlagSpec::new(true, 1.0),
            reason: Some("r".into()),
            expected_version: Some(4),
        };
        let back: FlagPut = serde_json::from_value(serde_json::to_value(&put).unwrap()).unwrap();
        assert_eq!(back, put);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actual_version_keeps_null_apart_from_absent() {
        let mut p = Problem::new(ErrorCode::VersionConflict, "conflict");
        let decode = |v: Value| serde_json::from_value::<Problem>(v).unwrap().actual_version;
        let mut wire = serde_json::to_value(&p).unwrap();
        assert!(wire.get("actual_version").is_none(), "absent stays absent");
        assert_eq!(decode(wire.clone()), None);
        wire["actual_version"] = Value::Null;
        assert_eq!(decode(wire.clone()), Some(None), "null: no such stream");
        wire["actual_version"] = Value::from(3);
        assert_eq!(decode(wire), Some(Some(3)));
        // And back: `Some(None)` is written as null, so it round-trips.
        p.actual_version = Some(None);
        let wire = serde_json::to_value(&p).unwrap();
        assert_eq!(wire.get("actual_version"), Some(&Value::Null));
        assert_eq!(serde_json::from_value::<Problem>(wire).unwrap(), p);
    }
}
