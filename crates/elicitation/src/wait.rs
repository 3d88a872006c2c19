//! [`WaitMeter`]: how long a call was blocked waiting for another agent.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Adds up the time a call spends blocked waiting for something outside the
/// bridge's control (an answer to an elicitation, a message), and nothing
/// else: reading and decoding what it waited for, waiting for the bridge's own
/// applier, and serialising the answer are the bridge's work.
///
/// The bridge leaves that time out of request latency (PROTOCOL.md 9,
/// "excluding ... the waiting part of long-polls"). A long-poll that finds
/// its answer at once never blocks, so its meter stays at zero and all its
/// time is latency. Clones share one total, so the HTTP layer can read it for
/// a request whose handler is still waiting, or was dropped mid-wait (a
/// client that gave up): [`waited`](Self::waited) counts a block in progress
/// up to now.
#[derive(Debug, Clone, Default)]
pub struct WaitMeter(Arc<Mutex<Blocks>>);

#[derive(Debug, Default)]
struct Blocks {
    /// Blocks that ended.
    total: Duration,
    /// Blocks in progress, and when the first of them began (nested blocks
    /// count once).
    open: u32,
    since: Option<Instant>,
}

impl WaitMeter {
    /// A meter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time blocked so far, including a block still in progress.
    pub fn waited(&self) -> Duration {
        let b = self.0.lock();
        b.total + b.since.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Runs `f`, counting its whole time as blocked (also when `f` is dropped
    /// before it completes).
    pub async fn blocked<F: Future>(&self, f: F) -> F::Output {
        let _block = self.begin();
        f.await
    }

    fn begin(&self) -> Block<'_> {
        let mut b = self.0.lock();
        if b.open == 0 {
            b.since = Some(Instant::now());
        }
        b.open += 1;
        Block(self)
    }
}

/// One block in progress; ends when dropped.
struct Block<'a>(&'a WaitMeter);

impl Drop for Block<'_> {
    fn drop(&mut self) {
        let mut b = self.0.0.lock();
        b.open = b.open.saturating_sub(1);
        if b.open == 0
            && let Some(since) = b.since.take()
        {
            b.total += since.elapsed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_blocked_time_counts_and_a_dropped_block_ends() {
        let m = WaitMeter::new();
        assert_eq!(m.waited(), Duration::ZERO);
        // Work outside a block is not counted.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(m.waited(), Duration::ZERO);
        m.blocked(tokio::time::sleep(Duration::from_millis(20)))
            .await;
        let after_one = m.waited();
        assert!(after_one >= Duration::from_millis(20), "{after_one:?}");
        // A block in progress counts up to now; dropping it ends it.
        let clone = m.clone();
        let pending = tokio::spawn(async move {
            clone
                .blocked(tokio::time::sleep(Duration::from_secs(3600)))
                .await
        });
        while m.waited() == after_one {
            tokio::task::yield_now().await;
        }
        pending.abort();
        let _ = pending.await;
        let ended = m.waited();
        assert!(ended > after_one);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(m.waited(), ended, "nothing counts once the block ended");
    }

    #[tokio::test]
    async fn nested_blocks_count_once() {
        let m = WaitMeter::new();
        let inner = m.clone();
        let started = Instant::now();
        m.blocked(async move {
            inner
                .blocked(tokio::time::sleep(Duration::from_millis(20)))
                .await;
        })
        .await;
        let elapsed = started.elapsed();
        // Counted twice, the total would be about twice the time that passed.
        let w = m.waited();
        assert!(
            w >= Duration::from_millis(20) && w <= elapsed,
            "{w:?} of {elapsed:?}"
        );
    }
}
