//! Rate limits per agent and action class (PROTOCOL.md 2.4), by GCRA.
//!
//! GCRA keeps one number per (agent, class): the theoretical arrival time (TAT)
//! of the next request. A request at `now` is allowed when
//! `max(TAT, now) - now <= (burst - 1) * T` (with `T = 60 s / per_minute`), and then
//! moves TAT to `max(TAT, now) + T`; refused, it learns exactly when it would be
//! allowed. Written here rather than taken from `governor` because it is twenty
//! lines, it must read time from the injected [`Clock`](lighthouse_event_store::Clock),
//! quotas differ per role inside one keyed limiter, and idle state must be
//! reclaimed exactly (below) — all of which would need adapters around governor.
//!
//! Reclaiming: once every TAT of an agent is `<= now`, its entry says nothing a
//! missing entry would not (a full burst is available either way), so it is
//! removed. Sweeps run per shard at most every [`RateConfig::sweep_interval_ms`],
//! and the number of tracked agents is capped by [`RateConfig::max_agents`].

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use lighthouse_event_store::Timestamp;
use parking_lot::Mutex;

use crate::authz::ActionClass;
use crate::caller::Role;
use crate::error::{Error, Result};
use crate::refusal::Unavailable;

/// Requests per minute with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Requests allowed at once from a rested state.
    pub burst: u32,
}

impl Quota {
    /// `per_minute` with `burst`.
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Quota { per_minute, burst }
    }

    /// Microseconds between requests at the sustained rate.
    fn interval_us(self) -> i64 {
        60_000_000 / i64::from(self.per_minute.max(1))
    }

    fn tolerance_us(self) -> i64 {
        self.interval_us() * i64::from(self.burst.max(1) - 1)
    }
}

/// Quotas per role and class; `None` means no limit for that pair (the role is
/// not permitted those actions, so step 7 refuses them with `403`). PROTOCOL.md
/// 2.4 gives observers no `write` quota, but an observer may send the two
/// write-class requests every role may (`POST /mcp`, `DELETE /v1/sessions/current`):
/// they get the operator's write quota rather than none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Indexed `[role][class]` in the orders of [`Role`] and [`ActionClass::ALL`].
    pub table: [[Option<Quota>; 5]; 4],
}

const fn q(per_minute: u32, burst: u32) -> Option<Quota> {
    Some(Quota::new(per_minute, burst))
}

impl Default for RateLimits {
    /// PROTOCOL.md 2.4.
    fn default() -> Self {
        RateLimits {
            table: [
                // elicit, respond, write, read, session
                [
                    q(600, 60),
                    q(1200, 120),
                    q(3000, 300),
                    q(6000, 600),
                    q(60, 10),
                ], // agent
                [None, None, q(600, 60), q(6000, 600), q(60, 10)], // observer
                [None, None, q(600, 60), q(6000, 600), q(60, 10)], // operator
                [
                    q(600, 60),
                    q(1200, 120),
                    q(3000, 300),
                    q(6000, 600),
                    q(60, 10),
                ], // admin
            ],
        }
    }
}

fn role_index(r: Role) -> usize {
    match r {
        Role::Agent => 0,
        Role::Observer => 1,
        Role::Operator => 2,
        Role::Admin => 3,
    }
}

impl RateLimits {
    /// The quota of `role` for `class`.
    pub fn quota(&self, role: Role, class: ActionClass) -> Option<Quota> {
        self.table[role_index(role)][class.index()]
    }

    /// Sets the quota of `role` for `class`.
    pub fn set(&mut self, role: Role, class: ActionClass, quota: Option<Quota>) {
        self.table[role_index(role)][class.index()] = quota;
    }
}

/// Rate limiter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// The quotas (default PROTOCOL.md 2.4).
    pub limits: RateLimits,
    /// Most agents tracked at once (default 1,000,000, about 64 bytes each plus
    /// the id), split evenly over the shards (rounded up). Only authenticated
    /// agents reach the limiter, so this is at most the number of registered
    /// agents active within the last refill period.
    pub max_agents: usize,
    /// Least time between sweeps of a shard for idle agents (default 10 s).
    pub sweep_interval_ms: i64,
    /// Lock shards (default 8).
    pub shards: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            limits: RateLimits::default(),
            max_agents: 1_000_000,
            sweep_interval_ms: 10_000,
            shards: 8,
        }
    }
}

/// The outcome of a refused rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateRefusal {
    /// Over the quota; milliseconds until the next permitted request (at least 1).
    Limited {
        /// Milliseconds to wait.
        retry_after_ms: u64,
    },
    /// The limiter tracks [`RateConfig::max_agents`] busy agents already.
    Unavailable(Unavailable),
}

struct Shard {
    /// TAT per class in Unix microseconds; an agent absent means "rested".
    agents: HashMap<Box<str>, [i64; 5]>,
    next_sweep_us: i64,
}

/// GCRA rate limiter keyed by agent and action class.
pub struct RateLimiter {
    config: RateConfig,
    keys: RandomState,
    shards: Box<[Mutex<Shard>]>,
    per_shard_max: usize,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter with `config`.
    pub fn new(config: RateConfig) -> Result<Self> {
        if config.shards == 0 || config.max_agents < config.shards {
            return Err(Error::InvalidConfig(
                "rate limiter: shards > 0 and max_agents >= shards",
            ));
        }
        for row in &config.limits.table {
            for quota in row.iter().flatten() {
                if quota.per_minute == 0 || quota.burst == 0 {
                    return Err(Error::InvalidConfig("rate limit quotas must be positive"));
                }
            }
        }
        Ok(RateLimiter {
            config,
            keys: RandomState::new(),
            shards: (0..config.shards)
                .map(|_| {
                    Mutex::new(Shard {
                        agents: HashMap::new(),
                        next_sweep_us: i64::MIN,
                    })
                })
                .collect(),
            per_shard_max: config.max_agents.div_ceil(config.shards),
        })
    }

