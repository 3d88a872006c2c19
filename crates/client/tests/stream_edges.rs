//! Edges of the resuming stream against a scripted server: what counts as a
//! failed connect, and the order of items and the error that ends a stream.

use std::time::Duration;

use lighthouse_client::{AgentPayload, Client, ClientConfig, ReconnectPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";

/// A server answering its n-th connection with `answers[n]` (the last one
/// for every later connection), then closing it.
async fn scripted(answers: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let answer = answers[n.min(answers.len() - 1)].clone();
            tokio::spawn(async move {
                // The request head, whatever it says.
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    url
}

fn client(url: &str, max_attempts: Option<u32>, max_event: usize) -> Client {
    Client::builder()
        .base_url(url)
        .bearer_token("lht1.test")
        .config(ClientConfig {
            max_sse_event_bytes: max_event,
            ..ClientConfig::default()
        })
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_attempts,
        })
        .build()
        .unwrap()
}

async fn next(
    s: &mut lighthouse_client::AgentStream,
) -> Option<Result<lighthouse_client::AgentEvent, lighthouse_client::Error>> {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("in time")
}

fn event(seq: u64, data: &str) -> String {
    format!("id: {seq}\nevent: note\ndata: {data}\n\n")
}

#[tokio::test]
async fn only_failed_connects_count_against_max_attempts() {
    // Two connections that end quietly (a proxy cutting idle streams), one
    // refused, then one that delivers: three attempts allowed in a row.
    let quiet = format!("{SSE_HEAD}: heartbeat\n\n");
    let refused =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let url = scripted(vec![
        quiet.clone(),
        quiet,
        refused.into(),
        format!("{SSE_HEAD}{}", event(7, "{\"n\": 1}")),
    ])
    .await;
    let mut stream = client(&url, Some(2), 64 * 1024).agent_stream(None);
    let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("in time")
        .expect("the stream goes on")
        .expect("an item, not an error");
    assert_eq!(item.seq, 7);
    assert!(matches!(item.payload, AgentPayload::Other { .. }));
}

#[tokio::test]
async fn items_read_before_the_error_that_ends_the_stream_come_first() {
    // One chunk: a small event, then one past the client's event limit.
    let big = format!("\"{}\"", "x".repeat(2048));
    let url = scripted(vec![format!(
        "{SSE_HEAD}{}{}",
        event(1, "{\"n\": 1}"),
        event(2, &big)
    )])
    .await;
    let mut stream = client(&url, None, 1024).agent_stream(None);
    assert_eq!(next(&mut stream).await.unwrap().unwrap().seq, 1);
    assert!(next(&mut stream).await.unwrap().is_err());
    assert!(next(&mut stream).await.is_none());
    assert_eq!(stream.position(), Some(1));
}
