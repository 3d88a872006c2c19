//! `serve` configuration: a TOML file, then `LIGHTHOUSE_*` environment
//! variables, then command-line flags (later wins). Every key has a default.
//!
//! ```toml
//! listen = "127.0.0.1:8765"        # LIGHTHOUSE_LISTEN,     --listen
//! data_dir = "./lighthouse-data"   # LIGHTHOUSE_DATA_DIR,   --data
//! public_url = "http://127.0.0.1:8765"  # LIGHTHOUSE_PUBLIC_URL, --public-url (written into credentials)
//! log_format = "text"              # LIGHTHOUSE_LOG_FORMAT, --log-format (text | json)
//! durability = "durable"           # LIGHTHOUSE_DURABILITY  (durable | buffered)
//! window_s = 300                   # LIGHTHOUSE_WINDOW_S    (signature time window)
//! shutdown_grace_ms = 10000        # LIGHTHOUSE_SHUTDOWN_GRACE_MS (in-flight requests on shutdown, 0 to 600000)
//! mcp_allowed_origins = []         # LIGHTHOUSE_MCP_ALLOWED_ORIGINS (comma-separated origins, scheme://host[:port], whose requests /mcp takes; see docs/MCP.md)
//! max_connections = 16384          # LIGHTHOUSE_MAX_CONNECTIONS (open connections; beyond it, accepting waits)
//! max_connections_per_peer = 256  # LIGHTHOUSE_MAX_CONNECTIONS_PER_PEER (open connections from one IP address, 1 to 1000000; beyond it, closed at once)
//! listen_backlog = 4096            # LIGHTHOUSE_LISTEN_BACKLOG (connections the kernel queues before accept; capped by net.core.somaxconn)
//! header_read_timeout_ms = 30000   # LIGHTHOUSE_HEADER_READ_TIMEOUT_MS (a request head must arrive within it; also the idle keep-alive, HTTP/2's included)
//! body_read_timeout_ms = 30000     # LIGHTHOUSE_BODY_READ_TIMEOUT_MS (a request body must arrive within it)
//! write_stall_timeout_ms = 60000   # LIGHTHOUSE_WRITE_STALL_TIMEOUT_MS (a client that reads nothing of a response for it is disconnected; a streamed response it takes nothing of, HTTP/2 included, is ended)
//! write_stall_min_bytes = 16384    # LIGHTHOUSE_WRITE_STALL_MIN_BYTES (once a write is held up, the client must take this much, or all that was offered, within write_stall_timeout_ms; 1 to 16777216)
//! http1_max_head_bytes = 65536     # LIGHTHOUSE_HTTP1_MAX_HEAD_BYTES (an HTTP/1 request head, 8192 to 1048576; larger is 431; also hyper's read and write buffer per connection)
//! http1_max_headers = 64           # LIGHTHOUSE_HTTP1_MAX_HEADERS (header fields of an HTTP/1 request, 16 to 1024; more is 431)
//! http2_max_concurrent_streams = 32       # LIGHTHOUSE_HTTP2_MAX_CONCURRENT_STREAMS (open streams per HTTP/2 connection, 1 to 1000; more are refused)
//! http2_max_header_list_bytes = 16384     # LIGHTHOUSE_HTTP2_MAX_HEADER_LIST_BYTES (an HTTP/2 request's headers as RFC 9113 counts them, 4096 to 1048576)
//! http2_stream_window_bytes = 262144      # LIGHTHOUSE_HTTP2_STREAM_WINDOW_BYTES (request body a client may send ahead on one stream, 65535 to 16777216)
//! http2_connection_window_bytes = 524288  # LIGHTHOUSE_HTTP2_CONNECTION_WINDOW_BYTES (the same for all streams of a connection, 65535 to 16777216)
//! http2_send_buffer_bytes = 65536         # LIGHTHOUSE_HTTP2_SEND_BUFFER_BYTES (response bytes buffered per stream, 16384 to 16777216)
//!
//! # Rate limits per role and action class (PROTOCOL.md 2.4), file only; each
//! # entry replaces that one default. Classes: elicit, respond, write, read, session.
//! [rate_limits.agent]
//! read = { per_minute = 12000, burst = 1200 }
//!
//! # Flag limits (docs/FLAGS.md "Limits"); each key also LIGHTHOUSE_FLAGS_<KEY>,
//! # e.g. LIGHTHOUSE_FLAGS_MAX_FLAGS. Ranges in FlagsConfig::RANGES.
//! [flags]
//! max_flags = 10000
//! max_targets = 1000
//! max_variants = 32
//! max_requires = 16
//! max_prerequisites = 32
//! max_description_bytes = 1024
//! max_reason_bytes = 1024
//! max_history_page = 1000
//! max_history_page_bytes = 8388608
//! max_total_flag_bytes = 16777216
//! max_replay_page_bytes = 8388608
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lighthouse_security::{ActionClass, Quota, RateLimits, Role};
use serde::Deserialize;

