//! Audit of refusals: `security.violation` records on stream `$security`, sampled
//! so that a flood of refusals cannot fill the disk.
//!
//! Per minute (of the injected clock) at most [`AuditConfig::per_agent_per_minute`]
//! records are produced per agent (refusals naming no registered agent share one
//! anonymous budget) and at most [`AuditConfig::total_per_minute`] in all. The rest
//! are counted, and the first refusal of a later minute (or
//! [`ViolationSampler::flush`]) yields one `security.violations_suppressed` record
//! with the counts of the minute that ended.

use std::collections::{BTreeMap, HashMap};

use lighthouse_event_store::{NewEvent, Timestamp};
use parking_lot::Mutex;
use serde_json::json;

use crate::authz::Action;
use crate::refusal::Refusal;

/// The stream audit records go to.
pub const SECURITY_STREAM: &str = "$security";
/// Type of one refusal record.
pub const SECURITY_VIOLATION: &str = "security.violation";
/// Type of the per-minute count of records not written.
pub const VIOLATIONS_SUPPRESSED: &str = "security.violations_suppressed";
/// Longest route text kept in a record (the path is attacker-chosen).
pub const MAX_ROUTE_CHARS: usize = 200;
/// Most agents named individually in a suppression summary; the rest are summed.
pub const MAX_SUMMARY_AGENTS: usize = 100;

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// Records per agent per minute (default 10).
    pub per_agent_per_minute: u32,
    /// Records per minute in all (default 600).
    pub total_per_minute: u32,
    /// Agents tracked per minute (default 100,000; further agents share the
    /// anonymous budget). Only registered agents get their own budget.
    pub max_tracked: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            per_agent_per_minute: 10,
            total_per_minute: 600,
            max_tracked: 100_000,
        }
    }
}

/// One refusal, as the gate saw it.
#[derive(Debug, Clone, Copy)]
pub struct Violation<'a> {
    /// The refusal.
    pub refusal: &'a Refusal,
    /// The registered agent the request named (or authenticated as), if any.
    pub agent: Option<&'a str>,
    /// Whether the request proved it is that agent (true for `forbidden` and
    /// `replayed_request`).
    pub authenticated: bool,
    /// The agent id the request claimed when it is not a registered one.
    pub claimed_agent: Option<&'a str>,
    /// The action asked for.
    pub action: Option<Action>,
    /// HTTP method.
    pub method: &'a str,
    /// Wire path (truncated to [`MAX_ROUTE_CHARS`]).
    pub path: &'a str,
    /// When.
    pub time: Timestamp,
}

#[derive(Default)]
struct Counts {
    recorded: u32,
    suppressed: u64,
    by_kind: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct Minute {
    minute: i64,
    total_recorded: u32,
    by_agent: HashMap<Option<Box<str>>, Counts>,
}

/// Decides which refusals become records.
pub struct ViolationSampler {
    config: AuditConfig,
    state: Mutex<Minute>,
}

impl std::fmt::Debug for ViolationSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViolationSampler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl ViolationSampler {
    /// A sampler with `config`.
    pub fn new(config: AuditConfig) -> Self {
        ViolationSampler {
            config,
            state: Mutex::new(Minute {
                minute: i64::MIN,
                ..Minute::default()
            }),
        }
    }

    /// The events to append for `v`: possibly the summary of the previous minute,
    /// then the record itself unless its budget is spent.
    pub fn record(&self, v: &Violation<'_>) -> Vec<NewEvent> {
        let minute = v.time.unix_millis().div_euclid(60_000);
        let mut out = Vec::new();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.minute != minute {
            out.extend(summary(st));
            *st = Minute {
                minute,
                ..Minute::default()
            };
        }
        let tracked = st.by_agent.len() < self.config.max_tracked;
        let key: Option<Box<str>> = match v.agent {
            Some(a) if tracked || st.by_agent.contains_key(&Some(Box::from(a))) => Some(a.into()),
            _ => None,
        };
        let total_ok = st.total_recorded < self.config.total_per_minute;
        let counts = st.by_agent.entry(key).or_default();
        let kind = v.refusal.code();
        if total_ok && counts.recorded < self.config.per_agent_per_minute {
            counts.recorded += 1;
            st.total_recorded += 1;
            out.push(violation_event(v));
        } else {
            counts.suppressed += 1;
            *counts.by_kind.entry(kind).or_default() += 1;
        }
        out
    }

    /// The summary of a minute that has ended by `now`, if anything in it was
    /// suppressed (call it periodically so quiet periods still report).
    pub fn flush(&self, now: Timestamp) -> Option<NewEvent> {
        let minute = now.unix_millis().div_euclid(60_000);
        let mut st = self.state.lock();
        if st.minute == i64::MIN || st.minute >= minute {
            return None;
        }
        let ev = summary(&st);
        *st = Minute {
            minute,
            ..Minute::default()
        };
        ev
    }

