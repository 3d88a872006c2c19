//! Waiting inside a tool call: in slices of at most 60 s (the longest wait of
//! `GET /v1/elicitations/{id}`), stopping as soon as the client cancels the
//! call, and reporting progress when the client asked for it.

use std::future::Future;
use std::time::Duration;

use lighthouse_core::api::{Elicitation, ErrorCode, Problem};
use rmcp::RoleServer;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::Peer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::config::McpConfig;

/// Longest single wait on the bridge (`wait_ms` 60000).
pub const MAX_WAIT_SLICE: Duration = Duration::from_secs(60);

/// Shortest interval between progress notifications, whatever the
/// configuration says: the interval is also the length of each wait on the
/// bridge, and a zero interval would poll it every millisecond.
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What a tool call may use of its MCP request: cancellation, progress, and
/// the waiting limits of the configuration.
#[derive(Clone)]
pub struct CallContext {
    ct: CancellationToken,
    /// Fired by a `notifications/cancelled` that reached the call outside
    /// rmcp (the stateless `/mcp`, where rmcp drops notifications).
    notified: Option<CancellationToken>,
    progress: Option<(Peer<RoleServer>, ProgressToken)>,
    progress_interval: Duration,
    expiry_grace: Duration,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("cancelled", &self.is_cancelled())
            .field("progress", &self.progress.is_some())
            .field("progress_interval", &self.progress_interval)
            .field("expiry_grace", &self.expiry_grace)
            .finish()
    }
}

impl CallContext {
    /// A call that ends early when `ct` is cancelled.
    pub fn new(ct: CancellationToken, config: &McpConfig) -> Self {
        CallContext {
            ct,
            notified: None,
            progress: None,
            progress_interval: config.progress_interval.max(MIN_PROGRESS_INTERVAL),
            expiry_grace: config.expiry_grace,
        }
    }

    /// Reports progress of waits to `peer` under `token`.
    pub fn with_progress(mut self, peer: Peer<RoleServer>, token: ProgressToken) -> Self {
        self.progress = Some((peer, token));
        self
    }

    /// Also ends early when `notified` is cancelled: the call is cancelled
    /// by either token.
    pub fn with_cancellation(mut self, notified: CancellationToken) -> Self {
        self.notified = Some(notified);
        self
    }

    fn is_cancelled(&self) -> bool {
        self.ct.is_cancelled() || self.notified.as_ref().is_some_and(|n| n.is_cancelled())
    }

    /// Completes once the call is cancelled, by either token.
    async fn cancelled(&self) {
        match &self.notified {
            Some(notified) => tokio::select! {
                _ = self.ct.cancelled() => {}
                _ = notified.cancelled() => {}
            },
            None => self.ct.cancelled().await,
        }
    }

    pub(crate) fn expiry_grace(&self) -> Duration {
        self.expiry_grace
    }

    /// Runs `f` unless the client cancels the call first.
    pub(crate) async fn until_cancelled<F: Future>(&self, f: F) -> Result<F::Output, Problem> {
        tokio::select! {
            biased;
            _ = self.cancelled() => Err(super::cancelled()),
            r = f => Ok(r),
        }
    }

    /// Sends a progress notification. rmcp returns once it is written, which
    /// is never while the client does not read: the report gives up when the
    /// call is cancelled or `deadline` passes, so it cannot hold the wait.
    async fn report(&self, progress: f64, total_s: u64, message: String, deadline: Instant) {
        if let Some((peer, token)) = &self.progress {
            let p = ProgressNotificationParam::new(token.clone(), progress)
                .with_total(total_s as f64)
                .with_message(message);
            tokio::select! {
                biased;
                _ = self.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::debug!("progress notification not written by the deadline");
                }
                sent = peer.notify_progress(p) => {
                    if let Err(e) = sent {
                        tracing::debug!(error = %e, "progress notification not delivered");
                    }
                }
            }
        }
    }
}

/// The `progress` values of one wait: seconds waited, to the millisecond,
/// strictly increasing as MCP requires (two reports in the same millisecond,
/// or a clock that did not move, still get distinct values), and strictly
/// below `total` (`timeout_seconds`), which the wait outlasts by the expiry
/// grace: past it, one report says `total` less a millisecond, and no value is
/// left for later ones, which are not sent.
#[derive(Debug)]
struct ProgressValues {
    last_ms: Option<u64>,
    total_ms: u64,
}

