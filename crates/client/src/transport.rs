//! One logical request: URL building, signing (a fresh nonce and the current
//! time on every attempt), the retry loop, bounded body reads and problem
//! decoding.

use std::time::Duration;

use lighthouse_core::api::Problem;
use lighthouse_security::Signer;
use reqwest::{Method, Response, Url};

use crate::config::{ClientConfig, jittered};
use crate::error::{Error, code_for_status};

/// `Idempotency-Key`.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// `X-Request-Id`: one per logical call, the same on each of its attempts, so
/// the bridge's logs and the events' `correlation_id` tie the attempts together.
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// `Idempotent-Replayed: true`: the bridge answered a create from an earlier
/// one with the same idempotency key.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// `Last-Event-ID`.
pub(crate) const LAST_EVENT_ID: &str = "last-event-id";
/// `X-Lighthouse-Resume-After`: on an agent stream opened without a position,
/// the position to resume from while nothing was handed out (docs/HTTP.md).
pub(crate) const RESUME_AFTER: &str = "x-lighthouse-resume-after";

/// How the client proves who it is.
#[derive(Clone)]
pub(crate) enum Auth {
    /// PROTOCOL.md 2.2.
    Signed(Signer),
    /// PROTOCOL.md 2.3.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Signed(s) => f.debug_tuple("Signed").field(&s.agent()).finish(),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Whether a request may be sent again after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Repeating it cannot do anything twice: a read, a create with an
    /// idempotency key, an append with an event id, a kill. Retried after
    /// transport failures, a 2xx whose body was lost, `502`/`503`/`504` and
    /// `429`.
    Safe,
    /// Retried only when the bridge provably did not act on it: the connection
    /// could not be made, or `429 rate_limited` (refused before the handler).
    Unsafe,
}

/// One logical call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Absolute API path with every segment already encoded.
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) retry: Retry,
    /// Added to the request timeout (the wait of a long-poll).
    pub(crate) extra_timeout: Duration,
    /// Health and metrics carry no credentials.
    pub(crate) authenticated: bool,
}

impl Call {
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        let retry = if method == Method::GET {
            Retry::Safe
        } else {
            Retry::Unsafe
        };
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            headers: Vec::new(),
            retry,
            extra_timeout: Duration::ZERO,
            authenticated: true,
        }
    }

    pub(crate) fn get(path: impl Into<String>) -> Self {
        Call::new(Method::GET, path)
    }

    pub(crate) fn post(path: impl Into<String>) -> Self {
        Call::new(Method::POST, path)
    }

    pub(crate) fn query(mut self, name: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(v) = value {
            self.query.push((name, v.to_string()));
        }
        self
    }

    pub(crate) fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::Config(format!("request body cannot be encoded: {e}")))?;
        self.body = Some(bytes);
        Ok(self)
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub(crate) fn wait(mut self, wait: Duration) -> Self {
        self.extra_timeout = wait;
        self
    }

    pub(crate) fn unauthenticated(mut self) -> Self {
        self.authenticated = false;
        self
    }
}

/// A 2xx (or otherwise accepted) answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// Whether it carried `Idempotent-Replayed: true`.
    pub(crate) replayed: bool,
    /// The response headers (taken from the response, not copied).
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::InvalidResponse {
            status: self.status,
            detail: format!("body does not decode: {e}"),
        })
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The transport shared by every clone of a client.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) auth: Auth,
    pub(crate) config: ClientConfig,
}

/// What went wrong with one attempt.
enum Failure {
    /// No answer; `sent` says whether the request may have reached the bridge.
    Transport { detail: String, not_sent: bool },
    /// A 2xx answer that cannot be taken in.
    Unreadable { status: u16, detail: String },
    /// A 2xx answer whose body broke off: the bridge acted, what it answered
    /// is unknown. Unlike [`Failure::Transport`] this is never "the bridge did
    /// not act", so it is not reported as `unavailable`.
    BodyLost { status: u16, detail: String },
    /// The request could not be built (a header value that is not one, say):
    /// nothing was sent, and sending it again would fail the same way.
    Unsendable { detail: String },
    /// A refusal.
    Refused {
        problem: Problem,
        retry_after: Option<Duration>,
    },
}