    /// The settings in force.
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// Agents with counters in the current minute (bounded by `max_tracked` + 1).
    pub fn tracked(&self) -> usize {
        self.state.lock().by_agent.len()
    }
}

fn violation_event(v: &Violation<'_>) -> NewEvent {
    let detail = match v.refusal {
        Refusal::Unauthenticated(u) => Some(u.as_str()),
        _ => None,
    };
    let header = match v.refusal {
        Refusal::Unauthenticated(u) => u.header(),
        _ => None,
    };
    let data = json!({
        "kind": v.refusal.code(),
        "detail": detail,
        "header": header,
        "agent": v.agent,
        "authenticated": v.authenticated,
        "claimed_agent": v.claimed_agent,
        "action": v.action.map(Action::as_str),
        "route": format!("{} {}", truncate(v.method, 16), truncate(v.path, MAX_ROUTE_CHARS)),
        "time": v.time,
    });
    let ev = NewEvent::new(SECURITY_STREAM, SECURITY_VIOLATION, data);
    match (v.authenticated, v.agent) {
        (true, Some(a)) => ev.with_agent(a),
        _ => ev,
    }
}

fn summary(st: &Minute) -> Option<NewEvent> {
    let mut agents: Vec<(&Option<Box<str>>, &Counts)> = st
        .by_agent
        .iter()
        .filter(|(_, c)| c.suppressed > 0)
        .collect();
    if agents.is_empty() {
        return None;
    }
    agents.sort_by(|a, b| b.1.suppressed.cmp(&a.1.suppressed).then(a.0.cmp(b.0)));
    let total: u64 = agents.iter().map(|(_, c)| c.suppressed).sum();
    let named: Vec<_> = agents
        .iter()
        .take(MAX_SUMMARY_AGENTS)
        .map(|(a, c)| json!({"agent": a.as_deref(), "suppressed": c.suppressed, "by_kind": c.by_kind}))
        .collect();
    let others: u64 = agents
        .iter()
        .skip(MAX_SUMMARY_AGENTS)
        .map(|(_, c)| c.suppressed)
        .sum();
    Some(NewEvent::new(
        SECURITY_STREAM,
        VIOLATIONS_SUPPRESSED,
        json!({
            "minute_start": Timestamp::from_unix_millis(st.minute * 60_000),
            "suppressed": total,
            "agents": named,
            "other_agents_suppressed": others,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v<'a>(r: &'a Refusal, agent: Option<&'a str>, ms: i64) -> Violation<'a> {
        Violation {
            refusal: r,
            agent,
            authenticated: false,
            claimed_agent: None,
            action: None,
            method: "POST",
            path: "/v1/elicitations",
            time: Timestamp::from_unix_millis(1_790_000_040_000 + ms),
        }
    }

    #[test]
    fn floods_are_sampled_per_agent_and_counted() {
        let s = ViolationSampler::new(AuditConfig::default());
        let r = Refusal::BadSignature;
        let mut recorded = 0;
        for _ in 0..1000 {
            recorded += s.record(&v(&r, Some("alice"), 0)).len();
        }
        assert_eq!(recorded, 10);
        // Another agent has its own budget.
        assert_eq!(s.record(&v(&r, Some("bob"), 0)).len(), 1);
        // Next minute: the summary, then the record.
        let evs = s.record(&v(&r, Some("alice"), 60_000));
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event_type, VIOLATIONS_SUPPRESSED);
        assert_eq!(evs[0].data["suppressed"], 990);
        assert_eq!(evs[0].data["agents"][0]["agent"], "alice");
        assert_eq!(evs[0].data["agents"][0]["by_kind"]["bad_signature"], 990);
        assert_eq!(evs[1].event_type, SECURITY_VIOLATION);
        assert_eq!(evs[1].data["kind"], "bad_signature");
    }

    #[test]
    fn total_budget_caps_many_agents_and_tracking_is_bounded() {
        let cfg = AuditConfig {
            per_agent_per_minute: 10,
            total_per_minute: 25,
            max_tracked: 20,
        };
        let s = ViolationSampler::new(cfg);
        let r = Refusal::StaleRequest;
        let names: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
        let recorded: usize = names
            .iter()
            .map(|n| s.record(&v(&r, Some(n), 0)).len())
            .sum();
        // 20 tracked agents get one record each, the other 80 share the anonymous
        // budget, and the total cap stops at 25.
        assert_eq!(recorded, 25);
        assert_eq!(s.tracked(), 21);
        let summary = s
            .flush(Timestamp::from_unix_millis(1_790_000_100_000))
            .unwrap();
        assert_eq!(summary.data["suppressed"], 75);
        assert!(
            s.flush(Timestamp::from_unix_millis(1_790_000_100_000))
                .is_none()
        );
    }

    #[test]
    fn long_paths_are_truncated() {
        let s = ViolationSampler::new(AuditConfig::default());
        let r = Refusal::BadSignature;
        let path = "/x".repeat(10_000);
        let mut viol = v(&r, None, 0);
        viol.path = &path;
        let ev = s.record(&viol).pop().unwrap();
        assert!(ev.data["route"].as_str().unwrap().len() <= MAX_ROUTE_CHARS + 5 + 1);
    }
}
