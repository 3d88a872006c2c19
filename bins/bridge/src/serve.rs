//! `serve`, `init`: open the bridge on a data directory and run the HTTP server
//! until SIGTERM or Ctrl-C, then shut down in order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lighthouse_core::ELICITATION_FLAG;
use lighthouse_core::setup::{ADMIN_AGENT, initialize};
use lighthouse_core::{Bridge, BridgeConfig};
use lighthouse_event_store::{Durability, EventStore};
use lighthouse_security::{MASTER_KEY_ENV, MasterKey};

use crate::config::ServeConfig;
use crate::{Failure, say};

/// `<data>/master.key`.
pub fn master_key_path(data: &Path) -> PathBuf {
    data.join("master.key")
}

/// `<data>/credentials`.
pub fn credentials_dir(data: &Path) -> PathBuf {
    data.join("credentials")
}

/// `<data>/store`.
pub fn store_dir(data: &Path) -> PathBuf {
    data.join("store")
}

/// The answer when the store of `data` is locked by another process (sled's
/// "could not acquire lock"): which process it likely is and what to do
/// instead, rather than sled's raw error.
pub fn in_use(data: &Path, why: &impl std::fmt::Display) -> Option<Failure> {
    let why = why.to_string();
    why.contains("could not acquire lock").then(|| {
        Failure::error(format!(
            "{} is in use by another process (a running lighthouse-bridge holds its store; \
             only one process may open it). Stop it first, or while it runs use the HTTP \
             API: `lighthouse agents list|add|rotate|revoke` (an admin credential) or \
             POST /v1/agents, and POST /v1/ops/verify to check the chain; a backup needs \
             the bridge stopped",
            data.display()
        ))
    })
}

/// `<data>/public-url`: the URL credentials name, as `init` was given it, so
/// that `agents add` and `rotate` (and a `serve` without one) name the same
/// bridge. Delete it to go back to the defaults.
pub fn public_url_path(data: &Path) -> PathBuf {
    data.join("public-url")
}

/// The remembered `public_url` of `data`, if there is a valid one.
pub fn remembered_public_url(data: &Path) -> Option<String> {
    let text = std::fs::read_to_string(public_url_path(data)).ok()?;
    let url = text.trim();
    crate::config::check_public_url(url)
        .ok()
        .map(|()| url.to_owned())
}

