//! What one client can hold before it authenticates is bounded: the size of a
//! request head, HTTP/2 streams and their headers, idle HTTP/2 connections,
//! and connections per peer. Each test goes through a real socket to a
//! `lighthouse-bridge serve` child process.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, spawn_with, wait_ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the bridge closes the connection or `limit` passes; returns
/// what was read and how long the connection lasted (`None`: still open).
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match tokio::time::timeout_at((started + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A bridge on a free port with `env`, ready; its address.
async fn bridge(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (common::Proc, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = spawn_with(&dir.path().join("data"), port, env);
    wait_ready(&format!("http://{addr}")).await;
    (child, addr)
}

/// An HTTP/1 head that reaches `http1_max_head_bytes` (64 KiB) unfinished is
/// answered `431` and closed at once; hyper's default (about 400 KiB) let it
/// wait for the 30 s header read timeout, pinning its buffer. A head with more
/// than `http1_max_headers` (64) fields is `431` too; one with fewer is served.
#[tokio::test]
async fn http1_heads_past_their_limits_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = bridge(&dir, &[]).await;
    let limit = Duration::from_secs(10);

    // Exactly the limit, so the bridge has read everything when it answers
    // (unread bytes would turn its close into a reset that eats the answer).
    let mut head = b"GET /health/live HTTP/1.1\r\nHost: x\r\n".to_vec();
    while head.len() < 64 << 10 {
        head.extend_from_slice(b"X-Pad: ");
        head.extend(std::iter::repeat_n(b'a', 1000));
        head.extend_from_slice(b"\r\n");
    }
    head.truncate(64 << 10);
    let mut big = TcpStream::connect(&addr).await.unwrap();
    big.write_all(&head).await.unwrap();
    let (answer, _) = read_until_closed(&mut big, limit)
        .await
        .expect("an unfinished 64 KiB head was held, not refused");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let request = |fields: usize| {
        let mut r = b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
        for i in 0..fields - 2 {
            r.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r
    };
    for (fields, status) in [(64, "200"), (65, "431")] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&request(fields)).await.unwrap();
        let (answer, _) = read_until_closed(&mut s, limit).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{fields} fields: {answer}"
        );
    }
}

