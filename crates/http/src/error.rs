//! Problems as HTTP responses: the one place a problem code becomes a status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lighthouse_core::api::{ErrorCode, FieldError, Problem};

/// The media type of error bodies (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A [`Problem`] that renders as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let p = self.0;
        let status =
            StatusCode::from_u16(p.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&p).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if p.code == ErrorCode::RateLimited {
            let secs = p.retry_after_s.unwrap_or(1).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("LH1-HMAC-SHA256, Bearer"),
            );
        }
        resp
    }
}

/// The answer to a request whose handler panicked: `500 internal` as a
/// problem, like every other error (PROTOCOL.md 3), with nothing of the panic
/// in it; the panic's message goes to the log.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    tracing::error!(panic = message, "a request handler panicked");
    ApiError(Problem::internal()).into_response()
}

/// Whether `resp` is an error response that is not a problem: axum's own are
/// plain text or empty, ours are problems or JSON documents (a 503 readiness
/// body).
fn unshaped_error(resp: &Response) -> bool {
    let status = resp.status();
    (status.is_client_error() || status.is_server_error())
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"))
}

/// Turns an error response that is not a problem (axum's own: `400` for a
/// path it cannot decode, an empty `500`) into `application/problem+json`, so
/// every error of the API has the shape of PROTOCOL.md 3. A `405` is left to
/// [`method_not_allowed`], outside the router, where its `Allow` header is.
pub(crate) async fn problems_only(resp: Response) -> Response {
    let status = resp.status();
    if !unshaped_error(&resp) || status == StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let (_, body) = resp.into_parts();
    if status.is_server_error() {
        return ApiError(Problem::internal()).into_response();
    }
    // axum's rejections say in plain text what was wrong; short, and never
    // from our internals. (The ones the routes can meet have answers of
    // their own, `auth::authenticate`'s for a path segment that is not
    // UTF-8; this is the net under them.)
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let reason = status.canonical_reason().unwrap_or("bad request");
    let message = if text.is_empty() {
        reason.to_owned()
    } else {
        text
    };
    let mut out = ApiError(
        Problem::new(
            ErrorCode::InvalidRequest,
            format!("the request could not be taken as it is ({reason}); see errors"),
        )
        .with_errors(vec![FieldError {
            path: String::new(),
            message,
        }]),
    )
    .into_response();
    if status != StatusCode::BAD_REQUEST {
        // Keep what axum meant (415, 422, ...) while giving it the problem shape.
        *out.status_mut() = status;
    }
    out
}

/// Turns axum's `405` for a method a route does not take into a problem
/// (`invalid_request`, keeping the status and the `Allow` header) whose detail
/// names the methods the route takes. It must run outside the router: axum
/// adds `Allow` as the answer leaves the matched route, after every layer the
/// router applies, so [`problems_only`] would not see it.
pub(crate) async fn method_not_allowed(resp: Response) -> Response {
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED || !unshaped_error(&resp) {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let methods = allow
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut p = Problem::new(
        ErrorCode::InvalidRequest,
        format!("this route does not take that method; it takes: {methods}"),
    );
    p.status = StatusCode::METHOD_NOT_ALLOWED.as_u16();
    p.title = "Method not allowed".to_owned();
    // The problem's body and content type over the original answer's other
    // headers (X-Request-Id, set inside the router, among them).
    let (mut parts, _) = resp.into_parts();
    let (problem, body) = ApiError(p).into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &problem.headers {
        parts.headers.insert(name, value.clone());
    }
    if let Some(v) = allow {
        parts.headers.insert(header::ALLOW, v);
    }
    parts.status = StatusCode::METHOD_NOT_ALLOWED;
    Response::from_parts(parts, body)
}

/// Parses a JSON body, turning serde's complaint into `400 invalid_request`
/// naming the field by JSON pointer. A body that is not JSON at all (a syntax
/// error, or the document ending early) names the root, `""`: the error is
/// the document's, not that of the field the parser had reached.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(Problem::invalid("", "a JSON body is required").into());
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let msg = e.inner().to_string();
        // serde_json files a well-formed value it cannot hold (a number out
        // of range, a bad unicode escape) as a syntax error too: those are
        // the field's.
        let the_fields =
            msg.starts_with("number out of range") || msg.starts_with("invalid unicode code point");
        let path = match e.inner().classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
                if !the_fields =>
            {
                String::new()
            }
            _ => field_pointer(e.path(), &msg),
        };
        ApiError(
            Problem::new(
                ErrorCode::InvalidRequest,
                format!("invalid JSON body: {msg}"),
            )
            .with_errors(vec![FieldError { path, message: msg }]),
        )
    })?;
    // Only whitespace may follow the value: `{...}x` is not a JSON body (and
    // authorization, which reads the body with `serde_json::from_slice`, would
    // have taken it for something else).
    de.end().map_err(|e| {
        ApiError(
            Problem::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}")).with_errors(
                vec![FieldError {
                    path: String::new(),
                    message: e.to_string(),
                }],
            ),
        )
    })?;
    Ok(value)
}

