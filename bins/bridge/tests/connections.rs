//! Connections that never finish a request are closed: a request head that
//! trickles in, an idle keep-alive connection, a body that never completes.
//! Each would otherwise hold one of `max_connections` slots for ever.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, spawn_with, wait_ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the bridge closes the connection or `limit` passes; returns
/// what was read and how long the connection lasted.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((
                    String::from_utf8_lossy(&got).into_owned(),
                    started.elapsed(),
                ));
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_heads_idle_connections_and_stalled_bodies_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _child = spawn_with(
        &dir.path().join("data"),
        port,
        &[
            ("LIGHTHOUSE_HEADER_READ_TIMEOUT_MS", "400"),
            ("LIGHTHOUSE_BODY_READ_TIMEOUT_MS", "400"),
        ],
    );
    wait_ready(&format!("http://{addr}")).await;
    let limit = Duration::from_secs(10);

    // A request head that never ends.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, lasted) = read_until_closed(&mut slow, limit)
        .await
        .expect("a never-ending head is cut off");
    assert!(lasted >= Duration::from_millis(300), "{lasted:?}");

    // A connection that says nothing at all.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    assert!(read_until_closed(&mut idle, limit).await.is_some());

    // An HTTP/2 preface that never ends (the version sniffing has a deadline too).
    let mut preface = TcpStream::connect(&addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2").await.unwrap();
    assert!(read_until_closed(&mut preface, limit).await.is_some());

    // Keep-alive: a finished request, then silence.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_until_closed(&mut kept, limit)
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // A body that stops half way is refused, not waited for.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"to\":")
        .await
        .unwrap();
    let (text, _) = read_until_closed(&mut stalled, limit)
        .await
        .expect("a stalled body is answered and the connection closed");
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive within 400 ms"), "{text}");

    // The bridge still serves.
    let r = reqwest::get(format!("http://{addr}/health/live"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn serve_dev_refuses_a_directory_initialised_for_production() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_lighthouse-bridge");
    let init = common::bare(bin)
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let serve = common::bare(bin)
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2), "bad input");
    let err = String::from_utf8_lossy(&serve.stderr);
    assert!(err.contains("initialised without --dev"), "{err}");
    assert!(
        !data.join("credentials").join("alice.json").exists(),
        "no development credential was written"
    );
}

#[tokio::test]
async fn a_connection_that_never_speaks_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = common::spawn(&dir.path().join("data"), port);
    wait_ready(&format!("http://{addr}")).await;
    let _silent = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    // SAFETY: sends SIGTERM to our own child process.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The shutdown grace is 10 s and the header timeout 30 s; a clean stop
    // takes well under a second.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for a silent connection",
        started.elapsed()
    );
}

/// `init` interrupted after registering the admin but before its credential
/// was written (here: a directory in the way of `admin.json`) is resumed by
/// the next `init`, which issues the admin a new key and writes it; an
/// initialised directory is still refused. A rotation into a folder that does
/// not exist yet creates it, and one that cannot be written is refused before
/// anything is saved.
#[test]
fn init_resumes_what_an_interrupted_init_left_and_credentials_are_written_or_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_lighthouse-bridge");
    let run = |args: &[&str]| {
        common::bare(bin)
            .args(args)
            .arg("--data")
            .arg(&data)
            .env("RUST_LOG", "warn")
            .env_remove("LIGHTHOUSE_MASTER_KEY")
            .output()
            .unwrap()
    };
    let agents = |args: &[&str]| {
        common::bare(bin)
            .args(["agents", "--data"])
            .arg(&data)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("LIGHTHOUSE_MASTER_KEY")
            .output()
            .unwrap()
    };
    let admin_file = data.join("credentials").join("admin.json");
    std::fs::create_dir_all(admin_file.join("in-the-way")).unwrap();
    let first = run(&["init"]);
    assert!(!first.status.success(), "{first:?}");
    // Twice in a row: the resumed run must not mark the directory initialised
    // before the credential is written.
    let still = run(&["init"]);
    assert!(!still.status.success(), "{still:?}");
    let said = String::from_utf8_lossy(&still.stderr);
    assert!(said.contains("cannot write"), "{said}");
    assert!(!said.contains("already initialised"), "{said}");
    std::fs::remove_dir_all(&admin_file).unwrap();
    let second = run(&["init"]);
    assert!(second.status.success(), "{second:?}");
    assert!(admin_file.is_file());
    let again = run(&["init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialised"));
    // The written admin credential works: it can add an agent.
    let added = agents(&["add", "bot"]);
    assert!(added.status.success(), "{added:?}");
    // Rotating into a folder that does not exist creates it.
    let out = dir.path().join("new").join("bot.json");
    let rotated = common::bare(bin)
        .args(["agents", "--data"])
        .arg(&data)
        .args(["rotate", "bot", "--out"])
        .arg(&out)
        .env_remove("LIGHTHOUSE_MASTER_KEY")
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(out.is_file());
    // An output path under a regular file cannot be written: refused, nothing saved.
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, b"x").unwrap();
    let refused = common::bare(bin)
        .args(["agents", "--data"])
        .arg(&data)
        .args(["add", "bot2", "--out"])
        .arg(blocked.join("bot2.json"))
        .env_remove("LIGHTHOUSE_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let list = agents(&["list"]);
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("bot2"),
        "{list:?}"
    );
}

