//! [`Backend`]: the operations the tools need, implemented on an in-process
//! [`Bridge`] acting as one caller ([`BridgeBackend`], Streamable HTTP) and on
//! a remote bridge through its HTTP API (the stdio proxy).
//!
//! The tools are written once against this trait, so both transports parse
//! arguments, wait, and shape results and problems with the same code.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lighthouse_core::api::{
    AppendEventRequest, AppendEventResponse, CancelRequest, CreateRequest, Elicitation,
    ElicitationList, EventsPage, EventsQuery, Health, MessagesPage, Problem, RespondRequest,
    SentMessage, Status,
};
use lighthouse_core::{Bridge, WaitMeter, refusal_problem};
use lighthouse_elicitation::{Mailbox, SendMessage};
use lighthouse_security::Caller;

/// What the tools do to a bridge, as one agent. Every method answers with the
/// REST response body of the matching route, or its problem.
pub trait Backend: Send + Sync {
    /// `POST /v1/elicitations`.
    fn elicit(
        &self,
        req: CreateRequest,
    ) -> impl Future<Output = Result<Elicitation, Problem>> + Send;
    /// `GET /v1/elicitations/{id}?wait_ms=N` (`wait_ms` at most 60000).
    fn get_elicitation(
        &self,
        id: &str,
        wait_ms: u64,
    ) -> impl Future<Output = Result<Elicitation, Problem>> + Send;
    /// `GET /v1/elicitations?box=inbox&status=pending&limit=`: the caller's
    /// pending inbox, one page of at most `limit`.
    fn pending_inbox(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<ElicitationList, Problem>> + Send;
    /// `POST /v1/elicitations/{id}/respond`.
    fn respond(
        &self,
        id: &str,
        req: RespondRequest,
    ) -> impl Future<Output = Result<Elicitation, Problem>> + Send;
    /// `POST /v1/elicitations/{id}/cancel`.
    fn cancel(
        &self,
        id: &str,
        req: CancelRequest,
    ) -> impl Future<Output = Result<Elicitation, Problem>> + Send;
    /// `POST /v1/messages`.
    fn send_message(
        &self,
        req: SendMessage,
    ) -> impl Future<Output = Result<SentMessage, Problem>> + Send;
    /// `GET /v1/messages?after=&wait_ms=`.
    fn receive_messages(
        &self,
        after: u64,
        wait_ms: u64,
    ) -> impl Future<Output = Result<MessagesPage, Problem>> + Send;
    /// `POST /v1/events`.
    fn append_event(
        &self,
        req: AppendEventRequest,
    ) -> impl Future<Output = Result<AppendEventResponse, Problem>> + Send;
    /// `GET /v1/events?...`.
    fn query_events(
        &self,
        q: EventsQuery,
    ) -> impl Future<Output = Result<EventsPage, Problem>> + Send;
    /// `GET /health/ready` (its body whether ready or not).
    fn health(&self) -> impl Future<Output = Result<Health, Problem>> + Send;

    /// `Ok` while the caller's credential is still valid; checked between the
    /// slices of a long wait, which outlives its own admission. The default
    /// (a remote bridge) has nothing to check here: each slice is a request
    /// of its own, which the bridge admits again.
    fn still_authorized(&self) -> impl Future<Output = Result<(), Problem>> + Send {
        async { Ok(()) }
    }

    /// How often a long wait must call [`still_authorized`](Self::still_authorized),
    /// at least; `None` when each slice is checked anyway.
    fn recheck_every(&self) -> Option<Duration> {
        None
    }
}

/// How often a wait on an in-process bridge re-checks its bearer token.
pub const TOKEN_RECHECK_INTERVAL: Duration = Duration::from_secs(5);

/// [`Backend`] on an in-process bridge, acting as an admitted caller. The
/// request id becomes the `correlation_id` of every event the call writes.
#[derive(Debug, Clone)]
pub struct BridgeBackend {
    bridge: Bridge,
    caller: Caller,
    request_id: String,
    /// The `Authorization` value the call was admitted with, re-checked
    /// during waits.
    token: Option<Arc<[u8]>>,
    /// Where the long-polls on the bridge add the time they are blocked
    /// waiting.
    waited: WaitMeter,
}

impl BridgeBackend {
    /// Acts as `caller`, correlating writes with `request_id` (1 to 128 of
    /// `[A-Za-z0-9_.:-]`).
    pub fn new(bridge: Bridge, caller: Caller, request_id: impl Into<String>) -> Self {
        BridgeBackend {
            bridge,
            caller,
            request_id: request_id.into(),
            token: None,
            waited: WaitMeter::new(),
        }
    }

