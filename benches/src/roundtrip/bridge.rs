//! The bridge under test: a `lighthouse-bridge serve` child process on loopback
//! with the durable store (its agents registered in the data directory before it
//! starts), or an external bridge reached by URL whose agents are registered
//! through the admin API.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lighthouse_core::setup::{ADMIN_AGENT, initialize};
use lighthouse_core::{Bridge, BridgeConfig};
use lighthouse_security::{Credential, MasterKey, Role};
use reqwest::Method;

use super::client::{Agent, Http};

/// How long a spawned bridge may take to print its address, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `lighthouse-bridge serve`; stopped with SIGTERM (then SIGKILL) on
/// drop.
pub struct BridgeProcess {
    child: Child,
    pub pid: u32,
    pub base: String,
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: kill(2) on the pid of our own unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lighthouse-bridge` next to this executable (both are built into
/// `target/release`), unless `explicit` names one.
pub fn bridge_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bin = me
        .parent()
        .ok_or("current_exe has no parent")?
        .join("lighthouse-bridge");
    if !bin.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p lighthouse-bridge -p lighthouse-benches`, or pass --bridge-bin",
            bin.display()
        ));
    }
    Ok(bin)
}

/// Creates the data directory `dir` (master key, admin, the
/// `elicitation_enabled` flag) and registers `agents` (role `agent`) in
/// process, before any server runs, so that setting up thousands of agents is
/// not paced by the admin rate limit. Returns their credentials.
pub fn prepare_data(dir: &Path, agents: &[String]) -> Result<Vec<Credential>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let creds = rt.block_on(async {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (key, _) =
            MasterKey::load_or_create(dir.join("master.key")).map_err(|e| e.to_string())?;
        let bridge = Bridge::open(BridgeConfig::new(dir, key))
            .await
            .map_err(|e| e.to_string())?;
        initialize(&bridge, &dir.join("credentials"), false)
            .await
            .map_err(|p| p.to_string())?;
        let registry = bridge.gate().registry();
        let mut creds = Vec::with_capacity(agents.len());
        for id in agents {
            let cred = match registry.credential(id) {
                Ok(c) => c,
                Err(_) => registry
                    .register(id, Role::Agent, Some(ADMIN_AGENT))
                    .await
                    .map_err(|e| format!("register {id}: {e}"))?,
            };
            creds.push(cred);
        }
        bridge.shutdown().await.map_err(|p| p.to_string())?;
        Ok::<_, String>(creds)
    })?;
    // Dropping the runtime ends the bridge's background tasks, so the store is
    // closed (and its lock released) before the server process opens it.
    drop(rt);
    Ok(creds)
}

/// Starts `bin serve --data dir --listen 127.0.0.1:0` with `RUST_LOG=log`
/// (and `TOKIO_WORKER_THREADS=workers` when given, for the bridge alone), its
/// log going to `dir/../bridge.log`, and waits for the address it prints.
pub fn spawn(
    bin: &Path,
    dir: &Path,
    log: &str,
    workers: Option<usize>,
) -> Result<BridgeProcess, String> {
    let log_path = dir.with_file_name("bridge.log");
    let log_file =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = Command::new(bin);
    // SAFETY: prctl(2) is async-signal-safe; it asks the kernel to send the
    // child SIGTERM should the bench die first (including by SIGKILL), so no
    // bridge outlives it. The spawning thread is the main thread, which lives
    // as long as the bench.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    if let Some(n) = workers {
        cmd.env("TOKIO_WORKER_THREADS", n.max(1).to_string());
    }
    // Every simulated agent connects from 127.0.0.1, so the bridge's
    // per-address cap (256 by default) would refuse most of them; one set in
    // the environment is kept.
    if std::env::var_os("LIGHTHOUSE_MAX_CONNECTIONS_PER_PEER").is_none() {
        cmd.env("LIGHTHOUSE_MAX_CONNECTIONS_PER_PEER", "1000000");
    }
    let mut child = cmd
        .arg("serve")
        .arg("--data")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", log)
        .env_remove("LIGHTHOUSE_MASTER_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    // Hand the child to the guard at once, so every failure below stops it.
    let mut process = BridgeProcess {
        child,
        pid,
        base: String::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                sent = tx.send(url).is_ok();
            }
        }
    });
    let url = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
        format!(
            "the bridge did not report its address within {START_TIMEOUT:?}; see {}",
            log_path.display()
        )
    })?;
    process.base = url;
    Ok(process)
}

/// Registers `ids` (role `agent`) through `POST /v1/agents` as `admin`,
/// waiting out `429 rate_limited` answers (admin writes are rate limited).
pub async fn register_remote(
    http: &Http,
    admin: &Agent,
    ids: &[String],
) -> Result<Vec<Credential>, String> {
    let mut creds = Vec::with_capacity(ids.len());
    for id in ids {
        loop {
            let body = serde_json::to_vec(&serde_json::json!({"id": id, "role": "agent"}))
                .map_err(|e| e.to_string())?;
            let resp = http
                .signed(admin, Method::POST, "/v1/agents", body)
                .send()
                .await
                .map_err(|e| format!("POST /v1/agents: {e}"))?;
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let text = resp.text().await.map_err(|e| e.to_string())?;
            match status {
                201 => {
                    creds.push(Credential::from_json(&text).map_err(|e| e.to_string())?);
                    break;
                }
                429 => tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await,
                _ => return Err(format!("POST /v1/agents {id}: {status} {text}")),
            }
        }
    }
    Ok(creds)
}

/// A value from `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A sample's value from Prometheus text (`name` with no labels).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn metric_values_are_found_by_exact_name() {
        let text =
            "# HELP x\nprocess_resident_memory_bytes_x 1\nprocess_resident_memory_bytes 4096\n";
        assert_eq!(metric(text, "process_resident_memory_bytes"), Some(4096.0));
        assert_eq!(metric(text, "absent"), None);
    }
}
