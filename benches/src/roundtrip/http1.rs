//! The bench's hot-path HTTP/1.1 client: one request at a time on a kept-alive TCP
//! connection, each request written with one `write` and each response read into
//! a buffer the connection reuses.
//!
//! The load generator shares the machine's cores with the bridge it measures, so
//! its CPU per round trip is taken from the bridge. Through `reqwest`, about a
//! third of the client's CPU went to layers a bench against one known server does
//! not need (URL parsing, header maps, redirect and proxy layers, a pool keyed by
//! host, a connection task reached over channels). This module does only what the
//! bridge's answers need: `Content-Length`, `chunked` and close-delimited bodies,
//! keep-alive and `Connection: close`. It is not a general client: no TLS, no
//! redirects, no `Expect: 100-continue`, no pipelining. Heads are parsed with
//! `httparse`, the parser `hyper` uses.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response head accepted; a longer one is malformed here.
const MAX_HEAD: usize = 64 * 1024;
/// Headers a response head may carry (the bridge sends about ten).
const MAX_HEADERS: usize = 64;
/// Spare capacity the read buffer keeps before each read.
const READ_CHUNK: usize = 8 * 1024;
/// A read buffer grown past this by a large answer is replaced by a small one
/// when the connection goes back to the pool, so idle connections stay small.
const KEEP_BUFFER: usize = 64 * 1024;

/// Appends a request to `out`: request line, `host`, `headers`, and when `body`
/// is not empty `content-type: application/json` and `content-length`.
pub fn write_request<'a>(
    out: &mut Vec<u8>,
    method: &str,
    path_and_query: &str,
    host: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) {
    for part in [
        method,
        " ",
        path_and_query,
        " HTTP/1.1\r\nhost: ",
        host,
        "\r\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    for (name, value) in headers {
        for part in [name, ": ", value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    if !body.is_empty() {
        out.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// What a response head says.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// How the body is framed.
    pub body: Body,
    /// Whether the connection may carry another request after this answer.
    pub keep_alive: bool,
}

/// A body being decoded: its framing and how far decoding got.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
}

impl Body {
    /// Moves the body bytes at the start of `input` to `out`. Returns how many
    /// bytes of `input` were used and whether the body is complete.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<(usize, bool)> {
        match self {
            Body::Length(left) => {
                let take = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[..take]);
                *left -= take as u64;
                Ok((take, *left == 0))
            }
            Body::Chunked(c) => c.decode(input, out),
            Body::UntilClose => {
                out.extend_from_slice(input);
                Ok((input.len(), false))
            }
        }
    }
}

/// Where a `chunked` decoder is.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Chunked {
    /// Waiting for a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk, with this many data bytes left.
    Data(u64),
    /// After a chunk's data, waiting for its CRLF.
    DataEnd,
    /// After the last (empty) chunk, skipping trailer lines up to the blank one.
    Trailer,
    /// The body is complete.
    Done,
}

impl Chunked {
    fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<(usize, bool)> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match *self {
                Chunked::Size => {
                    let Some(end) = find_crlf(rest) else {
                        return if rest.len() > 1024 {
                            Err(malformed("chunk-size line too long"))
                        } else {
                            Ok((pos, false))
                        };
                    };
                    // A chunk extension (`;name=value`) is allowed and ignored.
                    let size = rest[..end].split(|&b| b == b';').next().unwrap_or(&[]);
                    let size = std::str::from_utf8(size)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                        .ok_or_else(|| malformed("bad chunk size"))?;
                    pos += end + 2;
                    *self = if size == 0 {
                        Chunked::Trailer
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if take == 0 {
                        return Ok((pos, false));
                    }
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                }
                Chunked::DataEnd => {
                    if rest.len() < 2 {
                        return Ok((pos, false));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    pos += 2;
                    *self = Chunked::Size;
                }
                Chunked::Trailer => {
                    let Some(end) = find_crlf(rest) else {
                        return Ok((pos, false));
                    };
                    pos += end + 2;
                    if end == 0 {
                        *self = Chunked::Done;
                    }
                }
                Chunked::Done => return Ok((pos, true)),
            }
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Parses a response head at the start of `buf`: `Ok(None)` if it is not all
/// there yet, else the head and its length in bytes.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<(Head, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(malformed("response head too long"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(malformed(&format!("response head: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes it.
    let mut keep_alive = resp.version == Some(1);
    let (mut length, mut chunked) = (None, false);
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| malformed("bad content-length"))?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked framing applies when `chunked` is the last coding.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Length(0)
    } else if chunked {
        Body::Chunked(Chunked::Size)
    } else if let Some(n) = length {
        Body::Length(n)
    } else {
        keep_alive = false;
        Body::UntilClose
    };
    Ok(Some((
        Head {
            status,
            body,
            keep_alive,
        },
        len,
    )))
}

