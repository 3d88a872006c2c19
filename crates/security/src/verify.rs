//! The server-side [`Verifier`]: PROTOCOL.md 2.2 steps 1 to 5 for signed requests,
//! and 2.3 for bearer tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use hmac::Mac;
use lighthouse_event_store::Timestamp;
use subtle::ConstantTimeEq;

use crate::caller::Caller;
use crate::headers::{AuthHeaders, Presented, SignatureHeaders};
use crate::keys::HmacSha256;
use crate::nonce::{NonceRefusal, NonceStore};
use crate::refusal::{Refusal, Unauthenticated, Unavailable};
use crate::registry::AgentRegistry;
use crate::signing::{SigningInput, body_hash_hex, feed};
use crate::token::{TokenAuthority, TokenId};

/// Default acceptance window: `|now - timestamp| <= 300 s`.
pub const DEFAULT_WINDOW_S: u32 = 300;

/// The parts of an HTTP request the verifier needs, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP method as received.
    pub method: &'a str,
    /// The path exactly as sent on the wire, without the query.
    pub path: &'a str,
    /// The query exactly as sent, without `?`; empty when there is none.
    pub query: &'a str,
    /// The authentication headers.
    pub headers: AuthHeaders<'a>,
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// A request that passed authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Who is calling.
    pub caller: Caller,
    /// The token the request came with, when it used one (to revoke it on
    /// `DELETE /v1/sessions/current`).
    pub token: Option<TokenId>,
}

/// Checks signatures and tokens. Shared, cheap to call from many threads.
pub struct Verifier {
    registry: AgentRegistry,
    tokens: Arc<TokenAuthority>,
    nonces: Arc<NonceStore>,
    window_s: u32,
    dummy: HmacSha256,
    /// The latest time seen, in ms: expiries (tokens, a rotated key's grace)
    /// are checked against a time that never goes back, so a clock stepped
    /// back cannot revive a token or key (nor a revoked token whose
    /// revocation was forgotten at its expiry).
    high_water_ms: AtomicI64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("window_s", &self.window_s)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier over the registry, token authority and nonce store, with the
    /// acceptance window `window_s` (the nonce store must use the same window).
    pub fn new(
        registry: AgentRegistry,
        tokens: Arc<TokenAuthority>,
        nonces: Arc<NonceStore>,
        window_s: u32,
    ) -> Self {
        let dummy = registry.master().dummy_secret().mac();
        Verifier {
            registry,
            tokens,
            nonces,
            window_s,
            dummy,
            high_water_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// `now`, or the latest time seen before if that is later.
    pub fn steady(&self, now: Timestamp) -> Timestamp {
        let ms = now.unix_millis();
        Timestamp::from_unix_millis(self.high_water_ms.fetch_max(ms, Ordering::AcqRel).max(ms))
    }

    /// What every verification starts with: the time to judge expiries by
    /// ([`steady`](Self::steady)), and a registry that holds every change
    /// written (`503` otherwise, rather than judging on an outdated view).
    fn checked_now(&self, now: Timestamp) -> Result<Timestamp, Refusal> {
        if !self.registry.current() {
            return Err(Refusal::Unavailable(Unavailable::RegistryBehind));
        }
        Ok(self.steady(now))
    }

    /// Authenticates `req` at `now`: steps 1-5 for a signature, or the token checks.
    ///
    /// Allocation is bounded: headers are borrowed and checked in place, the string
    /// to sign is streamed into the MAC, and only the accepted agent id is copied.
    pub fn verify(&self, req: &Request<'_>, now: Timestamp) -> Result<Authenticated, Refusal> {
        let now = self.checked_now(now)?;
        match req.headers.presented().map_err(Refusal::Unauthenticated)? {
            Presented::Signature(sig) => {
                self.verify_signature(req, &sig, now)
                    .map(|caller| Authenticated {
                        caller,
                        token: None,
                    })
            }
            Presented::Bearer(token) => self.verify_token(token, now),
        }
    }

    fn verify_signature(
        &self,
        req: &Request<'_>,
        s: &SignatureHeaders<'_>,
        now: Timestamp,
    ) -> Result<Caller, Refusal> {
        // Step 2: an unknown or revoked agent, or an inactive key, continues with
        // the dummy key so that steps 3 and 4 answer exactly as for a wrong key.
        let (mut mac, role) = match self.registry.signing_key(s.agent, s.key_id, now) {
            Some((mac, role)) => (mac, Some(role)),
            None => (self.dummy.clone(), None),
        };
        // Step 3, against a time that never goes back (see
        // `NonceStore::effective_now_s`).
        let now_s = self.nonces.effective_now_s(now);
        if now_s.abs_diff(s.timestamp) > u64::from(self.window_s) {
            return Err(Refusal::StaleRequest);
        }
        // Step 4.
        let body_hash = body_hash_hex(req.body);
        feed(
            &mut mac,
            &SigningInput {
                method: req.method,
                path: req.path,
                query: req.query,
                agent: s.agent,
                key_id: s.key_id_raw,
                timestamp: s.timestamp_raw,
                nonce: s.nonce,
                body_hash: &body_hash,
            },
        );
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        let equal: bool = expected.ct_eq(&s.signature).into();
        let Some(role) = role.filter(|_| equal) else {
            return Err(Refusal::BadSignature);
        };
        // Step 5: recorded only now, so nobody can burn another agent's nonces.
        self.nonces
            .check_and_insert(s.agent, s.nonce, s.timestamp, now)
            .map_err(|r| match r {
                NonceRefusal::Replayed => Refusal::ReplayedRequest,
                NonceRefusal::Stale => Refusal::StaleRequest,
                NonceRefusal::Malformed => Refusal::Unauthenticated(
                    Unauthenticated::MalformedHeader(crate::signing::HEADER_NONCE),
                ),
                NonceRefusal::Unavailable(u) => Refusal::Unavailable(u),
            })?;
        Ok(Caller {
            agent: s.agent.to_owned(),
            role,
            key_id: s.key_id,
        })
    }

    /// Verifies an `Authorization: Bearer` value alone, as admission does a
    /// token (MAC, expiry, revocation, the agent's key still active): what a
    /// response outliving its admission (a stream, a long wait) re-checks.
    pub fn verify_bearer(
        &self,
        authorization: &[u8],
        now: Timestamp,
    ) -> Result<Authenticated, Refusal> {
        let now = self.checked_now(now)?;
        let token = crate::headers::bearer_token(authorization).ok_or(Refusal::Unauthenticated(
            Unauthenticated::MalformedHeader(crate::signing::HEADER_AUTHORIZATION),
        ))?;
        self.verify_token(token, now)
    }

    fn verify_token(&self, token: &[u8], now: Timestamp) -> Result<Authenticated, Refusal> {
        let claims = self
            .tokens
            .check(token, now)
            .map_err(Refusal::Unauthenticated)?;
        let role = self
            .registry
            .active_role(claims.agent, claims.key_id, now)
            .ok_or(Refusal::Unauthenticated(Unauthenticated::TokenKeyInactive))?;
        Ok(Authenticated {
            caller: Caller {
                agent: claims.agent.to_owned(),
                role,
                key_id: claims.key_id,
            },
            token: Some(claims.into()),
        })
    }

    /// The acceptance window in seconds.
    pub fn window_s(&self) -> u32 {
        self.window_s
    }
}
