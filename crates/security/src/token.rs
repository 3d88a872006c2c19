//! Bearer tokens (PROTOCOL.md 2.3).
//!
//! A token is `lh1.<agent>.<key id>.<expiry>.<token id>.<mac>`: the expiry in Unix
//! seconds, the token id 32 lowercase hex characters (128 random bits), the MAC 64
//! lowercase hex characters of HMAC-SHA256 under the token key (derived from the
//! master key) over the lines `LH1-TOKEN`, agent, key id, expiry and token id
//! joined by `\n`. Verifying needs no lookup except the revoked-token set and the
//! registry (agent not revoked, key id still active), so revoking the agent or
//! retiring its key kills its tokens at once.
//!
//! Revoking one token appends `security.token_revoked` to `$sessions` and adds its
//! id to an in-memory set until the token's expiry; on open the set is rebuilt
//! from the events of the last [`MAX_TTL_S`] seconds, which is every revocation
//! that can still matter.

use std::collections::HashMap;

use hmac::Mac;
use lighthouse_event_store::{EventStore, Filter, NewEvent, Query, Timestamp};
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::headers::{canonical_decimal, lower_hex32, valid_agent};
use crate::keys::{HmacSha256, MasterKey, random_bytes};
use crate::refusal::Unauthenticated;
use crate::registry::Actor;

/// The stream token revocations are written to.
pub const SESSIONS_STREAM: &str = "$sessions";
/// Event type of a token revocation.
pub const TOKEN_REVOKED: &str = "security.token_revoked";
/// Default token lifetime: 3600 s.
pub const DEFAULT_TTL_S: u64 = 3600;
/// Longest token lifetime the protocol allows: 86400 s.
pub const MAX_TTL_S: u64 = 86_400;
/// Longest token accepted; longer input is refused before any work.
pub const MAX_TOKEN_LEN: usize = 256;

const PREFIX: &[u8] = b"lh1.";

/// Token settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenConfig {
    /// Lifetime when the request names none (default 3600 s).
    pub default_ttl_s: u64,
    /// Longest lifetime (default and at most 86400 s).
    pub max_ttl_s: u64,
    /// Most revoked, unexpired tokens remembered (default 1,048,576, about 40 MiB);
    /// beyond it a revocation fails with [`Error::RevocationsFull`] rather than
    /// forgetting one early.
    pub max_revoked: usize,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            default_ttl_s: DEFAULT_TTL_S,
            max_ttl_s: MAX_TTL_S,
            max_revoked: 1 << 20,
        }
    }
}

/// A freshly issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The opaque token for `Authorization: Bearer`.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// What a verified token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaims<'a> {
    /// Agent id.
    pub agent: &'a str,
    /// The key id it is bound to.
    pub key_id: u64,
    /// Expiry, Unix seconds.
    pub expires_s: i64,
    /// Token id.
    pub token_id: [u8; 16],
}

/// An owned copy of [`TokenClaims`] (to revoke the token a request came with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenId {
    /// Agent id.
    pub agent: String,
    /// The key id it is bound to.
    pub key_id: u64,
    /// Expiry, Unix seconds.
    pub expires_s: i64,
    /// Token id.
    pub token_id: [u8; 16],
}

impl From<TokenClaims<'_>> for TokenId {
    fn from(c: TokenClaims<'_>) -> Self {
        TokenId {
            agent: c.agent.to_owned(),
            key_id: c.key_id,
            expires_s: c.expires_s,
            token_id: c.token_id,
        }
    }
}

#[derive(Deserialize)]
struct RevokedData {
    token_id: String,
    expires_at: Timestamp,
}

/// Issues and checks bearer tokens and keeps the revoked set.
pub struct TokenAuthority {
    mac: HmacSha256,
    config: TokenConfig,
    store: EventStore,
    revoked: RwLock<HashMap<[u8; 16], i64>>,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("config", &self.config)
            .field("revoked", &self.revoked_len())
            .finish_non_exhaustive()
    }
}

