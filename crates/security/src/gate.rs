//! [`Gate`]: the whole admission decision of PROTOCOL.md 2.2, steps 1 to 7, with
//! the audit records of refusals.

use std::path::Path;
use std::sync::Arc;

use lighthouse_event_store::{EventStore, NewEvent, SharedClock, Timestamp};

use crate::audit::{AuditConfig, Violation, ViolationSampler};
use crate::authz::{Action, ActionClass, authorize};
use crate::error::{Error, Result};
use crate::headers::valid_agent;
use crate::journal::NonceFlusher;
use crate::keys::MasterKey;
use crate::nonce::{NonceConfig, NonceStore};
use crate::rate::{RateConfig, RateLimiter, RateRefusal};
use crate::refusal::{Refusal, Unauthenticated};
use crate::registry::{AgentRegistry, RegistryConfig};
use crate::signing::HEADER_AGENT;
use crate::token::{TokenAuthority, TokenConfig};
use crate::verify::{Authenticated, DEFAULT_WINDOW_S, Request, Verifier};

/// Every security setting, each with its documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Acceptance window in seconds (default 300). Also the nonce store's window.
    pub window_s: u32,
    /// Agent registry settings.
    pub registry: RegistryConfig,
    /// Nonce store limits.
    pub nonces: NonceConfig,
    /// Rate limits.
    pub rate: RateConfig,
    /// Token settings.
    pub tokens: TokenConfig,
    /// Audit sampling.
    pub audit: AuditConfig,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            window_s: DEFAULT_WINDOW_S,
            registry: RegistryConfig::default(),
            nonces: NonceConfig::default(),
            rate: RateConfig::default(),
            tokens: TokenConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// A refused request: the refusal to answer with, and the audit events the caller
/// appends to the store (empty when sampled away or not a violation).
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// What to answer.
    pub refusal: Refusal,
    /// `security.violation` (and possibly `security.violations_suppressed`) events.
    pub audit: Vec<NewEvent>,
}

/// Admission: authentication, replay protection, rate limits, authorization, audit.
pub struct Gate {
    registry: AgentRegistry,
    verifier: Verifier,
    tokens: Arc<TokenAuthority>,
    nonces: Arc<NonceStore>,
    limiter: RateLimiter,
    sampler: ViolationSampler,
    clock: SharedClock,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("verifier", &self.verifier)
            .field("nonces", &self.nonces)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Opens every part: the registry and revoked tokens from `store`, the nonce
    /// journal from `nonce_dir` (`None`: nonces in memory only, forgotten on restart).
    /// Start the journal's flusher with
    /// [`start_nonce_flusher`](Self::start_nonce_flusher) when persisting.
    pub fn open(
        store: EventStore,
        master: MasterKey,
        nonce_dir: Option<&Path>,
        clock: SharedClock,
        mut config: SecurityConfig,
    ) -> Result<Self> {
        if config.window_s == 0 {
            return Err(Error::InvalidConfig("window_s must be positive"));
        }
        config.nonces.window_s = config.window_s;
        // An empty log has no agent who could have signed a request: its
        // nonce journal has nothing to have lost.
        let none_accepted_before = store.head_seq() == 0;
        let now = clock.now();
        let tokens = Arc::new(TokenAuthority::open(
            store.clone(),
            &master,
            config.tokens,
            now,
        )?);
        let registry = AgentRegistry::open(store, master, clock.clone(), config.registry)?;
        let nonces = Arc::new(match nonce_dir {
            Some(dir) => {
                NonceStore::open_after(dir, config.nonces, clock.clone(), none_accepted_before)?
            }
            None => NonceStore::in_memory(config.nonces, clock.clone())?,
        });
        Ok(Gate {
            verifier: Verifier::new(
                registry.clone(),
                tokens.clone(),
                nonces.clone(),
                config.window_s,
            ),
            registry,
            tokens,
            nonces,
            limiter: RateLimiter::new(config.rate)?,
            sampler: ViolationSampler::new(config.audit),
            clock,
        })
    }

    /// Admits `req` for `action` at the clock's current time, or refuses it with
    /// the first failing step of PROTOCOL.md 2.2.
    pub fn admit(&self, req: &Request<'_>, action: Action) -> Result<Authenticated, Denial> {
        self.admit_at(req, action, self.clock.now())
    }

