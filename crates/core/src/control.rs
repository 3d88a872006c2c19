//! [`Control`]: the operations surface. Implemented in process by [`InProcess`]
//! and over HTTP by `lighthouse_client::Client`, so the deploy, rollback and
//! baseline tools run the same code against an in-process bridge in tests and a
//! remote one in production.

use std::future::Future;

use lighthouse_elicitation::{DrainReport, DrainRequest};
use lighthouse_security::Caller;
use serde_json::Value;

use crate::api::{
    AppendEventRequest, AppendEventResponse, EventsPage, EventsQuery, ExpectedVersion, Flag,
    FlagEvaluation, FlagKill, FlagList, FlagOutcome, FlagPut, Health, OpsStats, Problem,
    VerifyResponse,
};
use crate::bridge::Bridge;
use crate::events::OPS_STREAM;

/// What the operations tools need from a bridge. Every method acts as one
/// operator identity (the credential of the implementation).
pub trait Control: Send + Sync {
    /// Readiness (`GET /health/ready`).
    fn health(&self) -> impl Future<Output = Result<Health, Problem>> + Send;
    /// Every flag.
    fn list_flags(&self) -> impl Future<Output = Result<FlagList, Problem>> + Send;
    /// One flag.
    fn get_flag(&self, key: &str) -> impl Future<Output = Result<Flag, Problem>> + Send;
    /// Creates or replaces a flag. The outcome says whether it changed
    /// anything and cites the change's event (as do kill and unkill).
    fn put_flag(
        &self,
        key: &str,
        put: FlagPut,
    ) -> impl Future<Output = Result<FlagOutcome, Problem>> + Send;
    /// Kills a flag (off for everyone). With `expected_version`, only if the
    /// flag is at that version (else `409 version_conflict` with
    /// `actual_version`); a kill of a killed flag changes nothing.
    fn kill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<FlagOutcome, Problem>> + Send;
    /// Lifts a kill; `expected_version` as for
    /// [`kill_flag`](Control::kill_flag), so that an unkill decided on a
    /// stale read cannot lift a kill made since.
    fn unkill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<FlagOutcome, Problem>> + Send;
    /// Evaluates a flag for an agent.
    fn evaluate_flag(
        &self,
        key: &str,
        agent: &str,
    ) -> impl Future<Output = Result<FlagEvaluation, Problem>> + Send;
    /// Measured figures over the last `window_s` seconds.
    fn stats(&self, window_s: u64) -> impl Future<Output = Result<OpsStats, Problem>> + Send;
    /// Waits for pending elicitations, then cancels the rest if asked.
    fn drain(&self, req: DrainRequest)
    -> impl Future<Output = Result<DrainReport, Problem>> + Send;
    /// Walks the integrity chain.
    fn verify(&self) -> impl Future<Output = Result<VerifyResponse, Problem>> + Send;
    /// Appends a record of what an operations tool did to `$ops`, with the
    /// record's id, metadata and version condition (see [`OpsRecord`]).
    fn record_ops_event(
        &self,
        record: OpsRecord,
    ) -> impl Future<Output = Result<AppendEventResponse, Problem>> + Send;
    /// Reads events (for `$ops` history: deploy status, resumption).
    fn query_events(
        &self,
        q: EventsQuery,
    ) -> impl Future<Output = Result<EventsPage, Problem>> + Send;
}

/// A record for stream `$ops` ([`Control::record_ops_event`]): what
/// `POST /v1/events` takes, the stream aside.
///
/// ```
/// use lighthouse_core::OpsRecord;
/// use lighthouse_core::api::ExpectedVersion;
/// use serde_json::json;
///
/// // Claims the run: only if nothing was appended to `$ops` since version 41
/// // was read; the id makes a retry after a transport error safe.
/// let claim = OpsRecord::new("ops.deploy.started", json!({"flag": "new_ui"}))
///     .with_id("deploy-new_ui-7-started")
///     .expecting(ExpectedVersion::Exact(41))
///     .with_metadata(json!({"tool": "lighthouse-deploy"}));
/// assert_eq!(claim.into_request().stream, "$ops");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OpsRecord {
    /// The event type (`ops.deploy.started`, `rollback.completed`, ...).
    pub event_type: String,
    /// The payload.
    pub data: Value,
    /// The event's metadata.
    pub metadata: Option<Value>,
    /// The caller's event id. The same id sent again within 24 h by the same
    /// agent (a tool retrying after a transport error, or resuming after a
    /// restart) returns the original `{seq, id, version}` and appends nothing.
    /// Without one, the HTTP implementation picks a fresh id per call (so its
    /// own retries are safe, not the caller's) and the in-process one none.
    pub id: Option<String>,
    /// Condition on `$ops`' version (default any): a tool claims a run by
    /// appending with the version it read; a concurrent claimant gets `409
    /// version_conflict` with `actual_version`. A retry with the same `id`
    /// gets the original result, not a conflict: ids are checked first.
    pub expected_version: Option<ExpectedVersion>,
}

