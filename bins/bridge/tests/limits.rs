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