/// Whether the open-file hard limit is below 512 (or cannot be read): a hard
/// limit can only be lowered, so the tests that set one up cannot run there.
fn hard_open_file_limit_below_512() -> bool {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) };
    read != 0 || current.rlim_max < 512
}

/// Under an open-file limit that cannot hold `max_connections` (here a hard
/// limit of 512 against the default 16,384), `serve` holds fewer connections
/// open, keeping descriptors for the store, and says so; it used to accept
/// until descriptors ran out and the store's next segment rotation failed.
#[tokio::test]
async fn max_connections_is_lowered_to_fit_the_open_file_limit() {
    use std::io::Read;
    use std::os::unix::process::CommandExt;

    if hard_open_file_limit_below_512() {
        eprintln!("skipped: the open-file hard limit is below 512");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = common::command(
        &["serve", "--dev", "--listen", &addr, "--data"],
        &[("RUST_LOG", "warn")],
    );
    cmd.arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only setrlimit (async-signal-safe) runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: 512,
                rlim_max: 512,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = common::Proc(cmd.spawn().unwrap());
    let mut stderr = child.0.stderr.take().unwrap();
    wait_ready(&format!("http://{addr}")).await;
    // SAFETY: sends SIGTERM to our own child process.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    assert!(child.0.wait().unwrap().success());
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(
        log.contains("max_connections is 16384")
            && log.contains("open-file limit (RLIMIT_NOFILE) is 512")
            && log.contains("holding at most 256 connections")
            && log.contains("ulimit -n 16640"),
        "{log}"
    );
}

/// The offline commands open every segment file of the store too: they raise
/// a low soft open-file limit toward what the store needs (under 1,024, a
/// store of some 50 GiB could not be opened for `store verify` or `agents`).
#[test]
fn offline_commands_raise_a_low_soft_open_file_limit_for_the_store() {
    use std::os::unix::process::CommandExt;

    if hard_open_file_limit_below_512() {
        eprintln!("skipped: the open-file hard limit is below 512");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, _, err) = common::outcome(&common::run(&["init", "--data", data], &[]));
    assert_eq!(code, Some(0), "{err}");
    let mut cmd = common::command(&["store", "stats", "--data", data], &[("RUST_LOG", "info")]);
    // SAFETY: only setrlimit (async-signal-safe) runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            r.rlim_cur = 64;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, _, err) = common::outcome(&cmd.output().unwrap());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("raised the open-file limit") && err.contains("from=64"),
        "{err}"
    );
}

/// A stop signal within 500 ms of the first is the same one delivered twice
/// (a wrapper forwarding Ctrl-C to a process group the terminal signalled
/// too): the grace goes on. One later is an operator asking again: the
/// in-flight requests' connections are closed at once and the process exits.
#[tokio::test]
async fn a_repeated_stop_signal_is_one_but_a_later_one_ends_the_grace() {
    use std::io::Read;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = common::command(
        &["serve", "--dev", "--listen", &addr, "--data"],
        &[
            ("LIGHTHOUSE_SHUTDOWN_GRACE_MS", "60000"),
            ("RUST_LOG", "info"),
        ],
    );
    cmd.arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = common::Proc(cmd.spawn().unwrap());
    let mut stderr = child.0.stderr.take().unwrap();
    wait_ready(&format!("http://{addr}")).await;
    // An in-flight request: its body never arrives (the read waits 30 s).
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"to\":",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let term = |pid: u32| {
        // SAFETY: sends SIGTERM to our own child process.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    };
    let pid = child.0.id();
    term(pid);
    tokio::time::sleep(Duration::from_millis(50)).await;
    term(pid);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the duplicate signal ended the grace"
    );
    let started = Instant::now();
    term(pid);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a second signal did not cut the 60 s grace short ({:?})",
        started.elapsed()
    );
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(
        log.contains("second stop signal") && log.contains("stopped"),
        "{log}"
    );
}