/// One rate limit of the `[rate_limits.<role>]` tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    pub per_minute: u32,
    pub burst: u32,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub log_format: String,
    pub durability: String,
    pub window_s: u32,
    pub shutdown_grace_ms: u64,
    pub mcp_allowed_origins: Vec<String>,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub listen_backlog: u32,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub write_stall_timeout_ms: u64,
    pub write_stall_min_bytes: usize,
    pub http1_max_head_bytes: usize,
    pub http1_max_headers: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_header_list_bytes: u32,
    pub http2_stream_window_bytes: u32,
    pub http2_connection_window_bytes: u32,
    pub http2_send_buffer_bytes: usize,
    /// Role, then class name, then quota: replaces those defaults.
    pub rate_limits: BTreeMap<Role, BTreeMap<String, QuotaSpec>>,
    /// The `[flags]` table: the flag store's limits.
    pub flags: FlagsConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8765".into(),
            data_dir: PathBuf::from("./lighthouse-data"),
            public_url: None,
            log_format: "text".into(),
            durability: "durable".into(),
            window_s: 300,
            shutdown_grace_ms: 10_000,
            mcp_allowed_origins: Vec::new(),
            max_connections: 16_384,
            max_connections_per_peer: 256,
            listen_backlog: 4096,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 30_000,
            write_stall_timeout_ms: 60_000,
            write_stall_min_bytes: 16 << 10,
            http1_max_head_bytes: 64 << 10,
            http1_max_headers: 64,
            http2_max_concurrent_streams: 32,
            http2_max_header_list_bytes: 16 << 10,
            http2_stream_window_bytes: 256 << 10,
            http2_connection_window_bytes: 512 << 10,
            http2_send_buffer_bytes: 64 << 10,
            rate_limits: BTreeMap::new(),
            flags: FlagsConfig::default(),
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub log_format: Option<String>,
}

