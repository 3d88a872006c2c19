//! Drain: wait for pending elicitations to resolve, then cancel the rest if asked.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lighthouse_security::{Caller, Role};

use super::timer::{DrainActor, resolve_batch};
use super::{ElicitationService, require_role};
use crate::error::{Error, Result};
use crate::request::{DrainReport, DrainRequest, DrainThen, check_reason_only, check_request_id};

impl ElicitationService {
    /// Drains the service (`POST /v1/ops/drain`, operators and admins): waits up
    /// to `timeout_ms` for no elicitation to be pending, then, with
    /// `then: cancel`, cancels every one still pending with `by` = the caller and
    /// `correlation_id` = `request_id`. Creating is not stopped here: the bridge
    /// turns the feature flag off first.
    pub async fn drain(
        &self,
        caller: &Caller,
        request_id: &str,
        req: DrainRequest,
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
        let at_start: HashSet<Arc<str>> = s.state.lock().proj.pending_ids().into_iter().collect();
        let mut rx = s.pending.subscribe();
        let _ = tokio::time::timeout(
            Duration::from_millis(req.timeout_ms),
            rx.wait_for(|n| *n == 0),
        )
        .await;
        let resolved_while_draining = {
            let st = s.state.lock();
            at_start
                .iter()
                .filter(|id| st.proj.entry(id).is_none_or(|e| e.live.is_none()))
                .count() as u64
        };
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
                let out = resolve_batch(&self.shared, chunk.to_vec(), Some(&actor)).await?;
                cancelled += out.cancelled;
                expired_by_drain += out.expired;
            }
        }
        let remaining = s.state.lock().proj.pending_count() as u64;
        Ok(DrainReport {
            resolved_while_draining: resolved_while_draining + expired_by_drain,
            cancelled,
            remaining,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}
