//! Every limit of the service, named, documented and configurable.

/// Sizes, ranges and capacities. [`Limits::default`] gives the values of
/// PROTOCOL.md section 4 and the bounds documented in `docs/ELICITATION.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest `message` of an elicitation, in UTF-8 bytes (default 8 KiB).
    pub max_message_bytes: usize,
    /// Largest answer `content`, serialized as JSON (default 64 KiB).
    pub max_content_bytes: usize,
    /// Largest `reason` of a decline or cancel, in UTF-8 bytes (default 4 KiB).
    pub max_reason_bytes: usize,
    /// Largest `metadata` object, serialized (default 8 KiB).
    pub max_metadata_bytes: usize,
    /// Largest form-profile `requested_schema`, serialized (default 64 KiB).
    pub max_form_schema_bytes: usize,
    /// Largest `json-schema`-profile `requested_schema`, serialized (default 16 KiB).
    pub max_json_schema_bytes: usize,
    /// Deepest nesting of a `json-schema`-profile schema; the root container is
    /// depth 1 (default 16).
    pub max_json_schema_depth: usize,
    /// Smallest `timeout_ms` (default 1,000).
    pub min_timeout_ms: u64,
    /// Largest `timeout_ms` (default 3,600,000, one hour).
    pub max_timeout_ms: u64,
    /// `timeout_ms` when none is given (default 30,000).
    pub default_timeout_ms: u64,
    /// Largest message `body` of the mailbox, serialized (default 64 KiB).
    pub max_message_body_bytes: usize,
    /// Longest wait of a waiting read or long-poll, in milliseconds (default 60,000).
    pub max_wait_ms: u64,
    /// Items per page when the caller gives no limit (default 100).
    pub default_page_limit: usize,
    /// Most items per page (default 1,000).
    pub max_page_limit: usize,
    /// How long an idempotency key returns the first result (default 24 h).
    pub idempotency_ttl_ms: u64,
    /// Idempotency keys remembered per requester; beyond it that requester's
    /// oldest are forgotten before their TTL (default 10,000). Per requester,
    /// so that one agent creating with many keys cannot push out the keys of
    /// the others.
    pub max_idempotency_keys_per_agent: usize,
    /// Idempotency keys remembered in all, a memory ceiling above the
    /// per-requester cap (default 200,000); beyond it the requester holding
    /// the most keys loses its oldest.
    pub max_idempotency_keys: usize,
    /// Longest idempotency key, in bytes (default 255).
    pub max_idempotency_key_bytes: usize,
    /// Elicitations pending at once; a create beyond it is refused with
    /// [`Error::Capacity`](crate::Error::Capacity) (default 100,000).
    pub max_pending: usize,
    /// Terminal elicitations kept in memory (for listings and catch-up without a
    /// log scan); older ones are still found by id, from the log (default 100,000).
    pub max_retained_resolved: usize,
    /// A listing page ends once its records take this many bytes as JSON, and
    /// a page of messages once its stored events do (default 8 MiB, as
    /// `GET /v1/events` pages; at least one record or message).
    pub max_list_page_bytes: usize,
    /// A listing filtered by a terminal status examines at most this many of
    /// the box's records per page under the state lock (default 10,000, as
    /// `GET /v1/events`'s scan budget); a page that runs out ends early, even
    /// empty, with `next_cursor` where it stopped. Pending listings use their
    /// own index and need no budget.
    pub list_examine_budget: usize,
    /// Open agent subscriptions at once (default 10,000).
    pub max_subscriptions: usize,
    /// Open subscriptions of one agent at once (default 32), so that one agent
    /// cannot hold every slot of [`max_subscriptions`](Self::max_subscriptions).
    pub max_subscriptions_per_agent: usize,
    /// Notifications buffered per subscription before it is cut off with
    /// [`Error::Lagged`](crate::Error::Lagged) (default 1,024).
    pub subscription_buffer: usize,
    /// Bytes of notifications buffered per subscription, as decoded (an
    /// estimate: a record's JSON values, strings and keys), before it is cut
    /// off with [`Error::Lagged`](crate::Error::Lagged) (default 4 MiB; at
    /// least one notification whatever its size). A count alone does not bound
    /// memory: a 64 KiB message can decode to about a MiB.
    pub subscription_buffer_bytes: usize,
    /// Records of the log one catch-up step of a subscription looks at, at
    /// most, matching or not (default 4,096, as the store's own
    /// subscriptions): resuming far back over a long log of other events
    /// reads it in steps of this size and lets other tasks run between them.
    pub catch_up_examined: usize,
    /// Agents with a long-poll receive waiting at once (default 10,000).
    pub max_message_waiters: usize,
    /// Most events one expiry or drain append writes (default 256).
    pub transition_batch: usize,
    /// A snapshot of the projection is saved after this many elicitation events
    /// (default 250,000, so a restart replays at most that many on top of the
    /// snapshot; 0 disables automatic snapshots).
    pub snapshot_every_events: u64,
    /// Longest the expiry timer sleeps before looking at the clock again, in
    /// milliseconds, so that a wall-clock step cannot delay an expiry for long
    /// (default 1,000). The timer still wakes at the next deadline.
    pub timer_max_sleep_ms: u64,
    /// Compiled schemas kept for reuse, by profile and schema text (default
    /// 1,024; schemas over 4 KiB serialised are not kept; 0 turns it off).
    pub schema_cache_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 8 << 10,
            max_content_bytes: 64 << 10,
            max_reason_bytes: 4 << 10,
            max_metadata_bytes: 8 << 10,
            max_form_schema_bytes: 64 << 10,
            max_json_schema_bytes: 16 << 10,
            max_json_schema_depth: 16,
            min_timeout_ms: 1_000,
            max_timeout_ms: 3_600_000,
            default_timeout_ms: 30_000,
            max_message_body_bytes: 64 << 10,
            max_wait_ms: 60_000,
            default_page_limit: 100,
            max_page_limit: 1_000,
            idempotency_ttl_ms: 24 * 3_600_000,
            max_idempotency_keys_per_agent: 10_000,
            max_idempotency_keys: 200_000,
            max_idempotency_key_bytes: 255,
            max_pending: 100_000,
            max_retained_resolved: 100_000,
            max_list_page_bytes: 8 << 20,
            list_examine_budget: 10_000,
            max_subscriptions: 10_000,
            max_subscriptions_per_agent: 32,
            subscription_buffer: 1_024,
            subscription_buffer_bytes: 4 << 20,
            catch_up_examined: 4_096,
            max_message_waiters: 10_000,
            transition_batch: 256,
            snapshot_every_events: 250_000,
            timer_max_sleep_ms: 1_000,
            schema_cache_entries: 1_024,
        }
    }
}

impl Limits {
    /// The bounds of the idempotency keys, as the projection applies them.
    pub(crate) fn idempotency_bounds(&self) -> crate::projection::KeyBounds {
        crate::projection::KeyBounds {
            ttl_ms: self.idempotency_ttl_ms,
            per_agent: self.max_idempotency_keys_per_agent,
            total: self.max_idempotency_keys,
        }
    }
}