/// Just enough HTTP/2 (RFC 9113) to open streams and see what the bridge
/// answers: frames, and header blocks of literal fields (no HPACK decoding; an
/// answer is recognised by its frame type).
mod h2 {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const ACK: u8 = 0x1;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const REFUSED_STREAM: u32 = 0x7;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HPACK integer with a 7-bit prefix.
    fn int(mut v: usize, out: &mut Vec<u8>) {
        if v < 127 {
            out.push(v as u8);
            return;
        }
        out.push(127);
        v -= 127;
        while v >= 128 {
            out.push((v & 127) as u8 | 128);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A HEADERS frame (END_HEADERS; END_STREAM when `end`) for `method path`
    /// with `extra` fields, each a literal never indexed.
    pub fn request(
        stream: u32,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        end: bool,
    ) -> Vec<u8> {
        let mut block = Vec::new();
        let fields = [
            (":method", method),
            (":scheme", "http"),
            (":path", path),
            (":authority", "x"),
        ];
        for (name, value) in fields.iter().chain(extra) {
            block.push(0);
            int(name.len(), &mut block);
            block.extend_from_slice(name.as_bytes());
            int(value.len(), &mut block);
            block.extend_from_slice(value.as_bytes());
        }
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        frame(HEADERS, flags, stream, &block)
    }

    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    pub enum Event {
        Frame(Frame),
        Closed,
        TimedOut,
    }

    /// A client connection that acknowledges the bridge's SETTINGS and PINGs
    /// (as every HTTP/2 client does) and hands every frame to the caller.
    pub struct Client {
        pub io: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        /// Connects, sends the preface and empty SETTINGS.
        pub async fn connect(addr: &str) -> Client {
            let mut io = TcpStream::connect(addr).await.unwrap();
            let mut hello = PREFACE.to_vec();
            hello.extend(frame(SETTINGS, 0, 0, &[]));
            io.write_all(&hello).await.unwrap();
            Client::from_stream(io)
        }

        /// A connection that has sent its preface and SETTINGS already.
        pub fn from_stream(io: TcpStream) -> Client {
            Client {
                io,
                buf: Vec::new(),
            }
        }

        pub async fn send(&mut self, bytes: &[u8]) {
            self.io.write_all(bytes).await.unwrap();
        }

        /// The next frame, or whether the bridge closed the connection (or
        /// reset it) or nothing came by `deadline`.
        pub async fn next(&mut self, deadline: Instant) -> Event {
            loop {
                if self.buf.len() >= 9 {
                    let len =
                        u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                    if self.buf.len() >= 9 + len {
                        let f = Frame {
                            kind: self.buf[3],
                            flags: self.buf[4],
                            stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap())
                                & 0x7fff_ffff,
                            payload: self.buf[9..9 + len].to_vec(),
                        };
                        self.buf.drain(..9 + len);
                        // Acknowledgements may fail once the bridge is closing.
                        if f.kind == SETTINGS && f.flags & ACK == 0 {
                            let _ = self.io.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                        } else if f.kind == PING && f.flags & ACK == 0 {
                            let _ = self.io.write_all(&frame(PING, ACK, 0, &f.payload)).await;
                        }
                        return Event::Frame(f);
                    }
                }
                let mut chunk = [0u8; 16 << 10];
                match tokio::time::timeout_at(deadline.into(), self.io.read(&mut chunk)).await {
                    Err(_) => return Event::TimedOut,
                    Ok(Ok(0)) | Ok(Err(_)) => return Event::Closed,
                    Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// The bridge's first SETTINGS frame, as (identifier, value) pairs.
        pub async fn settings(&mut self, within: Duration) -> Vec<(u16, u32)> {
            let deadline = Instant::now() + within;
            loop {
                match self.next(deadline).await {
                    Event::Frame(f) if f.kind == SETTINGS && f.flags & ACK == 0 => {
                        return f
                            .payload
                            .chunks(6)
                            .map(|s| {
                                (
                                    u16::from_be_bytes([s[0], s[1]]),
                                    u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
                                )
                            })
                            .collect();
                    }
                    Event::Frame(_) => {}
                    Event::Closed | Event::TimedOut => panic!("no SETTINGS from the bridge"),
                }
            }
        }
    }
}

/// The bridge advertises its HTTP/2 limits (32 streams, 16 KiB header lists,
/// 256 KiB stream and 512 KiB connection windows) and holds clients to them:
/// the streams a client opens past 32, here waiting for bodies that never
/// come (before authentication, as h2heads.py did with hyper's 200), are
/// refused at once.
#[tokio::test]
async fn http2_connections_advertise_and_enforce_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = bridge(&dir, &[]).await;
    let mut c = h2::Client::connect(&addr).await;
    let settings = c.settings(Duration::from_secs(10)).await;
    let setting = |id: u16| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    // MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_HEADER_LIST_SIZE.
    assert_eq!(setting(0x3), Some(32), "{settings:?}");
    assert_eq!(setting(0x4), Some(256 << 10), "{settings:?}");
    assert_eq!(setting(0x6), Some(16 << 10), "{settings:?}");

    let mut opened = Vec::new();
    for i in 0..40u32 {
        opened.extend(h2::request(
            2 * i + 1,
            "POST",
            "/v1/messages",
            &[("content-type", "application/json")],
            false,
        ));
    }
    c.send(&opened).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut refused, mut connection_window) = (Vec::new(), None);
    while refused.len() < 8 {
        match c.next(deadline).await {
            h2::Event::Frame(f) if f.kind == h2::RST_STREAM => {
                let code = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
                assert_eq!(code, h2::REFUSED_STREAM, "stream {}", f.stream);
                refused.push(f.stream);
            }
            h2::Event::Frame(f) if f.kind == h2::WINDOW_UPDATE && f.stream == 0 => {
                connection_window = Some(u32::from_be_bytes(f.payload[..4].try_into().unwrap()));
            }
            h2::Event::Frame(f) => assert_ne!(f.kind, h2::GOAWAY, "the connection was closed"),
            h2::Event::Closed | h2::Event::TimedOut => {
                panic!("streams past the 32nd were not refused: {refused:?}")
            }
        }
    }
    // Streams 65 to 79: the 33rd to the 40th.
    assert_eq!(refused, (32..40).map(|i| 2 * i + 1).collect::<Vec<u32>>());
    // The connection window grows from the protocol's 65,535 to 512 KiB.
    assert_eq!(connection_window, Some((512 << 10) - 65_535));
}

/// An HTTP/2 connection with no request in flight for the header read
/// timeout is closed (GOAWAY, then the end of the connection) though it
/// answers every ping: h2idle.py held every connection slot that way. One
/// with a request in flight is not, however long the request takes, and is
/// closed once it has been idle as long after it.
#[tokio::test]
async fn idle_http2_connections_are_closed_and_busy_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = bridge(
        &dir,
        &[
            ("LIGHTHOUSE_HEADER_READ_TIMEOUT_MS", "500"),
            ("LIGHTHOUSE_BODY_READ_TIMEOUT_MS", "2500"),
        ],
    )
    .await;

    let mut idle = h2::Client::connect(&addr).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let mut goaway = false;
    loop {
        match idle.next(deadline).await {
            h2::Event::Frame(f) => goaway |= f.kind == h2::GOAWAY,
            h2::Event::Closed => break,
            h2::Event::TimedOut => panic!("an idle HTTP/2 connection was not closed"),
        }
    }
    assert!(goaway, "closed without a GOAWAY");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // A request whose body never comes: in flight until the body read
    // timeout answers it, five idle timeouts later.
    let mut busy = h2::Client::connect(&addr).await;
    busy.send(&h2::request(
        1,
        "POST",
        "/v1/messages",
        &[("content-type", "application/json")],
        false,
    ))
    .await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    let mut answered = None;
    loop {
        match busy.next(deadline).await {
            h2::Event::Frame(f) if f.kind == h2::HEADERS && f.stream == 1 => {
                answered = Some(started.elapsed());
            }
            h2::Event::Frame(f) if f.kind == h2::GOAWAY => {
                assert!(answered.is_some(), "GOAWAY while a request was in flight");
            }
            h2::Event::Frame(_) => {}
            h2::Event::Closed => break,
            h2::Event::TimedOut => panic!("not closed once idle after its request"),
        }
    }
    let answered = answered.expect("the connection closed before the request was answered");
    assert!(answered >= Duration::from_secs(2), "{answered:?}");
}

/// `GET /health/live` over a new connection from `from` (an IPv4 loopback
/// address), kept alive: the connection if it was answered `200`, `None` if
/// the bridge closed it instead.
async fn live_from(from: &str, addr: &str) -> Option<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(addr.parse().unwrap()).await.ok()?;
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("neither answered nor closed")
        .ok()?;
    let answer = String::from_utf8_lossy(&buf[..n]);
    (n > 0).then(|| {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        s
    })
}

