//! A Server-Sent Events parser (the WHATWG "event stream interpretation"),
//! fed with whatever chunks the network delivers.
//!
//! Lines end with `\n`, `\r\n` or `\r` (a `\r\n` split across chunks counts
//! once); `:` starts a comment; `field: value` loses one space after the colon;
//! `data` lines are joined with `\n`; `id` sets the last event id (ignored when
//! it contains NUL) and persists across events; `retry` with only digits sets
//! the reconnection time; a blank line dispatches the event unless it has no
//! data; a byte-order mark at the very start is dropped, even when the first
//! chunks end inside it. Memory is bounded: an event (its lines together) over the configured
//! size is an error, after which the parser must be reset before it is fed
//! again. The client's streams do not reconnect then: the same event would come
//! again on every resume, so the error ends the stream (docs/CLIENT.md).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event id as of this event (`id:` of this or an earlier event of
    /// the same connection; empty when none was ever sent).
    pub last_event_id: String,
    /// Whether this event carried an `id:` line itself.
    pub has_id: bool,
    /// The `event:` name, `message` when none was given.
    pub event: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// An event grew past the size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// The limit in bytes.
    pub limit: usize,
}

/// The parser state of one connection.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    /// The first bytes of the stream while they may still be a byte-order
    /// mark (at most 3): a network chunk may end inside it.
    lead: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
    has_id: bool,
    event_bytes: usize,
    last_event_id: String,
    retry_ms: Option<u64>,
    comments: u64,
}

