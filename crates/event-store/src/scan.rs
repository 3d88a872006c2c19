//! The raw read path: a range of the log visited as borrowed records, for
//! whole-log passes (projection rebuilds) that cannot afford to copy every
//! event and parse its JSON into a `serde_json::Value` first.

use std::ops::ControlFlow;

use crate::codec::RecordView;
use crate::error::{Error, Result};
use crate::query::Filter;
use crate::store::EventStore;

impl EventStore {
    /// Visits, oldest first, every committed record with `after < seq <= until`
    /// (`until` is clamped to the head) that matches `filter`, as a
    /// [`RecordView`] borrowing the stored bytes: nothing is copied and no JSON
    /// is parsed. `data` and `metadata` are the stored JSON text; a caller that
    /// parses them decides what text that is not JSON means (the stored
    /// structure itself is checked here).
    ///
    /// Every field of `filter` is checked per record (no index is used), so this
    /// suits passes over most of the log; use [`read`](Self::read) to pick a few
    /// events out of a large log.
    ///
    /// `visit` returns [`ControlFlow::Break`] to stop early; its value is
    /// returned as `Some`. A record that is missing or unreadable inside the
    /// range is [`Error::Corrupt`], as for `read`; the records before it have
    /// been visited.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use lighthouse_event_store::{EventStore, Filter, NewEvent, StoreOptions};
    /// use serde_json::json;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = EventStore::open_temporary(StoreOptions::new(b"a secret key of 32 bytes or so.."))?;
    /// store.append_one(NewEvent::new("orders-1", "order.placed", json!({"total": 12}))).await?;
    /// store.append_one(NewEvent::new("users-1", "user.added", json!({}))).await?;
    /// let filter = Filter { stream_prefix: Some("orders-".into()), ..Filter::all() };
    /// let mut seen = Vec::new();
    /// store.scan(0, store.head_seq(), &filter, |r| {
    ///     seen.push((r.seq, r.data.to_vec()));
    ///     ControlFlow::<()>::Continue(())
    /// })?;
    /// assert_eq!(seen, vec![(1, br#"{"total":12}"#.to_vec())]);
    /// # Ok::<(), lighthouse_event_store::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn scan<B>(
        &self,
        after: u64,
        until: u64,
        filter: &Filter,
        mut visit: impl FnMut(&RecordView<'_>) -> ControlFlow<B>,
    ) -> Result<Option<B>> {
        let lo = after.saturating_add(1);
        let hi = until.min(self.head_seq());
        if lo > hi {
            return Ok(None);
        }
        // The log is dense: a position missing inside the range is damage,
        // reported rather than silently skipped.
        let mut expect = lo;
        for item in self.shared().backend.range(lo, hi, false) {
            let (seq, bytes) = item?;
            if seq != expect {
                return Err(missing(expect));
            }
            expect = seq + 1;
            let v = RecordView::parse(&bytes).map_err(|e| Error::Corrupt {
                seq,
                reason: e.0.into(),
            })?;
            if !filter.matches_parts(v.stream, v.event_type, v.agent, v.correlation_id) {
                continue;
            }
            if let ControlFlow::Break(b) = visit(&v) {
                return Ok(Some(b));
            }
        }
        if expect <= hi {
            return Err(missing(expect));
        }
        Ok(None)
    }
}

fn missing(seq: u64) -> Error {
    Error::Corrupt {
        seq,
        reason: "the record is missing or unreadable; run verify".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, NewEvent, StoreOptions};
    use serde_json::json;

    const KEY: &[u8] = b"scan test key, 32 bytes long....";

    async fn store_with(n: u64) -> EventStore {
        let s = EventStore::open_temporary(StoreOptions::new(KEY).durability(Durability::Buffered))
            .unwrap();
        for i in 0..n {
            s.append_one(NewEvent::new(
                format!("s{}-{}", i % 3, i % 5),
                "t.x",
                json!({ "i": i }),
            ))
            .await
            .unwrap();
        }
        s
    }

    fn seqs(s: &EventStore, after: u64, until: u64, f: &Filter) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        s.scan(after, until, f, |r| {
            out.push(r.seq);
            ControlFlow::<()>::Continue(())
        })?;
        Ok(out)
    }

    #[tokio::test]
    async fn a_scan_visits_what_a_read_returns_in_the_same_order() {
        let s = store_with(300).await;
        let prefix = Filter {
            stream_prefix: Some("s1-".into()),
            ..Filter::all()
        };
        for (f, after, until) in [
            (Filter::all(), 0, 300),
            (Filter::all(), 17, 250),
            (prefix.clone(), 0, u64::MAX),
            (Filter::stream("s2-4"), 5, 299),
        ] {
            let q = crate::Query {
                after: Some(after),
                before: Some(until.saturating_add(1)),
                limit: crate::Query::MAX_LIMIT,
                ..crate::Query::new(f.clone())
            };
            let page = s.read(&q).unwrap();
            let expected: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs(&s, after, until, &f).unwrap(), expected, "{f:?}");
            let mut data = Vec::new();
            s.scan(after, until, &f, |r| {
                data.push(serde_json::from_slice::<serde_json::Value>(r.data).unwrap());
                ControlFlow::<()>::Continue(())
            })
            .unwrap();
            let read: Vec<_> = page.events.into_iter().map(|e| e.data).collect();
            assert_eq!(data, read);
        }
        assert_eq!(
            seqs(&s, 300, 400, &Filter::all()).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(seqs(&s, 10, 5, &Filter::all()).unwrap(), Vec::<u64>::new());
    }

    #[tokio::test]
    async fn a_scan_stops_when_told() {
        let s = store_with(50).await;
        let mut n = 0;
        let r = s
            .scan(0, 50, &Filter::all(), |r| {
                n += 1;
                if r.seq == 7 {
                    ControlFlow::Break(r.seq)
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!((r, n), (Some(7), 7));
    }

    #[tokio::test]
    async fn a_scan_reports_a_damaged_or_missing_record() {
        let s = store_with(40).await;
        s.tamper_raw(21, Some(&[9, 9, 9])).unwrap();
        let r = seqs(&s, 0, 40, &Filter::stream("nothing"));
        assert!(matches!(r, Err(Error::Corrupt { seq: 21, .. })), "{r:?}");
        assert_eq!(seqs(&s, 30, 40, &Filter::all()).unwrap().len(), 10);
        let s = store_with(40).await;
        s.tamper_raw(40, None).unwrap();
        let r = seqs(&s, 0, 40, &Filter::all());
        assert!(matches!(r, Err(Error::Corrupt { seq: 40, .. })), "{r:?}");
        let s = store_with(40).await;
        let mut bad = s.raw_record(12).unwrap().unwrap();
        bad[crate::codec::HEADER_LEN] = 0xff;
        s.tamper_raw(12, Some(&bad)).unwrap();
        let r = seqs(&s, 0, 40, &Filter::all());
        assert!(matches!(r, Err(Error::Corrupt { seq: 12, .. })), "{r:?}");
    }
}
