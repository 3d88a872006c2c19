//! The read path: queries served by the in-memory indexes.

use crate::codec::RecordView;
use crate::error::{Error, Result};
use crate::index::window;
use crate::model::Event;
use crate::query::{Filter, Order, Page, Query};
use crate::store::EventStore;

impl EventStore {
    /// Events of `stream` with `version >= from_version`, at most `limit`, in order.
    pub fn read_stream(&self, stream: &str, from_version: u64, limit: usize) -> Result<Vec<Event>> {
        let q = Query {
            min_version: Some(from_version),
            limit,
            ..Query::new(Filter::stream(stream))
        };
        Ok(self.read(&q)?.events)
    }

    /// Runs a query. Exact filters are served by indexes: the cost is a binary
    /// search plus one step per candidate of the most selective filter. A
    /// query whose filters together match little of a large candidate list
    /// (two exact filters, a prefix filter) may look at many records; a server
    /// answering untrusted queries uses [`read_within`](Self::read_within).
    pub fn read(&self, q: &Query) -> Result<Page> {
        self.read_within(q, usize::MAX)
    }

    /// [`read`](Self::read), looking at no more than `max_examined` records
    /// (at least one). When the budget runs out before the page is full, the
    /// page ends early with `next` set to the last record looked at, so the
    /// caller resumes from there: the cost of one call is bounded whatever
    /// the filters, and no event is skipped.
    pub fn read_within(&self, q: &Query, max_examined: usize) -> Result<Page> {
        self.read_bounded(q, max_examined, usize::MAX)
    }

    /// [`read_within`](Self::read_within), also ending the page once it holds
    /// `max_bytes` of stored records (so at most `max_bytes` plus one event,
    /// and at least one event): a page of 1,000 events of up to 1 MiB each
    /// would otherwise be a GiB in memory. A page cut by its bytes ends with
    /// `next` set to its last event.
    pub fn read_bounded(&self, q: &Query, max_examined: usize, max_bytes: usize) -> Result<Page> {
        let limit = q.limit.clamp(1, Query::MAX_LIMIT);
        let budget = max_examined.max(1);
        let Some((lo, hi)) = self.bounds(q) else {
            return Ok(Page {
                events: Vec::new(),
                next: None,
                examined: 0,
                bytes: 0,
            });
        };
        let descending = q.order == Order::Descending;
        let mut events = Vec::with_capacity(limit.min(256));
        let mut scan = Scan {
            examined: 0,
            budget,
            last: None,
            bytes: 0,
            max_bytes,
        };
        if has_exact(&q.filter) {
            self.read_indexed(q, lo, hi, descending, limit, &mut events, &mut scan)?;
        } else {
            // The log is dense: a position missing inside the window is damage,
            // reported rather than silently skipped.
            let mut expect = if descending { hi } else { lo };
            for item in self.shared().backend.range(lo, hi, descending) {
                if scan.spent() {
                    break;
                }
                let (seq, bytes) = item?;
                if seq != expect {
                    return Err(missing(expect));
                }
                expect = if descending {
                    seq.saturating_sub(1)
                } else {
                    seq + 1
                };
                scan.look(seq);
                if let Some(e) = self.matching(seq, &bytes, &q.filter)? {
                    events.push(e);
                    scan.take(bytes.len());
                    if events.len() == limit || scan.full() {
                        break;
                    }
                }
            }
        }
        let next = if events.len() == limit || scan.full() {
            events.last().map(|e| e.seq)
        } else if scan.spent() {
            // Only "more may follow" if the budget, not the window, ended it.
            scan.last
                .filter(|&l| if descending { l > lo } else { l < hi })
        } else {
            None
        };
        Ok(Page {
            events,
            next,
            examined: scan.examined,
            bytes: scan.bytes,
        })
    }

