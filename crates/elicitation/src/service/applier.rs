//! The applier: the one task that follows the log and changes the projection,
//! strictly in sequence order, so that notifications go out in log order and a
//! subscriber registered at position P sees exactly the events after P.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lighthouse_event_store::{Error as StoreError, Event, Filter, Subscription};

use super::Shared;
use crate::error::Result;
use crate::notify::{Notification, NotificationKind};
use crate::projection::{Change, SnapshotCapture};

pub(crate) async fn run(shared: Arc<Shared>, mut sub: Subscription) {
    loop {
        match sub.next().await {
            Ok(e) => {
                if shared.applier_failing.load(Ordering::Relaxed) {
                    shared.applier_failing.store(false, Ordering::Release);
                    tracing::info!(seq = e.seq, "elicitation applier reads the log again");
                }
                let durable_at = sub.durable_at().or_else(|| written_at(&shared, &e));
                apply(&shared, &e, durable_at);
            }
            Err(StoreError::Lagged { .. }) => {
                let from = shared.state.lock().proj.applied_seq;
                sub = shared.store.subscribe(from, Filter::all());
            }
            Err(StoreError::Closed) => break,
            Err(e) => {
                shared.applier_failing.store(true, Ordering::Release);
                tracing::error!(error = %e, "elicitation applier could not read the log; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                let from = shared.state.lock().proj.applied_seq;
                sub = shared.store.subscribe(from, Filter::all());
            }
        }
    }
    shared.closed.store(true, Ordering::Release);
    shared.seq_waiters.lock().clear();
}

/// When an event read back from disk (the applier fell behind and caught up)
/// was written, as far as its `time` says: set just before its group was
/// written, so the moment is slightly early and a push's `delivery_ms` counts
/// the group's write too. `None` when the clock says it lies ahead.
fn written_at(shared: &Shared, e: &Event) -> Option<Instant> {
    let age = u64::try_from(shared.clock.now().millis_since(e.time)).ok()?;
    Instant::now().checked_sub(Duration::from_millis(age))
}

/// Applies one event and fans out what it changed; `durable_at` is when it
/// became durable (the start of a push's `delivery_ms`).
fn apply(shared: &Arc<Shared>, e: &Event, durable_at: Option<Instant>) {
    // Only the projection changes under the state lock every create and
    // respond takes; waking subscribers and waiters (which can mean a system
    // call to unpark a worker) happens after it is released.
    let (change, pending, capture) = {
        let mut st = shared.state.lock();
        let change = st.proj.apply(e);
        shared.applied.store(st.proj.applied_seq, Ordering::Release);
        let every = shared.limits.snapshot_every_events;
        let capture = (every > 0
            && st.proj.since_snapshot >= every
            && !shared.snapshot_running.swap(true, Ordering::AcqRel))
        .then(|| {
            st.proj.since_snapshot = 0;
            st.proj.capture()
        });
        (change, st.proj.pending_count(), capture)
    };
    publish(shared, e.seq, &change, durable_at);
    if let Change::Message(m) = &change
        && let Some((n, _)) = shared.mail_waiters.lock().get(&*m.to)
    {
        n.notify_waiters();
    }
    match &change {
        Change::Nothing => {}
        Change::Requested { record, .. } => {
            shared.hooks.elicitation_created(record);
            shared.hooks.pending_changed(pending);
            shared.pending.send_replace(pending);
        }
        Change::Resolved { record, .. } => {
            let ms = record
                .resolved_at
                .map_or(0, |t| t.millis_since(record.created_at))
                .max(0);
            shared.hooks.elicitation_resolved(
                record,
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
            );
            shared.hooks.pending_changed(pending);
            shared.pending.send_replace(pending);
        }
        Change::Message(m) => shared.hooks.message_sent(m),
    }
    // Writers waiting for this position: the projection shows it now, and the
    // hooks have seen it (so a create that returned is counted).
    // Taken out under the lock (which the writer thread takes too), woken
    // after it.
    let due = {
        let mut waiters = shared.seq_waiters.lock();
        match waiters.first_key_value() {
            Some((&first, _)) if first <= e.seq => {
                let later = waiters.split_off(&(e.seq + 1));
                std::mem::replace(&mut *waiters, later)
            }
            _ => Default::default(),
        }
    };
    for (seq, txs) in due {
        for tx in txs {
            let _ = tx.send(Ok(seq));
        }
    }
    if let Some(capture) = capture {
        let task_shared = shared.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = write_snapshot(&task_shared, capture, Urgency::Background).await {
                tracing::warn!(error = %err, "elicitation snapshot failed; the log remains the source of truth");
            }
            task_shared.snapshot_running.store(false, Ordering::Release);
        });
        *shared.snapshot_task.lock() = Some(task);
    }
}

