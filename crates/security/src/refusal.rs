//! [`Refusal`]: the typed "no" the gate answers a request with.

use crate::authz::{Action, ActionClass};

/// Why a request counts as unauthenticated (PROTOCOL.md 2.2 step 1, and every
/// token failure of 2.3). The reason goes to the audit record; the client only
/// sees `401 unauthenticated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// Neither signature headers nor a bearer token.
    NoCredentials,
    /// A signature header is missing.
    MissingHeader(&'static str),
    /// A header was sent more than once.
    DuplicatedHeader(&'static str),
    /// A header is not well formed.
    MalformedHeader(&'static str),
    /// Both a signature and a bearer token were presented.
    AmbiguousCredentials,
    /// The bearer token is malformed or its MAC does not verify.
    InvalidToken,
    /// The bearer token has expired.
    ExpiredToken,
    /// The bearer token was revoked.
    RevokedToken,
    /// The token's agent is unknown or revoked, or its key id was retired.
    TokenKeyInactive,
    /// A bearer token was presented where PROTOCOL.md 2.3 asks for a signature:
    /// `POST /v1/sessions`, so that a stolen token cannot mint itself a
    /// successor and outlive its expiry.
    SignatureRequired,
}

impl Unauthenticated {
    /// A short, stable description for the audit record.
    pub fn as_str(self) -> &'static str {
        match self {
            Unauthenticated::NoCredentials => "no credentials",
            Unauthenticated::MissingHeader(_) => "missing header",
            Unauthenticated::DuplicatedHeader(_) => "duplicated header",
            Unauthenticated::MalformedHeader(_) => "malformed header",
            Unauthenticated::AmbiguousCredentials => "both signature and bearer token",
            Unauthenticated::InvalidToken => "invalid token",
            Unauthenticated::ExpiredToken => "expired token",
            Unauthenticated::RevokedToken => "revoked token",
            Unauthenticated::TokenKeyInactive => "token of a revoked agent or retired key",
            Unauthenticated::SignatureRequired => {
                "this request must be signed; a bearer token cannot create a session"
            }
        }
    }

    /// The header concerned, when there is one.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Unauthenticated::MissingHeader(h)
            | Unauthenticated::DuplicatedHeader(h)
            | Unauthenticated::MalformedHeader(h) => Some(h),
            _ => None,
        }
    }
}

/// Why the bridge cannot take the request now (`503 unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The agent's nonce memory is at its capacity: refusing is the only way not
    /// to forget a nonce early.
    AgentNoncesFull,
    /// The nonce memory of the whole bridge is at its capacity.
    NoncesFull,
    /// Accepted nonces cannot be persisted (the journal is failing and its
    /// unflushed buffer is full).
    NonceJournalFailing,
    /// The rate limiter tracks as many agents as it may.
    RateLimiterFull,
    /// An agent change was written but not yet read back into the registry
    /// (a store read failed): no credential is judged on an outdated view.
    RegistryBehind,
}

/// A refused request. [`code`](Self::code) is the PROTOCOL.md section 3 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `401 unauthenticated`: missing or malformed credentials, or a bad token.
    Unauthenticated(Unauthenticated),
    /// `401 stale_request`: the timestamp is outside the window.
    StaleRequest,
    /// `401 bad_signature`.
    BadSignature,
    /// `401 replayed_request`: the nonce was seen inside the window.
    ReplayedRequest,
    /// `429 rate_limited`.
    RateLimited {
        /// The action class whose limit was hit.
        class: ActionClass,
        /// Milliseconds until the next request of that class is permitted.
        retry_after_ms: u64,
    },
    /// `403 forbidden`: the role does not permit the action.
    Forbidden {
        /// The action refused.
        action: Action,
    },
    /// `503 unavailable`.
    Unavailable(Unavailable),
}

impl Refusal {
    /// The PROTOCOL.md error code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::StaleRequest => "stale_request",
            Refusal::BadSignature => "bad_signature",
            Refusal::ReplayedRequest => "replayed_request",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    /// Whether this refusal is a security violation (PROTOCOL.md 2.2: every
    /// refusal of steps 1-5 and 7), to be counted and audited.
    pub fn is_violation(&self) -> bool {
        !matches!(self, Refusal::RateLimited { .. } | Refusal::Unavailable(_))
    }

    /// `Retry-After` in whole seconds (rounded up, at least 1) for `rate_limited`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited { retry_after_ms, .. } => {
                Some(retry_after_ms.div_ceil(1000).max(1))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unauthenticated(u) => write!(f, "unauthenticated: {}", u.as_str())?,
            Refusal::RateLimited { class, .. } => write!(f, "rate_limited ({})", class.as_str())?,
            Refusal::Forbidden { action } => write!(f, "forbidden ({})", action.as_str())?,
            other => f.write_str(other.code())?,
        }
        if let Some(h) = match self {
            Refusal::Unauthenticated(u) => u.header(),
            _ => None,
        } {
            write!(f, " [{h}]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let r = |ms| Refusal::RateLimited {
            class: ActionClass::Read,
            retry_after_ms: ms,
        };
        assert_eq!(r(0).retry_after_secs(), Some(1));
        assert_eq!(r(1).retry_after_secs(), Some(1));
        assert_eq!(r(1000).retry_after_secs(), Some(1));
        assert_eq!(r(1001).retry_after_secs(), Some(2));
        assert_eq!(Refusal::BadSignature.retry_after_secs(), None);
    }

    #[test]
    fn violations_are_steps_one_to_five_and_seven() {
        assert!(Refusal::StaleRequest.is_violation());
        assert!(
            Refusal::Forbidden {
                action: Action::Drain
            }
            .is_violation()
        );
        assert!(!Refusal::Unavailable(Unavailable::NoncesFull).is_violation());
        assert!(
            !Refusal::RateLimited {
                class: ActionClass::Write,
                retry_after_ms: 5
            }
            .is_violation()
        );
    }
}
