//! [`Error`]: why serving MCP over stdio ended.

/// Why [`serve_stdio`](crate::serve_stdio) or [`serve_io`](crate::serve_io)
/// returned with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
