//! The tools over stdio, forwarding to a remote bridge (`lighthouse-bridge mcp
//! --credential FILE`), for MCP clients that only launch stdio servers.

use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::Backend;
use crate::config::McpConfig;
use crate::error::Error;
use crate::server::ProxyTools;

/// Serves the tools on stdin/stdout until the client closes the stream, every
/// call acting as `backend`'s identity. Logs must go to stderr: stdout carries
/// the protocol.
pub async fn serve_stdio<B: Backend + 'static>(backend: B, config: McpConfig) -> Result<(), Error> {
    serve_io(backend, config, tokio::io::stdin(), tokio::io::stdout()).await
}

/// [`serve_stdio`] on any byte streams (newline-delimited JSON-RPC).
pub async fn serve_io<B, R, W>(
    backend: B,
    config: McpConfig,
    reader: R,
    writer: W,
) -> Result<(), Error>
where
    B: Backend + 'static,
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let running = ProxyTools::new(backend, config)
        .serve((reader, writer))
        .await?;
    running.waiting().await?;
    Ok(())
}