impl ServeConfig {
    /// File (if given), then environment, then flags.
    pub fn resolve(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        o: Overrides,
    ) -> Result<Self, String> {
        let mut c = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => ServeConfig::default(),
        };
        if let Some(v) = env("LIGHTHOUSE_LISTEN") {
            c.listen = v;
        }
        if let Some(v) = env("LIGHTHOUSE_DATA_DIR") {
            c.data_dir = v.into();
        }
        if let Some(v) = env("LIGHTHOUSE_PUBLIC_URL") {
            c.public_url = Some(v);
        }
        if let Some(v) = env("LIGHTHOUSE_LOG_FORMAT") {
            c.log_format = v;
        }
        if let Some(v) = env("LIGHTHOUSE_DURABILITY") {
            c.durability = v;
        }
        if let Some(v) = env("LIGHTHOUSE_WINDOW_S") {
            c.window_s = v
                .parse()
                .map_err(|_| "LIGHTHOUSE_WINDOW_S must be a number of seconds".to_owned())?;
        }
        if let Some(v) = env("LIGHTHOUSE_SHUTDOWN_GRACE_MS") {
            c.shutdown_grace_ms = v
                .parse()
                .map_err(|_| "LIGHTHOUSE_SHUTDOWN_GRACE_MS must be a number".to_owned())?;
        }
        if let Some(v) = env("LIGHTHOUSE_MCP_ALLOWED_ORIGINS") {
            c.mcp_allowed_origins = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = env("LIGHTHOUSE_MAX_CONNECTIONS") {
            c.max_connections = v
                .parse()
                .map_err(|_| "LIGHTHOUSE_MAX_CONNECTIONS must be a number".to_owned())?;
        }
        if let Some(v) = env("LIGHTHOUSE_LISTEN_BACKLOG") {
            c.listen_backlog = v
                .parse()
                .map_err(|_| "LIGHTHOUSE_LISTEN_BACKLOG must be a number".to_owned())?;
        }
        if let Some(v) = env("LIGHTHOUSE_HEADER_READ_TIMEOUT_MS") {
            c.header_read_timeout_ms = v
                .parse()
                .map_err(|_| "LIGHTHOUSE_HEADER_READ_TIMEOUT_MS must be a number".to_owned())?;
        }
        if let Some(v) = env("LIGHTHOUSE_WRITE_STALL_TIMEOUT_MS") {
            c.write_stall_timeout_ms = v
                .parse()
                .map_err(|_| "LIGHTHOUSE_WRITE_STALL_TIMEOUT_MS must be a number".to_owned())?;
        }
        if let Some(v) = env("LIGHTHOUSE_BODY_READ_TIMEOUT_MS") {
            c.body_read_timeout_ms = v
                .parse()
                .map_err(|_| "LIGHTHOUSE_BODY_READ_TIMEOUT_MS must be a number".to_owned())?;
        }
        c.flags.apply_env(&env)?;
        env_number(
            &env,
            "LIGHTHOUSE_WRITE_STALL_MIN_BYTES",
            &mut c.write_stall_min_bytes,
        )?;
        env_number(
            &env,
            "LIGHTHOUSE_MAX_CONNECTIONS_PER_PEER",
            &mut c.max_connections_per_peer,
        )?;
        env_number(
            &env,
            "LIGHTHOUSE_HTTP1_MAX_HEAD_BYTES",
            &mut c.http1_max_head_bytes,
        )?;
        env_number(
            &env,
            "LIGHTHOUSE_HTTP1_MAX_HEADERS",
            &mut c.http1_max_headers,
        )?;
        env_number(
            &env,
            "LIGHTHOUSE_HTTP2_MAX_CONCURRENT_STREAMS",
            &mut c.http2_max_concurrent_streams,
        )?;
        env_number(
            &env,
            "LIGHTHOUSE_HTTP2_MAX_HEADER_LIST_BYTES",
            &mut c.http2_max_header_list_bytes,
        )?;
        env_number(
            &env,
            "LIGHTHOUSE_HTTP2_STREAM_WINDOW_BYTES",
            &mut c.http2_stream_window_bytes,
        )?;
        env_number(
            &env,
            "LIGHTHOUSE_HTTP2_CONNECTION_WINDOW_BYTES",
            &mut c.http2_connection_window_bytes,
        )?;
        env_number(
            &env,
            "LIGHTHOUSE_HTTP2_SEND_BUFFER_BYTES",
            &mut c.http2_send_buffer_bytes,
        )?;
        if let Some(v) = o.listen {
            c.listen = v;
        }
        if let Some(v) = o.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = o.public_url {
            c.public_url = Some(v);
        }
        if let Some(v) = o.log_format {
            c.log_format = v;
        }
        c.check()?;
        Ok(c)
    }

    /// PROTOCOL.md 2.4's defaults with this file's `[rate_limits]` applied.
    pub fn rate_limits(&self) -> Result<RateLimits, String> {
        let mut limits = RateLimits::default();
        for (role, classes) in &self.rate_limits {
            for (name, q) in classes {
                let class = ActionClass::ALL
                    .into_iter()
                    .find(|c| c.as_str() == name)
                    .ok_or_else(|| {
                        format!(
                            "rate_limits.{}.{name}: not an action class (elicit, respond, write, read, session)",
                            role.as_str()
                        )
                    })?;
                for (field, v) in [("per_minute", q.per_minute), ("burst", q.burst)] {
                    if !(1..=1_000_000).contains(&v) {
                        return Err(format!(
                            "rate_limits.{}.{name}.{field} must be 1 to 1000000",
                            role.as_str()
                        ));
                    }
                }
                limits.set(*role, class, Some(Quota::new(q.per_minute, q.burst)));
            }
        }
        Ok(limits)
    }

