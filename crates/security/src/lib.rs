//! `lighthouse-security`: who is calling and what they may do.
//!
//! What it is for (PROTOCOL.md section 2): the master key and the agent secrets
//! derived from it ([`MasterKey`]), credential files ([`Credential`]), the agent
//! registry kept as events on `$agents` ([`AgentRegistry`]), request signing
//! ([`Signer`]) and verification ([`Verifier`]), replay protection
//! ([`NonceStore`]), bearer tokens ([`TokenAuthority`]), rate limits
//! ([`RateLimiter`]), roles and permissions ([`authorize`]), audit records of
//! refusals ([`ViolationSampler`]), and [`Gate`], which runs all seven steps of
//! PROTOCOL.md 2.2 in order. What it is not for: HTTP (the `lighthouse-http`
//! crate maps [`Refusal::code`] to statuses and builds [`Request`] from a real
//! request) and metrics (the caller counts [`Refusal`]s).
//!
//! # Invariants
//! - Identity comes only from a verified signature or token, never from a body.
//! - Checks run in the order of PROTOCOL.md 2.2 and the first failure answers.
//!   Unknown agents, revoked agents and inactive keys get the same answers as a
//!   wrong key (a dummy key is used), and signatures and token MACs are compared
//!   in constant time.
//! - A nonce is recorded only after its signature verified, is kept until its
//!   timestamp plus the window has passed, and is never forgotten early: when the
//!   bounded store is full, requests are refused with `unavailable`.
//! - Every in-memory structure that grows with traffic is bounded by a named,
//!   configurable limit; idle rate-limit state is reclaimed.
//! - Time comes only from the injected clock (or an explicit `now`).
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use lighthouse_event_store::{EventStore, ManualClock, SharedClock, StoreOptions, Timestamp};
//! use lighthouse_security::{Action, AuthHeaders, Gate, MasterKey, Request, Role, SecurityConfig};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let clock = ManualClock::new(Timestamp::from_unix_secs(1_790_000_000));
//! let shared: SharedClock = Arc::new(clock.clone());
//! let master = MasterKey::generate()?;
//! let store = EventStore::open_temporary(StoreOptions::new(&master.store_key()).clock(shared.clone()))?;
//! let gate = Gate::open(store, master, None, shared, SecurityConfig::default())?;
//! let alice = gate.registry().register("alice", Role::Agent, Some("admin")).await?;
//!
//! // Client side.
//! let body = br#"{"to":"bob"}"#;
//! let h = alice.signer().sign("POST", "/v1/elicitations", "", body, 1_790_000_000);
//!
//! // Server side.
//! let headers = AuthHeaders::from_pairs(h.pairs().map(|(n, v)| (n, v.as_bytes())));
//! let req = Request { method: "POST", path: "/v1/elicitations", query: "", headers, body };
//! let ok = gate.admit(&req, Action::Elicit).unwrap();
//! assert_eq!(ok.caller.agent, "alice");
//! // The same request again is a replay.
//! assert_eq!(gate.admit(&req, Action::Elicit).unwrap_err().refusal.code(), "replayed_request");
//! # Ok::<(), lighthouse_security::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod audit;
mod authz;
mod caller;
mod credential;
mod error;
mod gate;
mod headers;
mod journal;
mod keys;
mod nonce;
mod rate;
mod refusal;
mod registry;
mod signing;
mod token;
mod verify;

pub use audit::{
    AuditConfig, MAX_ROUTE_CHARS, SECURITY_STREAM, SECURITY_VIOLATION, VIOLATIONS_SUPPRESSED,
    Violation, ViolationSampler,
};
pub use authz::{
    Action, ActionClass, BRIDGE_WRITTEN_STREAM_PREFIXES, BRIDGE_WRITTEN_TYPE_PREFIXES, OPS_STREAM,
    PERMISSIONS, Roles, append_action, authorize, permitted,
};
pub use caller::{Caller, Role};
pub use credential::Credential;
pub use error::{Error, Result};
pub use gate::{Denial, Gate, SecurityConfig};
pub use headers::{AuthHeaders, MAX_NONCE_LEN, MIN_NONCE_LEN, bearer_token};
pub use journal::{DEFAULT_FLUSH_INTERVAL, NonceFlusher};
pub use keys::{AgentSecret, MASTER_KEY_ENV, MasterKey};
pub use nonce::{NonceConfig, NonceRefusal, NonceStore};
pub use rate::{Quota, RateConfig, RateLimiter, RateLimits, RateRefusal};
pub use refusal::{Refusal, Unauthenticated, Unavailable};
pub use registry::{
    AGENT_KEY_ROTATED, AGENT_REGISTERED, AGENT_REVOKED, AGENTS_STREAM, Actor, AgentRecord,
    AgentRegistry, DEFAULT_KEY_GRACE_MS, GraceKey, LOCAL_ADMIN_AGENT, MAX_GRACE_KEYS, ME_AGENT,
    RegistryConfig, check_agent_id,
};
pub use signing::{
    HEADER_AGENT, HEADER_AUTHORIZATION, HEADER_KEY_ID, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, SignedHeaders, Signer, SigningInput, body_hash_hex, fresh_nonce,
    string_to_sign,
};
pub use token::{
    DEFAULT_TTL_S, IssuedToken, MAX_TOKEN_LEN, MAX_TTL_S, SESSIONS_STREAM, TOKEN_REVOKED,
    TokenAuthority, TokenClaims, TokenConfig, TokenId,
};
pub use verify::{Authenticated, DEFAULT_WINDOW_S, Request, Verifier};