/// Remembers `url` for `data` (written whole or not at all).
pub fn remember_public_url(data: &Path, url: &str) -> std::io::Result<()> {
    if remembered_public_url(data).as_deref() == Some(url) {
        return Ok(());
    }
    let path = public_url_path(data);
    let partial = data.join(".public-url.partial");
    let written = std::fs::write(&partial, format!("{url}\n"))
        .and_then(|()| std::fs::File::open(&partial)?.sync_all())
        .and_then(|()| std::fs::rename(&partial, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    std::fs::File::open(data)?.sync_all()
}

/// Refuses a data directory that holds no store. Only `init` and `serve --dev`
/// create one: any other command opening a missing or mistyped `--data` would
/// otherwise create an empty store there (and, with `LIGHTHOUSE_MASTER_KEY`
/// set, key it), which a later `store backup` would copy over a good backup.
pub fn require_store(data: &Path) -> Result<(), Failure> {
    if EventStore::exists(store_dir(data)) {
        return Ok(());
    }
    Err(Failure::input(format!(
        "{} holds no Lighthouse store ({} does not exist): check --data \
         (LIGHTHOUSE_DATA_DIR), or create one with `lighthouse-bridge init --data {}`",
        data.display(),
        store_dir(data).display(),
        data.display()
    )))
}

/// The master key: `LIGHTHOUSE_MASTER_KEY` (hex) when set, else the key file.
/// Returns the key and whether its file was created now.
///
/// With `create`, a missing key file is created (mode 0600), but only while
/// `data` holds no store: a store is keyed with the key it was created with
/// (perhaps from `LIGHTHOUSE_MASTER_KEY`, which leaves no file), and a new key
/// would only be left behind when it refuses to open.
pub fn load_master_key(data: &Path, create: bool) -> Result<(MasterKey, bool), Failure> {
    if let Some(k) =
        MasterKey::from_env(MASTER_KEY_ENV).map_err(|e| Failure::input(e.to_string()))?
    {
        return Ok((k, false));
    }
    let path = master_key_path(data);
    let has_store = EventStore::exists(store_dir(data));
    if path.exists() {
        Ok((
            MasterKey::load_file(&path).map_err(|e| Failure::error(e.to_string()))?,
            false,
        ))
    } else if create && !has_store {
        lighthouse_event_store::create_private_dir(data)
            .map_err(|e| Failure::error(format!("cannot create {}: {e}", data.display())))?;
        MasterKey::load_or_create(&path).map_err(|e| Failure::error(e.to_string()))
    } else if has_store {
        Err(Failure::input(format!(
            "{} holds a store but no master key ({} does not exist and {MASTER_KEY_ENV} \
             is not set); the store opens only with the key it was created with: set \
             {MASTER_KEY_ENV} to it (a store created with that variable has no key file), \
             or copy its original master.key to {}",
            data.display(),
            path.display(),
            path.display()
        )))
    } else {
        Err(missing_key(data))
    }
}

/// No key file and no `LIGHTHOUSE_MASTER_KEY`. Running `init` is the answer
/// only for a new bridge: a store or backup made elsewhere opens only with
/// its original key, and a new one would make the restore fail.
fn missing_key(data: &Path) -> Failure {
    let path = master_key_path(data);
    Failure::input(format!(
        "{} has no master key ({} does not exist and {MASTER_KEY_ENV} is not set). \
         To restore a backup (or move a store) made elsewhere, copy its original master.key \
         to {} or set {MASTER_KEY_ENV} to it: nothing else opens it. For a brand-new \
         bridge, run `lighthouse-bridge init --data {}` (or `serve --dev`)",
        data.display(),
        path.display(),
        path.display(),
        data.display()
    ))
}

/// Opens the bridge on `data` with `key`, creating `data` (mode 0700) when
/// it does not exist.
pub async fn open(data: &Path, key: MasterKey, c: Option<&ServeConfig>) -> Result<Bridge, Failure> {
    // Bridge::open creates it the same way; here a failure is named for the
    // operator (with the key from LIGHTHOUSE_MASTER_KEY no key file has
    // created it yet).
    lighthouse_event_store::create_private_dir(data)
        .map_err(|e| Failure::error(format!("cannot create {}: {e}", data.display())))?;
    crate::descriptors::fit_store(&store_dir(data));
    let mut config = BridgeConfig::new(data, key);
    if let Some(c) = c {
        config.public_url = c.public_url();
        config.security.window_s = c.window_s;
        config.security.rate.limits = c.rate_limits().map_err(Failure::error)?;
        config.flags = c.flags.limits();
        if c.durability == "buffered" {
            config.durability = Durability::Buffered;
        }
    }
    Bridge::open(config).await.map_err(|e| match &e {
        lighthouse_core::OpenError::Store(lighthouse_event_store::Error::Storage(why)) => {
            in_use(data, why).unwrap_or_else(|| {
                Failure::error(format!(
                    "{e}\n(is another lighthouse-bridge using {}? only one process may open a data directory)",
                    data.display()
                ))
            })
        }
        lighthouse_core::OpenError::Store(lighthouse_event_store::Error::Io(_)) => {
            Failure::error(format!("{}: {e}", store_dir(data).display()))
        }
        _ => Failure::error(e.to_string()),
    })
}

/// `init`: creates the data directory, master key, admin credential and the
/// `elicitation_enabled` flag. Refuses an initialised directory (the admin
/// registered and the flag created); resumes one an earlier `init` left half
/// done (a full disk, a read-only credentials folder, an interrupt), writing
/// the admin credential anew (a rotation) if it was registered but never
/// written.
///
/// A `public_url` given (flag or `LIGHTHOUSE_PUBLIC_URL`) is remembered in
/// `<data>/public-url` once the directory is known not to be initialised
/// already; without one the credentials name the default URL and nothing is
/// remembered (a `serve` then names its listen address, as before).
pub async fn init(data: &Path, public_url: Option<String>) -> Result<(), Failure> {
    let from_env = std::env::var_os(MASTER_KEY_ENV).is_some();
    let (key, _) = load_master_key(data, true)?;
    let c = ServeConfig {
        public_url: Some(
            public_url
                .clone()
                .unwrap_or_else(|| crate::DEFAULT_PUBLIC_URL.to_owned()),
        ),
        ..Default::default()
    };
    let bridge = open(data, key, Some(&c)).await?;
    let close = |bridge: Bridge| async move {
        bridge
            .shutdown()
            .await
            .map_err(|p| Failure::error(p.to_string()))
    };
    let admin_registered = bridge.gate().registry().get(ADMIN_AGENT).is_some();
    if admin_registered && bridge.flags().get(ELICITATION_FLAG).is_some() {
        close(bridge).await?;
        return Err(Failure::input(format!(
            "{} is already initialised (to add an administrator, stop the bridge and run \
             `lighthouse-bridge agents add ID --role admin --data {}`)",
            data.display(),
            data.display()
        )));
    }
    if let Some(url) = &public_url
        && let Err(e) = remember_public_url(data, url)
    {
        close(bridge).await?;
        return Err(Failure::error(format!(
            "cannot write {}: {e}; run init again once it can be written",
            public_url_path(data).display()
        )));
    }
    let creds = credentials_dir(data);
    let admin_file = creds.join(format!("{ADMIN_AGENT}.json"));
    let mut resumed = None;
    // Before `initialize` creates the flag: the flag marks the directory as
    // initialised, so it must come after the admin's credential is written,
    // or a second failed write would leave no way to write it.
    if admin_registered && !admin_file.is_file() {
        // Registered by the interrupted run, its credential never written:
        // nobody holds that key, so a new one replaces it.
        let mut cred = bridge
            .rotate_agent(&crate::admin::local_admin(), ADMIN_AGENT)
            .await
            .map_err(|p| Failure::error(p.to_string()))?;
        cred.bridge = bridge.public_url().to_owned();
        std::fs::create_dir_all(&creds)
            .and_then(|()| cred.write(&admin_file).map_err(std::io::Error::other))
            .map_err(|e| {
                Failure::error(format!(
                    "cannot write {}: {e}; run init again once it can be written",
                    admin_file.display()
                ))
            })?;
        resumed = Some(admin_file);
    }
    let mut report = initialize(&bridge, &creds, false)
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    report.written.extend(resumed);
    close(bridge).await?;
    say(format!("initialised {}", data.display()))?;
    if from_env {
        say(format!(
            "  master key: from {MASTER_KEY_ENV} (not written to disk; the store is keyed with it, \
             so every later start needs the same value)"
        ))?;
    } else {
        say(format!(
            "  master key: {} (mode 0600; keep it secret)",
            master_key_path(data).display()
        ))?;
    }
    for p in report.written {
        say(format!("  credential: {}", p.display()))?;
    }
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the start of `serve` to its
/// end, so a second signal during the shutdown is seen (a listener made after
/// the first one could miss a signal sent in between).
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers. A signal that cannot be listened for is left to
    /// its default action (the process ends), logged.
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind)
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for {name}"))
                    .ok()
            };
            StopSignals {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// The next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                // `None` from `recv` only if the signal driver is gone, which
                // ends the runtime too: then wait for the other signal.
                if let Some(s) = s
                    && s.recv().await.is_some()
                {
                    return;
                }
                std::future::pending::<()>().await;
            }
            tokio::select! {
                () = next(&mut self.interrupt) => {},
                () = next(&mut self.terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A line on standard output that the server does not depend on: when nobody
/// reads it any more (a closed pipe), the bridge goes on serving.
fn note(text: String) {
    let _ = say(text);
}

/// Whether any development agent was ever registered here (revoked ones
/// count: the directory was a development one).
fn has_dev_agents(bridge: &Bridge) -> bool {
    let registry = bridge.gate().registry();
    lighthouse_core::setup::DEV_AGENTS
        .iter()
        .any(|(agent, _)| registry.get(agent).is_some())
}

/// A stop signal this soon after the first is the same request delivered twice,
/// not an operator asking again.
const SAME_SIGNAL: Duration = Duration::from_millis(500);

/// `serve`: runs until SIGTERM or Ctrl-C. On the signal readiness turns 503,
/// the listener stops accepting, streams get a final `shutdown` event, in-flight
/// requests get `shutdown_grace_ms` to finish, the elicitation snapshot is
/// saved and the store flushed; then the process exits 0. A second signal
/// during the grace (from [`SAME_SIGNAL`] after the first) cuts it short (the
/// open connections are closed) but not the snapshot and flush.
///
/// Without `dev` the data directory must hold a store already
/// ([`require_store`]). Its lines on standard output are informational: a
/// closed standard output does not stop it (the log goes to standard error).
pub async fn serve(mut c: ServeConfig, dev: bool) -> Result<(), Failure> {
    // Fresh when there is no store yet, wherever the key comes from (with
    // `LIGHTHOUSE_MASTER_KEY` no key file is created, which used to make an
    // empty directory look initialised).
    let fresh = !EventStore::exists(store_dir(&c.data_dir));
    if !dev {
        require_store(&c.data_dir)?;
    }
    // Credentials issued over HTTP name the URL `init` was given unless this
    // start configures one (else the listen address).
    let url_source = if c.public_url.is_some() {
        "configured"
    } else if let Some(url) = remembered_public_url(&c.data_dir) {
        c.public_url = Some(url);
        "remembered in <data>/public-url by init"
    } else {
        "the listen address"
    };
    // Before the store opens its files: the limit is raised for them too.
    let segments = crate::descriptors::store_files(&store_dir(&c.data_dir));
    let max_connections =
        crate::descriptors::fit_connections(c.max_connections, segments).map_err(Failure::error)?;
    let (key, created) = load_master_key(&c.data_dir, dev)?;
    let bridge = open(&c.data_dir, key, Some(&c)).await?;
    tracing::info!(public_url = %c.public_url(), source = url_source, "credentials issued name this URL");
    if dev && !fresh && !has_dev_agents(&bridge) {
        // Bad input (--dev on a production directory), not a failure.
        return Err(Failure::input(format!(
            "{} was initialised without --dev; --dev would add the development agents \
             (alice, bob, carol, ops) to it. Serve it without --dev, or use a fresh \
             --data directory for development",
            c.data_dir.display()
        )));
    }
    if dev {
        let report = initialize(&bridge, &credentials_dir(&c.data_dir), true)
            .await
            .map_err(|p| Failure::error(p.to_string()))?;
        if created {
            note(format!(
                "created master key {}",
                master_key_path(&c.data_dir).display()
            ));
        }
        note(format!(
            "development credentials (alice, bob, carol: agent; ops: operator; admin: admin) are in {}",
            credentials_dir(&c.data_dir).display()
        ));
        for p in report.written {
            note(format!("  wrote {}", p.display()));
        }
    }
    let listener = crate::listener::bind(&c.listen, c.listen_backlog)
        .map_err(|e| Failure::error(format!("cannot listen on {}: {e}", c.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::error(e.to_string()))?;
    let mcp_config = lighthouse_mcp::McpConfig {
        allowed_origins: c.mcp_allowed_origins.clone(),
        body_read_timeout: Duration::from_millis(c.body_read_timeout_ms),
        ..lighthouse_mcp::McpConfig::default()
    };
    let (mcp, mcp_streams) = lighthouse_mcp::router_with_shutdown(bridge.clone(), mcp_config);
    let http_config = lighthouse_http::HttpConfig {
        body_read_timeout: Duration::from_millis(c.body_read_timeout_ms),
        stream_stall_timeout: Duration::from_millis(c.write_stall_timeout_ms),
        ..lighthouse_http::HttpConfig::default()
    };
    let limits = crate::server::Limits {
        header_read: Duration::from_millis(c.header_read_timeout_ms),
        http2_keep_alive: Duration::from_secs(20),
        http1_max_head_bytes: c.http1_max_head_bytes,
        http1_max_headers: c.http1_max_headers,
        http2_max_concurrent_streams: c.http2_max_concurrent_streams,
        http2_max_header_list_bytes: c.http2_max_header_list_bytes,
        http2_stream_window_bytes: c.http2_stream_window_bytes,
        http2_connection_window_bytes: c.http2_connection_window_bytes,
        http2_send_buffer_bytes: c.http2_send_buffer_bytes,
    };
    // /mcp inside the REST router's request ids, logs and per-route metrics.
    let (router, streams) = lighthouse_http::router_with(bridge.clone(), http_config, mcp);
    note(format!(
        "lighthouse-bridge listening on http://{addr} (data {})",
        c.data_dir.display()
    ));
    tracing::info!(%addr, "listening");
    let mut signals = StopSignals::install();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // No Nagle delay on accepted connections (SSE pushes and small responses go
    // out at once), and at most `max_connections` of them open (fewer when
    // the open-file limit cannot hold them: `descriptors`).
    let listener = crate::listener::Bounded::new(
        listener,
        max_connections,
        c.max_connections_per_peer,
        crate::listener::WriteStall {
            within: Duration::from_millis(c.write_stall_timeout_ms),
            min_bytes: c.write_stall_min_bytes,
        },
    );
    let mut server = tokio::spawn(crate::server::serve(listener, router, limits, async {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        () = signals.recv() => {}
        r = &mut server => {
            return match r {
                Ok(()) => Ok(()),
                Err(e) => Err(Failure::error(format!("server task failed: {e}"))),
            };
        }
    }
    tracing::info!(
        grace_ms = c.shutdown_grace_ms,
        "shutting down: requests in flight get up to the grace period to finish; a second \
         stop signal ends them at once"
    );
    let first_signal = tokio::time::Instant::now();
    bridge.begin_shutdown();
    streams.trigger();
    mcp_streams.trigger();
    let _ = stop_tx.send(());
    let grace = Duration::from_millis(c.shutdown_grace_ms);
    tokio::select! {
        finished = tokio::time::timeout(grace, &mut server) => {
            if finished.is_err() {
                tracing::warn!(
                    grace_ms = c.shutdown_grace_ms,
                    "in-flight requests did not finish in time; closing their connections"
                );
                server.abort();
            }
        }
        () = async {
            // One Ctrl-C can arrive twice (a wrapper that forwards SIGINT to
            // the process group the terminal signalled too): a signal within
            // SAME_SIGNAL of the first is taken as the same one.
            loop {
                signals.recv().await;
                if first_signal.elapsed() >= SAME_SIGNAL {
                    break;
                }
                tracing::debug!("a stop signal right after the first: taken as the same one");
            }
        } => {
            // An operator who asks twice wants the process gone now, but the
            // snapshot and flush below still run: they are what makes the
            // next start fast and keeps what was acknowledged.
            tracing::warn!(
                "second stop signal: closing in-flight connections without waiting for the \
                 grace; saving the snapshot and flushing the store before exiting"
            );
            server.abort();
        }
    }
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    tracing::info!("stopped");
    Ok(())
}