/// Checks the body of a route that takes none: empty, or an empty JSON object
/// (what a client sending `{}` everywhere sends). Anything else is
/// `400 invalid_request` naming the first field, as an unknown field is
/// anywhere else (PROTOCOL.md 1), so that nobody believes a field was taken.
pub fn no_body(body: &[u8]) -> Result<(), ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    parse_json::<Nothing>(body).map(drop)
}

/// Parses a query string into `T`, unknown parameters refused.
pub fn parse_query<T: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    let q = query.unwrap_or("");
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let msg = e.inner().to_string();
        let path = field_pointer(e.path(), &msg);
        ApiError(
            Problem::new(ErrorCode::InvalidRequest, format!("invalid query: {msg}"))
                .with_errors(vec![FieldError { path, message: msg }]),
        )
    })
}

/// The JSON pointer (RFC 6901) of the field a serde error is about. serde
/// reports a missing or a repeated field at the object that holds it, naming
/// the field only in its message (`` missing field `stream` ``,
/// `` duplicate field `limit` ``): the pointer then names the field itself,
/// below that object.
fn field_pointer(path: &serde_path_to_error::Path, message: &str) -> String {
    let (mut out, whole) = pointer(path);
    if whole && let Some(field) = named_field(message) {
        push_segment(&mut out, field);
    }
    out
}

/// The field name of serde's "missing field `name`" and "duplicate field
/// `name`" messages (serde_json adds the position after it).
fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("duplicate field `"))?;
    rest.split_once('`').map(|(field, _)| field)
}

/// The JSON pointer of a serde_path_to_error path, built from its segments
/// (its text form, `a.b[0]`, cannot be split back: a key may hold `.` or
/// `[`). A segment serde_path_to_error could not capture (a key that is not a
/// string) ends the pointer at its parent; the flag says whether the pointer
/// is the whole path.
fn pointer(path: &serde_path_to_error::Path) -> (String, bool) {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => push_segment(&mut out, &index.to_string()),
            Segment::Map { key } => push_segment(&mut out, key),
            Segment::Enum { variant } => push_segment(&mut out, variant),
            Segment::Unknown => return (out, false),
        }
    }
    (out, true)
}

/// Appends one reference token, escaped as RFC 6901 says (`~` as `~0`, then
/// `/` as `~1`).
fn push_segment(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pointer and message of the error `parse_json` gives for `body`.
    fn refusal<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: &str) -> (String, String) {
        let e = parse_json::<T>(body.as_bytes()).unwrap_err().0;
        (e.errors[0].path.clone(), e.errors[0].message.clone())
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
        #[serde(default)]
        map: std::collections::BTreeMap<String, Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: u8,
    }

    #[test]
    fn serde_paths_become_json_pointers() {
        for (body, path) in [
            (r#"{"name":5,"items":[]}"#, "/name"),
            (r#"{"name":"n","items":[{"x":1},{"x":300}]}"#, "/items/1/x"),
            (r#"{"name":"n","items":[],"we.ird":1}"#, "/we.ird"),
            (r#"{"name":"n","items":[],"a[0]":1}"#, "/a[0]"),
            (r#"{"name":"n","items":[],"sl/a~sh":1}"#, "/sl~1a~0sh"),
            (
                r#"{"name":"n","items":[],"map":{"k.1/~":{"x":-1}}}"#,
                "/map/k.1~1~0/x",
            ),
        ] {
            assert_eq!(refusal::<Outer>(body).0, path, "{body}");
        }
    }

    #[test]
    fn a_missing_field_is_named_below_the_object_that_lacks_it() {
        let (path, message) = refusal::<Outer>(r#"{"items":[]}"#);
        assert_eq!(path, "/name");
        assert!(message.starts_with("missing field `name`"), "{message}");
        assert_eq!(
            refusal::<Outer>(r#"{"name":"n","items":[{"x":1},{}]}"#).0,
            "/items/1/x"
        );
        assert_eq!(
            refusal::<Outer>(r#"{"name":"n","items":[],"map":{"a/b":{}}}"#).0,
            "/map/a~1b/x"
        );
    }

    #[test]
    fn a_missing_query_parameter_is_named() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Q {
            agent: String,
        }
        let e = parse_query::<Q>(Some("")).unwrap_err().0;
        assert_eq!(e.errors[0].path, "/agent");
        let e = parse_query::<Q>(None).unwrap_err().0;
        assert_eq!(e.errors[0].path, "/agent");
        let e = parse_query::<Q>(Some("agent=a&agent=b")).unwrap_err().0;
        assert_eq!(e.errors[0].path, "/agent");
    }

    #[test]
    fn a_repeated_field_is_named() {
        let (path, message) = refusal::<Outer>(r#"{"name":"a","name":"b","items":[]}"#);
        assert_eq!(path, "/name");
        assert!(message.starts_with("duplicate field `name`"), "{message}");
        assert_eq!(
            refusal::<Outer>(r#"{"name":"n","items":[{"x":1,"x":2}]}"#).0,
            "/items/0/x"
        );
    }
}
