//! [`Limits`]: every bound on what a flag write may contain and on how much the
//! flag store holds, each with a documented default.

/// Bounds on flag writes and on the flag store. Every field is configurable; the
/// defaults are chosen so that the largest possible change event (the flag before
/// and after, each with full lists) stays well under the event store's 1 MiB event
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most flags the store holds (flags are never deleted), default 10,000.
    pub max_flags: usize,
    /// Most agent ids in `allow`, and separately in `deny`, default 1,000.
    /// Larger populations belong in `rollout_percent`, not in lists.
    pub max_targets: usize,
    /// Most entries in `variants`, default 32.
    pub max_variants: usize,
    /// Most keys in `requires`, default 16.
    pub max_requires: usize,
    /// Most flags one flag may depend on, directly or through other flags
    /// (its transitive prerequisites, each counted once), default 32. Evaluation
    /// checks each of them, so this bounds the cost of one evaluation.
    pub max_prerequisites: usize,
    /// Longest `description` in bytes (UTF-8), default 1,024.
    pub max_description_bytes: usize,
    /// Longest `reason` of a change in bytes (UTF-8), default 1,024.
    pub max_reason_bytes: usize,
    /// Most changes one history read returns, default 1,000.
    pub max_history_page: usize,
    /// Most bytes of changes (as JSON) one history read returns, default
    /// 8 MiB; a read always returns at least one change. A change holds the
    /// flag before and after, up to ~280 KB with full target lists, so 1,000
    /// of them could otherwise make one response of ~280 MB.
    pub max_history_page_bytes: usize,
    /// Most bytes, as JSON, of every flag together (each as `GET` returns it),
    /// default 16 MiB. `GET /v1/flags` has no paging and the snapshot holds
    /// every flag, so without it the defaults above would allow 10,000 flags of
    /// ~135 KB (full target lists), a ~1.3 GB response. A `PUT` that grows the
    /// total past it is refused; one that shrinks or keeps it is not, and kill
    /// and unkill never are (a flag must always be killable), though each moves
    /// a flag's size by a few bytes (`killed`, `version`, `updated_*`).
    pub max_total_flag_bytes: usize,
    /// Most bytes of stored events one page of replay (on open, and when a
    /// write catches up with another writer) holds in memory, default 8 MiB;
    /// a page always holds at least one event. A change event carries the
    /// flag before and after, up to ~280 KB with full target lists, so a page
    /// of 1,000 events could otherwise take ~400 MB.
    pub max_replay_page_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_flags: 10_000,
            max_targets: 1_000,
            max_variants: 32,
            max_requires: 16,
            max_prerequisites: 32,
            max_description_bytes: 1_024,
            max_reason_bytes: 1_024,
            max_history_page: 1_000,
            max_history_page_bytes: 8 << 20,
            max_total_flag_bytes: 16 << 20,
            max_replay_page_bytes: 8 << 20,
        }
    }
}
