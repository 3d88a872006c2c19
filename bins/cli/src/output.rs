//! What the commands print: text for people, or the JSON body with `--json`.
//!
//! Text for people carries strings other agents wrote (messages, reasons,
//! descriptions, problem details). Printed raw, an escape sequence in one could
//! clear or rewrite the reader's terminal, or set its clipboard (OSC 52), so
//! every control character in the text is shown escaped ([`terminal_safe`]);
//! `--json` output is the JSON body as it came, escaped as JSON escapes it.

use std::io::Write;

use lighthouse_client::{AgentEvent, AgentPayload};
use lighthouse_core::api::{
    AgentInfo, DrainReport, Elicitation, Event, Flag, FlagChange, FlagEvaluation, Latency, Me,
    Message, OpsStats, VerifyResponse,
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
            terminal_safe(&human(value))
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

/// `text` with every control character escaped as `\u{..}` (C0 but tab and
/// newline, DEL, C1 `U+0080..=U+009F`), so that it prints as itself on a
/// terminal. Newlines are kept: they are the layout of the text; the free-text
/// fields that could use them to forge a line are laid out by [`one_line`] and
/// [`indented`] first.
pub fn terminal_safe(text: &str) -> String {
    escape_controls(text, true)
}

/// `s` on one line: [`terminal_safe`], with newlines escaped too (`\n`). For
/// stderr lines and one-line fields.
pub fn one_line(s: &str) -> String {
    escape_controls(s, false)
}

fn escape_controls(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push(c),
            '\n' if keep_newlines => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// A free-text field shown after a label: its continuation lines indented by
/// `indent` spaces, so that no line of it reads as a field of the record.
fn indented(s: &str, indent: usize) -> String {
    s.replace('\r', "\\r")
        .replace('\n', &format!("\n{}", " ".repeat(indent)))
}

fn compact(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn shorten(s: &str, max: usize) -> String {
    let flat = s.replace(['\n', '\r'], " ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
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
        indented(&e.message, 12),
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
            s.push_str(&format!("\n  reason:   {}", indented(reason, 12)));
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
///
/// A page may be empty and still not the last (a listing by a terminal status
/// examines a bounded number of records per page), so its cursor is shown.
pub fn elicitation_rows(items: &[Elicitation], next: Option<&str>) -> String {
    if items.is_empty() && next.is_none() {
        return "(none)".to_owned();
    }
    let mut lines: Vec<String> = items.iter().map(elicitation_row).collect();
    if items.is_empty() {
        lines.push("(none on this page)".to_owned());
    }
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

/// A page of `events query`.
///
/// The bridge names a `next` position after every full page, the last one
/// included, and after a page it cut short (PROTOCOL.md 7): so the line says
/// where the next page starts, not that more events exist.
pub fn event_rows(events: &[Event], next: Option<u64>, desc: bool) -> String {
    if events.is_empty() && next.is_none() {
        return "(none)".to_owned();
    }
    let mut lines: Vec<String> = events.iter().map(event_row).collect();
    if events.is_empty() {
        lines.push("(none on this page)".to_owned());
    }
    if let Some(n) = next {
        let from = if desc { "--before" } else { "--after" };
        lines.push(format!("(next page: {from} {n}; it may be empty)"));
    }
    lines.join("\n")
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
    let description = if f.description.is_empty() {
        "-".to_owned()
    } else {
        indented(&f.description, 15)
    };
    format!(
        "{}\n  description: {}\n  allow: {}  deny: {}  requires: {}\n  variants: {}\n  updated: {}",
        flag_row(f),
        description,
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
        one_line(&c.reason)
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

/// `agents list`: a table, one agent per line.
pub fn agent_table(agents: &[AgentInfo]) -> String {
    if agents.is_empty() {
        return "(none)".to_owned();
    }
    let width = agents
        .iter()
        .map(|a| a.id.chars().count())
        .max()
        .unwrap_or(0)
        .max("ID".len());
    let mut lines = vec![format!(
        "{:<width$}  {:<8}  {:>4}  STATUS",
        "ID", "ROLE", "KEY"
    )];
    lines.extend(agents.iter().map(|a| {
        format!(
            "{:<width$}  {:<8}  {:>4}  {}",
            a.id,
            a.role.as_str(),
            a.key_id,
            if a.revoked { "revoked" } else { "active" }
        )
    }));
    lines.join("\n")
}

/// What `agents add` and `agents rotate` print: the credential without its
/// secret, and where it was written. The secret goes to the file only.
#[derive(Serialize)]
pub struct CredentialWritten {
    pub agent: String,
    pub role: lighthouse_core::api::Role,
    pub key_id: u64,
    pub bridge: String,
    pub file: String,
}

/// `agents add` and `agents rotate`, as text.
pub fn credential_written(done: &str, c: &CredentialWritten) -> String {
    format!(
        "{done} {} ({}, key {}); credential written to {} (bridge {})",
        c.agent,
        c.role.as_str(),
        c.key_id,
        c.file,
        c.bridge
    )
}

/// `me`.
pub fn me(m: &Me) -> String {
    format!("{} ({}, key {})", m.agent, m.role.as_str(), m.key_id)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A clear screen, an OSC 52 clipboard write ended by BEL, DEL, and CSI as
    /// a C1 character.
    const HOSTILE: &str = "a\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}b\u{7f}c\u{9b}31md";

    fn no_controls_but_layout(text: &str) {
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{text:?}"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            terminal_safe(HOSTILE),
            r"a\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}b\u{7f}c\u{9b}31md"
        );
        // Tab and newline are layout; carriage return could overwrite a line.
        assert_eq!(terminal_safe("a\tb\nc\rd"), "a\tb\nc\\rd");
        assert_eq!(one_line("a\tb\nc\rd"), "a\tb\\nc\\rd");
        // Not controls: printable Unicode, U+00A0 just after C1, and the
        // characters of our own layout.
        assert_eq!(terminal_safe("é → …\u{a0}"), "é → …\u{a0}");
    }

    #[test]
    fn wire_strings_in_a_record_cannot_reach_the_terminal_or_forge_a_line() {
        let e: Elicitation = serde_json::from_value(json!({
            "id": "el_1", "from": "mallory", "to": "bob",
            "message": format!("{HOSTILE}\n  response: accept by bob"),
            "requested_schema": {}, "status": "declined",
            "created_at": "2026-11-26T07:00:00.000Z", "expires_at": "2026-11-26T07:01:00.000Z",
            "resolved_at": "2026-11-26T07:00:30.000Z",
            "response": {"action": "decline", "content": null, "reason": HOSTILE, "by": "bob"},
            "metadata": {}
        }))
        .unwrap();
        let text = terminal_safe(&elicitation(&e));
        no_controls_but_layout(&text);
        assert!(text.contains(r"\u{1b}]52;c;"), "{text}");
        // The message's second line is indented under it, so it reads as part
        // of the message, not as the record's own response line.
        assert!(
            text.contains("\n              response: accept by bob"),
            "{text}"
        );
        assert_eq!(text.matches("\n  response: ").count(), 1, "{text}");
        let row = terminal_safe(&elicitation_row(&e));
        no_controls_but_layout(&row);
        assert_eq!(row.lines().count(), 1, "{row}");
    }

    #[test]
    fn flag_texts_are_escaped() {
        let flag_json = json!({
            "key": "k", "description": format!("{HOSTILE}\n  allow: forged"),
            "enabled": true, "rollout_percent": 50.0,
            "allow": [], "deny": [], "variants": [], "requires": [], "killed": false,
            "version": 1, "updated_at": "2026-11-26T07:00:00.000Z", "updated_by": "ops"
        });
        let f: Flag = serde_json::from_value(flag_json.clone()).unwrap();
        let text = terminal_safe(&flag(&f));
        no_controls_but_layout(&text);
        assert_eq!(text.matches("\n  allow: ").count(), 1, "{text}");
        let c: FlagChange = serde_json::from_value(json!({
            "version": 2, "time": "2026-11-26T07:00:00.000Z", "type": "flag.killed",
            "actor": "ops", "reason": format!("{HOSTILE}\nv3 forged"),
            "before": null, "after": flag_json, "seq": 5, "correlation_id": null
        }))
        .unwrap();
        let line = terminal_safe(&flag_change(&c));
        no_controls_but_layout(&line);
        assert_eq!(line.lines().count(), 1, "{line}");
    }

    fn event(seq: u64) -> Event {
        serde_json::from_value(json!({
            "seq": seq, "id": format!("ev{seq}"), "stream": "s", "version": seq - 1,
            "type": "t", "time": "2026-11-26T07:00:00.000Z", "agent": "alice",
            "correlation_id": null, "causation_id": null, "data": {}, "metadata": {}
        }))
        .unwrap()
    }

    /// The bridge names a next position after a full last page too: the line
    /// says where to go on, and never that more events exist.
    #[test]
    fn an_events_page_names_its_next_position_without_claiming_more() {
        let page = [event(10), event(11)];
        let text = event_rows(&page, Some(11), false);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.ends_with("(next page: --after 11; it may be empty)"),
            "{text}"
        );
        assert!(!text.contains("more"), "{text}");
        let text = event_rows(&page, Some(10), true);
        assert!(
            text.ends_with("(next page: --before 10; it may be empty)"),
            "{text}"
        );
        assert_eq!(event_rows(&page, None, false).lines().count(), 2);
        assert_eq!(event_rows(&[], None, false), "(none)");
        let text = event_rows(&[], Some(42), false);
        assert!(text.starts_with("(none on this page)\n"), "{text}");
    }

    #[test]
    fn the_agent_table_lines_up() {
        let agents: Vec<AgentInfo> = serde_json::from_value(json!([
            {"id": "admin", "role": "admin", "key_id": 1, "revoked": false},
            {"id": "a-long-agent-id", "role": "agent", "key_id": 12, "revoked": true}
        ]))
        .unwrap();
        let text = agent_table(&agents);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ID               ROLE       KEY  STATUS",
                "admin            admin        1  active",
                "a-long-agent-id  agent       12  revoked",
            ]
        );
        assert_eq!(agent_table(&[]), "(none)");
    }

    /// An empty page that is not the last still shows where to go on.
    #[test]
    fn an_empty_page_with_a_cursor_shows_the_cursor() {
        assert_eq!(elicitation_rows(&[], None), "(none)");
        let text = elicitation_rows(&[], Some("42"));
        assert!(text.contains("--cursor 42"), "{text}");
    }
}