    /// Adds the time the long-polls on the bridge are blocked waiting for an
    /// answer or a message (not the bridge's work on them) to `waited`.
    pub fn with_wait_meter(mut self, waited: WaitMeter) -> Self {
        self.waited = waited;
        self
    }

    /// Re-checks `authorization` (the `Authorization: Bearer` value the call
    /// was admitted with) during long waits: a wait that outlives the token,
    /// or its revocation, ends with `401 unauthenticated` within
    /// [`TOKEN_RECHECK_INTERVAL`].
    pub fn with_token(mut self, authorization: Arc<[u8]>) -> Self {
        self.token = Some(authorization);
        self
    }

    /// The caller this backend acts as.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl Backend for BridgeBackend {
    async fn elicit(&self, req: CreateRequest) -> Result<Elicitation, Problem> {
        let (record, _replayed) = self
            .bridge
            .elicit(&self.caller, &self.request_id, None, req)
            .await?;
        Ok((*record).clone())
    }

    async fn get_elicitation(&self, id: &str, wait_ms: u64) -> Result<Elicitation, Problem> {
        let r = self
            .bridge
            .get_elicitation(&self.caller, id, wait_ms, &self.waited)
            .await?;
        Ok((*r).clone())
    }

    async fn pending_inbox(&self, limit: usize) -> Result<ElicitationList, Problem> {
        self.bridge.list_elicitations(
            &self.caller,
            Mailbox::Inbox,
            Some(Status::Pending),
            Some(limit),
            None,
        )
    }

    async fn respond(&self, id: &str, req: RespondRequest) -> Result<Elicitation, Problem> {
        let r = self
            .bridge
            .respond(&self.caller, &self.request_id, id, req)
            .await?;
        Ok((*r).clone())
    }

    async fn cancel(&self, id: &str, req: CancelRequest) -> Result<Elicitation, Problem> {
        let r = self
            .bridge
            .cancel(&self.caller, &self.request_id, id, req)
            .await?;
        Ok((*r).clone())
    }

    async fn send_message(&self, req: SendMessage) -> Result<SentMessage, Problem> {
        self.bridge
            .send_message(&self.caller, &self.request_id, req)
            .await
    }

    async fn receive_messages(&self, after: u64, wait_ms: u64) -> Result<MessagesPage, Problem> {
        self.bridge
            .receive_messages(&self.caller, after, wait_ms, None, &self.waited)
            .await
    }

    async fn append_event(&self, req: AppendEventRequest) -> Result<AppendEventResponse, Problem> {
        self.bridge
            .append_event(&self.caller, &self.request_id, req)
            .await
    }

    async fn query_events(&self, q: EventsQuery) -> Result<EventsPage, Problem> {
        self.bridge.query_events(&self.caller, &q)
    }

    async fn health(&self) -> Result<Health, Problem> {
        Ok(self.bridge.health().await)
    }

    /// The verification admission made of the token, without the rest of
    /// admission (no rate-limit charge, no audit record; a token uses no
    /// nonce): MAC, expiry, revocation, and the agent's key still active.
    async fn still_authorized(&self) -> Result<(), Problem> {
        let Some(authorization) = &self.token else {
            return Ok(());
        };
        let now = self.bridge.clock().now();
        self.bridge
            .gate()
            .verifier()
            .verify_bearer(authorization, now)
            .map(|_| ())
            .map_err(|r| refusal_problem(&r))
    }

    fn recheck_every(&self) -> Option<Duration> {
        self.token.as_ref().map(|_| TOKEN_RECHECK_INTERVAL)
    }
}