    fn check(&self) -> Result<(), String> {
        self.rate_limits()?;
        self.flags.check()?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "log_format must be text or json, not {:?}",
                self.log_format
            ));
        }
        if !matches!(self.durability.as_str(), "durable" | "buffered") {
            return Err(format!(
                "durability must be durable or buffered, not {:?}",
                self.durability
            ));
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err("max_connections must be 1 to 1000000".into());
        }
        if !(1..=16 << 20).contains(&self.write_stall_min_bytes) {
            return Err("write_stall_min_bytes must be 1 to 16777216".into());
        }
        if !(1..=1_000_000).contains(&self.max_connections_per_peer) {
            return Err("max_connections_per_peer must be 1 to 1000000".into());
        }
        if self.listen_backlog == 0 || self.listen_backlog > 65_535 {
            return Err("listen_backlog must be 1 to 65535".into());
        }
        for (name, ms) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("write_stall_timeout_ms", self.write_stall_timeout_ms),
        ] {
            if !(100..=600_000).contains(&ms) {
                return Err(format!("{name} must be 100 to 600000"));
            }
        }
        // hyper refuses (panics at) an HTTP/1 buffer under 8 KiB.
        if !(8192..=1 << 20).contains(&self.http1_max_head_bytes) {
            return Err("http1_max_head_bytes must be 8192 to 1048576".into());
        }
        if !(16..=1024).contains(&self.http1_max_headers) {
            return Err("http1_max_headers must be 16 to 1024".into());
        }
        if !(1..=1000).contains(&self.http2_max_concurrent_streams) {
            return Err("http2_max_concurrent_streams must be 1 to 1000".into());
        }
        if !(4096..=1 << 20).contains(&self.http2_max_header_list_bytes) {
            return Err("http2_max_header_list_bytes must be 4096 to 1048576".into());
        }
        // Below 65,535 (HTTP/2's initial window) a window could only shrink.
        for (name, bytes) in [
            ("http2_stream_window_bytes", self.http2_stream_window_bytes),
            (
                "http2_connection_window_bytes",
                self.http2_connection_window_bytes,
            ),
        ] {
            if !(65_535..=16 << 20).contains(&bytes) {
                return Err(format!("{name} must be 65535 to 16777216"));
            }
        }
        if !(16 << 10..=16 << 20).contains(&self.http2_send_buffer_bytes) {
            return Err("http2_send_buffer_bytes must be 16384 to 16777216".into());
        }
        // Past it an orchestrator's SIGKILL would skip the final snapshot and
        // flush; 0 cuts in-flight requests at once, which is a choice.
        if self.shutdown_grace_ms > 600_000 {
            return Err("shutdown_grace_ms must be 0 to 600000".into());
        }
        if self.window_s == 0 || self.window_s > 3600 {
            return Err("window_s must be 1 to 3600".into());
        }
        self.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            format!(
                "listen must be an address like 127.0.0.1:8765, not {:?}",
                self.listen
            )
        })?;
        if let Some(url) = &self.public_url {
            check_public_url(url)?;
        }
        // An entry that is not an origin would match no request: refused,
        // not dropped, so that the list means what it says.
        lighthouse_mcp::McpConfig::default()
            .with_allowed_origins(&self.mcp_allowed_origins)
            .check_allowed_origins()
            .map_err(|e| format!("mcp_allowed_origins: {e}"))?;
        Ok(())
    }

    /// The URL written into credential files.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