impl ProgressValues {
    fn new(total: Duration) -> Self {
        ProgressValues {
            last_ms: None,
            total_ms: u64::try_from(total.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The value to report after `elapsed`, or `None` when none is left.
    fn next(&mut self, elapsed: Duration) -> Option<f64> {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let floor = self.last_ms.map_or(0, |l| l.saturating_add(1));
        let v = ms.max(floor).min(self.total_ms.checked_sub(1)?);
        if self.last_ms.is_some_and(|l| v <= l) {
            return None;
        }
        self.last_ms = Some(v);
        Some(v as f64 / 1000.0)
    }
}

/// Waits until `record` is terminal or `deadline` passes, returning the latest
/// record either way. A failure while waiting names the elicitation in its
/// detail: it was created, and the caller needs its id to poll or cancel it.
pub(crate) async fn until_terminal<B: Backend>(
    backend: &B,
    record: Elicitation,
    deadline: Instant,
    total_s: u64,
    ctx: &CallContext,
) -> Result<Elicitation, Problem> {
    let id = record.id.clone();
    wait_loop(backend, record, deadline, total_s, ctx)
        .await
        .map_err(|mut p| {
            p.detail = format!(
                "{}; elicitation {id} was created and may still be pending: poll it with lighthouse_get_elicitation or cancel it with lighthouse_cancel_elicitation",
                p.detail
            );
            p
        })
}

/// The problem of a wait the bridge stopped before the record was terminal
/// or its deadline passed.
fn stopped_waiting() -> Problem {
    Problem::new(
        ErrorCode::Unavailable,
        "the bridge stopped waiting for the answer (it is shutting down or restarting)",
    )
}

/// A wait slice at least this long that comes back non-terminal in less than
/// half its time means the bridge stopped waiting (see `wait_loop`).
const EARLY_RETURN_MIN_SLICE: Duration = Duration::from_millis(50);

async fn wait_loop<B: Backend>(
    backend: &B,
    mut record: Elicitation,
    deadline: Instant,
    total_s: u64,
    ctx: &CallContext,
) -> Result<Elicitation, Problem> {
    let started = Instant::now();
    let mut progress = ProgressValues::new(Duration::from_secs(total_s));
    loop {
        if record.status.is_terminal() {
            return Ok(record);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(record);
        }
        // The call was admitted once, at its start; a wait of up to an hour
        // must not outlive the caller's token (expired or revoked meanwhile).
        backend.still_authorized().await?;
        let mut slice = (deadline - now).min(MAX_WAIT_SLICE);
        if ctx.progress.is_some() {
            slice = slice.min(ctx.progress_interval);
        }
        if let Some(every) = backend.recheck_every() {
            slice = slice.min(every);
        }
        let ms = u64::try_from(slice.as_millis()).unwrap_or(60_000).max(1);
        // One event per slice: what a stuck or runaway wait shows in the
        // logs (and what the tests count to see a wait stop).
        tracing::debug!(elicitation = %record.id, slice_ms = ms, "waiting on the bridge for an answer");
        let asked = Instant::now();
        record = ctx
            .until_cancelled(backend.get_elicitation(&record.id, ms))
            .await??;
        // A long-poll comes back before its wait only with a terminal record,
        // or when the bridge stopped waiting (it is shutting down, or a remote
        // one restarted under the stdio proxy): then asking again would come
        // back at once too, in a loop. PROTOCOL.md 12 has `wait=true` return
        // when the record is terminal or at its expiry, so a pending record
        // now would be neither: the wait fails as unavailable instead (and
        // `until_terminal` names the elicitation, to poll or cancel it).
        if !record.status.is_terminal()
            && slice >= EARLY_RETURN_MIN_SLICE
            && asked.elapsed() < slice / 2
        {
            return Err(stopped_waiting());
        }
        if !record.status.is_terminal()
            && let Some(value) = progress.next(started.elapsed())
        {
            let message = format!("waiting for {} to answer {}", record.to, record.id);
            ctx.report(value, total_s, message, deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use lighthouse_core::api::{
        AppendEventRequest, AppendEventResponse, CancelRequest, CreateRequest, ElicitationList,
        EventsPage, EventsQuery, Health, MessagesPage, RespondRequest, SentMessage, Status,
        Timestamp,
    };
    use lighthouse_elicitation::SendMessage;
    use serde_json::json;

    use super::*;

    /// A bridge on which nobody ever answers: every wait runs its full length,
    /// or, with `fail`, is refused as one whose token expired would be.
    #[derive(Default)]
    struct Silent {
        waits: AtomicUsize,
        fail: bool,
        /// Answers every wait at once, as a bridge that is shutting down does.
        stopped: bool,
    }

    fn pending() -> Elicitation {
        Elicitation {
            id: "el_1".into(),
            from: "alice".into(),
            to: "bob".into(),
            message: "?".into(),
            requested_schema: json!({}).into(),
            status: Status::Pending,
            created_at: Timestamp::EPOCH,
            expires_at: Timestamp::EPOCH,
            resolved_at: None,
            response: None,
            metadata: json!({}).into(),
        }
    }

    impl Backend for Silent {
        async fn elicit(&self, _: CreateRequest) -> Result<Elicitation, Problem> {
            Ok(pending())
        }
        async fn get_elicitation(&self, _: &str, wait_ms: u64) -> Result<Elicitation, Problem> {
            if self.fail {
                return Err(Problem::new(
                    lighthouse_core::api::ErrorCode::Unauthenticated,
                    "the token has expired",
                ));
            }
            assert!((1..=60_000).contains(&wait_ms), "{wait_ms}");
            self.waits.fetch_add(1, Ordering::SeqCst);
            if !self.stopped {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            Ok(pending())
        }
        async fn pending_inbox(&self, _: usize) -> Result<ElicitationList, Problem> {
            unreachable!("this test double serves only elicit and get_elicitation")
        }
        async fn respond(&self, _: &str, _: RespondRequest) -> Result<Elicitation, Problem> {
            unreachable!("this test double serves only elicit and get_elicitation")
        }
        async fn cancel(&self, _: &str, _: CancelRequest) -> Result<Elicitation, Problem> {
            unreachable!("this test double serves only elicit and get_elicitation")
        }
        async fn send_message(&self, _: SendMessage) -> Result<SentMessage, Problem> {
            unreachable!("this test double serves only elicit and get_elicitation")
        }
        async fn receive_messages(&self, _: u64, _: u64) -> Result<MessagesPage, Problem> {
            unreachable!("this test double serves only elicit and get_elicitation")
        }
        async fn append_event(
            &self,
            _: AppendEventRequest,
        ) -> Result<AppendEventResponse, Problem> {
            unreachable!("this test double serves only elicit and get_elicitation")
        }
        async fn query_events(&self, _: EventsQuery) -> Result<EventsPage, Problem> {
            unreachable!("this test double serves only elicit and get_elicitation")
        }
        async fn health(&self) -> Result<Health, Problem> {
            unreachable!("this test double serves only elicit and get_elicitation")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_in_slices_of_at_most_a_minute_until_the_deadline() {
        let backend = Silent::default();
        let ctx = CallContext::new(CancellationToken::new(), &McpConfig::default());
        let deadline = Instant::now() + Duration::from_secs(3605);
        let r = until_terminal(&backend, pending(), deadline, 3600, &ctx)
            .await
            .unwrap();
        assert_eq!(r.status, Status::Pending);
        assert!(Instant::now() >= deadline);
        // 3605 s in slices of at most 60 s.
        assert_eq!(backend.waits.load(Ordering::SeqCst), 61);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bridge_that_stopped_waiting_fails_the_wait_instead_of_a_busy_loop() {
        let backend = Silent {
            stopped: true,
            ..Silent::default()
        };
        let ctx = CallContext::new(CancellationToken::new(), &McpConfig::default());
        let deadline = Instant::now() + Duration::from_secs(3600);
        let started = Instant::now();
        let e = until_terminal(&backend, pending(), deadline, 3600, &ctx)
            .await
            .unwrap_err();
        assert_eq!(backend.waits.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
        // Neither terminal nor expired: not a result, but the bridge's being
        // unavailable, naming the elicitation that stays pending.
        assert_eq!(
            (e.code, e.status),
            (lighthouse_core::api::ErrorCode::Unavailable, 503)
        );
        assert!(
            e.detail.starts_with("the bridge stopped waiting")
                && e.detail.contains("elicitation el_1 was created"),
            "{}",
            e.detail
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_call_stops_waiting_at_once() {
        let backend = Silent::default();
        let ct = CancellationToken::new();
        let ctx = CallContext::new(ct.clone(), &McpConfig::default());
        let deadline = Instant::now() + Duration::from_secs(3600);
        let started = Instant::now();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(90)).await;
            ct.cancel();
        });
        let e = until_terminal(&backend, pending(), deadline, 3600, &ctx)
            .await
            .unwrap_err();
        canceller.await.unwrap();
        assert_eq!(e.code, lighthouse_core::api::ErrorCode::Unavailable);
        assert!(
            e.detail.contains("elicitation el_1 was created"),
            "{}",
            e.detail
        );
        assert_eq!(started.elapsed(), Duration::from_secs(90));
        assert_eq!(backend.waits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn either_token_cancels_the_call() {
        let backend = Silent::default();
        let notified = CancellationToken::new();
        let ctx = CallContext::new(CancellationToken::new(), &McpConfig::default())
            .with_cancellation(notified.clone());
        let deadline = Instant::now() + Duration::from_secs(3600);
        let started = Instant::now();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(7)).await;
            notified.cancel();
        });
        let e = until_terminal(&backend, pending(), deadline, 3600, &ctx)
            .await
            .unwrap_err();
        canceller.await.unwrap();
        assert!(e.detail.starts_with("the client cancelled"), "{}", e.detail);
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert!(ctx.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_wait_names_the_created_elicitation() {
        let ctx = CallContext::new(CancellationToken::new(), &McpConfig::default());
        let deadline = Instant::now() + Duration::from_secs(30);
        let failing = Silent {
            fail: true,
            ..Silent::default()
        };
        let e = until_terminal(&failing, pending(), deadline, 30, &ctx)
            .await
            .unwrap_err();
        assert_eq!(e.code, lighthouse_core::api::ErrorCode::Unauthenticated);
        assert!(
            e.detail.starts_with("the token has expired; "),
            "{}",
            e.detail
        );
        assert!(
            e.detail.contains("elicitation el_1 was created"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn progress_values_strictly_increase() {
        let mut p = ProgressValues::new(Duration::from_secs(60));
        let got: Vec<Option<f64>> = [100, 200, 200, 250, 1_000, 999]
            .into_iter()
            .map(|ms| p.next(Duration::from_millis(ms)))
            .collect();
        let want = [0.1, 0.2, 0.201, 0.25, 1.0, 1.001].map(Some);
        assert_eq!(got, want);
    }

    /// The wait runs through the expiry grace past `timeout_seconds` (the
    /// total): progress never reaches the total (20.011 of 20 was reported).
    #[test]
    fn progress_stays_below_the_total_through_the_expiry_grace() {
        let mut p = ProgressValues::new(Duration::from_secs(20));
        let got: Vec<Option<f64>> = [10_000, 19_990, 20_011, 20_100, 24_999]
            .into_iter()
            .map(|ms| p.next(Duration::from_millis(ms)))
            .collect();
        assert_eq!(got, [Some(10.0), Some(19.99), Some(19.999), None, None]);
        // Reaching the total at once still reports below it, once.
        let mut p = ProgressValues::new(Duration::from_secs(1));
        assert_eq!(p.next(Duration::from_secs(3)), Some(0.999));
        assert_eq!(p.next(Duration::from_secs(4)), None);
        assert_eq!(
            ProgressValues::new(Duration::ZERO).next(Duration::ZERO),
            None
        );
    }

    #[test]
    fn the_progress_interval_has_a_floor() {
        let config = McpConfig {
            progress_interval: Duration::ZERO,
            ..McpConfig::default()
        };
        let ctx = CallContext::new(CancellationToken::new(), &config);
        assert_eq!(ctx.progress_interval, MIN_PROGRESS_INTERVAL);
    }
}
