//! The expiry timer, and the batch transitions it shares with drains.
//!
//! The timer is one task that sleeps until the earliest `expires_at` (read from
//! the injected clock), or until woken: by a new earliest deadline, by
//! [`ElicitationService::tick`](crate::ElicitationService::tick), or after
//! [`Limits::timer_max_sleep_ms`](crate::Limits) so that a step of the wall clock
//! cannot delay it for long. It is not a sweep: it only ever looks at the first
//! deadline of an ordered set. Due elicitations are expired in batches, each one
//! atomic append of up to [`Limits::transition_batch`](crate::Limits) events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lighthouse_event_store::{Error as StoreError, ExpectedVersion, NewEvent};

use super::Shared;
use super::transitions::append_terminal;
use crate::error::Result;
use crate::events::{self, Resolved};
use crate::record::Action;

/// Who drains: the operator, the request id and the reason of the cancellations.
pub(crate) struct DrainActor<'a> {
    pub by: &'a str,
    pub request_id: &'a str,
    pub reason: Option<&'a str>,
}

/// What a batch did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchOutcome {
    pub expired: u64,
    pub cancelled: u64,
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let max_sleep = Duration::from_millis(shared.limits.timer_max_sleep_ms.max(1));
    loop {
        let now = shared.clock.now();
        let next = shared.state.lock().proj.earliest_deadline();
        match next {
            Some(t) if t <= now => {
                let due = shared
                    .state
                    .lock()
                    .proj
                    .due(now, shared.limits.transition_batch.max(1));
                if let Err(e) = resolve_batch(&shared, due, None).await {
                    tracing::error!(error = %e, "expiry failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Some(t) => {
                let wait = Duration::from_millis(u64::try_from(t.millis_since(now)).unwrap_or(0))
                    .min(max_sleep);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shared.timer_wake.notified() => {}
                }
            }
            None => {
                tokio::select! {
                    () = tokio::time::sleep(max_sleep) => {}
                    () = shared.timer_wake.notified() => {}
                }
            }
        }
    }
}

/// Expires everything already due (at start, before the service reports ready).
pub(crate) async fn expire_overdue(shared: &Arc<Shared>) -> Result<()> {
    loop {
        let now = shared.clock.now();
        let due = shared
            .state
            .lock()
            .proj
            .due(now, shared.limits.transition_batch.max(1));
        if due.is_empty() {
            return Ok(());
        }
        let before = shared.state.lock().proj.pending_count();
        resolve_batch(shared, due, None).await?;
        if shared.state.lock().proj.pending_count() >= before {
            // Nothing moved (every one was being resolved elsewhere): let it settle.
            tokio::task::yield_now().await;
        }
    }
}

/// Moves pending elicitations to a terminal state in one atomic append: expired
/// (the timer, `drain == None`, only those due), or cancelled by a drain (those
/// already past their deadline are expired instead, as the protocol says).
/// Locks are taken in id order, so batches never deadlock with each other, and a
/// transition in progress finishes first.
pub(crate) async fn resolve_batch(
    shared: &Arc<Shared>,
    mut ids: Vec<Arc<str>>,
    drain: Option<&DrainActor<'_>>,
) -> Result<BatchOutcome> {
    ids.sort();
    ids.dedup();
    let syncs: Vec<_> = {
        let st = shared.state.lock();
        ids.iter()
            .filter_map(|id| {
                st.proj
                    .entry(id)
                    .and_then(|e| e.live.as_ref())
                    .map(|l| l.sync.clone())
            })
            .collect()
    };
    let mut guards = Vec::with_capacity(syncs.len());
    for s in &syncs {
        guards.push(s.lock.lock().await);
    }
    let now = shared.clock.now();
    let mut out = BatchOutcome::default();
    let mut batch = Vec::new();
    let mut versions = HashMap::new();
    {
        let st = shared.state.lock();
        for id in &ids {
            let Some(e) = st.proj.entry(id).filter(|e| e.live.is_some()) else {
                continue;
            };
            let due = now >= e.record.expires_at;
            let action = match drain {
                None if due => Action::Expire,
                None => continue,
                Some(_) if due => Action::Expire,
                Some(_) => Action::Cancel,
            };
            let (by, reason, correlation) = match (action, drain) {
                (Action::Cancel, Some(d)) => (
                    Some(d.by.to_owned()),
                    d.reason.map(str::to_owned),
                    d.request_id.to_owned(),
                ),
                // An expiry has no caller: its correlation id is the elicitation id.
                _ => (None, None, id.to_string()),
            };
            let data = Resolved {
                id: e.record.id.to_string(),
                from: e.record.from.to_string(),
                to: e.record.to.to_string(),
                resolved_at: now,
                content: None,
                reason,
                by: by.clone(),
            };
            let data = data.to_value();
            let mut ev = NewEvent::new(
                events::elicitation_stream(id),
                events::terminal_type(action),
                data,
            )
            .with_correlation_id(correlation)
            .with_causation_id(e.requested_event_id.to_string())
            .expect(ExpectedVersion::Exact(e.version));
            if let Some(by) = by {
                ev = ev.with_agent(by);
            }
            versions.insert(id.clone(), e.version);
            match action {
                Action::Cancel => out.cancelled += 1,
                _ => out.expired += 1,
            }
            batch.push((id.clone(), ev));
        }
    }
    if batch.is_empty() {
        return Ok(out);
    }
    let events: Vec<NewEvent> = batch.iter().map(|(_, e)| e.clone()).collect();
    // Either way, each append is applied when it returns.
    match shared.append_applied(events).await {
        Ok(_) => {}
        Err(StoreError::VersionConflict { .. }) => {
            // Someone outside this process wrote to one of the streams: fall back
            // to one append per elicitation, each resolving its own conflict.
            out = BatchOutcome::default();
            for (id, ev) in batch {
                let action = events::terminal_action(&ev.event_type);
                match append_terminal(shared, &id, || ev.clone(), versions[&id]).await {
                    Ok(_) => match action {
                        Some(Action::Cancel) => out.cancelled += 1,
                        _ => out.expired += 1,
                    },
                    Err(crate::Error::AlreadyResolved { .. } | crate::Error::Expired { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Err(e) => return Err(e.into()),
    }
    drop(guards);
    Ok(out)
}