/// The `[flags]` table: [`lighthouse_core::FlagLimits`], one key per field, each
/// with its default there and a range here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlagsConfig {
    pub max_flags: usize,
    pub max_targets: usize,
    pub max_variants: usize,
    pub max_requires: usize,
    pub max_prerequisites: usize,
    pub max_description_bytes: usize,
    pub max_reason_bytes: usize,
    pub max_history_page: usize,
    pub max_history_page_bytes: usize,
    pub max_total_flag_bytes: usize,
    pub max_replay_page_bytes: usize,
}

impl Default for FlagsConfig {
    fn default() -> Self {
        let l = lighthouse_core::FlagLimits::default();
        FlagsConfig {
            max_flags: l.max_flags,
            max_targets: l.max_targets,
            max_variants: l.max_variants,
            max_requires: l.max_requires,
            max_prerequisites: l.max_prerequisites,
            max_description_bytes: l.max_description_bytes,
            max_reason_bytes: l.max_reason_bytes,
            max_history_page: l.max_history_page,
            max_history_page_bytes: l.max_history_page_bytes,
            max_total_flag_bytes: l.max_total_flag_bytes,
            max_replay_page_bytes: l.max_replay_page_bytes,
        }
    }
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

impl FlagsConfig {
    /// Each key with the values it may take, in the order of `fields`.
    ///
    /// The upper bounds of the per-flag limits keep the largest change event
    /// (the flag before and after, with full lists, a description of control
    /// characters escaped six-fold, and the reason) around 0.65 MB, under the
    /// event store's 1 MiB per event, so a flag the limits admit can always be
    /// written. `max_history_page` stops at the history route's own 1,000 per
    /// request; the byte budgets start at 64 KiB so that they bound rather than
    /// starve (a page always holds one change) and stop at 256 MiB of memory.
    /// `max_reason_bytes` starts at 1 (a change needs a reason) and
    /// `max_flags` at 1 (`elicitation_enabled`).
    pub const RANGES: [(&'static str, std::ops::RangeInclusive<usize>); 11] = [
        ("max_flags", 1..=100_000),
        ("max_targets", 0..=2_000),
        ("max_variants", 0..=100),
        ("max_requires", 0..=64),
        ("max_prerequisites", 0..=256),
        ("max_description_bytes", 0..=4 * KIB),
        ("max_reason_bytes", 1..=4 * KIB),
        ("max_history_page", 1..=1_000),
        ("max_history_page_bytes", 64 * KIB..=256 * MIB),
        ("max_total_flag_bytes", 64 * KIB..=256 * MIB),
        ("max_replay_page_bytes", 64 * KIB..=256 * MIB),
    ];

    /// The values, in the order of [`RANGES`](Self::RANGES).
    fn fields(&mut self) -> [&mut usize; 11] {
        [
            &mut self.max_flags,
            &mut self.max_targets,
            &mut self.max_variants,
            &mut self.max_requires,
            &mut self.max_prerequisites,
            &mut self.max_description_bytes,
            &mut self.max_reason_bytes,
            &mut self.max_history_page,
            &mut self.max_history_page_bytes,
            &mut self.max_total_flag_bytes,
            &mut self.max_replay_page_bytes,
        ]
    }

    /// `LIGHTHOUSE_FLAGS_<KEY>` over the file's value, for each key.
    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        for ((name, _), value) in Self::RANGES.iter().zip(self.fields()) {
            let var = format!("LIGHTHOUSE_FLAGS_{}", name.to_ascii_uppercase());
            if let Some(v) = env(&var) {
                *value = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{var} must be a whole number"))?;
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let mut copy = *self;
        for ((name, range), value) in Self::RANGES.iter().zip(copy.fields()) {
            if !range.contains(value) {
                return Err(format!(
                    "flags.{name} must be {} to {}, not {value}",
                    range.start(),
                    range.end()
                ));
            }
        }
        Ok(())
    }

    /// The flag store's limits.
    pub fn limits(&self) -> lighthouse_core::FlagLimits {
        lighthouse_core::FlagLimits {
            max_flags: self.max_flags,
            max_targets: self.max_targets,
            max_variants: self.max_variants,
            max_requires: self.max_requires,
            max_prerequisites: self.max_prerequisites,
            max_description_bytes: self.max_description_bytes,
            max_reason_bytes: self.max_reason_bytes,
            max_history_page: self.max_history_page,
            max_history_page_bytes: self.max_history_page_bytes,
            max_total_flag_bytes: self.max_total_flag_bytes,
            max_replay_page_bytes: self.max_replay_page_bytes,
        }
    }
}

/// Sets `slot` from the variable `var` when it is set: a number, else an
/// error naming the variable.
fn env_number<T: std::str::FromStr>(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    slot: &mut T,
) -> Result<(), String> {
    if let Some(v) = env(var) {
        *slot = v
            .trim()
            .parse()
            .map_err(|_| format!("{var} must be a number"))?;
    }
    Ok(())
}

/// Refuses a `public_url` that is not an absolute `http` or `https` URL with a
/// host (and no query or fragment): clients put request paths after it, so
/// anything else gives every holder of the credential a bridge they cannot reach.
pub fn check_public_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| {
        format!(
            "public_url must be an absolute http or https URL like https://bridge.example.com:8765, not {url:?}: {why}"
        )
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("it must not have a query or a fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_environment_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\nwindow_s = 60\n").unwrap();
        let env = |k: &str| (k == "LIGHTHOUSE_LISTEN").then(|| "127.0.0.1:9001".to_owned());
        let c = ServeConfig::resolve(Some(&f), env, Overrides::default()).unwrap();
        assert_eq!((c.listen.as_str(), c.window_s), ("127.0.0.1:9001", 60));
        let o = Overrides {
            listen: Some("127.0.0.1:9002".into()),
            ..Overrides::default()
        };
        let c = ServeConfig::resolve(Some(&f), env, o).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9002");
        assert_eq!(c.public_url(), "http://127.0.0.1:9002");
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"nowhere\"\n").unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(e.contains("listen"), "{e}");
        std::fs::write(&f, "colour = \"blue\"\n").unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        std::fs::write(&f, "listen_backlog = 0\n").unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(e.contains("listen_backlog"), "{e}");
        let e = ServeConfig::resolve(
            None,
            |k| (k == "LIGHTHOUSE_SHUTDOWN_GRACE_MS").then(|| "86400000".to_owned()),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("shutdown_grace_ms"), "{e}");
        let e = ServeConfig::resolve(
            None,
            |k| (k == "LIGHTHOUSE_LISTEN_BACKLOG").then(|| "many".to_owned()),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("LIGHTHOUSE_LISTEN_BACKLOG"), "{e}");
        std::fs::write(
            &f,
            "[rate_limits.agent]\nreads = { per_minute = 1, burst = 1 }\n",
        )
        .unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(e.contains("rate_limits.agent.reads"), "{e}");
        std::fs::write(
            &f,
            "[rate_limits.agent]\nread = { per_minute = 0, burst = 1 }\n",
        )
        .unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(e.contains("rate_limits.agent.read.per_minute"), "{e}");
        std::fs::write(
            &f,
            "[rate_limits.wizard]\nread = { per_minute = 1, burst = 1 }\n",
        )
        .unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(e.contains("wizard"), "{e}");
    }