impl OpsRecord {
    /// A record of type `event_type` with `data`, no id, metadata or condition.
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        OpsRecord {
            event_type: event_type.into(),
            data,
            metadata: None,
            id: None,
            expected_version: None,
        }
    }

    /// Sets the event id (1 to 128 of `[A-Za-z0-9_.:-]`).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Appends only if `$ops` is as `expected`.
    pub fn expecting(mut self, expected: ExpectedVersion) -> Self {
        self.expected_version = Some(expected);
        self
    }

    /// The `POST /v1/events` body that appends it to `$ops`.
    pub fn into_request(self) -> AppendEventRequest {
        AppendEventRequest {
            stream: OPS_STREAM.to_owned(),
            event_type: self.event_type,
            data: self.data,
            metadata: self.metadata,
            expected_version: self.expected_version,
            id: self.id,
        }
    }
}

/// [`Control`] on an in-process [`Bridge`], acting as `caller`.
#[derive(Debug, Clone)]
pub struct InProcess {
    bridge: Bridge,
    caller: Caller,
    request_prefix: String,
}

impl InProcess {
    /// Acts on `bridge` as `caller` (an operator or admin for writes).
    pub fn new(bridge: Bridge, caller: Caller) -> Self {
        let request_prefix = format!("inproc-{}", caller.agent);
        InProcess {
            bridge,
            caller,
            request_prefix,
        }
    }

    /// A fresh id per call (a ULID after the caller's prefix): it becomes the
    /// `correlation_id` of what the call writes, so two calls must never share
    /// one (with the log's head, two calls with no write between them did).
    fn request_id(&self) -> String {
        format!("{}-{}", self.request_prefix, ulid::Ulid::generate())
    }
}

impl Control for InProcess {
    async fn health(&self) -> Result<Health, Problem> {
        Ok(self.bridge.health().await)
    }

    async fn list_flags(&self) -> Result<FlagList, Problem> {
        self.bridge.list_flags(&self.caller)
    }

    async fn get_flag(&self, key: &str) -> Result<Flag, Problem> {
        self.bridge.get_flag(&self.caller, key)
    }

    async fn put_flag(&self, key: &str, put: FlagPut) -> Result<FlagOutcome, Problem> {
        self.bridge
            .put_flag(&self.caller, &self.request_id(), key, put)
            .await
    }

    async fn kill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> Result<FlagOutcome, Problem> {
        let req = FlagKill {
            reason: Some(reason.to_owned()),
            expected_version,
        };
        self.bridge
            .kill_flag(&self.caller, &self.request_id(), key, true, &req)
            .await
    }

    async fn unkill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> Result<FlagOutcome, Problem> {
        let req = FlagKill {
            reason: Some(reason.to_owned()),
            expected_version,
        };
        self.bridge
            .kill_flag(&self.caller, &self.request_id(), key, false, &req)
            .await
    }

    async fn evaluate_flag(&self, key: &str, agent: &str) -> Result<FlagEvaluation, Problem> {
        self.bridge.evaluate_flag(&self.caller, key, agent)
    }

    async fn stats(&self, window_s: u64) -> Result<OpsStats, Problem> {
        self.bridge.stats(&self.caller, window_s)
    }

    async fn drain(&self, req: DrainRequest) -> Result<DrainReport, Problem> {
        self.bridge
            .drain(&self.caller, &self.request_id(), req)
            .await
    }

    async fn verify(&self) -> Result<VerifyResponse, Problem> {
        self.bridge.verify(&self.caller).await
    }

    async fn record_ops_event(&self, record: OpsRecord) -> Result<AppendEventResponse, Problem> {
        self.bridge
            .append_event(&self.caller, &self.request_id(), record.into_request())
            .await
    }

    async fn query_events(&self, q: EventsQuery) -> Result<EventsPage, Problem> {
        self.bridge.query_events(&self.caller, &q)
    }
}
