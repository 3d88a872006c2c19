//! What the commands print: text for people, or the JSON body with `--json`.

use std::io::Write;

use lighthouse_client::{AgentEvent, AgentPayload};
use lighthouse_core::api::{
    DrainReport, Elicitation, Event, Flag, FlagChange, FlagEvaluation, Latency, Me, Message,
    OpsStats, VerifyResponse,
};
use serde::Serialize;

use crate::run::Failure;

/// Standard output, in one of the two modes.
pub struct Out {
    json: bool,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Out { json }
    }

    /// Prints `value` as one line of JSON with `--json`, else the text `human` makes.
    pub fn show<T: Serialize>(
        &mut self,
        value: &T,
        human: impl FnOnce(&T) -> String,
    ) -> Result<(), Failure> {
        let text = if self.json {
            serde_json::to_string(value)
                .map_err(|e| Failure::Broken(format!("cannot print JSON: {e}")))?
        } else {
            human(value)
        };
        self.line(&text)
    }

    fn line(&mut self, text: &str) -> Result<(), Failure> {
        let mut stdout = std::io::stdout().lock();
        let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::OutputClosed),
            Err(e) => Err(Failure::Broken(format!("cannot write to stdout: {e}"))),
        }
    }
}

fn compact(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn shorten(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// One elicitation in full.
pub fn elicitation(e: &Elicitation) -> String {
    let mut s = format!(
        "{}  {}  {} → {}\n  message:  {}\n  created:  {}\n  expires:  {}",
        e.id,
        e.status.as_str(),
        e.from,
        e.to,
        e.message,
        e.created_at,
        e.expires_at
    );
    if let Some(r) = &e.response {
        let by = r.by.as_deref().unwrap_or("the bridge");
        let action = compact(&r.action);
        s.push_str(&format!(
            "\n  response: {} by {by}",
            action.trim_matches('"')
        ));
        if let Some(c) = &r.content {
            s.push_str(&format!("\n  content:  {}", compact(c)));
        }
        if let Some(reason) = &r.reason {
            s.push_str(&format!("\n  reason:   {reason}"));
        }
    }
    s
}

/// One elicitation on one line.
pub fn elicitation_row(e: &Elicitation) -> String {
    format!(
        "{}  {:<9}  {} → {}  {}  {}",
        e.id,
        e.status.as_str(),
        e.from,
        e.to,
        e.created_at,
        shorten(&e.message, 60)
    )
}

/// A list of elicitations.
pub fn elicitation_rows(items: &[Elicitation], next: Option<&str>) -> String {
    if items.is_empty() {
        return "(none)".to_owned();
    }
    let mut lines: Vec<String> = items.iter().map(elicitation_row).collect();
    if let Some(c) = next {
        lines.push(format!("(more: --cursor {c})"));
    }
    lines.join("\n")
}

/// One message on one line.
pub fn message_row(m: &Message) -> String {
    format!(
        "{}  {}  from {}  {}  {}",
        m.seq,
        m.id,
        m.from,
        m.created_at,
        compact(&m.body)
    )
}

/// One event on one line.
pub fn event_row(e: &Event) -> String {
    format!(
        "{}  {}  {}@{}  {}  {}  {}",
        e.seq,
        e.time,
        e.stream,
        e.version,
        e.event_type,
        e.agent.as_deref().unwrap_or("-"),
        compact(&e.data)
    )
}

/// One event of the agent stream.
pub fn agent_event(ev: &AgentEvent) -> String {
    let what = match &ev.payload {
        AgentPayload::Requested(e) => {
            format!("{} from {}: {}", e.id, e.from, shorten(&e.message, 80))
        }
        AgentPayload::Resolved(e) => {
            format!("{} {} ({} → {})", e.id, e.status.as_str(), e.from, e.to)
        }
        AgentPayload::Message(m) => format!("{} from {}: {}", m.id, m.from, compact(&m.body)),
        AgentPayload::Other { data, .. } => compact(data),
    };
    format!("[{}] {}  {}", ev.seq, ev.kind(), what)
}

/// The JSON line `watch --json` prints for an agent event.
#[derive(Serialize)]
pub struct AgentEventJson {
    pub id: u64,
    pub event: String,
    pub data: serde_json::Value,
}

impl From<&AgentEvent> for AgentEventJson {
    fn from(ev: &AgentEvent) -> Self {
        AgentEventJson {
            id: ev.seq,
            event: ev.kind().to_owned(),
            data: ev.data(),
        }
    }
}

/// One flag on one line.
pub fn flag_row(f: &Flag) -> String {
    format!(
        "{}  {}  {}%{}  v{}  by {}",
        f.key,
        if f.enabled { "enabled " } else { "disabled" },
        f.rollout_percent.as_percent(),
        if f.killed { "  KILLED" } else { "" },
        f.version,
        f.updated_by
    )
}

/// One flag in full.
pub fn flag(f: &Flag) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(",")
        }
    };
    let variants = if f.variants.is_empty() {
        "-".to_owned()
    } else {
        f.variants
            .iter()
            .map(|v| format!("{}={}", v.name, v.weight))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{}\n  description: {}\n  allow: {}  deny: {}  requires: {}\n  variants: {}\n  updated: {}",
        flag_row(f),
        if f.description.is_empty() {
            "-"
        } else {
            &f.description
        },
        list(&f.allow),
        list(&f.deny),
        list(&f.requires),
        variants,
        f.updated_at
    )
}