    #[test]
    fn public_url_must_be_an_absolute_http_url() {
        for ok in [
            "http://127.0.0.1:8765",
            "https://bridge.example.com",
            "https://example.com/lighthouse",
        ] {
            assert_eq!(check_public_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:8765",
            "bridge.example.com",
            "ftp://example.com",
            "http://",
            "https://example.com/?a=b",
            "http://example.com/#x",
        ] {
            let e = check_public_url(bad).unwrap_err();
            assert!(e.contains("public_url") && e.contains("http"), "{bad}: {e}");
        }
        let e = ServeConfig::resolve(
            None,
            |k| (k == "LIGHTHOUSE_PUBLIC_URL").then(|| "example.com".to_owned()),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("public_url"), "{e}");
    }

    #[test]
    fn mcp_allowed_origins_must_be_origins() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "mcp_allowed_origins = [\"http://localhost:3000\", \"https://app.example.com\"]\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap();
        assert_eq!(c.mcp_allowed_origins.len(), 2);
        // Without its scheme, the entry would match no Origin header.
        std::fs::write(
            &f,
            "mcp_allowed_origins = [\"http://localhost:3000\", \"localhost:3000\"]\n",
        )
        .unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(
            e.starts_with("mcp_allowed_origins: ") && e.contains("\"localhost:3000\""),
            "{e}"
        );
        let e = ServeConfig::resolve(
            None,
            |k| {
                (k == "LIGHTHOUSE_MCP_ALLOWED_ORIGINS")
                    .then(|| "https://app.example.com, https://app.example.com/ui".to_owned())
            },
            Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("mcp_allowed_origins: ") && e.contains("\"https://app.example.com/ui\""),
            "{e}"
        );
    }

