//! [`Error`]: what can go wrong talking to a bridge, and its mapping onto the
//! protocol's [`Problem`].

use lighthouse_core::api::{ErrorCode, Problem};

/// Why a client call failed.
///
/// [`Error::problem`] (and `From<Error> for Problem`, used by the
/// [`Control`](lighthouse_core::Control) implementation) turns every variant into
/// a protocol problem: a refusal is the bridge's own problem; a transport
/// failure is `503 unavailable`; an unreadable response is `500 internal`; a
/// client-side configuration mistake is `400 invalid_request`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bridge answered with a non-2xx status. The body was its
    /// `application/problem+json`; a non-problem body (from a proxy, say) is
    /// turned into a problem whose code follows the status.
    #[error("the bridge refused the request: {0}")]
    Refused(Problem),
    /// No answer: the connection could not be made, broke, or timed out before
    /// the response's status arrived, after `attempts` attempts. (A 2xx whose
    /// body broke off is [`Error::InvalidResponse`]: the bridge did act.)
    #[error("transport failure after {attempts} attempt(s): {detail}")]
    Transport {
        /// What failed (no secrets: URLs carry none).
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A 2xx answer whose body could not be read (it broke off: the bridge
    /// acted on the request, but its result is unknown; read the state before
    /// sending it again), was over the size limit or did not decode as the
    /// expected type; a stream answered with something other than
    /// `text/event-stream`; or an SSE stream that broke its framing or size
    /// limit.
    #[error("unexpected response (HTTP {status}): {detail}")]
    InvalidResponse {
        /// HTTP status of the answer (0 for stream framing problems).
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// The credential file could not be read or is invalid.
    #[error("credential: {0}")]
    Credential(#[from] lighthouse_security::Error),
    /// The client was configured wrongly (bad base URL, bad argument).
    #[error("client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The protocol problem this error stands for.
    pub fn problem(&self) -> Problem {
        match self {
            Error::Refused(p) => p.clone(),
            Error::Transport { detail, attempts } => Problem::new(
                ErrorCode::Unavailable,
                format!("the bridge could not be reached ({attempts} attempt(s)): {detail}"),
            ),
            Error::InvalidResponse { status, detail } => Problem::new(
                ErrorCode::Internal,
                format!("unexpected response from the bridge (HTTP {status}): {detail}"),
            ),
            Error::Credential(e) => Problem::new(ErrorCode::InvalidRequest, e.to_string()),
            Error::Config(m) => Problem::new(ErrorCode::InvalidRequest, m.clone()),
        }
    }

    /// The bridge's problem when the bridge refused, else `None`.
    pub fn refusal(&self) -> Option<&Problem> {
        match self {
            Error::Refused(p) => Some(p),
            _ => None,
        }
    }

    /// The problem code, as [`Error::problem`] would give it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Refused(p) => p.code,
            Error::Transport { .. } => ErrorCode::Unavailable,
            Error::InvalidResponse { .. } => ErrorCode::Internal,
            Error::Credential(_) | Error::Config(_) => ErrorCode::InvalidRequest,
        }
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        match e {
            Error::Refused(p) => p,
            other => other.problem(),
        }
    }
}

/// The code a bare HTTP status stands for, when a non-2xx answer carries no
/// problem body (the problem built from it keeps the real status).
pub(crate) fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 | 405 | 410 => ErrorCode::NotFound,
        409 => ErrorCode::AlreadyResolved,
        413 => ErrorCode::PayloadTooLarge,
        422 => ErrorCode::SchemaMismatch,
        429 => ErrorCode::RateLimited,
        502..=504 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_a_protocol_problem() {
        let refused = Problem::new(ErrorCode::Expired, "too late");
        assert_eq!(Problem::from(Error::Refused(refused.clone())), refused);
        let t = Error::Transport {
            detail: "connection refused".into(),
            attempts: 3,
        };
        let p = t.problem();
        assert_eq!((p.code, p.status), (ErrorCode::Unavailable, 503));
        assert!(p.detail.contains("connection refused"));
        assert_eq!(t.code(), ErrorCode::Unavailable);
        let bad = Error::InvalidResponse {
            status: 200,
            detail: "x".into(),
        };
        assert_eq!(bad.problem().status, 500);
        assert_eq!(Error::Config("x".into()).problem().status, 400);
    }

    #[test]
    fn bare_statuses_get_the_code_of_their_meaning() {
        assert_eq!(code_for_status(502), ErrorCode::Unavailable);
        assert_eq!(code_for_status(504), ErrorCode::Unavailable);
        assert_eq!(code_for_status(404), ErrorCode::NotFound);
        assert_eq!(code_for_status(418), ErrorCode::Internal);
    }
}