    /// The seq window `[lo, hi]` a query covers, `None` if empty.
    fn bounds(&self, q: &Query) -> Option<(u64, u64)> {
        let head = self.head_seq();
        let mut lo = q.after.map_or(1, |a| a.saturating_add(1));
        let mut hi = q.before.map_or(head, |b| b.saturating_sub(1)).min(head);
        let idx = self.shared().index.read();
        if let Some(t) = q.since {
            lo = lo.max(idx.first_seq_at_or_after(t.unix_millis()));
        }
        if let Some(t) = q.until {
            hi = hi.min(idx.first_seq_at_or_after(t.unix_millis()).saturating_sub(1));
        }
        if let Some(stream) = &q.filter.stream {
            let list = idx.stream(stream);
            if let Some(v) = q.min_version {
                lo = lo.max(*list.get(usize::try_from(v).ok()?)?);
            }
            if let Some(&s) = q
                .max_version
                .and_then(|v| usize::try_from(v).ok())
                .and_then(|v| list.get(v))
            {
                hi = hi.min(s);
            }
        }
        (lo <= hi && hi > 0).then_some((lo, hi))
    }

    #[allow(clippy::too_many_arguments)]
    fn read_indexed(
        &self,
        q: &Query,
        mut lo: u64,
        mut hi: u64,
        descending: bool,
        limit: usize,
        out: &mut Vec<Event>,
        scan: &mut Scan,
    ) -> Result<()> {
        // Candidates are copied out in chunks so the index lock is held briefly and
        // a large posting list is never copied whole.
        let chunk = (limit * 2).clamp(64, 4096);
        loop {
            let candidates: Vec<u64> = {
                let idx = self.shared().index.read();
                let f = &q.filter;
                let lists = [
                    f.stream.as_deref().map(|s| idx.stream(s)),
                    f.event_type.as_deref().map(|t| idx.by_type(t)),
                    f.agent.as_deref().map(|a| idx.by_agent(a)),
                    f.correlation_id.as_deref().map(|c| idx.by_correlation(c)),
                ];
                let best = lists
                    .into_iter()
                    .flatten()
                    .map(|l| window(l, lo, hi))
                    .min_by_key(|l| l.len())
                    .unwrap_or(&[]);
                if descending {
                    best[best.len().saturating_sub(chunk)..]
                        .iter()
                        .rev()
                        .copied()
                        .collect()
                } else {
                    best[..best.len().min(chunk)].to_vec()
                }
            };
            let exhausted = candidates.len() < chunk;
            for &seq in &candidates {
                if scan.spent() {
                    return Ok(());
                }
                scan.look(seq);
                let Some(bytes) = self.shared().backend.get(seq)? else {
                    return Err(missing(seq));
                };
                if let Some(e) = self.matching(seq, &bytes, &q.filter)? {
                    out.push(e);
                    scan.take(bytes.len());
                    if out.len() == limit || scan.full() {
                        return Ok(());
                    }
                }
            }
            match candidates.last() {
                Some(&last) if !exhausted => {
                    if descending {
                        hi = last - 1;
                    } else {
                        lo = last + 1;
                    }
                }
                _ => return Ok(()),
            }
            if lo > hi {
                return Ok(());
            }
        }
    }

    fn matching(&self, seq: u64, bytes: &[u8], f: &Filter) -> Result<Option<Event>> {
        let v = RecordView::parse(bytes).map_err(|e| Error::Corrupt {
            seq,
            reason: e.0.into(),
        })?;
        if !f.matches_parts(v.stream, v.event_type, v.agent, v.correlation_id) {
            return Ok(None);
        }
        v.to_event().map(Some).map_err(|e| Error::Corrupt {
            seq,
            reason: e.0.into(),
        })
    }
}

/// What a read has looked at, against its budget.
struct Scan {
    examined: usize,
    budget: usize,
    last: Option<u64>,
    /// Stored bytes of the events taken, and the most the page may take.
    bytes: usize,
    max_bytes: usize,
}

impl Scan {
    fn take(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// The page holds its byte budget (or more: its last event passed it).
    fn full(&self) -> bool {
        self.bytes >= self.max_bytes
    }

    fn spent(&self) -> bool {
        self.examined >= self.budget
    }

    fn look(&mut self, seq: u64) {
        self.examined += 1;
        self.last = Some(seq);
    }
}

fn has_exact(f: &Filter) -> bool {
    f.stream.is_some() || f.event_type.is_some() || f.agent.is_some() || f.correlation_id.is_some()
}

pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Event> {
    RecordView::parse(bytes)
        .and_then(|v| v.to_event())
        .map_err(|e| Error::Corrupt {
            seq,
            reason: e.0.into(),
        })
}

fn missing(seq: u64) -> Error {
    Error::Corrupt {
        seq,
        reason: "the record is missing or unreadable; run verify".into(),
    }
}
