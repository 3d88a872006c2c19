//! Rebuilding the flags from stream `$flags`.

use std::collections::{BTreeMap, HashMap};

use lighthouse_event_store::{EventStore, Filter, Query};

use crate::change::{self, ChangeKind, STREAM};
use crate::error::{Error, Result};
use crate::set::{FlagSet, Record};

/// Most events read per page while replaying `$flags` (a page also ends at
/// its byte budget, [`Limits::max_replay_page_bytes`](crate::Limits::max_replay_page_bytes)).
const REPLAY_PAGE: usize = 1_000;

/// Applies the events of `$flags` after version `applied` (all when `None`) to
/// `base`. Returns the new set and the last version applied. Every event is
/// checked against the state before it: the flag's version moves by exactly one
/// and `previous_seq` points at the flag's previous event.
/// `chains` gets the seq of every applied change appended to its flag's list
/// (version `v` at index `v - 1`), for history reads that go straight to the
/// changes asked for. Reads pages of at most `max_page_bytes` of stored events
/// (and at least one event), so memory does not grow with the size of changes.
pub(crate) fn replay(
    events: &EventStore,
    base: &FlagSet,
    applied: Option<u64>,
    chains: &mut HashMap<String, Vec<u64>>,
    max_page_bytes: usize,
) -> Result<(FlagSet, Option<u64>)> {
    let mut records: BTreeMap<String, Record> =
        base.records().map(|r| (r.flag.key.clone(), r)).collect();
    let mut version = applied;
    let mut last_seq = 0;
    let mut query = Query {
        min_version: Some(version.map_or(0, |v| v + 1)),
        limit: REPLAY_PAGE,
        ..Query::new(Filter::stream(STREAM))
    };
    loop {
        let page = events.read_bounded(&query, usize::MAX, max_page_bytes)?;
        for event in page.events {
            let (seq, event_version) = (event.seq, event.version);
            if event_version != version.map_or(0, |v| v + 1) {
                return Err(Error::CorruptLog {
                    seq,
                    reason: format!("{STREAM} skips from version {version:?} to {event_version}"),
                });
            }
            let decoded = change::decode(event)?;
            let p = &decoded.payload;
            let prev = records.get(&p.key);
            let expected = prev.map_or(1, |r| r.flag.version + 1);
            if p.version != expected
                || p.previous_seq != prev.map(|r| r.seq)
                || prev.is_none() != (decoded.kind == ChangeKind::Created)
            {
                return Err(Error::CorruptLog {
                    seq,
                    reason: format!(
                        "{} of flag {:?} to version {} does not follow version {} at seq {:?}",
                        decoded.kind.event_type(),
                        p.key,
                        p.version,
                        expected - 1,
                        prev.map(|r| r.seq)
                    ),
                });
            }
            let after = decoded.payload.after;
            let record = Record::new(after, seq).map_err(|e| Error::CorruptLog {
                seq,
                reason: e.to_string(),
            })?;
            let chain = chains.entry(record.flag.key.clone()).or_default();
            // Version v sits at index v - 1 (checked above to follow on).
            chain.truncate(usize::try_from(record.flag.version - 1).unwrap_or(usize::MAX));
            chain.push(seq);
            records.insert(record.flag.key.clone(), record);
            version = Some(event_version);
            last_seq = seq;
        }
        // A page cut by its bytes holds fewer than REPLAY_PAGE events yet
        // more may follow: only `next` says whether the stream goes on.
        match page.next {
            Some(next) => query = query.resume(next),
            None => break,
        }
    }
    // Limits apply to writes; a log written under larger limits still opens.
    let set = FlagSet::build(records.into_values().collect(), usize::MAX).map_err(|e| {
        Error::CorruptLog {
            seq: last_seq,
            reason: e.to_string(),
        }
    })?;
    Ok((set, version))
}
