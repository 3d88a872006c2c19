//! A real bridge on a real socket for the client's tests, and a TCP proxy that
//! breaks connections on demand.
#![allow(dead_code)]

pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;

use lighthouse_client::Client;
use lighthouse_core::api::{Credential, FlagPut, FlagSpec, Role};
use lighthouse_core::{Bridge, BridgeConfig, ELICITATION_FLAG};
use lighthouse_http::{HttpConfig, ShutdownSignal};
use lighthouse_security::MasterKey;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A bridge served over loopback.
pub struct TestBridge {
    bridge: Option<Bridge>,
    pub addr: SocketAddr,
    pub url: String,
    dir: tempfile::TempDir,
    key: MasterKey,
    server: Option<(ShutdownSignal, oneshot::Sender<()>, JoinHandle<()>)>,
}

async fn open(dir: PathBuf, key: MasterKey, url: &str) -> Bridge {
    let mut config = BridgeConfig::new(dir, key);
    config.public_url = url.to_owned();
    Bridge::open(config).await.expect("bridge opens")
}

fn serve(
    bridge: Bridge,
    listener: tokio::net::TcpListener,
) -> (ShutdownSignal, oneshot::Sender<()>, JoinHandle<()>) {
    let (router, signal) = lighthouse_http::router(bridge, HttpConfig::default());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
    });
    (signal, tx, task)
}

impl TestBridge {
    pub async fn start() -> TestBridge {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::generate().expect("master key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let bridge = open(dir.path().to_path_buf(), key.clone(), &url).await;
        let server = serve(bridge.clone(), listener);
        TestBridge {
            bridge: Some(bridge),
            addr,
            url,
            dir,
            key,
            server: Some(server),
        }
    }

    /// The bridge being served.
    pub fn bridge(&self) -> &Bridge {
        self.bridge.as_ref().expect("bridge is open")
    }

    /// Stops serving: open streams get their final `shutdown` event, the server
    /// finishes, the store is flushed and closed.
    pub async fn stop(&mut self) {
        if let Some((signal, tx, task)) = self.server.take() {
            self.bridge().begin_shutdown();
            signal.trigger();
            let _ = tx.send(());
            task.await.expect("server task");
            self.bridge().shutdown().await.expect("bridge shutdown");
        }
    }

    /// Stops, reopens the same data directory and serves it on the same address.
    pub async fn restart(&mut self) {
        self.stop().await;
        // The last clone must go before the store can be opened again.
        drop(self.bridge.take());
        let mut bridge = None;
        for _ in 0..100 {
            let mut config = BridgeConfig::new(self.dir.path().to_path_buf(), self.key.clone());
            config.public_url = self.url.clone();
            match Bridge::open(config).await {
                Ok(b) => {
                    bridge = Some(b);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        let bridge = bridge.expect("bridge reopens");
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("rebind");
        self.server = Some(serve(bridge.clone(), listener));
        self.bridge = Some(bridge);
    }

    /// Registers `agent` with `role`; the credential names this bridge.
    pub async fn credential(&self, agent: &str, role: Role) -> Credential {
        let mut c = self
            .bridge()
            .gate()
            .registry()
            .register(agent, role, Some("test"))
            .await
            .expect("register");
        c.bridge = self.url.clone();
        c
    }

    /// A signing client for a new agent.
    pub async fn client(&self, agent: &str, role: Role) -> Client {
        Client::from_credential(self.credential(agent, role).await).expect("client")
    }

    /// Turns `elicitation_enabled` on for everyone through an operator client.
    pub async fn enable_elicitation(&self) -> Client {
        let ops = self.client("ops-setup", Role::Operator).await;
        ops.put_flag(
            ELICITATION_FLAG,
            &FlagPut {
                spec: FlagSpec::new(true, 100.0),
                reason: Some("tests".into()),
                expected_version: None,
            },
        )
        .await
        .expect("flag on");
        ops
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        if let Some((_, _, task)) = self.server.take() {
            task.abort();
        }
    }
}

/// The schema of the protocol's example.
pub fn port_schema() -> Value {
    json!({"type": "object",
           "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
           "required": ["port"]})
}