impl Transport {
    /// The full URL of `path` (already encoded) with `query`.
    pub(crate) fn url(&self, path: &str, query: &[(&'static str, String)]) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{path}"));
        if query.is_empty() {
            url.set_query(None);
        } else {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url.set_query(Some(&q.finish()));
        }
        url
    }

    /// Builds one attempt: URL, headers, and the signature over exactly what is
    /// sent (the path and query as the URL serializes them).
    pub(crate) fn request(
        &self,
        call: &Call,
        request_id: &str,
        extra_headers: &[(&'static str, String)],
    ) -> reqwest::RequestBuilder {
        let url = self.url(&call.path, &call.query);
        let body = call.body.as_deref().unwrap_or(b"");
        let mut rb = self.http.request(call.method.clone(), url.clone());
        if call.authenticated {
            match &self.auth {
                Auth::Signed(signer) => {
                    let now = self.config.clock.now().unix_secs();
                    let h = signer.sign(
                        call.method.as_str(),
                        url.path(),
                        url.query().unwrap_or(""),
                        body,
                        now,
                    );
                    for (name, value) in h.pairs() {
                        rb = rb.header(name, value);
                    }
                }
                Auth::Bearer(token) => {
                    rb = rb.header("authorization", format!("Bearer {token}"));
                }
            }
            rb = rb.header(REQUEST_ID, request_id);
        }
        for (name, value) in call.headers.iter().chain(extra_headers) {
            rb = rb.header(*name, value.as_str());
        }
        if let Some(b) = &call.body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.clone());
        }
        rb
    }

    /// Runs `call` to an answer whose status `accept` admits, retrying as its
    /// [`Retry`] class and the policy allow.
    pub(crate) async fn execute(
        &self,
        call: &Call,
        accept: impl Fn(u16) -> bool,
    ) -> Result<Answer, Error> {
        // A URL normalises `.` and `..` segments away, so an id such as ".."
        // would silently address another route.
        if call.path.split('/').any(|seg| {
            matches!(seg, "." | "..")
                || seg.eq_ignore_ascii_case("%2e")
                || seg.eq_ignore_ascii_case("%2e%2e")
        }) {
            return Err(Error::Config(format!(
                "{}: an id may not be \".\" or \"..\"",
                call.path
            )));
        }
        let policy = self.config.retry;
        let request_id = format!("lhc-{}", lighthouse_security::fresh_nonce());
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let failure = match self.attempt(call, &request_id, &accept).await {
                Ok(answer) => return Ok(answer),
                Err(f) => f,
            };
            let wait = match &failure {
                Failure::Unreadable { .. } | Failure::Unsendable { .. } => None,
                Failure::Transport { not_sent, .. } => {
                    (*not_sent || call.retry == Retry::Safe).then(|| policy.backoff(attempt))
                }
                Failure::BodyLost { .. } => {
                    (call.retry == Retry::Safe).then(|| policy.backoff(attempt))
                }
                Failure::Refused {
                    problem,
                    retry_after,
                } => match problem.status {
                    // Refused at step 6 of PROTOCOL.md 2.2, before any handler ran.
                    429 => retry_after
                        .or(Some(policy.backoff(attempt)))
                        .filter(|d| *d <= policy.max_retry_after),
                    502..=504 if call.retry == Retry::Safe => Some(policy.backoff(attempt)),
                    _ => None,
                },
            };
            match wait {
                Some(w) if attempt < policy.max_attempts => {
                    tracing::debug!(attempt, path = %call.path, "retrying after {w:?}");
                    tokio::time::sleep(jittered_unless_told(w, &failure)).await;
                }
                _ => {
                    return Err(match failure {
                        Failure::Transport { detail, .. } => Error::Transport {
                            detail,
                            attempts: attempt,
                        },
                        Failure::Refused { problem, .. } => Error::Refused(problem),
                        Failure::Unsendable { detail } => Error::Config(detail),
                        Failure::Unreadable { status, detail } => {
                            Error::InvalidResponse { status, detail }
                        }
                        Failure::BodyLost { status, detail } => Error::InvalidResponse {
                            status,
                            detail: format!(
                                "response body lost ({detail}): the bridge answered \
                                 {status}, so it acted on the request, but its result \
                                 is unknown; read the state before sending it again"
                            ),
                        },
                    });
                }
            }
        }
    }

    async fn attempt(
        &self,
        call: &Call,
        request_id: &str,
        accept: &impl Fn(u16) -> bool,
    ) -> Result<Answer, Failure> {
        // A caller's wait is checked against the protocol's range before this,
        // but a drain's `timeout_ms` is the bridge's to limit: never overflow.
        let timeout = self
            .config
            .request_timeout
            .saturating_add(call.extra_timeout);
        let sent = self
            .request(call, request_id, &[])
            .timeout(timeout)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Err(Failure::Unsendable {
                    detail: format!(
                        "{}: the request cannot be sent: {}",
                        call.path,
                        describe(&e)
                    ),
                });
            }
            Err(e) => {
                return Err(Failure::Transport {
                    not_sent: e.is_connect(),
                    detail: describe(&e),
                });
            }
        };
        let status = resp.status().as_u16();
        if accept(status) {
            let body = match read_limited(&mut resp, self.config.max_response_bytes).await {
                Ok(body) => body,
                Err(BodyError::Broken(detail)) => {
                    return Err(Failure::BodyLost { status, detail });
                }
                // Asking again would get the same body: not retried.
                Err(BodyError::TooLarge(detail)) => {
                    return Err(Failure::Unreadable { status, detail });
                }
            };
            let headers = std::mem::take(resp.headers_mut());
            let replayed = headers
                .get(IDEMPOTENT_REPLAYED)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
            return Ok(Answer {
                status,
                body,
                replayed,
                headers,
            });
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(&mut resp, self.config.max_error_body_bytes)
            .await
            .unwrap_or_default();
        Err(Failure::Refused {
            problem: problem_from(status, &body),
            retry_after,
        })
    }

