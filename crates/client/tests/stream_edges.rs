//! Edges of the resuming stream against a scripted server: what counts as a
//! failed connect, what ends a stream, the order of items and the error that
//! ends a stream, and where a stream without a position resumes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lighthouse_client::{AgentPayload, Client, ClientConfig, Error, ReconnectPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";

/// A server answering its n-th connection with `answers[n]` (the last one
/// for every later connection), then closing it.
async fn scripted(answers: Vec<String>) -> String {
    scripted_keeping_heads(answers, false).await.0
}

/// As [`scripted`], also keeping the head of every request (lowercased);
/// with `hold`, a connection stays open after its answer instead of closing.
async fn scripted_keeping_heads(
    answers: Vec<String>,
    hold: bool,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let answer = answers[n.min(answers.len() - 1)].clone();
            let kept = kept.clone();
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
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&got).to_ascii_lowercase());
                let _ = conn.write_all(answer.as_bytes()).await;
                if hold {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    (url, heads)
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

#[tokio::test]
async fn a_stream_without_a_position_resumes_from_the_position_the_bridge_named() {
    // The first connection names where to resume and breaks before its first
    // event; the second must ask for everything after that position. A
    // content type with parameters, in any case, is an event stream too.
    let named = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                 x-lighthouse-resume-after: 41\r\nconnection: close\r\n\r\n";
    let sse = "HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream; charset=utf-8\r\n\
               connection: close\r\n\r\n";
    let (url, heads) = scripted_keeping_heads(
        vec![named.to_owned(), format!("{sse}{}", event(42, "{}"))],
        false,
    )
    .await;
    let mut stream = client(&url, None, 64 * 1024).agent_stream(None);
    assert_eq!(next(&mut stream).await.unwrap().unwrap().seq, 42);
    let heads = heads.lock().unwrap();
    assert!(!heads[0].contains("last-event-id"), "{}", heads[0]);
    assert!(heads[1].contains("last-event-id: 41\r\n"), "{}", heads[1]);
    assert_eq!(stream.position(), Some(42));
}

#[tokio::test]
async fn a_stream_request_that_cannot_be_built_ends_the_stream_at_once() {
    let (url, heads) =
        scripted_keeping_heads(vec![format!("{SSE_HEAD}{}", event(1, "{}"))], false).await;
    // A line break cannot be in a header value: every attempt would fail.
    let c = Client::builder()
        .base_url(&url)
        .bearer_token("lht1.test\n")
        .build()
        .unwrap();
    let mut stream = c.agent_stream(None);
    let err = next(&mut stream).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(next(&mut stream).await.is_none());
    assert!(heads.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn an_error_body_that_never_arrives_does_not_hold_the_stream() {
    // A 503 announcing 100 bytes of body that never come, on a connection
    // that stays open.
    let (url, _) = scripted_keeping_heads(
        vec!["HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100\r\n\r\n".into()],
        true,
    )
    .await;
    let c = Client::builder()
        .base_url(&url)
        .bearer_token("lht1.test")
        .config(ClientConfig {
            request_timeout: Duration::from_millis(200),
            ..ClientConfig::default()
        })
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_attempts: Some(2),
        })
        .build()
        .unwrap();
    let mut stream = c.agent_stream(None);
    // Refused twice (retryable, so counted against max_attempts), then over.
    let err = next(&mut stream).await.unwrap().unwrap_err();
    assert_eq!(err.problem().status, 503, "{err}");
    assert!(err.problem().detail.contains("did not arrive"), "{err}");
    assert!(next(&mut stream).await.is_none());
}

#[tokio::test]
async fn a_2xx_that_is_not_an_event_stream_ends_the_stream() {
    // A proxy's page: were it a connect that succeeded, the stream would
    // reconnect forever (max_attempts counts failed connects only).
    let url = scripted(vec![
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\n\
         connection: close\r\n\r\n<html></html>"
            .into(),
    ])
    .await;
    let mut stream = client(&url, Some(2), 64 * 1024).agent_stream(None);
    match next(&mut stream).await.unwrap() {
        Err(Error::InvalidResponse { status, detail }) => {
            assert_eq!(status, 200);
            assert!(detail.contains("text/html"), "{detail}");
        }
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
    assert!(next(&mut stream).await.is_none());
    assert_eq!(stream.stats().connects, 0);
}