fn feed(mac: &mut HmacSha256, agent: &[u8], key_id: &[u8], expiry: &[u8], token_id: &[u8]) {
    for part in [
        b"LH1-TOKEN\n".as_slice(),
        agent,
        b"\n",
        key_id,
        b"\n",
        expiry,
        b"\n",
        token_id,
    ] {
        mac.update(part);
    }
}

impl TokenAuthority {
    /// Opens the authority: rebuilds the revoked set from `$sessions`.
    pub fn open(
        store: EventStore,
        master: &MasterKey,
        config: TokenConfig,
        now: Timestamp,
    ) -> Result<Self> {
        if config.max_ttl_s == 0
            || config.max_ttl_s > MAX_TTL_S
            || config.default_ttl_s > config.max_ttl_s
        {
            return Err(Error::InvalidConfig(
                "token ttl: 0 < default_ttl_s <= max_ttl_s <= 86400",
            ));
        }
        let mut key = master.token_key();
        let mac = <HmacSha256 as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
        crate::keys::wipe(&mut key);
        let auth = TokenAuthority {
            mac,
            config,
            store,
            revoked: RwLock::new(HashMap::new()),
        };
        auth.load(now)?;
        Ok(auth)
    }

    fn load(&self, now: Timestamp) -> Result<()> {
        // A token revoked more than MAX_TTL_S (plus an hour of clock slack) ago
        // has expired: older events cannot matter.
        let since = now.add_millis(-((MAX_TTL_S as i64 + 3600) * 1000));
        let mut q = Query {
            since: Some(since),
            limit: Query::MAX_LIMIT,
            ..Query::new(Filter::stream(SESSIONS_STREAM))
        };
        let now_s = now.unix_secs();
        let mut set = self.revoked.write();
        loop {
            let page = self.store.read(&q)?;
            for e in &page.events {
                if e.event_type != TOKEN_REVOKED {
                    continue;
                }
                let d: RevokedData =
                    serde_json::from_value(e.data.clone()).map_err(|err| Error::InvalidEvent {
                        seq: e.seq,
                        reason: err.to_string(),
                    })?;
                let id = lower_hex16(d.token_id.as_bytes()).ok_or_else(|| Error::InvalidEvent {
                    seq: e.seq,
                    reason: "token_id is not 32 lowercase hex characters".into(),
                })?;
                let exp = d.expires_at.unix_secs();
                if exp > now_s {
                    set.insert(id, exp);
                }
            }
            match page.next {
                Some(n) => q = q.resume(n),
                None => return Ok(()),
            }
        }
    }

    /// Issues a token for `caller`, valid `ttl_s` seconds (default
    /// [`TokenConfig::default_ttl_s`], at most [`TokenConfig::max_ttl_s`]).
    pub fn issue(
        &self,
        caller: &Caller,
        ttl_s: Option<u64>,
        now: Timestamp,
    ) -> Result<IssuedToken> {
        let ttl = ttl_s.unwrap_or(self.config.default_ttl_s);
        if ttl == 0 || ttl > self.config.max_ttl_s {
            return Err(Error::InvalidTtl {
                ttl_s: ttl,
                max: self.config.max_ttl_s,
            });
        }
        let mut id = [0u8; 16];
        random_bytes(&mut id)?;
        let id_hex = hex::encode(id);
        let expires_s = now.unix_secs() + ttl as i64;
        let key_id = caller.key_id.to_string();
        let expiry = expires_s.to_string();
        let mut mac = self.mac.clone();
        feed(
            &mut mac,
            caller.agent.as_bytes(),
            key_id.as_bytes(),
            expiry.as_bytes(),
            id_hex.as_bytes(),
        );
        let sig = hex::encode(mac.finalize().into_bytes());
        Ok(IssuedToken {
            token: format!("lh1.{}.{key_id}.{expiry}.{id_hex}.{sig}", caller.agent),
            expires_at: Timestamp::from_unix_secs(expires_s),
        })
    }