    /// Sends one attempt of a streaming request and returns the response when it
    /// is a 2xx event stream; anything else is an error (a refusal with the
    /// bridge's problem).
    pub(crate) async fn open_stream(
        &self,
        call: &Call,
        extra_headers: &[(&'static str, String)],
    ) -> Result<Response, StreamOpenError> {
        let request_id = format!("lhc-{}", lighthouse_security::fresh_nonce());
        let send = self.request(call, &request_id, extra_headers).send();
        let mut resp = match tokio::time::timeout(self.config.request_timeout, send).await {
            Err(_) => {
                return Err(StreamOpenError::Transport(
                    "no response headers within the request timeout".into(),
                ));
            }
            // Built the same way on every attempt, so it would fail forever.
            Ok(Err(e)) if e.is_builder() => {
                return Err(StreamOpenError::Unsendable(format!(
                    "{}: the request cannot be sent: {}",
                    call.path,
                    describe(&e)
                )));
            }
            Ok(Err(e)) => return Err(StreamOpenError::Transport(describe(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            // A 2xx that is not an event stream (a proxy's login or error page)
            // would parse as no events at all: each connect would "succeed",
            // so the reconnect limit would never end the stream.
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let is_sse = content_type.as_deref().is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
            });
            if !is_sse {
                return Err(StreamOpenError::NotAStream {
                    status,
                    detail: format!(
                        "{}: the answer is {}, not text/event-stream",
                        call.path,
                        content_type.map_or_else(
                            || "without a content-type".to_owned(),
                            |ct| format!("of type {ct:?}")
                        )
                    ),
                });
            }
            return Ok(resp);
        }
        // The status has arrived; a body that never completes must not hold
        // the stream (and its caller) forever.
        let read = read_limited(&mut resp, self.config.max_error_body_bytes);
        let problem = match tokio::time::timeout(self.config.request_timeout, read).await {
            Ok(body) => problem_from(status, &body.unwrap_or_default()),
            Err(_) => {
                let mut p = problem_from(status, b"");
                p.detail =
                    format!("HTTP {status} whose body did not arrive within the request timeout");
                p
            }
        };
        Err(StreamOpenError::Refused(problem))
    }
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub(crate) enum StreamOpenError {
    /// No answer; worth another attempt.
    Transport(String),
    /// A non-2xx answer (retried or not by its status).
    Refused(Problem),
    /// The request cannot be built: every attempt would fail the same way.
    Unsendable(String),
    /// A 2xx that is not an event stream.
    NotAStream { status: u16, detail: String },
}

fn jittered_unless_told(wait: std::time::Duration, failure: &Failure) -> Duration {
    match failure {
        // The bridge said when; waiting less would only be refused again.
        Failure::Refused {
            retry_after: Some(_),
            ..
        } => wait,
        _ => jittered(wait),
    }
}

/// A transport error's description with its causes (hyper's root cause is
/// usually the useful part).
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the configured limit.
    TooLarge(String),
    /// The connection failed while reading.
    Broken(String),
}

/// Reads a body, refusing more than `limit` bytes (without reading them).
pub(crate) async fn read_limited(resp: &mut Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let over = |n: String| {
        BodyError::TooLarge(format!(
            "response body of {n} bytes is over the limit of {limit} bytes"
        ))
    };
    if let Some(n) = resp.content_length()
        && n > limit as u64
    {
        return Err(over(n.to_string()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Broken(describe(&e)))?
    {
        if out.len() + chunk.len() > limit {
            return Err(over(format!("more than {}", out.len())));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The problem of a non-2xx answer: its problem body, or one built from the
/// status when the body is not a problem.
pub(crate) fn problem_from(status: u16, body: &[u8]) -> Problem {
    if let Ok(p) = serde_json::from_slice::<Problem>(body) {
        return p;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let mut p = Problem::new(
        code_for_status(status),
        format!("HTTP {status} without a problem body: {}", text.trim()),
    );
    p.status = status;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use lighthouse_core::api::ErrorCode;

    #[test]
    fn segments_keep_only_unreserved_characters() {
        assert_eq!(segment("el_01JD.x-y~z"), "el_01JD.x-y~z");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn problems_decode_or_are_built_from_the_status() {
        let p = Problem::new(ErrorCode::Expired, "late");
        let body = serde_json::to_vec(&p).unwrap();
        assert_eq!(problem_from(409, &body), p);
        let bare = problem_from(502, b"<html>Bad Gateway</html>");
        assert_eq!((bare.code, bare.status), (ErrorCode::Unavailable, 502));
        assert!(bare.detail.contains("Bad Gateway"));
        let teapot = problem_from(418, b"");
        assert_eq!((teapot.code, teapot.status), (ErrorCode::Internal, 418));
    }
}