impl SseParser {
    /// A parser refusing events over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        SseParser {
            limit,
            line: Vec::new(),
            after_cr: false,
            started: false,
            lead: Vec::new(),
            event: None,
            data: String::new(),
            has_data: false,
            has_id: false,
            event_bytes: 0,
            last_event_id: String::new(),
            retry_ms: None,
            comments: 0,
        }
    }

    /// The latest `retry:` value, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Comment lines seen (the bridge's heartbeats).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// Parses `chunk`, appending every event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), TooLarge> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let mut rest = chunk;
        if !self.started {
            let take = (BOM.len() - self.lead.len()).min(rest.len());
            self.lead.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.lead.len() < BOM.len() && BOM.starts_with(&self.lead) {
                // Still possibly a mark: wait for the next chunk to decide.
                return Ok(());
            }
            self.started = true;
            let lead = std::mem::take(&mut self.lead);
            if lead != BOM {
                self.feed_bytes(&lead, out)?;
            }
        }
        self.feed_bytes(rest, out)
    }

    fn feed_bytes(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), TooLarge> {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(out);
                }
                _ => {
                    self.after_cr = false;
                    if self.event_bytes + self.line.len() >= self.limit {
                        return Err(TooLarge { limit: self.limit });
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            // Comments are not kept, so they do not count towards the limit.
            self.comments += 1;
            return;
        }
        self.event_bytes += line.len() + 1;
        let (name, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ".as_slice()).unwrap_or(v))
            }
            None => (&line[..], &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = Some(value.into_owned()),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => {
                self.last_event_id = value.into_owned();
                self.has_id = true;
            }
            b"retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        let data = std::mem::take(&mut self.data);
        let has_id = std::mem::replace(&mut self.has_id, false);
        let has_data = std::mem::replace(&mut self.has_data, false);
        self.event_bytes = 0;
        if !has_data {
            return;
        }
        out.push(SseEvent {
            last_event_id: self.last_event_id.clone(),
            has_id,
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".to_owned()),
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    fn ev(id: &str, has_id: bool, event: &str, data: &str) -> SseEvent {
        SseEvent {
            last_event_id: id.into(),
            has_id,
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn bridge_frames_parse_into_events() {
        let text = b"id: 18342\nevent: elicitation.requested\ndata: {\"id\":\"el_1\"}\n\n\
                     :heartbeat\n\n\
                     event: lagged\ndata: {\"resume_after\":18342}\n\n";
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        p.feed(text, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                ev("18342", true, "elicitation.requested", "{\"id\":\"el_1\"}"),
                ev("18342", false, "lagged", "{\"resume_after\":18342}"),
            ]
        );
        assert_eq!(p.comments(), 1);
    }

    #[test]
    fn the_rules_of_the_standard_hold() {
        // Multi-line data, CRLF and lone CR line ends, no space after the colon,
        // a field without colon, unknown fields, an event without data.
        let text =
            b"data:a\r\ndata: b\rdata\n\nevent: x\nfoo: bar\n\nid: 7\nretry: 250\ndata: c\n\n";
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        p.feed(text, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                ev("", false, "message", "a\nb\n"),
                ev("7", true, "message", "c")
            ]
        );
        assert_eq!(p.retry_ms(), Some(250));
        // An id with NUL is ignored; an empty id resets; a BOM is dropped.
        let out = parse(&[b"\xEF\xBB\xBFid: 1\ndata: x\n\nid: a\0b\ndata: y\n\nid\ndata: z\n\n"]);
        assert_eq!(
            out,
            vec![
                ev("1", true, "message", "x"),
                ev("1", false, "message", "y"),
                ev("", true, "message", "z"),
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_split_across_chunks_is_dropped() {
        let want = vec![ev("5", true, "message", "x")];
        assert_eq!(parse(&[b"\xEF", b"\xBB\xBFid: 5\ndata: x\n\n"]), want);
        assert_eq!(
            parse(&[b"\xEF", b"", b"\xBB", b"\xBF", b"id: 5\ndata: x\n\n"]),
            want
        );
        // A start that only looks like one is kept (lossily decoded, as any
        // other invalid UTF-8 would be).
        assert_eq!(
            parse(&[b"\xEF", b"\xBBid: 5\ndata: x\n\n"]),
            vec![ev("", false, "message", "x")]
        );
        assert_eq!(parse(&[b"id: 5\n", b"data: x\n\n"]), want);
        // Only at the very start: a mark later is part of a line.
        assert_eq!(
            parse(&[b"data: \xEF\xBB\xBFx\n\n"]),
            vec![ev("", false, "message", "\u{feff}x")]
        );
    }

    #[test]
    fn crlf_split_across_chunks_ends_one_line() {
        let out = parse(&[b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n"]);
        assert_eq!(
            out,
            vec![ev("", false, "message", "a"), ev("", false, "message", "b")]
        );
    }

    #[test]
    fn an_event_over_the_limit_is_refused() {
        let mut p = SseParser::new(64);
        let mut out = Vec::new();
        let big = format!("data: {}\n", "x".repeat(40));
        p.feed(big.as_bytes(), &mut out).unwrap();
        assert_eq!(
            p.feed(big.as_bytes(), &mut out),
            Err(TooLarge { limit: 64 })
        );
        // A long line without an end is refused too (nothing grows unbounded).
        let mut p = SseParser::new(64);
        assert!(p.feed(&[b'x'; 100], &mut out).is_err());
        // Many small events never trip it: the count restarts per event.
        let mut p = SseParser::new(64);
        for _ in 0..1000 {
            p.feed(b"data: 0123456789\n\n", &mut out).unwrap();
        }
    }

    fn encode(events: &[(Option<u64>, String, Vec<String>)], eol: &str) -> String {
        let mut s = String::new();
        for (id, name, lines) in events {
            if let Some(id) = id {
                s.push_str(&format!("id: {id}{eol}"));
            }
            s.push_str(&format!("event: {name}{eol}"));
            for l in lines {
                s.push_str(&format!("data: {l}{eol}"));
            }
            s.push_str(&format!(":c{eol}{eol}"));
        }
        s
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_events_that_were_encoded(
            events in prop::collection::vec(
                (prop::option::of(0u64..1_000_000), "[a-z.]{1,12}", prop::collection::vec("[ -~]{0,20}", 1..4)),
                0..12,
            ),
            eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            cuts in prop::collection::vec(0usize..2000, 0..10),
        ) {
            let text = encode(&events, eol);
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for c in cuts {
                chunks.push(&bytes[start..c]);
                start = c;
            }
            chunks.push(&bytes[start..]);
            let got = parse(&chunks);
            let mut last = String::new();
            let want: Vec<SseEvent> = events
                .iter()
                .map(|(id, name, lines)| {
                    if let Some(id) = id {
                        last = id.to_string();
                    }
                    ev(&last, id.is_some(), name, &lines.join("\n"))
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