/// One address holds at most `max_connections_per_peer` connections (here
/// 3; loopback counts like any other address): one more from it is closed at
/// once, while another address is served, and the first is served again once
/// one of its connections closes. h2idle.py held every slot from one address.
#[tokio::test]
async fn one_address_holds_at_most_max_connections_per_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = bridge(&dir, &[("LIGHTHOUSE_MAX_CONNECTIONS_PER_PEER", "3")]).await;
    // The readiness probe's connection may still count for a moment.
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < 3 {
        assert!(Instant::now() < deadline, "could not open 3 connections");
        match live_from("127.0.0.1", &addr).await {
            Some(s) => held.push(s),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(
        live_from("127.0.0.1", &addr).await.is_none(),
        "a fourth connection from one address was served"
    );
    assert!(
        live_from("127.0.0.2", &addr).await.is_some(),
        "another address was refused"
    );
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    while live_from("127.0.0.1", &addr).await.is_none() {
        assert!(Instant::now() < deadline, "not served again after a close");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bridge reads a connection's first bytes itself, to tell HTTP/2's
/// preface from HTTP/1 within the header read timeout, and hands them on:
/// a preface that arrives in pieces is still HTTP/2, an HTTP/1 request that
/// starts like one (`P`) or arrives a byte at a time is still HTTP/1.
#[tokio::test]
async fn first_bytes_read_to_tell_the_protocol_reach_hyper() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = bridge(&dir, &[]).await;

    let mut s = TcpStream::connect(&addr).await.unwrap();
    for piece in [&h2::PREFACE[..3], &h2::PREFACE[3..10], &h2::PREFACE[10..]] {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    s.write_all(&h2::frame(h2::SETTINGS, 0, 0, &[]))
        .await
        .unwrap();
    let mut c = h2::Client::from_stream(s);
    c.settings(Duration::from_secs(10)).await;
    c.send(&h2::request(1, "GET", "/health/live", &[], true))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.next(deadline).await {
            h2::Event::Frame(f) if f.kind == h2::HEADERS && f.stream == 1 => {
                // `:status: 200` is index 8 of HPACK's static table.
                assert_eq!(f.payload.first(), Some(&0x88), "{:?}", f.payload);
                break;
            }
            h2::Event::Frame(f) => assert_ne!(f.kind, h2::GOAWAY),
            h2::Event::Closed | h2::Event::TimedOut => panic!("no answer over HTTP/2"),
        }
    }

    for (request, status) in [
        (
            &b"PUT /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            "405",
        ),
        (
            &b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            "200",
        ),
    ] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        for byte in &request[..30] {
            s.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        s.write_all(&request[30..]).await.unwrap();
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .expect("no answer over HTTP/1");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
    }
}
