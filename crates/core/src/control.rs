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
    FlagEvaluation, FlagKill, FlagList, FlagPut, Health, OpsStats, Problem, VerifyResponse,
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
    /// Creates or replaces a flag.
    fn put_flag(
        &self,
        key: &str,
        put: FlagPut,
    ) -> impl Future<Output = Result<Flag, Problem>> + Send;
    /// Kills a flag (off for everyone). With `expected_version`, only if the
    /// flag is at that version (else `409 version_conflict` with
    /// `actual_version`); a kill of a killed flag changes nothing.
    fn kill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<Flag, Problem>> + Send;
    /// Lifts a kill; `expected_version` as for
    /// [`kill_flag`](Control::kill_flag), so that an unkill decided on a
    /// stale read cannot lift a kill made since.
    fn unkill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<Flag, Problem>> + Send;
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
    /// Appends a record of what an operations tool did to `$ops`.
    fn record_ops_event(
        &self,
        event_type: &str,
        data: Value,
    ) -> impl Future<Output = Result<AppendEventResponse, Problem>> + Send;
    /// Reads events (for `$ops` history: deploy status, resumption).
    fn query_events(
        &self,
        q: EventsQuery,
    ) -> impl Future<Output = Result<EventsPage, Problem>> + Send;
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

    async fn put_flag(&self, key: &str, put: FlagPut) -> Result<Flag, Problem> {
        self.bridge
            .put_flag(&self.caller, &self.request_id(), key, put)
            .await
    }

    async fn kill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> Result<Flag, Problem> {
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
    ) -> Result<Flag, Problem> {
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

    async fn record_ops_event(
        &self,
        event_type: &str,
        data: Value,
    ) -> Result<AppendEventResponse, Problem> {
        let req = AppendEventRequest {
            stream: OPS_STREAM.to_owned(),
            event_type: event_type.to_owned(),
            data,
            metadata: None,
            expected_version: Some(ExpectedVersion::Any),
            id: None,
        };
        self.bridge
            .append_event(&self.caller, &self.request_id(), req)
            .await
    }

    async fn query_events(&self, q: EventsQuery) -> Result<EventsPage, Problem> {
        self.bridge.query_events(&self.caller, &q)
    }
}