    /// Checks a token's form, MAC (constant time), expiry and revocation. The
    /// caller then checks the agent and key id against the registry.
    pub fn check<'t>(
        &self,
        token: &'t [u8],
        now: Timestamp,
    ) -> Result<TokenClaims<'t>, Unauthenticated> {
        let claims = self
            .parse_and_verify(token)
            .ok_or(Unauthenticated::InvalidToken)?;
        if now.unix_secs() >= claims.expires_s {
            return Err(Unauthenticated::ExpiredToken);
        }
        if self.revoked.read().contains_key(&claims.token_id) {
            return Err(Unauthenticated::RevokedToken);
        }
        Ok(claims)
    }

    /// The agent of a token whose MAC verifies, expired or revoked or not (for
    /// the audit record of a refused token).
    pub fn verified_agent<'t>(&self, token: &'t [u8]) -> Option<&'t str> {
        self.parse_and_verify(token).map(|c| c.agent)
    }

    fn parse_and_verify<'t>(&self, token: &'t [u8]) -> Option<TokenClaims<'t>> {
        if token.len() > MAX_TOKEN_LEN || !token.starts_with(PREFIX) {
            return None;
        }
        // Only the agent id may contain dots, so split the other fields from the right.
        let mut parts = token[PREFIX.len()..].rsplitn(5, |&b| b == b'.');
        let sig = lower_hex32(parts.next()?)?;
        let id_hex = parts.next()?;
        let token_id = lower_hex16(id_hex)?;
        let expiry_raw = parts.next()?;
        let expires_s = i64::try_from(canonical_decimal(expiry_raw)?).ok()?;
        let key_raw = parts.next()?;
        let key_id = canonical_decimal(key_raw)?;
        let agent = valid_agent(parts.next()?)?;
        let mut mac = self.mac.clone();
        feed(&mut mac, agent.as_bytes(), key_raw, expiry_raw, id_hex);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        if !bool::from(expected.ct_eq(&sig)) {
            return None;
        }
        Some(TokenClaims {
            agent,
            key_id,
            expires_s,
            token_id,
        })
    }

    /// Revokes one token until its expiry: appends `security.token_revoked` to
    /// `$sessions`, then refuses it. `actor` is the agent asking (and the
    /// request's id, the event's `correlation_id`, when an [`Actor`] names it).
    pub async fn revoke(
        &self,
        token: &TokenId,
        actor: impl Into<Actor<'_>>,
        now: Timestamp,
    ) -> Result<()> {
        let actor = actor.into();
        {
            let mut set = self.revoked.write();
            if set.len() >= self.config.max_revoked {
                let now_s = now.unix_secs();
                set.retain(|_, exp| *exp > now_s);
                if set.len() >= self.config.max_revoked {
                    return Err(Error::RevocationsFull {
                        capacity: self.config.max_revoked,
                    });
                }
            }
        }
        let ev = actor.stamp(NewEvent::new(
            SESSIONS_STREAM,
            TOKEN_REVOKED,
            json!({"agent": token.agent, "key_id": token.key_id, "token_id": hex::encode(token.token_id),
                   "expires_at": Timestamp::from_unix_secs(token.expires_s)}),
        ));
        self.store.append_one(ev).await?;
        self.revoked.write().insert(token.token_id, token.expires_s);
        Ok(())
    }

    /// Forgets revoked tokens that have expired.
    pub fn prune(&self, now: Timestamp) {
        let now_s = now.unix_secs();
        self.revoked.write().retain(|_, exp| *exp > now_s);
    }

    /// Revoked, unexpired tokens remembered.
    pub fn revoked_len(&self) -> usize {
        self.revoked.read().len()
    }

    /// The settings in force.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }
}

fn lower_hex16(v: &[u8]) -> Option<[u8; 16]> {
    crate::headers::lower_hex(v)
}