/// One change of a flag's history.
pub fn flag_change(c: &FlagChange) -> String {
    let kind = compact(&c.kind);
    format!(
        "v{}  {}  {}  by {}  {}",
        c.version,
        c.time,
        kind.trim_matches('"'),
        c.actor,
        c.reason
    )
}

/// An evaluation.
pub fn evaluation(e: &FlagEvaluation) -> String {
    format!(
        "{} (reason {}, bucket {}{})",
        if e.enabled { "on" } else { "off" },
        e.reason,
        e.bucket,
        e.variant
            .as_deref()
            .map(|v| format!(", variant {v}"))
            .unwrap_or_default()
    )
}

fn latency(name: &str, l: &Latency) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    format!(
        "  {name:<22} n={:<8} p50={} p95={} p99={} max={} ms",
        l.count,
        f(l.p50),
        f(l.p95),
        f(l.p99),
        f(l.max)
    )
}

/// `ops stats`.
pub fn stats(s: &OpsStats) -> String {
    let e = &s.elicitations;
    let ratio = s
        .http
        .error_ratio
        .map_or("-".to_owned(), |r| format!("{:.4}", r));
    [
        format!("window: last {} s", s.window_s),
        format!(
            "elicitations: created {} accepted {} declined {} cancelled {} expired {}; active now {}",
            e.created, e.accepted, e.declined, e.cancelled, e.expired, s.active_elicitations
        ),
        latency("delivery_ms", &e.delivery_ms),
        latency("answer_ms", &e.answer_ms),
        format!(
            "http: {} requests, {} 5xx, error ratio {}",
            s.http.requests, s.http.errors_5xx, ratio
        ),
        latency("http.latency_ms", &s.http.latency_ms),
        format!("streams open: {}", s.connected_streams),
        format!(
            "store: head seq {}, {} bytes",
            s.store.head_seq, s.store.size_bytes
        ),
        latency("store.append_ms", &s.store.append_ms),
    ]
    .join("\n")
}

/// `ops drain`.
pub fn drain(d: &DrainReport) -> String {
    format!(
        "resolved while draining {}, cancelled {}, remaining {}, took {} ms",
        d.resolved_while_draining, d.cancelled, d.remaining, d.elapsed_ms
    )
}

/// `ops verify`.
pub fn verify(v: &VerifyResponse) -> String {
    if v.ok {
        format!(
            "ok: {} records checked up to seq {} in {} ms",
            v.checked, v.head_seq, v.elapsed_ms
        )
    } else {
        format!(
            "BROKEN: the chain fails at seq {} ({} records checked up to seq {})",
            v.first_bad_seq.map_or("?".to_owned(), |s| s.to_string()),
            v.checked,
            v.head_seq
        )
    }
}

/// `me`.
pub fn me(m: &Me) -> String {
    format!("{} ({}, key {})", m.agent, m.role.as_str(), m.key_id)
}
