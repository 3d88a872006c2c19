//! The MCP server handlers: [`BridgeTools`] for Streamable HTTP on the bridge
//! (each call acting as the caller its HTTP request was admitted as) and
//! [`ProxyTools`] for the stdio proxy (every call acting as one remote
//! credential). Both list the same tools and run them through [`tools::call`].

use std::sync::Arc;

use futures::FutureExt;
use lighthouse_core::Bridge;
use lighthouse_core::api::{ErrorCode, Problem};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::backend::{Backend, BridgeBackend};
use crate::config::McpConfig;
use crate::tools::{self, CallContext, catalogue};
use crate::transport::{Admission, request_id};

const INSTRUCTIONS: &str = "Lighthouse lets agents ask each other structured questions. \
To ask another agent, call lighthouse_elicit (it waits for the answer). To see questions \
addressed to you, call lighthouse_check_elicitations and answer each with \
lighthouse_respond_to_elicitation. Messages: lighthouse_send_message and \
lighthouse_wait_for_messages. The event log: lighthouse_store_event and lighthouse_query_events.";

fn server_config() -> ServerConfig {
    ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        .with_server_info(Implementation::new("lighthouse", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
}

fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("unknown tool: {name}"), None)
}

fn call_context(context: &RequestContext<RoleServer>, config: &McpConfig) -> CallContext {
    let ctx = CallContext::new(context.ct.clone(), config);
    match context.meta.get_progress_token() {
        Some(token) => ctx.with_progress(context.peer.clone(), token),
        None => ctx,
    }
}

/// The tools on an in-process bridge, behind the `/mcp` admission layer.
#[derive(Clone)]
pub struct BridgeTools {
    bridge: Bridge,
    config: Arc<McpConfig>,
}

impl std::fmt::Debug for BridgeTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeTools").finish_non_exhaustive()
    }
}

impl BridgeTools {
    pub(crate) fn new(bridge: Bridge, config: Arc<McpConfig>) -> Self {
        BridgeTools { bridge, config }
    }
}