    /// Counts one request of `class` by `agent` (of `role`) at `now`.
    pub fn check(
        &self,
        agent: &str,
        role: Role,
        class: ActionClass,
        now: Timestamp,
    ) -> Result<(), RateRefusal> {
        let Some(quota) = self.config.limits.quota(role, class) else {
            return Ok(());
        };
        let now_us = now.unix_millis().saturating_mul(1000);
        let shard_i = (self.keys.hash_one(agent) % self.shards.len() as u64) as usize;
        let mut shard = self.shards[shard_i].lock();
        if now_us >= shard.next_sweep_us {
            sweep(&mut shard, now_us);
            shard.next_sweep_us = now_us.saturating_add(self.config.sweep_interval_ms * 1000);
        }
        let c = class.index();
        let tat = shard
            .agents
            .get(agent)
            .map_or(i64::MIN, |t| t[c])
            .max(now_us);
        let over = tat - now_us - quota.tolerance_us();
        if over > 0 {
            // Milliseconds, rounded up so that waiting that long is enough.
            let ms = (over as u64).div_ceil(1000).max(1);
            return Err(RateRefusal::Limited { retry_after_ms: ms });
        }
        let new_tat = tat + quota.interval_us();
        match shard.agents.get_mut(agent) {
            Some(t) => t[c] = new_tat,
            None => {
                if shard.agents.len() >= self.per_shard_max {
                    sweep(&mut shard, now_us);
                    if shard.agents.len() >= self.per_shard_max {
                        return Err(RateRefusal::Unavailable(Unavailable::RateLimiterFull));
                    }
                }
                let mut t = [i64::MIN; 5];
                t[c] = new_tat;
                shard.agents.insert(agent.into(), t);
            }
        }
        Ok(())
    }

    /// Removes every agent whose state equals a rested one (all TATs passed).
    pub fn reclaim_idle(&self, now: Timestamp) {
        let now_us = now.unix_millis().saturating_mul(1000);
        for s in self.shards.iter() {
            sweep(&mut s.lock(), now_us);
        }
    }

    /// Agents currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().agents.len()).sum()
    }

    /// The settings in force.
    pub fn config(&self) -> &RateConfig {
        &self.config
    }
}

fn sweep(shard: &mut Shard, now_us: i64) {
    shard
        .agents
        .retain(|_, tats| tats.iter().any(|&t| t > now_us));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_790_000_000_000 + ms)
    }

    #[test]
    fn defaults_are_the_protocol_table() {
        let l = RateLimits::default();
        assert_eq!(
            l.quota(Role::Agent, ActionClass::Elicit),
            Some(Quota::new(600, 60))
        );
        assert_eq!(
            l.quota(Role::Agent, ActionClass::Read),
            Some(Quota::new(6000, 600))
        );
        // Not in the table, which has no limit there: an observer's MCP
        // envelopes and session ends are write-class requests.
        assert_eq!(
            l.quota(Role::Observer, ActionClass::Write),
            Some(Quota::new(600, 60))
        );
        assert_eq!(l.quota(Role::Observer, ActionClass::Elicit), None);
        assert_eq!(
            l.quota(Role::Operator, ActionClass::Write),
            Some(Quota::new(600, 60))
        );
        assert_eq!(l.quota(Role::Operator, ActionClass::Elicit), None);
        assert_eq!(
            l.quota(Role::Admin, ActionClass::Session),
            Some(Quota::new(60, 10))
        );
    }

    #[test]
    fn classes_are_limited_independently() {
        let r = RateLimiter::new(RateConfig::default()).unwrap();
        for _ in 0..10 {
            r.check("a", Role::Agent, ActionClass::Session, at(0))
                .unwrap();
        }
        assert!(
            r.check("a", Role::Agent, ActionClass::Session, at(0))
                .is_err()
        );
        assert!(r.check("a", Role::Agent, ActionClass::Read, at(0)).is_ok());
        assert!(
            r.check("b", Role::Agent, ActionClass::Session, at(0))
                .is_ok()
        );
    }

    #[test]
    fn tracked_agents_are_bounded_and_idle_ones_make_room() {
        let config = RateConfig {
            max_agents: 3,
            shards: 1,
            ..RateConfig::default()
        };
        let r = RateLimiter::new(config).unwrap();
        for a in ["a", "b", "c"] {
            r.check(a, Role::Agent, ActionClass::Write, at(0)).unwrap();
        }
        assert_eq!(
            r.check("d", Role::Agent, ActionClass::Write, at(0)),
            Err(RateRefusal::Unavailable(Unavailable::RateLimiterFull))
        );
        assert_eq!(r.tracked(), 3);
        // One write costs 20 ms of a 3000/min quota; after that the three are idle.
        r.check("d", Role::Agent, ActionClass::Write, at(20))
            .unwrap();
        assert_eq!(r.tracked(), 1);
    }

    #[test]
    fn unlimited_pairs_pass() {
        let r = RateLimiter::new(RateConfig::default()).unwrap();
        for _ in 0..1000 {
            r.check("o", Role::Observer, ActionClass::Elicit, at(0))
                .unwrap();
        }
        assert_eq!(r.tracked(), 0);
    }
}