    /// [`admit`](Self::admit) at an explicit time.
    pub fn admit_at(
        &self,
        req: &Request<'_>,
        action: Action,
        now: Timestamp,
    ) -> Result<Authenticated, Denial> {
        let auth = match self.verifier.verify(req, now) {
            Ok(a) => a,
            Err(refusal) => return Err(self.deny(refusal, req, action, None, now)),
        };
        if auth.token.is_some() && action == Action::ManageOwnSession && req.method == "POST" {
            let refusal = Refusal::Unauthenticated(Unauthenticated::SignatureRequired);
            return Err(self.deny(refusal, req, action, Some(&auth.caller.agent), now));
        }
        // Step 6 (the nonce, if any, is already used).
        let class = ActionClass::for_route(req.method, req.path);
        if let Err(r) = self
            .limiter
            .check(&auth.caller.agent, auth.caller.role, class, now)
        {
            let refusal = match r {
                RateRefusal::Limited { retry_after_ms } => Refusal::RateLimited {
                    class,
                    retry_after_ms,
                },
                RateRefusal::Unavailable(u) => Refusal::Unavailable(u),
            };
            return Err(Denial {
                refusal,
                audit: Vec::new(),
            });
        }
        // Step 7.
        if let Err(refusal) = authorize(&auth.caller, action) {
            return Err(self.deny(refusal, req, action, Some(&auth.caller.agent), now));
        }
        Ok(auth)
    }

    fn deny(
        &self,
        refusal: Refusal,
        req: &Request<'_>,
        action: Action,
        authenticated: Option<&str>,
        now: Timestamp,
    ) -> Denial {
        if !refusal.is_violation() {
            return Denial {
                refusal,
                audit: Vec::new(),
            };
        }
        let claimed = authenticated.or_else(|| self.claimed_agent(req));
        let registered = claimed.filter(|a| self.registry.get(a).is_some());
        let authenticated = authenticated.is_some() || refusal == Refusal::ReplayedRequest;
        let audit = self.sampler.record(&Violation {
            refusal: &refusal,
            agent: registered,
            authenticated,
            claimed_agent: if registered.is_none() { claimed } else { None },
            action: Some(action),
            method: req.method,
            path: req.path,
            time: now,
        });
        Denial { refusal, audit }
    }

    /// The agent a refused request named: its signature header, or the agent of a
    /// token whose MAC verifies.
    fn claimed_agent<'r>(&self, req: &Request<'r>) -> Option<&'r str> {
        req.headers
            .value(HEADER_AGENT)
            .and_then(valid_agent)
            .or_else(|| {
                req.headers
                    .bearer()
                    .and_then(|t| self.tokens.verified_agent(t))
            })
    }

    /// Starts writing accepted nonces to the journal every `interval` (use
    /// [`DEFAULT_FLUSH_INTERVAL`](crate::DEFAULT_FLUSH_INTERVAL)); stops when the
    /// returned flusher is dropped. Without a nonce directory it flushes nothing.
    pub fn start_nonce_flusher(&self, interval: std::time::Duration) -> Result<NonceFlusher> {
        NonceFlusher::start(self.nonces.clone(), interval)
    }

    /// The audit summary of a minute that ended (call about once a minute).
    pub fn flush_audit(&self) -> Option<NewEvent> {
        self.sampler.flush(self.clock.now())
    }

    /// Reclaims idle rate-limit state, expired nonces and expired revocations
    /// (inserts do this incrementally; call it when traffic is quiet).
    pub fn housekeeping(&self) {
        let now = self.clock.now();
        self.limiter.reclaim_idle(now);
        self.nonces.purge_expired(now);
        // Against the verifier's time, which never goes back: a revocation
        // is forgotten only once its token is expired for every later check.
        self.tokens.prune(self.verifier.steady(now));
    }

    /// The agent registry.
    pub fn registry(&self) -> &AgentRegistry {
        &self.registry
    }

    /// The verifier (steps 1-5 only).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The token authority (issue and revoke).
    pub fn tokens(&self) -> &Arc<TokenAuthority> {
        &self.tokens
    }

    /// The nonce store.
    pub fn nonces(&self) -> &Arc<NonceStore> {
        &self.nonces
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}
