//! [`McpConfig`]: every limit of the MCP endpoint, each with its default.

use std::time::Duration;

use crate::error::Error;

/// Default largest `/mcp` request body (1 MiB, as the REST API).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default interval between progress notifications while a tool waits.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Default time `lighthouse_elicit` keeps waiting past the elicitation's
/// deadline for the bridge's expiry event (written within 100 ms of it).
pub const DEFAULT_EXPIRY_GRACE: Duration = Duration::from_secs(5);
/// Default SSE keep-alive interval on tool-call response streams.
pub const DEFAULT_SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Default number of tool calls the stdio proxy runs at once.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 32;
/// Default number of running `/mcp` tool calls a `notifications/cancelled`
/// can reach (the bridge's default connection limit).
pub const DEFAULT_MAX_CANCELLABLE_CALLS: usize = 16_384;

/// How the `/mcp` endpoint behaves. Build with [`McpConfig::default`] and the
/// `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// Browser origins allowed to call `/mcp` (`scheme://host[:port]`, compared
    /// case-insensitively, default ports made explicit). A request whose
    /// `Origin` header is present and not listed is refused with `403` (the
    /// DNS-rebinding protection the MCP transport requires). Default: empty, so
    /// every request carrying an `Origin` is refused; MCP clients that are not
    /// browsers send none.
    pub allowed_origins: Vec<String>,
    /// Largest request body in bytes (default [`DEFAULT_MAX_BODY_BYTES`]);
    /// larger is `413 payload_too_large`.
    pub max_body_bytes: usize,
    /// Interval between `notifications/progress` while a tool waits, sent
    /// when the client asked for progress (default [`DEFAULT_PROGRESS_INTERVAL`];
    /// shorter than [`MIN_PROGRESS_INTERVAL`](crate::tools::MIN_PROGRESS_INTERVAL)
    /// counts as that).
    pub progress_interval: Duration,
    /// How long `lighthouse_elicit` waits past the deadline for the expiry
    /// event before returning the record as it is (default [`DEFAULT_EXPIRY_GRACE`]).
    pub expiry_grace: Duration,
    /// SSE keep-alive comment interval on response streams (default
    /// [`DEFAULT_SSE_KEEP_ALIVE`]); also how long rmcp may take to answer a
    /// request before the admission layer opens its SSE response itself and
    /// keeps it alive until rmcp's answer (a 2026-07-28 call that waits
    /// without reporting progress; at least 100 ms).
    pub sse_keep_alive: Duration,
    /// Longest time a request body may take to arrive (default 30 s; slower
    /// is `400 invalid_request`).
    pub body_read_timeout: Duration,
    /// Request bodies held in memory at once over all `/mcp` requests
    /// (default 64 MiB); a body that finds the budget spent waits, within
    /// `body_read_timeout`, then is `503 unavailable`.
    pub max_buffered_body_bytes: usize,
    /// Tool calls the stdio proxy ([`serve_stdio`](crate::serve_stdio),
    /// [`ProxyTools`](crate::ProxyTools)) runs at once (default
    /// [`DEFAULT_MAX_CONCURRENT_CALLS`]; 0 counts as 1). rmcp starts a task
    /// for every request it reads, whether or not the client reads the
    /// answers, so without this bound a client pipelining thousands of calls
    /// would open as many requests to the bridge and hold as many results. A
    /// call beyond it waits for one to finish (or for the client to cancel
    /// it). Tools that wait for another agent have a pool of the same size
    /// of their own, so up to twice this many run at once. Not used by
    /// `/mcp`, which the bridge's connection limits bound.
    pub max_concurrent_calls: usize,
    /// Running `/mcp` tool calls kept, by agent, token and JSON-RPC request
    /// id, for a `notifications/cancelled` to stop (default
    /// [`DEFAULT_MAX_CANCELLABLE_CALLS`]), at most a sixteenth of them (at
    /// least 1) of one agent. A call beyond either bound runs, but only
    /// closing its response stream cancels it.
    pub max_cancellable_calls: usize,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            expiry_grace: DEFAULT_EXPIRY_GRACE,
            sse_keep_alive: DEFAULT_SSE_KEEP_ALIVE,
            body_read_timeout: Duration::from_secs(30),
            max_buffered_body_bytes: 64 << 20,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            max_cancellable_calls: DEFAULT_MAX_CANCELLABLE_CALLS,
        }
    }
}

