//! Reads: one elicitation (optionally waiting for its outcome) and listings.

use std::sync::Arc;
use std::time::Duration;

use lighthouse_security::Caller;

use super::ElicitationService;
use crate::error::{Error, Result};
use crate::record::Elicitation;
use crate::request::{ListPage, ListQuery, page_limit, wait_ms};
use crate::wait::WaitMeter;

impl ElicitationService {
    /// The record of `id`, visible to its requester and target only (anyone else
    /// gets `NotFound`). With `wait_ms > 0` (at most [`Limits::max_wait_ms`](crate::Limits))
    /// it returns as soon as the elicitation is terminal, or after `wait_ms` with
    /// it still pending.
    pub async fn get(&self, caller: &Caller, id: &str, wait_ms_: u64) -> Result<Arc<Elicitation>> {
        self.get_metered(caller, id, wait_ms_, &WaitMeter::new())
            .await
    }

    /// [`get`](Self::get), adding the time it is blocked waiting for the
    /// outcome to `meter` (not the wait for this service's own applier to
    /// catch up with a just-created record, which is the bridge's lag).
    pub async fn get_metered(
        &self,
        caller: &Caller,
        id: &str,
        wait_ms_: u64,
        meter: &WaitMeter,
    ) -> Result<Arc<Elicitation>> {
        let wait = wait_ms(wait_ms_, &self.shared.limits, "/wait_ms")?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        let mut waited = false;
        loop {
            let held = {
                let st = self.shared.state.lock();
                match st.proj.entry(id) {
                    Some(e) if e.record.involves(&caller.agent) => match &e.live {
                        Some(live) if wait > 0 => Some(live.sync.clone()),
                        _ => return Ok(e.record.clone()),
                    },
                    Some(_) => {
                        return Err(Error::NotFound {
                            what: "elicitation",
                        });
                    }
                    None => None,
                }
            };
            let Some(notify) = held else {
                let r = self.read_from_log(id)?;
                if !r.involves(&caller.agent) {
                    return Err(Error::NotFound {
                        what: "elicitation",
                    });
                }
                if r.status.is_terminal() || wait == 0 || waited {
                    return Ok(Arc::new(r));
                }
                // Created but not applied yet: wait for it to be, so that a
                // wait for the outcome waits.
                let s = &self.shared;
                s.wait_applied_head().await?;
                waited = true;
                continue;
            };
            // Registered before the state is looked at again, so a resolution in
            // between wakes it.
            let notified = notify.resolved.notified();
            {
                let st = self.shared.state.lock();
                if let Some(e) = st.proj.entry(id).filter(|e| e.live.is_none()) {
                    return Ok(e.record.clone());
                }
            }
            if meter
                .blocked(tokio::time::timeout_at(deadline, notified))
                .await
                .is_err()
            {
                return self.record_of(id);
            }
        }
    }

    /// Waits until `id` is terminal or `timeout` passes; the record either way.
    /// The same visibility as [`get`](Self::get), without the wait cap (for
    /// in-process callers such as the MCP tool that waits up to the expiry).
    pub async fn wait_terminal(
        &self,
        caller: &Caller,
        id: &str,
        timeout: Duration,
    ) -> Result<Arc<Elicitation>> {
        let now = tokio::time::Instant::now();
        // `Duration::MAX` ("until it ends") would overflow the instant: a
        // century is as good.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let step = remaining.min(Duration::from_millis(self.shared.limits.max_wait_ms.max(1)));
            let r = self.get_unchecked_wait(caller, id, step).await?;
            if r.status.is_terminal() || remaining <= step {
                return Ok(r);
            }
        }
    }

    async fn get_unchecked_wait(
        &self,
        caller: &Caller,
        id: &str,
        wait: Duration,
    ) -> Result<Arc<Elicitation>> {
        let ms = u64::try_from(wait.as_millis())
            .unwrap_or(u64::MAX)
            .min(self.shared.limits.max_wait_ms);
        self.get(caller, id, ms).await
    }

    /// One page of the caller's inbox or outbox, oldest first
    /// (`GET /v1/elicitations?box=&status=&limit=&cursor=`): at most `limit`
    /// records, and ending once it holds [`Limits::max_list_page_bytes`](crate::Limits)
    /// of records as JSON (at least one), with `next_cursor` where it stopped.
    pub fn list(&self, caller: &Caller, q: &ListQuery) -> Result<ListPage> {
        let limit = page_limit(q.limit, &self.shared.limits)?;
        let after = match q.cursor.as_deref() {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| Error::invalid("/cursor", "is not a cursor this service returned"))?,
        };
        let (mut items, mut next) = self.shared.state.lock().proj.list(
            &caller.agent,
            q.mailbox,
            q.status,
            after,
            limit,
            self.shared.limits.list_examine_budget,
        );
        // Bounded in bytes too (measured outside the state lock): 1,000 records
        // with 64 KiB schemas and answers would be a response of ~130 MB.
        let mut bytes = 0usize;
        if let Some(cut) = items.iter().position(|(_, r)| {
            bytes = bytes.saturating_add(lighthouse_event_store::json_size(&**r));
            bytes >= self.shared.limits.max_list_page_bytes
        }) && cut + 1 < items.len()
        {
            items.truncate(cut + 1);
            next = items.last().map(|(seq, _)| *seq);
        }
        Ok(ListPage {
            items: items.into_iter().map(|(_, r)| r).collect(),
            next_cursor: next.map(|n| n.to_string()),
        })
    }
}