    #[test]
    fn rate_limits_replace_only_the_entries_given() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[rate_limits.agent]\nread = { per_minute = 12000, burst = 1200 }\n[rate_limits.operator]\nsession = { per_minute = 6, burst = 2 }\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap();
        let limits = c.rate_limits().unwrap();
        let defaults = RateLimits::default();
        assert_eq!(
            limits.quota(Role::Agent, ActionClass::Read),
            Some(Quota::new(12_000, 1_200))
        );
        assert_eq!(
            limits.quota(Role::Operator, ActionClass::Session),
            Some(Quota::new(6, 2))
        );
        for role in [Role::Agent, Role::Observer, Role::Operator, Role::Admin] {
            for class in ActionClass::ALL {
                if (role, class) != (Role::Agent, ActionClass::Read)
                    && (role, class) != (Role::Operator, ActionClass::Session)
                {
                    assert_eq!(limits.quota(role, class), defaults.quota(role, class));
                }
            }
        }
    }

    #[test]
    fn the_flags_table_sets_the_flag_limits_and_each_key_has_a_variable() {
        let c = ServeConfig::resolve(None, |_| None, Overrides::default()).unwrap();
        assert_eq!(c.flags.limits(), lighthouse_core::FlagLimits::default());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[flags]\nmax_flags = 500\nmax_prerequisites = 4\nmax_total_flag_bytes = 1048576\n",
        )
        .unwrap();
        let env = |k: &str| (k == "LIGHTHOUSE_FLAGS_MAX_PREREQUISITES").then(|| "8".to_owned());
        let c = ServeConfig::resolve(Some(&f), env, Overrides::default()).unwrap();
        let limits = c.flags.limits();
        assert_eq!(
            (
                limits.max_flags,
                limits.max_prerequisites,
                limits.max_total_flag_bytes
            ),
            (500, 8, 1 << 20)
        );
        assert_eq!(
            limits.max_targets,
            lighthouse_core::FlagLimits::default().max_targets
        );
        // Every key is read from its variable, and each range is enforced.
        for (name, range) in FlagsConfig::RANGES {
            let var = format!("LIGHTHOUSE_FLAGS_{}", name.to_ascii_uppercase());
            let lowest = range.start().to_string();
            let c = ServeConfig::resolve(
                None,
                |k| (k == var).then(|| lowest.clone()),
                Overrides::default(),
            )
            .unwrap();
            let mut flags = c.flags;
            let value = FlagsConfig::RANGES
                .iter()
                .zip(flags.fields())
                .find(|((n, _), _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap();
            assert_eq!(value, *range.start(), "{var}");
            let over = (range.end() + 1).to_string();
            let e = ServeConfig::resolve(
                None,
                |k| (k == var).then(|| over.clone()),
                Overrides::default(),
            )
            .unwrap_err();
            assert!(e.contains(&format!("flags.{name} must be")), "{e}");
        }
        let e = ServeConfig::resolve(
            None,
            |k| (k == "LIGHTHOUSE_FLAGS_MAX_FLAGS").then(|| "lots".to_owned()),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("LIGHTHOUSE_FLAGS_MAX_FLAGS"), "{e}");
        std::fs::write(&f, "[flags]\nmax_flag = 5\n").unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(e.contains("max_flag"), "{e}");
        std::fs::write(&f, "[flags]\nmax_reason_bytes = 0\n").unwrap();
        let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
        assert!(
            e.contains("flags.max_reason_bytes must be 1 to 4096"),
            "{e}"
        );
    }

    #[test]
    fn serve_help_names_every_flags_key_with_its_range() {
        use clap::CommandFactory;
        let mut cli = crate::Cli::command();
        let help = cli
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains("[flags] table") && help.contains("LIGHTHOUSE_FLAGS_<KEY>"),
            "{help}"
        );
        for (name, range) in FlagsConfig::RANGES {
            let shown = if name.ends_with("_page_bytes") || name == "max_total_flag_bytes" {
                format!("in bytes from {} to {}", range.start(), range.end())
            } else {
                format!("{name} ({} to {},", range.start(), range.end())
            };
            assert!(help.contains(name), "{name} missing from serve --help");
            assert!(help.contains(&shown), "{shown:?} missing from serve --help");
        }
    }

