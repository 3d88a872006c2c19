//! [`Error`]: why serving MCP over stdio ended, or why a configuration is
//! refused.

/// Why [`serve_stdio`](crate::serve_stdio) or [`serve_io`](crate::serve_io)
/// returned with an error, or why [`McpConfig`](crate::McpConfig) was
/// refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `allowed_origins` entry is not an origin, so it could never match
    /// ([`McpConfig::check_allowed_origins`](crate::McpConfig::check_allowed_origins)).
    #[error(
        "{entry:?} is not an origin: write scheme://host[:port] with http or https and no path, \
         as a browser sends it in Origin (for example http://localhost:3000)"
    )]
    InvalidOrigin {
        /// The entry as configured.
        entry: String,
    },
    /// The client did not complete the MCP handshake (it sent something else
    /// first, or closed the stream).
    #[error("the MCP client did not complete the handshake: {0}")]
    Handshake(Box<rmcp::service::ServerInitializeError>),
    /// The session's task ended abnormally.
    #[error("the MCP session ended abnormally: {0}")]
    Session(#[from] tokio::task::JoinError),
}

impl From<rmcp::service::ServerInitializeError> for Error {
    fn from(e: rmcp::service::ServerInitializeError) -> Self {
        Error::Handshake(Box::new(e))
    }
}
