//! The `lighthouse` binary end to end against a bridge served by the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lighthouse_core::api::Role;
use lighthouse_core::{Bridge, BridgeConfig};
use lighthouse_http::HttpConfig;
use lighthouse_security::MasterKey;
use serde_json::{Value, json};

struct Env {
    url: String,
    bridge: Bridge,
    dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Env {
    async fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut config = BridgeConfig::new(dir.path().join("data"), MasterKey::generate().unwrap());
        config.public_url = url.clone();
        let bridge = Bridge::open(config).await.unwrap();
        let (router, _signal) = lighthouse_http::router(bridge.clone(), HttpConfig::default());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Env {
            url,
            bridge,
            dir,
            server,
        }
    }

    /// Registers `agent` and writes its credential file (mode 0600).
    async fn agent(&self, agent: &str, role: Role) -> PathBuf {
        let mut c = self
            .bridge
            .gate()
            .registry()
            .register(agent, role, Some("test"))
            .await
            .unwrap();
        c.bridge = self.url.clone();
        let path = self.dir.path().join(format!("{agent}.json"));
        c.write(&path).unwrap();
        path
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn command(cred: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lighthouse"));
    cmd.env_remove("LIGHTHOUSE_CREDENTIAL")
        .env_remove("LIGHTHOUSE_BRIDGE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(c) = cred {
        cmd.arg("--credential").arg(c);
    }
    cmd.args(args);
    cmd
}

/// Waits for `child` (killing it after 60 s) and collects its output.
fn finish(mut child: Child) -> Run {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn spawn(cred: Option<&Path>, args: &[&str]) -> tokio::task::JoinHandle<Run> {
    let child = command(cred, args).spawn().unwrap();
    tokio::task::spawn_blocking(move || finish(child))
}

/// Turns elicitation on for every agent, as the operator `ops`.
async fn enable_elicitation(ops: &Path) {
    let r = lh(
        ops,
        &[
            "flags",
            "set",
            "elicitation_enabled",
            "--enabled",
            "true",
            "--rollout",
            "100",
            "--reason",
            "setup",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
}

async fn lh(cred: &Path, args: &[&str]) -> Run {
    spawn(Some(cred), args).await.unwrap()
}

fn schema() -> String {
    json!({"type": "object",
           "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
           "required": ["port"]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_output_modes_and_exit_codes() {
    let env = Env::start().await;
    let alice = env.agent("alice", Role::Agent).await;

    let r = lh(&alice, &["me"]).await;
    assert_eq!(
        (r.code, r.stdout.trim()),
        (0, "alice (agent, key 1)"),
        "{r:?}"
    );
    let r = lh(&alice, &["--json", "me"]).await;
    assert_eq!(
        r.json(),
        json!({"agent": "alice", "role": "agent", "key_id": 1})
    );
    let mut by_env = command(None, &["me"]);
    by_env.env("LIGHTHOUSE_CREDENTIAL", &alice);
    assert_eq!(finish(by_env.spawn().unwrap()).code, 0);

    // 1: the bridge refused; its problem on stderr, as JSON with --json.
    let r = lh(&alice, &["flags", "list"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("forbidden (403)"), "{r:?}");
    let r = lh(&alice, &["--json", "get", "el_missing"]).await;
    assert_eq!(r.code, 1);
    let p: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(
        (p["code"].as_str(), p["status"].as_u64()),
        (Some("not_found"), Some(404))
    );

    // 2: bad usage or input, nothing sent.
    assert_eq!(spawn(None, &["me"]).await.unwrap().code, 2);
    assert_eq!(lh(&alice, &["respond", "el_x"]).await.code, 2);
    assert_eq!(lh(&alice, &["frobnicate"]).await.code, 2);
    let r = lh(
        &alice,
        &[
            "elicit",
            "--to",
            "bob",
            "--message",
            "m",
            "--schema",
            "{nope",
        ],
    )
    .await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--schema"), "{r:?}");
    assert_eq!(
        lh(&alice, &["send", "--to", "bob", "--body", "@/no/such/file"])
            .await
            .code,
        2
    );
    assert_eq!(lh(&alice, &["inbox", "--status", "done"]).await.code, 2);
    // An idempotency key that cannot be a header, and a malformed variant
    // of a flag: refused before any request (not a transport failure).
    let schema = schema();
    let r = lh(
        &alice,
        &[
            "elicit",
            "--to",
            "bob",
            "--message",
            "m",
            "--schema",
            &schema,
            "--idempotency-key",
            "a\nb",
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--idempotency-key"), "{r:?}");
    let r = lh(
        &alice,
        &["flags", "set", "k", "--reason", "r", "--variant", "bad"],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--variant"), "{r:?}");
    let readable = env.dir.path().join("readable.json");
    std::fs::copy(&alice, &readable).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(lh(&readable, &["me"]).await.code, 2);

    // 3: the bridge cannot be reached.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let r = lh(&alice, &["--bridge", &dead, "me"]).await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("transport"), "{r:?}");
    // --bridge overrides the credential's URL.
    assert_eq!(lh(&alice, &["--bridge", &env.url, "me"]).await.code, 0);
    assert_eq!(spawn(None, &["--help"]).await.unwrap().code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elicitation_round_trip_through_the_cli() {
    let env = Env::start().await;
    let ops = env.agent("ops", Role::Operator).await;
    let alice = env.agent("alice", Role::Agent).await;
    let bob = env.agent("bob", Role::Agent).await;
    enable_elicitation(&ops).await;
    let schema_file = env.file("schema.json", &schema());
    let schema_arg = format!("@{}", schema_file.display());

    let waiting = spawn(
        Some(&alice),
        &[
            "--json",
            "elicit",
            "--to",
            "bob",
            "--message",
            "Which port?",
            "--schema",
            &schema_arg,
            "--timeout-ms",
            "60000",
            "--wait",
        ],
    );
    let id = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = lh(&bob, &["--json", "inbox", "--status", "pending"]).await;
            assert_eq!(r.code, 0, "{r:?}");
            if let Some(item) = r.json()["items"]
                .as_array()
                .and_then(|a| a.first().cloned())
            {
                break item["id"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "the elicitation never arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let r = lh(&bob, &["inbox"]).await;
    assert!(
        r.stdout.contains(&id) && r.stdout.contains("alice → bob"),
        "{r:?}"
    );

    let r = lh(&bob, &["respond", &id, "--accept", r#"{"port": 70000}"#]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("schema_mismatch (422)") && r.stderr.contains("/port"),
        "{r:?}"
    );
    let r = lh(&bob, &["respond", &id, "--accept", r#"{"port": 8080}"#]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("accepted") && r.stdout.contains(r#"{"port":8080}"#),
        "{r:?}"
    );

    let done = waiting.await.unwrap();
    assert_eq!(done.code, 0, "{done:?}");
    // The id went to stderr before the wait, so a failed wait cannot lose it.
    assert_eq!(
        done.stderr.trim(),
        format!("created {id}; waiting for bob to answer"),
        "{done:?}"
    );
    let record = done.json();
    assert_eq!(record["id"], json!(id));
    assert_eq!(record["status"], json!("accepted"));
    assert_eq!(record["response"]["content"], json!({"port": 8080}));

    let r = lh(&alice, &["get", &id]).await;
    assert!(
        r.stdout.contains("accepted") && r.stdout.contains("by bob"),
        "{r:?}"
    );
    let r = lh(&bob, &["respond", &id, "--decline", "--reason", "late"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("already_resolved"), "{r:?}");

    let r = lh(
        &alice,
        &[
            "--json",
            "elicit",
            "--to",
            "bob",
            "--message",
            "Again?",
            "--schema",
            &schema(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let second = r.json()["id"].as_str().unwrap().to_owned();
    let r = lh(&alice, &["cancel", &second, "--reason", "never mind"]).await;
    assert!(
        r.code == 0 && r.stdout.contains("cancelled") && r.stdout.contains("never mind"),
        "{r:?}"
    );
    let r = lh(&alice, &["--json", "outbox"]).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_messages_and_events() {
    let env = Env::start().await;
    let alice = env.agent("alice", Role::Agent).await;
    let bob = env.agent("bob", Role::Agent).await;
    let watching = spawn(
        Some(&bob),
        &["--json", "watch", "--after", "0", "--count", "2"],
    );
    for n in 1..=2 {
        let body = format!(r#"{{"n": {n}}}"#);
        let r = lh(&alice, &["send", "--to", "bob", "--body", &body]).await;
        assert!(r.code == 0 && r.stdout.starts_with("sent msg_"), "{r:?}");
    }
    let w = watching.await.unwrap();
    assert_eq!(w.code, 0, "{w:?}");
    let lines = w.lines();
    assert_eq!(lines.len(), 2);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["event"], json!("message.received"));
        assert_eq!(l["data"]["body"], json!({"n": i + 1}));
        assert_eq!(l["id"], l["data"]["seq"]);
    }
    assert!(lines[0]["id"].as_u64() < lines[1]["id"].as_u64());

    let r = lh(&bob, &["--json", "messages"]).await;
    let page = r.json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    let last = page["next_after"].as_u64().unwrap();
    let r = lh(&bob, &["messages", "--after", &last.to_string()]).await;
    assert_eq!(r.stdout.trim(), format!("next_after: {last}"));
    let r = lh(&bob, &["messages", "--wait-ms", "60001"]).await;
    assert_eq!(r.code, 2);

    let r = lh(
        &alice,
        &["--json", "events", "query", "--type", "message.sent"],
    )
    .await;
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 2);
    let r = lh(
        &alice,
        &[
            "events",
            "query",
            "--type",
            "message.sent",
            "--desc",
            "--limit",
            "1",
        ],
    )
    .await;
    assert!(
        r.stdout.contains("message.sent") && r.stdout.contains("mailbox-bob"),
        "{r:?}"
    );
    // The last page is full: the bridge names a next position, which the
    // CLI shows as where to go on, not as more events.
    let r = lh(
        &alice,
        &["events", "query", "--type", "message.sent", "--limit", "2"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(!r.stdout.contains("more"), "{r:?}");
    let next = lines[2]
        .strip_prefix("(next page: --after ")
        .and_then(|l| l.strip_suffix("; it may be empty)"))
        .unwrap_or_else(|| panic!("{r:?}"));
    let r = lh(
        &alice,
        &["events", "query", "--type", "message.sent", "--after", next],
    )
    .await;
    assert_eq!((r.code, r.stdout.trim()), (0, "(none)"), "{r:?}");
    let r = lh(
        &alice,
        &[
            "--json",
            "events",
            "tail",
            "--type",
            "message.sent",
            "--count",
            "2",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let tailed = r.lines();
    assert_eq!(tailed.len(), 2);
    assert_eq!(tailed[1]["seq"], json!(last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_and_operations() {
    let env = Env::start().await;
    let ops = env.agent("ops", Role::Operator).await;
    let r = lh(
        &ops,
        &[
            "flags",
            "set",
            "new_ui",
            "--reason",
            "try",
            "--enabled",
            "true",
            "--rollout",
            "25",
            "--allow",
            "alice",
            "--variant",
            "control=500",
            "--variant",
            "treatment=500",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("new_ui  enabled   25%  v1  by ops"),
        "{r:?}"
    );
    let r = lh(
        &ops,
        &[
            "flags",
            "set",
            "new_ui",
            "--reason",
            "more",
            "--rollout",
            "50",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let f = lh(&ops, &["--json", "flags", "get", "new_ui"]).await.json();
    assert_eq!(
        (
            &f["version"],
            &f["rollout_percent"],
            &f["allow"],
            &f["enabled"]
        ),
        (&json!(2), &json!(50.0), &json!(["alice"]), &json!(true))
    );
    let e = lh(
        &ops,
        &["--json", "flags", "evaluate", "new_ui", "--agent", "carol"],
    )
    .await
    .json();
    assert_eq!(
        (&e["bucket"], &e["enabled"], &e["reason"]),
        (&json!(6254), &json!(false), &json!("split"))
    );
    let r = lh(&ops, &["flags", "evaluate", "new_ui", "--agent", "alice"]).await;
    assert!(
        r.stdout.starts_with("on (reason targeting, bucket "),
        "{r:?}"
    );
    assert!(r.stdout.contains(", variant "), "{r:?}");
    let r = lh(&ops, &["flags", "kill", "new_ui", "--reason", "bad"]).await;
    assert!(r.stdout.contains("KILLED"), "{r:?}");
    let r = lh(&ops, &["flags", "evaluate", "new_ui", "--agent", "alice"]).await;
    assert!(r.stdout.starts_with("off (reason killed"), "{r:?}");
    // An unkill decided on version 2, from before the kill, is refused.
    let r = lh(
        &ops,
        &[
            "flags",
            "unkill",
            "new_ui",
            "--reason",
            "stale",
            "--expected-version",
            "2",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("version_conflict"), "{r:?}");
    let f = lh(&ops, &["--json", "flags", "get", "new_ui"]).await.json();
    assert_eq!((&f["killed"], &f["version"]), (&json!(true), &json!(3)));
    assert_eq!(
        lh(
            &ops,
            &[
                "flags",
                "unkill",
                "new_ui",
                "--reason",
                "fixed",
                "--expected-version",
                "3"
            ]
        )
        .await
        .code,
        0
    );
    let r = lh(&ops, &["flags", "history", "new_ui"]).await;
    assert_eq!(r.stdout.lines().count(), 4, "{r:?}");
    assert!(
        r.stdout.contains("flag.killed") && r.stdout.contains("bad"),
        "{r:?}"
    );
    assert!(lh(&ops, &["flags", "list"]).await.stdout.contains("new_ui"));
    let r = lh(
        &ops,
        &[
            "flags",
            "set",
            "new_ui",
            "--reason",
            "x",
            "--expected-version",
            "1",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("version_conflict"), "{r:?}");
    let r = lh(
        &ops,
        &[
            "flags",
            "set",
            "other",
            "--reason",
            "x",
            "--rollout",
            "12.345",
        ],
    )
    .await;
    // Refused before anything is sent, as the bridge would refuse it.
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("--rollout") && r.stderr.contains("at most two"),
        "{r:?}"
    );
    assert_eq!(
        lh(&ops, &["flags", "get", "other"]).await.code,
        1,
        "nothing was written"
    );
    assert_eq!(
        lh(
            &ops,
            &["flags", "set", "other", "--reason", "x", "--variant", "a"]
        )
        .await
        .code,
        2
    );
    // Variant weights sum to 1000 (PROTOCOL.md 8), not to 100.
    let r = lh(
        &ops,
        &[
            "flags",
            "set",
            "other",
            "--reason",
            "x",
            "--variant",
            "a=50",
            "--variant",
            "b=50",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("invalid_request"), "{r:?}");

    let r = lh(&ops, &["ops", "stats"]).await;
    assert!(
        r.code == 0 && r.stdout.starts_with("window: last 60 s"),
        "{r:?}"
    );
    let s = lh(&ops, &["--json", "ops", "stats", "--window-s", "5"])
        .await
        .json();
    assert_eq!(s["window_s"], json!(5));
    let r = lh(&ops, &["ops", "verify"]).await;
    assert!(r.code == 0 && r.stdout.starts_with("ok: "), "{r:?}");
    let r = lh(
        &ops,
        &[
            "ops",
            "drain",
            "--timeout-ms",
            "0",
            "--cancel",
            "--reason",
            "test",
        ],
    )
    .await;
    assert!(
        r.code == 0 && r.stdout.contains("cancelled 0, remaining 0"),
        "{r:?}"
    );
}

/// A stand-in for a bridge behind a failing proxy: every request is answered
/// `502` with a bare HTML body, except `POST /v1/ops/verify`, answered with a
/// broken chain. Returns its base URL.
async fn failing_bridge() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .route(
            "/v1/ops/verify",
            axum::routing::post(|| async {
                axum::Json(json!({"ok": false, "checked": 7, "head_seq": 9,
                                  "first_bad_seq": 8, "elapsed_ms": 1}))
            }),
        )
        .fallback(|| async { (StatusCode::BAD_GATEWAY, "<html>Bad Gateway</html>") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, server)
}

/// The key named by an `elicit`'s note on an unknown outcome.
fn noted_key(r: &Run) -> String {
    let (_, rest) = r
        .stderr
        .split_once("re-run with --idempotency-key ")
        .unwrap_or_else(|| panic!("no key in the note: {r:?}"));
    rest.split_whitespace().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_with_an_unknown_outcome_exit_3_and_say_how_to_retry() {
    let env = Env::start().await;
    let (failing, server) = failing_bridge().await;
    let ops = env.agent("ops", Role::Operator).await;
    let alice = env.agent("alice", Role::Agent).await;
    env.agent("bob", Role::Agent).await;
    enable_elicitation(&ops).await;
    let schema = schema();
    let elicit = |extra: &'static [&'static str]| {
        let mut args = vec![
            "elicit",
            "--to",
            "bob",
            "--message",
            "Which port?",
            "--schema",
            &schema,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let via = |bridge: &str, args: &[String]| {
        let mut all = vec!["--bridge".to_owned(), bridge.to_owned()];
        all.extend_from_slice(args);
        all
    };
    let run = |args: Vec<String>| {
        let alice = alice.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            lh(&alice, &refs).await
        }
    };

    // A create answered 502 (after the client's retries) may have happened:
    // exit 3, and the generated key is printed so a re-run cannot duplicate.
    let r = run(via(&failing, &elicit(&[]))).await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.starts_with("error: unavailable (502)"), "{r:?}");
    assert!(
        r.stderr.contains(
            "note: the elicitation may have been created; re-run with --idempotency-key lhk-"
        ),
        "{r:?}"
    );
    let key = noted_key(&r);
    // Re-run against the bridge with that key: created once, then replayed.
    let mut again = elicit(&["--json"]);
    again.extend(["--idempotency-key".to_owned(), key.clone()]);
    let first = run(via(&env.url, &again)).await;
    assert_eq!(first.code, 0, "{first:?}");
    let second = run(via(&env.url, &again)).await;
    assert_eq!(first.json()["id"], second.json()["id"]);
    let r = lh(&alice, &["--json", "outbox"]).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1, "{r:?}");
    // With the caller's own key, the note says to keep it.
    let mut own = elicit(&[]);
    own.extend(["--idempotency-key".to_owned(), "mine-1".to_owned()]);
    let r = run(via(&failing, &own)).await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("re-run with the same --idempotency-key"),
        "{r:?}"
    );
    // With --json the problem stays one JSON line, the note follows it.
    let r = run(via(
        &failing,
        &[vec!["--json".to_owned()], elicit(&[])].concat(),
    ))
    .await;
    assert_eq!(r.code, 3, "{r:?}");
    let problem: Value = serde_json::from_str(r.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(problem["status"], json!(502));
    assert!(
        r.stderr.lines().nth(1).unwrap().starts_with("note: "),
        "{r:?}"
    );

    // A key the bridge would refuse is refused here, before anything is sent.
    for bad in ["a/b".to_owned(), "k".repeat(129)] {
        let mut args = elicit(&[]);
        args.extend(["--idempotency-key".to_owned(), bad]);
        let r = run(via(&failing, &args)).await;
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("1 to 128 of [A-Za-z0-9_.:-]"), "{r:?}");
    }

    // The other writes that are not idempotent.
    let r = lh(
        &alice,
        &["--bridge", &failing, "send", "--to", "bob", "--body", "{}"],
    )
    .await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr
            .contains("note: the message may or may not have been delivered"),
        "{r:?}"
    );
    let r = lh(
        &alice,
        &["--bridge", &failing, "respond", "el_1", "--decline"],
    )
    .await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("`lighthouse get el_1`"), "{r:?}");
    let r = lh(&alice, &["--bridge", &failing, "cancel", "el_1"]).await;
    assert_eq!(r.code, 3, "{r:?}");
    let r = lh(
        &ops,
        &["--bridge", &failing, "flags", "kill", "k", "--reason", "r"],
    )
    .await;
    assert_eq!(r.code, 3, "{r:?}");
    // A read answered 502 changed nothing: a refusal, exit 1, no note.
    let r = lh(&alice, &["--bridge", &failing, "me"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!r.stderr.contains("note:"), "{r:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chain_exits_1_even_when_stdout_is_closed() {
    let env = Env::start().await;
    let (failing, server) = failing_bridge().await;
    let ops = env.agent("ops", Role::Operator).await;
    let r = lh(&ops, &["--bridge", &failing, "ops", "verify"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.starts_with("BROKEN: the chain fails at seq 8"),
        "{r:?}"
    );
    // `lighthouse ops verify | head -c0`: the reader is gone before the
    // verdict is printed.
    for json in [false, true] {
        let mut args = vec!["--bridge", &failing, "ops", "verify"];
        if json {
            args.insert(0, "--json");
        }
        let mut child = command(Some(&ops), &args).spawn().unwrap();
        drop(child.stdout.take());
        let r = tokio::task::spawn_blocking(move || finish(child))
            .await
            .unwrap();
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("broken at seq 8"), "{r:?}");
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_other_agents_cannot_drive_the_terminal() {
    let env = Env::start().await;
    let ops = env.agent("ops", Role::Operator).await;
    let mallory = env.agent("mallory", Role::Agent).await;
    let bob = env.agent("bob", Role::Agent).await;
    // Clear the screen, then write the clipboard (OSC 52, ended by BEL).
    let hostile = "\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}";
    let clean = |r: &Run| {
        assert!(
            !r.stdout.contains(['\u{1b}', '\u{7}']) && !r.stderr.contains(['\u{1b}', '\u{7}']),
            "{r:?}"
        );
    };
    let r = lh(
        &ops,
        &[
            "flags",
            "set",
            "elicitation_enabled",
            "--enabled",
            "true",
            "--rollout",
            "100",
            "--description",
            hostile,
            "--reason",
            hostile,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    clean(&r);
    assert!(
        r.stdout.contains(r"description: \u{1b}[2J\u{1b}]52;c;"),
        "{r:?}"
    );
    let r = lh(&ops, &["flags", "history", "elicitation_enabled"]).await;
    clean(&r);
    assert!(r.stdout.contains(r"\u{7}"), "{r:?}");

    let schema = schema();
    let r = lh(
        &mallory,
        &[
            "--json",
            "elicit",
            "--to",
            "bob",
            "--message",
            hostile,
            "--schema",
            &schema,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    for args in [vec!["inbox"], vec!["get", &id]] {
        let r = lh(&bob, &args).await;
        assert_eq!(r.code, 0, "{r:?}");
        clean(&r);
        assert!(r.stdout.contains(r"\u{1b}[2J"), "{r:?}");
    }
    let r = lh(&bob, &["respond", &id, "--decline", "--reason", hostile]).await;
    clean(&r);
    assert!(r.stdout.contains(r"reason:   \u{1b}[2J"), "{r:?}");
    // --json output is the body as it came (JSON escapes C0 itself).
    let r = lh(&bob, &["--json", "get", &id]).await;
    assert_eq!(r.json()["message"], json!(hostile));
    // A refusal's detail and field messages reach stderr escaped too: the
    // bridge names the unknown agent in its detail.
    let r = lh(&mallory, &["send", "--to", "nobody", "--body", "{}"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    clean(&r);
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_managed_while_the_bridge_runs() {
    let env = Env::start().await;
    let root = env.agent("root", Role::Admin).await;
    let dir = env.dir.path();
    let bob1 = dir.join("bob-1.json");

    let r = lh(
        &root,
        &[
            "agents",
            "add",
            "bob",
            "--role",
            "agent",
            "--out",
            bob1.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout.trim(),
        format!(
            "registered bob (agent, key 1); credential written to {} (bridge {})",
            bob1.display(),
            env.url
        )
    );
    assert_eq!(mode(&bob1), 0o600);
    let secret = std::fs::read_to_string(&bob1).unwrap();
    let secret: Value = serde_json::from_str(&secret).unwrap();
    let secret = secret["secret"].as_str().unwrap().to_owned();
    assert!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret));
    let r = lh(&bob1, &["me"]).await;
    assert_eq!(
        (r.code, r.stdout.trim()),
        (0, "bob (agent, key 1)"),
        "{r:?}"
    );

    // An existing file is never overwritten, and nothing is sent.
    let r = lh(
        &root,
        &[
            "agents",
            "add",
            "carol",
            "--role",
            "agent",
            "--out",
            bob1.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("already exists"), "{r:?}");
    assert_eq!(lh(&bob1, &["me"]).await.code, 0);
    // Bad input is refused before anything is sent.
    assert_eq!(
        lh(&root, &["agents", "add", "x", "--role", "root"])
            .await
            .code,
        2
    );
    assert_eq!(
        lh(&root, &["agents", "add", "../x", "--role", "agent"])
            .await
            .code,
        2
    );

    // The default file is ./ID.json; --json prints no secret either.
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    let mut add = command(
        Some(&root),
        &["--json", "agents", "add", "dave", "--role", "observer"],
    );
    add.current_dir(&work);
    let r = finish(add.spawn().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    let dave = work.join("dave.json");
    assert_eq!(
        r.json(),
        json!({"agent": "dave", "role": "observer", "key_id": 1, "bridge": env.url,
               "file": "./dave.json"})
    );
    assert_eq!(mode(&dave), 0o600);

    let bob2 = dir.join("bob-2.json");
    let r = lh(
        &root,
        &["agents", "rotate", "bob", "--out", bob2.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("rotated bob (agent, key 2)"), "{r:?}");
    assert_eq!(mode(&bob2), 0o600);
    let r = lh(&bob2, &["me"]).await;
    assert_eq!(r.stdout.trim(), "bob (agent, key 2)", "{r:?}");
    // The previous key works for the grace period.
    assert_eq!(lh(&bob1, &["me"]).await.code, 0);

    let r = lh(&root, &["agents", "list"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["ID", "ROLE", "KEY", "STATUS"], "{r:?}");
    assert!(rows.contains(&vec!["bob", "agent", "2", "active"]), "{r:?}");
    assert!(
        rows.contains(&vec!["dave", "observer", "1", "active"]),
        "{r:?}"
    );
    assert!(!r.stdout.contains("carol"), "{r:?}");

    let r = lh(&root, &["agents", "revoke", "bob"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("revoked bob: "), "{r:?}");
    // Both keys are refused at once, and the refusal says what may be wrong.
    for cred in [&bob1, &bob2] {
        let r = lh(cred, &["me"]).await;
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("bad_signature (401)"), "{r:?}");
        let note = r
            .stderr
            .lines()
            .find(|l| l.starts_with("note: "))
            .unwrap_or_else(|| panic!("{r:?}"));
        assert!(
            note.contains("revoked") && note.contains("lighthouse agents list"),
            "{r:?}"
        );
    }
    let agents = lh(&root, &["--json", "agents", "list"]).await.json();
    let bob = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(bob["revoked"], json!(true));
    let r = lh(&root, &["agents", "revoke", "bob"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not_found") && r.stderr.contains("revoked already"),
        "{r:?}"
    );

    // A failed registration leaves no empty credential file behind.
    let again = dir.join("bob-again.json");
    let r = lh(
        &root,
        &[
            "agents",
            "add",
            "bob",
            "--role",
            "agent",
            "--out",
            again.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!again.exists());
    // Agents are managed by admins only.
    let r = lh(&dave, &["agents", "list"]).await;
    assert!(r.code == 1 && r.stderr.contains("forbidden (403)"), "{r:?}");
}