/// Offers an applied event's notifications to the registry and wakes the
/// waiters on its elicitation.
///
/// Runs after the state lock is released, in log order (only the applier
/// publishes). No gap and no duplicate: a subscription registered before the
/// event was applied is in the registry already, and one registered after it
/// has its boundary at or past `seq` and skips it.
fn publish(shared: &Shared, seq: u64, change: &Change, durable_at: Option<Instant>) {
    match change {
        Change::Nothing => {}
        Change::Requested { record, earliest } => {
            let n = Notification::elicitation(
                seq,
                NotificationKind::ElicitationRequested,
                record.clone(),
                durable_at,
            );
            shared.subs.lock().publish(&record.to, &n);
            if *earliest {
                shared.timer_wake.notify_one();
            }
        }
        Change::Resolved { record, resolved } => {
            let n = Notification::elicitation(
                seq,
                NotificationKind::ElicitationResolved,
                record.clone(),
                durable_at,
            );
            {
                let mut subs = shared.subs.lock();
                subs.publish(&record.from, &n);
                if record.to != record.from {
                    // Its own copy: each agent's push is timed on its own.
                    let to = Notification::elicitation(
                        seq,
                        NotificationKind::ElicitationResolved,
                        record.clone(),
                        durable_at,
                    );
                    subs.publish(&record.to, &to);
                }
            }
            if let Some(r) = resolved {
                r.resolved.notify_waiters();
            }
        }
        Change::Message(m) => {
            shared
                .subs
                .lock()
                .publish(&m.to, &Notification::message(m.clone(), durable_at));
        }
    }
}

/// How a snapshot's encoding is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Urgency {
    /// The automatic snapshot: encoded on a thread of its own at the lowest
    /// scheduling priority, so that it uses spare CPU and does not compete
    /// with live transitions (encoding 100,000 elicitations is about 250 ms of
    /// a core; at normal priority that was a stall of the same order for a
    /// busy 2-core service).
    Background,
    /// Asked for (shutdown, an operator): on the blocking pool, at once.
    Now,
}

/// Encodes a capture off the async threads and saves it; returns its position.
pub(crate) async fn write_snapshot(
    shared: &Shared,
    capture: SnapshotCapture,
    urgency: Urgency,
) -> Result<u64> {
    let seq = capture.applied_seq;
    let mut saved = shared.snapshot_saved.lock().await;
    if *saved >= seq && *saved > 0 {
        return Ok(*saved);
    }
    let corrupt = |reason: String| crate::Error::Corrupt {
        seq,
        event_type: "snapshot".into(),
        reason,
    };
    let encoded = match urgency {
        Urgency::Now => tokio::task::spawn_blocking(move || capture.encode())
            .await
            .map_err(|_| crate::Error::Closed)?,
        Urgency::Background => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("elicitation-snapshot".into())
                .spawn(move || {
                    lowest_priority();
                    let _ = tx.send(capture.encode());
                })
                .map_err(|e| corrupt(format!("could not start the snapshot thread: {e}")))?;
            rx.await.map_err(|_| crate::Error::Closed)?
        }
    };
    let bytes = encoded.map_err(|e| corrupt(e.to_string()))?;
    shared
        .store
        .save_snapshot(&shared.snapshot_name, seq, bytes)
        .await?;
    *saved = seq;
    Ok(seq)
}

/// Gives the calling thread the lowest scheduling priority (nice 19; on Linux
/// the nice value belongs to the thread). Best effort: elsewhere, or if refused,
/// the thread keeps its priority.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory-safety preconditions; `who` 0 is
        // the calling thread, and raising one's own nice value is always allowed.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        if r != 0 {
            tracing::debug!("could not lower the snapshot thread's priority");
        }
    }
}