impl McpConfig {
    /// Sets the allowed browser origins.
    pub fn with_allowed_origins(
        mut self,
        origins: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the largest request body.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the progress notification interval (at least 100 ms).
    pub fn with_progress_interval(mut self, every: Duration) -> Self {
        self.progress_interval = every.max(crate::tools::MIN_PROGRESS_INTERVAL);
        self
    }

    /// Sets the grace past an elicitation's deadline.
    pub fn with_expiry_grace(mut self, grace: Duration) -> Self {
        self.expiry_grace = grace;
        self
    }

    /// Sets how many tool calls the stdio proxy runs at once (at least 1).
    pub fn with_max_concurrent_calls(mut self, calls: usize) -> Self {
        self.max_concurrent_calls = calls.max(1);
        self
    }

    /// Refuses an `allowed_origins` entry that is not an origin
    /// (`scheme://host[:port]`, `http` or `https`, no path), such as
    /// `localhost:3000` without its scheme: it could never match an `Origin`
    /// header, so a configuration naming it means something else than it
    /// says. The first such entry is named.
    pub fn check_allowed_origins(&self) -> Result<(), Error> {
        match self
            .allowed_origins
            .iter()
            .find(|a| normalize_origin(a).is_none())
        {
            Some(entry) => Err(Error::InvalidOrigin {
                entry: entry.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether `origin` (an `Origin` header value) is allowed.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let Some(o) = normalize_origin(origin) else {
            return false;
        };
        self.allowed_origins
            .iter()
            .filter_map(|a| normalize_origin(a))
            .any(|a| a == o)
    }
}

/// `scheme://host:port` in lower case with the scheme's default port made
/// explicit; `None` for anything that is not such an origin (`null` included).
fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let (scheme, rest) = s.split_once("://")?;
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], &rest[i + 1..]),
        _ => (rest, default_port),
    };
    if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("{scheme}://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_with_default_ports_and_case() {
        let c = McpConfig::default()
            .with_allowed_origins(["https://App.example.com", "http://localhost:3000"]);
        assert!(c.origin_allowed("https://app.example.com"));
        assert!(c.origin_allowed("https://app.example.com:443"));
        assert!(c.origin_allowed("http://localhost:3000"));
        assert!(!c.origin_allowed("http://localhost:3001"));
        assert!(!c.origin_allowed("http://app.example.com"));
        assert!(!c.origin_allowed("null"));
        assert!(!c.origin_allowed("https://app.example.com.evil.test"));
        assert!(!McpConfig::default().origin_allowed("http://localhost"));
    }

    #[test]
    fn allowed_origins_that_are_not_origins_are_named() {
        let ok = McpConfig::default().with_allowed_origins([
            "http://localhost:3000",
            "https://App.example.com/",
            "http://[::1]:8765",
        ]);
        assert!(ok.check_allowed_origins().is_ok());
        assert!(McpConfig::default().check_allowed_origins().is_ok());
        for bad in [
            "localhost:3000",
            "null",
            "*",
            "ftp://example.com",
            "http://example.com/app",
            "http://example.com:port",
            "",
        ] {
            let c = McpConfig::default().with_allowed_origins(["http://localhost:3000", bad]);
            let e = c.check_allowed_origins().unwrap_err();
            assert!(
                matches!(&e, Error::InvalidOrigin { entry } if entry == bad),
                "{bad}: {e:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains(&format!("{bad:?}")) && text.contains("scheme://host"),
                "{text}"
            );
        }
    }

    #[test]
    fn ipv6_origins_keep_their_brackets() {
        let c = McpConfig::default().with_allowed_origins(["http://[::1]:8765"]);
        assert!(c.origin_allowed("http://[::1]:8765"));
        assert!(!c.origin_allowed("http://[::1]"));
        assert_eq!(
            normalize_origin("http://[::1]").as_deref(),
            Some("http://[::1]:80")
        );
    }
}
