//! The bridge binary as a child process, for the tests that run it.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bridge child process; killed and reaped when dropped, so no test path
/// leaves a process behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(data: &std::path::Path, port: u16) -> Proc {
    spawn_with(data, port, &[])
}

/// [`spawn`] with extra environment variables (configuration).
pub fn spawn_with(data: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lighthouse-bridge"));
    clear_lighthouse_env(&mut c);
    let child = c
        .args([
            "serve",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

pub async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/health/ready")).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bridge did not become ready");
}

/// The bridge binary with `args`, none of the caller's `LIGHTHOUSE_*`
/// settings, and `env` added; logs at `warn` unless `env` says otherwise.
pub fn command<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lighthouse-bridge"));
    c.args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    clear_lighthouse_env(&mut c);
    c.envs(env.iter().copied());
    c
}

/// `Command::new(bin)` without the caller's `LIGHTHOUSE_*` variables.
#[allow(dead_code)]
pub fn bare(bin: &str) -> Command {
    let mut c = Command::new(bin);
    clear_lighthouse_env(&mut c);
    c
}

/// Removes every `LIGHTHOUSE_*` variable of the caller's environment from `c`:
/// a developer's exported settings must not change what a test sees.
pub fn clear_lighthouse_env(c: &mut Command) {
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("LIGHTHOUSE_") {
            c.env_remove(var);
        }
    }
}

/// Runs [`command`] to its end.
pub fn run<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    command(args, env).output().unwrap()
}

/// The exit code, standard output and standard error of a run.
pub fn outcome(o: &Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
