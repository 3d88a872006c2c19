//! [`BridgeConfig`]: everything a bridge is opened with, each with a default.

use std::path::PathBuf;
use std::sync::Arc;

use lighthouse_event_store::{Durability, SharedClock, SystemClock};
use lighthouse_security::{MasterKey, SecurityConfig};

/// The flag limits of [`BridgeConfig::flags`], named here so that a binary can
/// configure them without depending on `lighthouse-flags`.
pub use lighthouse_flags::Limits as FlagLimits;

/// How to open a [`Bridge`](crate::Bridge).
#[derive(Clone)]
pub struct BridgeConfig {
    /// The data directory: `store/` (the log), `nonces/` (the nonce journal).
    pub data_dir: PathBuf,
    /// The master key (agent secrets, token MACs, the store's integrity key).
    pub master_key: MasterKey,
    /// Store durability (default durable).
    pub durability: Durability,
    /// Signature window, nonce, rate-limit, token and audit settings.
    pub security: SecurityConfig,
    /// Elicitation limits.
    pub elicitation: lighthouse_elicitation::Limits,
    /// Flag limits.
    pub flags: FlagLimits,
    /// The clock.
    pub clock: SharedClock,
    /// The URL agents reach this bridge at, written into credential files
    /// (default `http://127.0.0.1:8765`).
    pub public_url: String,
    /// How often idle security state is reclaimed and store gauges refreshed
    /// (default 10 s).
    pub housekeeping_interval: std::time::Duration,
}

impl std::fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeConfig")
            .field("data_dir", &self.data_dir)
            .field("durability", &self.durability)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl BridgeConfig {
    /// Defaults for a bridge keeping its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>, master_key: MasterKey) -> Self {
        BridgeConfig {
            data_dir: data_dir.into(),
            master_key,
            durability: Durability::Durable,
            security: SecurityConfig::default(),
            elicitation: lighthouse_elicitation::Limits::default(),
            flags: FlagLimits::default(),
            clock: Arc::new(SystemClock),
            housekeeping_interval: std::time::Duration::from_secs(10),
            public_url: "http://127.0.0.1:8765".to_owned(),
        }
    }
}