/// One TCP connection to the bridge and the bytes read from it but not yet used.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` before this are used.
    pos: usize,
}

impl Conn {
    /// Connects with `TCP_NODELAY` (a request is one write; nothing to batch).
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
        })
    }

    /// Sends `request` and reads the answer's head. `Ok(None)` when the
    /// connection turned out closed before any byte of an answer came: a kept-alive
    /// connection the server had already closed, on which the request is safe to
    /// send again.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Option<Head>> {
        match self.stream.write_all(request).await {
            Ok(()) => {}
            Err(e) if is_closed(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        loop {
            if let Some((head, len)) = parse_head(self.unread())? {
                self.pos += len;
                return Ok(Some(head));
            }
            match self.fill().await {
                Ok(0) if self.unread().is_empty() => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if is_closed(&e) && self.unread().is_empty() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the rest of `body`, appending it to `out`.
    pub async fn read_body(&mut self, body: &mut Body, out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            if self.read_some(body, out).await? {
                return Ok(());
            }
        }
    }

    /// Decodes what has arrived of `body` into `out`, waiting for more bytes if
    /// none are ready. Returns whether the body is complete.
    pub async fn read_some(&mut self, body: &mut Body, out: &mut Vec<u8>) -> io::Result<bool> {
        let (used, done) = body.decode(self.unread(), out)?;
        self.pos += used;
        if done || used > 0 {
            return Ok(done);
        }
        match self.fill().await? {
            0 if matches!(body, Body::UntilClose) => Ok(true),
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(false),
        }
    }

    /// Whether the connection can go back to the pool: nothing unread is left
    /// over (the bridge never sends unasked), and the buffer is small again.
    pub fn reusable(&mut self) -> bool {
        if !self.unread().is_empty() {
            return false;
        }
        self.buf.clear();
        self.pos = 0;
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::with_capacity(READ_CHUNK);
        }
        true
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads once into the buffer (after moving unread bytes to its start);
    /// `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        self.stream.read_buf(&mut self.buf).await
    }
}

/// An error that means the peer had closed the connection.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(mut body: Body, pieces: &[&[u8]]) -> (Vec<u8>, bool, usize) {
        let (mut pending, mut out, mut done) = (Vec::new(), Vec::new(), false);
        for p in pieces {
            pending.extend_from_slice(p);
            let (used, d) = body.decode(&pending, &mut out).unwrap();
            pending.drain(..used);
            done = d;
        }
        (out, done, pending.len())
    }

    #[test]
    fn requests_are_written_with_host_headers_and_length() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "POST",
            "/v1/messages?x=1",
            "127.0.0.1:8765",
            [("x-a", "1")],
            b"{}",
        );
        assert_eq!(
            out,
            b"POST /v1/messages?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8765\r\nx-a: 1\r\n\
              content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
        out.clear();
        write_request(&mut out, "GET", "/", "h", [], b"");
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    }

    #[test]
    fn heads_give_status_framing_and_keep_alive() {
        let (h, n) = parse_head(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.body, h.keep_alive, n),
            (201, Body::Length(5), true, 43)
        );
        let (h, _) = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Body::Chunked(Chunked::Size));
        let (h, _) =
            parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(!h.keep_alive);
        let (h, _) = parse_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.body, h.keep_alive), (Body::UntilClose, false));
        let (h, _) = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.body, h.keep_alive), (Body::Length(0), true));
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire: &[u8] = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\ntrailer: x\r\n\r\nNEXT";
        for cut1 in 0..wire.len() {
            for cut2 in cut1..wire.len() {
                let (out, done, left) = decode_all(
                    Body::Chunked(Chunked::Size),
                    &[&wire[..cut1], &wire[cut1..cut2], &wire[cut2..]],
                );
                assert_eq!(
                    (out.as_slice(), done, left),
                    (&b"hello, world"[..], true, 4)
                );
            }
        }
        let mut out = Vec::new();
        assert!(Chunked::Size.decode(b"zz\r\n", &mut out).is_err());
        assert!(Chunked::DataEnd.decode(b"xx", &mut out).is_err());
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (out, done, left) = decode_all(Body::Length(5), &[b"he", b"llo", b"extra"]);
        assert_eq!((out.as_slice(), done, left), (&b"hello"[..], true, 5));
        let (out, done, _) = decode_all(Body::UntilClose, &[b"ab", b"c"]);
        assert_eq!((out.as_slice(), done), (&b"abc"[..], false));
    }
}
