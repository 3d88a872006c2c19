//! Drain: wait for pending elicitations to resolve, then cancel the rest if asked.

use std::time::Duration;

use lighthouse_security::{Caller, Role};

use super::timer::{DrainActor, resolve_batch};
use super::{ElicitationService, require_role};
use crate::WaitMeter;
use crate::error::{Error, Result};
use crate::request::{DrainReport, DrainRequest, DrainThen, check_reason_only, check_request_id};

impl ElicitationService {
    /// Drains the service (`POST /v1/ops/drain`, operators and admins): waits up
    /// to `timeout_ms` for no elicitation to be pending, then, with
    /// `then: cancel`, cancels every one still pending with `by` = the caller and
    /// `correlation_id` = `request_id`. Creating is not stopped: an operator
    /// who wants the system empty turns the feature's flag off first (the
    /// rollback procedure's step 2, before its drain).
    pub async fn drain(
        &self,
        caller: &Caller,
        request_id: &str,
        req: DrainRequest,
    ) -> Result<DrainReport> {
        self.drain_metered(caller, request_id, req, &WaitMeter::new())
            .await
    }

    /// [`drain`](Self::drain), adding its wait for others to resolve to
    /// `meter` (also when the call is dropped during it), so that a drain cut
    /// off by its client does not count its wait as the bridge's latency.
    pub async fn drain_metered(
        &self,
        caller: &Caller,
        request_id: &str,
        req: DrainRequest,
        meter: &WaitMeter,
    ) -> Result<DrainReport> {
        let s = &*self.shared;
        require_role(
            caller,
            &[Role::Operator, Role::Admin],
            "only operators and admins may drain",
        )?;
        check_request_id(request_id)?;
        if req.timeout_ms > s.limits.max_timeout_ms {
            return Err(Error::invalid(
                "/timeout_ms",
                format!("must be from 0 to {}", s.limits.max_timeout_ms),
            ));
        }
        check_reason_only(req.reason.as_deref(), &s.limits)?;
        let started = tokio::time::Instant::now();
        let resolved_before = s.state.lock().proj.resolved_total;
        let mut rx = s.pending.subscribe();
        let _ = meter
            .blocked(tokio::time::timeout(
                Duration::from_millis(req.timeout_ms),
                rx.wait_for(|n| *n == 0),
            ))
            .await;
        let waited = started.elapsed();
        let mut cancelled = 0;
        let mut expired_by_drain = 0;
        if req.then == DrainThen::Cancel {
            let actor = DrainActor {
                by: &caller.agent,
                request_id,
                reason: req.reason.as_deref(),
            };
            let pending = s.state.lock().proj.pending_ids();
            for chunk in pending.chunks(s.limits.transition_batch.max(1)) {
                let out = match resolve_batch(&self.shared, chunk.to_vec(), Some(&actor)).await {
                    Ok(out) => out,
                    Err(e) => {
                        // The error is the answer; what was done before it is
                        // in the log and here (a second drain cancels the rest).
                        tracing::warn!(
                            cancelled,
                            expired = expired_by_drain,
                            error = %e,
                            "drain: cancelling stopped part way"
                        );
                        return Err(e);
                    }
                };
                cancelled += out.cancelled;
                expired_by_drain += out.expired;
            }
        }
        // Every terminal transition from the start of the drain to its end,
        // but the drain's own cancels: of elicitations pending at the start
        // and of those created since, during the wait or while cancelling (one
        // answered between the drain's list and its batch is skipped by the
        // batch and counted here, not lost between the counts), and those the
        // drain found past their deadline and expired.
        let (resolved_total, remaining) = {
            let st = s.state.lock();
            (st.proj.resolved_total, st.proj.pending_count() as u64)
        };
        let resolved_while_draining = resolved_total
            .saturating_sub(resolved_before)
            .saturating_sub(cancelled);
        Ok(DrainReport {
            resolved_while_draining,
            cancelled,
            remaining,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        })
    }
}