impl ServerHandler for BridgeTools {
    fn get_info(&self) -> ServerConfig {
        server_config()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(catalogue::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        catalogue::tool_named(name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if !catalogue::TOOL_NAMES.contains(&name) {
            return Err(unknown_tool(name));
        }
        // The admission layer put the outcome of admitting this HTTP request
        // (as this tool's REST route) on the request parts.
        let parts = context.extensions.get::<http::request::Parts>();
        let Some(admission) = parts.and_then(|p| p.extensions.get::<Admission>()) else {
            tracing::error!("an MCP tool call arrived without the admission layer");
            return Ok(tools::failure(&Problem::internal()).into());
        };
        // Every answer says how it answered, so the request is recorded with
        // it (a refused call is the refusal's status, not a server error).
        if admission.tool.as_deref() != Some(name) {
            let p = Problem::new(
                ErrorCode::InvalidRequest,
                "the request body could not be read as exactly one tool call",
            );
            admission.answered.answered(p.status);
            return Ok(tools::failure(&p).into());
        }
        let caller = match &admission.outcome {
            Ok(c) => c.clone(),
            Err(p) => {
                admission.answered.answered(p.status);
                return Ok(tools::failure(p).into());
            }
        };
        let rid = request_id(parts.map(|p| &p.headers));
        let span =
            tracing::info_span!("mcp_tool", tool = name, agent = %caller.agent, request_id = %rid);
        let mut backend = BridgeBackend::new(self.bridge.clone(), caller, rid)
            .with_wait_meter(admission.waited.clone());
        if let Some(token) = &admission.token {
            backend = backend.with_token(token.clone());
        }
        let mut ctx = call_context(&context, &self.config);
        // A `notifications/cancelled` of this agent naming this call reaches
        // it through the admission layer (rmcp drops notifications here).
        if let Some(notified) = &admission.cancelled {
            ctx = ctx.with_cancellation(notified.clone());
        }
        // rmcp runs the handler in a task of its own: a panic there would
        // leave the client's stream open with no answer. It is caught here,
        // answered as an internal error and recorded as a 500.
        let out = std::panic::AssertUnwindSafe(
            tools::call(&backend, name, request.arguments, &ctx).instrument(span),
        )
        .catch_unwind()
        .await;
        match out {
            Ok(out) => {
                admission
                    .answered
                    .answered(out.as_ref().map_or(200, answered_status));
                out.map(Into::into).ok_or_else(|| unknown_tool(name))
            }
            Err(_) => {
                tracing::error!(tool = name, "an MCP tool call panicked");
                admission.answered.answered(500);
                Ok(tools::failure(&Problem::internal()).into())
            }
        }
    }
}

/// The status a tool result stands for, as the REST route would have
/// answered: a tool error carries its problem (with its `status`) as
/// structured content, so a failing store counts as a server error and a
/// refused argument as a client one, over `/mcp` as over REST.
fn answered_status(r: &rmcp::model::CallToolResult) -> u16 {
    if r.is_error != Some(true) {
        return 200;
    }
    r.structured_content
        .as_ref()
        .and_then(|v| v.get("status"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (400..=599).contains(s))
        .unwrap_or(500)
}

/// The tools on any [`Backend`], every call acting as the backend's identity
/// (the stdio proxy). At most [`McpConfig::max_concurrent_calls`] calls run at
/// once; the others wait for a turn. Tools that can wait for another agent
/// (elicit, get, wait for messages) take their turns from a pool of their own
/// of the same size, so that finding and answering a question
/// (`lighthouse_check_elicitations`, `lighthouse_respond`) never queues behind
/// waits that may be waiting for that answer.
pub struct ProxyTools<B> {
    backend: Arc<B>,
    config: Arc<McpConfig>,
    calls: Semaphore,
    waits: Semaphore,
}

/// Tools that may wait up to their deadline for another agent.
const WAITING_TOOLS: [&str; 3] = [
    catalogue::ELICIT,
    catalogue::GET_ELICITATION,
    catalogue::WAIT_FOR_MESSAGES,
];

impl<B> ProxyTools<B> {
    /// Serves `backend` with `config`'s waiting and concurrency limits.
    pub fn new(backend: B, config: McpConfig) -> Self {
        ProxyTools {
            backend: Arc::new(backend),
            calls: Semaphore::new(config.max_concurrent_calls.max(1)),
            waits: Semaphore::new(config.max_concurrent_calls.max(1)),
            config: Arc::new(config),
        }
    }
}

impl<B: Backend + 'static> ServerHandler for ProxyTools<B> {
    fn get_info(&self) -> ServerConfig {
        server_config()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(catalogue::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        catalogue::tool_named(name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if !catalogue::TOOL_NAMES.contains(&name) {
            return Err(unknown_tool(name));
        }
        // rmcp runs every request it reads in a task of its own, reading on
        // while earlier answers wait to be written: the bound is here.
        let pool = if WAITING_TOOLS.contains(&name) {
            &self.waits
        } else {
            &self.calls
        };
        let _turn = tokio::select! {
            biased;
            _ = context.ct.cancelled() => return Ok(tools::failure(&tools::cancelled()).into()),
            turn = pool.acquire() => match turn {
                Ok(t) => t,
                // Never closed; a closed one would mean the proxy is going away.
                Err(_) => return Ok(tools::failure(&Problem::internal()).into()),
            },
        };
        let ctx = call_context(&context, &self.config);
        tools::call(&*self.backend, name, request.arguments, &ctx)
            .await
            .map(Into::into)
            .ok_or_else(|| unknown_tool(name))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use lighthouse_core::api::{
        AppendEventRequest, AppendEventResponse, CancelRequest, CreateRequest, Elicitation,
        ElicitationList, EventsPage, EventsQuery, Health, MessagesPage, RespondRequest,
        SentMessage,
    };
    use lighthouse_elicitation::SendMessage;
    use rmcp::ServiceExt;

    use super::*;

    /// How many event queries ran, and how many at once at most.
    #[derive(Default)]
    struct Counts {
        running: AtomicUsize,
        most: AtomicUsize,
        done: AtomicUsize,
    }

    /// A bridge whose event queries take a while.
    struct Slow(Arc<Counts>);

    const ONLY: &str = "this test double serves only query_events";

    impl Backend for Slow {
        async fn query_events(&self, _: EventsQuery) -> Result<EventsPage, Problem> {
            let c = &self.0;
            let now = c.running.fetch_add(1, Ordering::SeqCst) + 1;
            c.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.running.fetch_sub(1, Ordering::SeqCst);
            c.done.fetch_add(1, Ordering::SeqCst);
            Ok(EventsPage {
                events: Vec::new(),
                next: None,
            })
        }
        async fn elicit(&self, _: CreateRequest) -> Result<Elicitation, Problem> {
            unreachable!("{ONLY}")
        }
        async fn get_elicitation(&self, _: &str, _: u64) -> Result<Elicitation, Problem> {
            // Nobody ever answers.
            std::future::pending().await
        }
        async fn pending_inbox(&self, _: usize) -> Result<ElicitationList, Problem> {
            unreachable!("{ONLY}")
        }
        async fn respond(&self, _: &str, _: RespondRequest) -> Result<Elicitation, Problem> {
            unreachable!("{ONLY}")
        }
        async fn cancel(&self, _: &str, _: CancelRequest) -> Result<Elicitation, Problem> {
            unreachable!("{ONLY}")
        }
        async fn send_message(&self, _: SendMessage) -> Result<SentMessage, Problem> {
            unreachable!("{ONLY}")
        }
        async fn receive_messages(&self, _: u64, _: u64) -> Result<MessagesPage, Problem> {
            unreachable!("{ONLY}")
        }
        async fn append_event(
            &self,
            _: AppendEventRequest,
        ) -> Result<AppendEventResponse, Problem> {
            unreachable!("{ONLY}")
        }
        async fn health(&self) -> Result<Health, Problem> {
            unreachable!("{ONLY}")
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_proxy_runs_at_most_its_limit_of_calls_at_once() {
        let counts = Arc::new(Counts::default());
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let (r, w) = tokio::io::split(server_io);
        let config = McpConfig::default().with_max_concurrent_calls(4);
        let proxy = tokio::spawn(crate::serve_io(Slow(counts.clone()), config, r, w));
        let client = ().serve(client_io).await.unwrap();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let peer = client.peer().clone();
            calls.spawn(async move {
                peer.call_tool(CallToolRequestParams::new(catalogue::QUERY_EVENTS))
                    .await
            });
        }
        while let Some(r) = calls.join_next().await {
            assert_eq!(r.unwrap().unwrap().is_error, Some(false));
        }
        // Every call ran, never more than four at once, and the limit was used.
        assert_eq!(counts.done.load(Ordering::SeqCst), 20);
        assert_eq!(counts.most.load(Ordering::SeqCst), 4);
        client.cancel().await.unwrap();
        proxy.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_do_not_hold_the_turns_of_other_calls() {
        let counts = Arc::new(Counts::default());
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let (r, w) = tokio::io::split(server_io);
        let config = McpConfig::default().with_max_concurrent_calls(1);
        let proxy = tokio::spawn(crate::serve_io(Slow(counts.clone()), config, r, w));
        let client = ().serve(client_io).await.unwrap();
        let waiting = {
            let peer = client.peer().clone();
            let args = serde_json::json!({
                "elicitation_id": "el_01J00000000000000000000000",
                "wait_seconds": 60
            });
            tokio::spawn(async move {
                peer.call_tool(
                    CallToolRequestParams::new(catalogue::GET_ELICITATION)
                        .with_arguments(args.as_object().cloned().unwrap_or_default()),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "{:?}", waiting.await);
        // The only turn of the waiting pool is taken; a short call still runs.
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            client
                .peer()
                .call_tool(CallToolRequestParams::new(catalogue::QUERY_EVENTS)),
        )
        .await
        .expect("not queued behind the wait")
        .unwrap();
        assert_eq!(r.is_error, Some(false));
        assert_eq!(counts.done.load(Ordering::SeqCst), 1);
        waiting.abort();
        client.cancel().await.unwrap();
        proxy.await.unwrap().unwrap();
    }
}
