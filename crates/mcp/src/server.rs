//! The MCP server handlers: [`BridgeTools`] for Streamable HTTP on the bridge
//! (each call acting as the caller its HTTP request was admitted as) and
//! [`ProxyTools`] for the stdio proxy (every call acting as one remote
//! credential). Both list the same tools and run them through [`tools::call`].

use std::sync::Arc;

use lighthouse_core::Bridge;
use lighthouse_core::api::{ErrorCode, Problem};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
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
        if admission.tool.as_deref() != Some(name) {
            return Ok(tools::failure(&Problem::new(
                ErrorCode::InvalidRequest,
                "the request body could not be read as exactly one tool call",
            ))
            .into());
        }
        let caller = match &admission.outcome {
            Ok(c) => c.clone(),
            Err(p) => return Ok(tools::failure(p).into()),
        };
        let rid = request_id(parts.map(|p| &p.headers));
        let span =
            tracing::info_span!("mcp_tool", tool = name, agent = %caller.agent, request_id = %rid);
        let mut backend = BridgeBackend::new(self.bridge.clone(), caller, rid)
            .with_waited(admission.waited_us.clone());
        if let Some(token) = &admission.token {
            backend = backend.with_token(token.clone());
        }
        let ctx = call_context(&context, &self.config);
        let out = tools::call(&backend, name, request.arguments, &ctx)
            .instrument(span)
            .await;
        out.map(Into::into).ok_or_else(|| unknown_tool(name))
    }
}

/// The tools on any [`Backend`], every call acting as the backend's identity
/// (the stdio proxy).
pub struct ProxyTools<B> {
    backend: Arc<B>,
    config: Arc<McpConfig>,
}

impl<B> ProxyTools<B> {
    /// Serves `backend` with `config`'s waiting limits.
    pub fn new(backend: B, config: McpConfig) -> Self {
        ProxyTools {
            backend: Arc::new(backend),
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
        let ctx = call_context(&context, &self.config);
        tools::call(&*self.backend, name, request.arguments, &ctx)
            .await
            .map(Into::into)
            .ok_or_else(|| unknown_tool(name))
    }
}