    #[tokio::test]
    async fn a_bridge_served_with_a_flags_table_enforces_its_limits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[flags]\nmax_reason_bytes = 10\n").unwrap();
        let c = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap();
        let key = lighthouse_security::MasterKey::generate().unwrap();
        let bridge = crate::serve::open(&dir.path().join("data"), key, Some(&c))
            .await
            .unwrap();
        assert_eq!(bridge.flags().limits(), &c.flags.limits());
        let ops = lighthouse_security::Caller {
            agent: "ops".into(),
            role: Role::Operator,
            key_id: 1,
        };
        let put = |reason: &str| lighthouse_core::api::FlagPut {
            spec: lighthouse_core::api::FlagSpec::new(true, 10.0),
            reason: Some(reason.into()),
            expected_version: None,
        };
        let p = bridge
            .put_flag(&ops, "req-1", "f", put("eleven byte"))
            .await
            .unwrap_err();
        assert_eq!(p.errors[0].path, "/reason", "{p:?}");
        let f = bridge
            .put_flag(&ops, "req-2", "f", put("ten bytes!"))
            .await
            .unwrap();
        assert_eq!((f.flag.version, f.changed), (1, true));
    }

    /// The connection limits of `server::Limits` and the listener: set from
    /// the file or the environment, refused outside their ranges by name.
    #[test]
    fn connection_limits_are_configurable_and_range_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "http1_max_head_bytes = 16384\n").unwrap();
        let env = |k: &str| (k == "LIGHTHOUSE_HTTP1_MAX_HEADERS").then(|| "32".to_owned());
        let c = ServeConfig::resolve(Some(&f), env, Overrides::default()).unwrap();
        assert_eq!((c.http1_max_head_bytes, c.http1_max_headers), (16384, 32));
        for (key, bad) in [
            ("max_connections_per_peer", "0"),
            ("write_stall_min_bytes", "0"),
            ("http1_max_head_bytes", "4096"),
            ("http1_max_headers", "2000"),
            ("http2_max_concurrent_streams", "0"),
            ("http2_max_header_list_bytes", "100"),
            ("http2_stream_window_bytes", "1024"),
            ("http2_connection_window_bytes", "4294967295"),
            ("http2_send_buffer_bytes", "0"),
        ] {
            std::fs::write(&f, format!("{key} = {bad}\n")).unwrap();
            let e = ServeConfig::resolve(Some(&f), |_| None, Overrides::default()).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
        let e = ServeConfig::resolve(
            None,
            |k| (k == "LIGHTHOUSE_HTTP1_MAX_HEADERS").then(|| "many".to_owned()),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("LIGHTHOUSE_HTTP1_MAX_HEADERS"), "{e}");
    }

    #[tokio::test]
    async fn the_listener_takes_the_configured_backlog_and_refuses_a_bad_address() {
        let l = crate::listener::bind("127.0.0.1:0", 4096).unwrap();
        assert!(l.local_addr().unwrap().port() > 0);
        assert!(crate::listener::bind("nowhere", 16).is_err());
    }
}
