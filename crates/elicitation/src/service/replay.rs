//! Rebuilding the projection from the log when the service opens.
//!
//! Two threads share the work: a reader walks the stored records and decodes
//! the elicitation events' JSON straight into their payload types, and the
//! opening thread applies them in order. They hand batches over a bounded
//! channel, so memory stays small whatever the length of the log.

use std::ops::ControlFlow;
use std::sync::mpsc;

use lighthouse_event_store::{EventStore, Filter};

use crate::error::Result;
use crate::events::ELICITATION_STREAM_PREFIX;
use crate::projection::{Projection, ReplayDecoder, ReplayEvent};

/// Events handed from the reader to the applier at a time.
const REPLAY_BATCH: usize = 1_024;
/// Batches decoded ahead of the applier at most.
const REPLAY_QUEUE: usize = 4;

/// Applies every committed elicitation event after the projection's position
/// (the only ones that change it: a replay notifies nobody, so messages and
/// foreign events are skipped without being decoded), then moves the position
/// to the head read at the start.
///
/// A record the store cannot read, or whose data or metadata is not JSON, fails
/// the replay with [`Error::Store`](crate::Error::Store); an event that is JSON
/// but not of its type's shape is logged and skipped.
pub(super) fn replay(store: &EventStore, proj: &mut Projection) -> Result<()> {
    let head = store.head_seq();
    let after = proj.applied_seq;
    if after < head {
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Vec<ReplayEvent>>(REPLAY_QUEUE);
            let reader = std::thread::Builder::new()
                .name("elicitation-replay".into())
                .spawn_scoped(scope, move || {
                    read(store, after, head, |batch| tx.send(batch).is_ok())
                });
            match reader {
                Ok(reader) => {
                    for batch in rx {
                        for e in batch {
                            proj.apply_decoded(e);
                        }
                    }
                    reader
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no thread for the replay's reader; replaying on one thread");
                    read(store, after, head, |batch| {
                        batch.into_iter().for_each(|e| proj.apply_decoded(e));
                        true
                    })
                }
            }
        })?;
    }
    proj.applied_seq = proj.applied_seq.max(head);
    Ok(())
}

/// Decodes the elicitation events with `after < seq <= head`, in order, and
/// hands them to `sink` in batches; stops early when `sink` returns false.
fn read(
    store: &EventStore,
    after: u64,
    head: u64,
    mut sink: impl FnMut(Vec<ReplayEvent>) -> bool,
) -> Result<()> {
    let filter = Filter {
        stream_prefix: Some(ELICITATION_STREAM_PREFIX.into()),
        ..Filter::all()
    };
    let mut decoder = ReplayDecoder::default();
    let mut batch = Vec::with_capacity(REPLAY_BATCH);
    let stopped = store.scan(after, head, &filter, |r| {
        match decoder.decode(r) {
            Ok(e) => batch.push(e),
            Err(e) => return ControlFlow::Break(Err(e)),
        }
        if batch.len() == REPLAY_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(REPLAY_BATCH));
            if !sink(full) {
                return ControlFlow::Break(Ok(()));
            }
        }
        ControlFlow::Continue(())
    })?;
    match stopped {
        Some(r) => r?,
        None if !batch.is_empty() => {
            sink(batch);
        }
        None => {}
    }
    Ok(())
}
