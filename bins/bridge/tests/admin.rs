//! The administration commands run as a user runs them: `init`, `agents`,
//! `store`, `demo`, each through the binary, checking exit codes, what they
//! print and what they leave on disk.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use common::{command, outcome, run};
use lighthouse_security::{Credential, MasterKey};

/// A master key for `LIGHTHOUSE_MASTER_KEY` (not a secret: tests only).
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `init --data DIR` with `env`; panics unless it succeeds.
fn init(data: &Path, env: &[(&str, &str)]) {
    let o = run(&["init", "--data", s(data)], env);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
}

fn agent_ids(data: &Path) -> Vec<String> {
    let o = run(&["agents", "list", "--json", "--data", s(data)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn commands_other_than_init_refuse_a_directory_without_a_store_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("lighthouse-dta");
    let backup = dir.path().join("good.backup");
    std::fs::write(&backup, b"a previous good backup").unwrap();
    let env = [("LIGHTHOUSE_MASTER_KEY", KEY_HEX)];
    for args in [
        vec!["store", "verify"],
        vec!["store", "stats"],
        vec!["store", "backup", s(&backup)],
        vec!["agents", "list"],
        vec!["agents", "add", "alice"],
        vec!["agents", "rotate", "alice"],
        vec!["agents", "revoke", "alice"],
        vec!["serve", "--listen", "127.0.0.1:0"],
    ] {
        let mut args = args.clone();
        args.extend(["--data", s(&typo)]);
        let o = run(&args, &env);
        let (code, _, err) = outcome(&o);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains(s(&typo)) && err.contains("lighthouse-bridge init"),
            "{args:?}: {err}"
        );
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    assert_eq!(std::fs::read(&backup).unwrap(), b"a previous good backup");
}

#[test]
fn an_empty_store_is_backed_up_only_with_allow_empty() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = MasterKey::from_hex(KEY_HEX).unwrap();
    drop(
        lighthouse_event_store::EventStore::open(
            data.join("store"),
            lighthouse_event_store::StoreOptions::new(&key.store_key()),
        )
        .unwrap(),
    );
    let backup = dir.path().join("b.backup");
    std::fs::write(&backup, b"a previous good backup").unwrap();
    let env = [("LIGHTHOUSE_MASTER_KEY", KEY_HEX)];
    let o = run(&["store", "backup", s(&backup), "--data", s(&data)], &env);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--allow-empty"), "{err}");
    assert_eq!(std::fs::read(&backup).unwrap(), b"a previous good backup");
    let o = run(
        &[
            "store",
            "backup",
            s(&backup),
            "--allow-empty",
            "--data",
            s(&data),
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    assert!(std::fs::read(&backup).unwrap().starts_with(b"LHBACKUP"));
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_backup_that_cannot_be_written_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, &[]);
    let nowhere = dir.path().join("missing-folder").join("b.backup");
    let o = run(&["store", "backup", s(&nowhere), "--data", s(&data)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains(s(&nowhere)), "{err}");
    let o = run(&["store", "backup", s(dir.path()), "--data", s(&data)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("directory"), "{err}");
}

/// The data directory holds the master key, the whole log and credentials:
/// `init` makes it and the store readable by their owner only, whatever the
/// umask, with a key file or with the key from the variable (the store's
/// files inside: the event store's own tests).
#[test]
fn init_makes_the_data_directory_and_the_store_private() {
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for (name, env) in [
        ("with-file", &[][..]),
        ("with-variable", &[("LIGHTHOUSE_MASTER_KEY", KEY_HEX)][..]),
    ] {
        let data = dir.path().join(name);
        // Under a umask that lets group and others read (under 077 the modes
        // come out right without `init` doing anything).
        let mut c = command(&["init", "--data", s(&data)], env);
        // SAFETY: umask(2) is async-signal-safe, allocates nothing and
        // cannot fail.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            })
        };
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
        assert_eq!(mode(&data), 0o700, "{name}");
        let store = data.join("store");
        assert_eq!(mode(&store), 0o700, "{name}");
        assert_eq!(mode(&store.join("segments")), 0o700, "{name}");
        for f in std::fs::read_dir(store.join("segments")).unwrap() {
            assert_eq!(mode(&f.unwrap().path()), 0o600, "{name}");
        }
    }
}

#[test]
fn credentials_carry_the_public_url_and_a_rotation_keeps_the_one_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(
        &data,
        &[("LIGHTHOUSE_PUBLIC_URL", "https://bridge.example.com")],
    );
    let creds = data.join("credentials");
    let bridge_of = |agent: &str| {
        Credential::read(creds.join(format!("{agent}.json")))
            .unwrap()
            .bridge
    };
    assert_eq!(bridge_of("admin"), "https://bridge.example.com");
    let o = run(
        &["agents", "add", "alice", "--data", s(&data)],
        &[("LIGHTHOUSE_PUBLIC_URL", "https://a.example.com:8443")],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    assert_eq!(bridge_of("alice"), "https://a.example.com:8443");
    // No URL given: the existing credential's.
    let o = run(&["agents", "rotate", "alice", "--data", s(&data)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    let rotated = Credential::read(creds.join("alice.json")).unwrap();
    assert_eq!(
        (rotated.key_id, rotated.bridge.as_str()),
        (2, "https://a.example.com:8443")
    );
    let o = run(
        &[
            "agents",
            "rotate",
            "alice",
            "--public-url",
            "http://10.0.0.7:8765",
            "--data",
            s(&data),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    assert_eq!(bridge_of("alice"), "http://10.0.0.7:8765");
    // A URL that is not absolute http(s) is refused before anything is saved.
    for bad in ["bridge.example.com:8765", "ftp://example.com"] {
        let o = run(
            &[
                "agents",
                "add",
                "bob",
                "--public-url",
                bad,
                "--data",
                s(&data),
            ],
            &[],
        );
        let (code, _, err) = outcome(&o);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(err.contains("public_url") && err.contains(bad), "{err}");
    }
    assert_eq!(agent_ids(&data), ["admin", "alice"]);
    // No URL given to `agents add`: the one `init` was given (it named the
    // default, http://127.0.0.1:8765, before: a credential for no bridge).
    let o = run(&["agents", "add", "carol", "--data", s(&data)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    assert_eq!(bridge_of("carol"), "https://bridge.example.com");
    // An init refused as already initialised changes nothing, the remembered
    // URL included.
    let o = run(
        &["init", "--data", s(&data)],
        &[("LIGHTHOUSE_PUBLIC_URL", "https://stray.example.com")],
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", outcome(&o));
    let o = run(&["agents", "add", "dave", "--data", s(&data)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    assert_eq!(bridge_of("dave"), "https://bridge.example.com");
    // Without a URL, init remembers none (a serve names its listen address).
    let plain = dir.path().join("plain");
    init(&plain, &[]);
    assert!(!plain.join("public-url").exists());
    let other = dir.path().join("other");
    let o = run(
        &["init", "--data", s(&other)],
        &[("LIGHTHOUSE_PUBLIC_URL", "not a url")],
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", outcome(&o));
    assert!(!other.exists());
}

#[test]
fn agents_add_checks_the_id_and_the_output_before_registering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, &[]);
    let o = run(&["agents", "add", "../../escape", "--data", s(&data)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid agent id"), "{err}");
    assert!(!dir.path().join("escape.json").exists());
    assert!(!data.join("escape.json").exists());
    // A directory as --out, existing or written with a trailing slash.
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let slash = format!("{}/", dir.path().join("new").display());
    for out in [s(&out_dir), slash.as_str()] {
        let o = run(
            &["agents", "add", "bob", "--out", out, "--data", s(&data)],
            &[],
        );
        let (code, _, err) = outcome(&o);
        assert_eq!(code, Some(2), "{out}: {err}");
        assert!(
            err.contains("is a directory") && err.contains("bob.json"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    assert_eq!(agent_ids(&data), ["admin"]);
    let file = out_dir.join("bob.json");
    let o = run(
        &[
            "agents",
            "add",
            "bob",
            "--out",
            s(&file),
            "--data",
            s(&data),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    assert_eq!(Credential::read(&file).unwrap().agent, "bob");
    assert_eq!(agent_ids(&data), ["admin", "bob"]);
}

#[test]
fn an_invalid_master_key_names_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, &[]);
    let key_file = data.join("master.key");
    std::fs::write(&key_file, b"").unwrap();
    let o = run(&["agents", "list", "--data", s(&data)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains(s(&key_file)) && err.contains("empty"), "{err}");
    let o = run(
        &["agents", "list", "--data", s(&data)],
        &[("LIGHTHOUSE_MASTER_KEY", "abc")],
    );
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("LIGHTHOUSE_MASTER_KEY"), "{err}");
}

#[test]
fn admin_commands_log_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &["init", "--data", s(&dir.path().join("data"))],
        &[("RUST_LOG", "info"), ("LIGHTHOUSE_LOG_FORMAT", "json")],
    );
    let (code, out, err) = outcome(&o);
    assert_eq!(code, Some(0), "{err}");
    // The flag `init` creates is logged, as JSON, on stderr only.
    let line = err
        .lines()
        .find(|l| l.contains("flag changed"))
        .unwrap_or_else(|| panic!("no log line: {err}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["flag"], "elicitation_enabled");
    assert!(!out.contains("flag changed"), "{out}");
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, &[]);
    let mut child = command(&["agents", "list", "--data", s(&data)], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command writes anything.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn the_demo_ignores_the_master_key_variable_and_removes_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // Not a valid key: a demo that read it would fail.
    let o = run(
        &["demo"],
        &[
            ("LIGHTHOUSE_MASTER_KEY", "not a key"),
            ("TMPDIR", s(tmp.path())),
        ],
    );
    let (code, out, err) = outcome(&o);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("integrity chain verified"), "{out}");
    assert!(out.contains(s(tmp.path())), "{out}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_agents_commands_work_after_the_admin_agent_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, &[]);
    // Routine hygiene: a named administrator, then the initial one revoked.
    for args in [
        vec!["agents", "add", "ops-admin", "--role", "admin"],
        vec!["agents", "revoke", "admin"],
        // Acting as the revoked `admin` agent, each of these used to fail
        // with "no admin agent".
        vec!["agents", "add", "bob"],
        vec!["agents", "rotate", "bob"],
        vec!["agents", "rotate", "ops-admin"],
    ] {
        let mut args = args.clone();
        args.extend(["--data", s(&data)]);
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {:?}", outcome(&o));
    }
    assert_eq!(agent_ids(&data), ["admin", "bob", "ops-admin"]);
    let o = run(&["agents", "list", "--json", "--data", s(&data)], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let revoked: Vec<_> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["revoked"] == true)
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, ["admin"]);
    assert_eq!(
        Credential::read(data.join("credentials").join("bob.json"))
            .unwrap()
            .key_id,
        2
    );
    // `init` still refuses the initialised directory, and says what to do.
    let o = run(&["init", "--data", s(&data)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("agents add ID --role admin"), "{err}");
    // The audit trail names the offline actor for every change made offline.
    let key = MasterKey::load_file(data.join("master.key")).unwrap();
    let store = lighthouse_event_store::EventStore::open(
        data.join("store"),
        lighthouse_event_store::StoreOptions::new(&key.store_key()),
    )
    .unwrap();
    let changes: Vec<(String, String, Option<String>)> = (1..=store.head_seq())
        .filter_map(|seq| store.get(seq).unwrap())
        .filter(|e| e.stream == "$agents")
        .map(|e| {
            (
                e.event_type,
                e.data["agent"].as_str().unwrap().to_owned(),
                e.agent,
            )
        })
        .collect();
    let by = |ty: &str, agent: &str| {
        changes
            .iter()
            .find(|(t, a, _)| t == ty && a == agent)
            .and_then(|(_, _, by)| by.clone())
    };
    let local = Some("local-admin".to_owned());
    assert_eq!(by("agent.registered", "ops-admin"), local);
    assert_eq!(by("agent.revoked", "admin"), local);
    assert_eq!(by("agent.registered", "bob"), local);
    assert_eq!(by("agent.key_rotated", "bob"), local);
}

#[tokio::test]
async fn serve_dev_with_the_key_variable_starts_on_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    // It used to be refused as "initialised without --dev": no key file was
    // created, which was taken for a directory in use.
    let child = command(
        &["serve", "--dev", "--listen", &listen, "--data", s(&data)],
        &[("LIGHTHOUSE_MASTER_KEY", KEY_HEX)],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let _child = common::Proc(child);
    common::wait_ready(&format!("http://{listen}")).await;
    let alice = Credential::read(data.join("credentials").join("alice.json")).unwrap();
    assert_eq!(alice.agent, "alice");
    assert!(
        !data.join("master.key").exists(),
        "the key stays in the variable"
    );
}

#[test]
fn a_store_keyed_by_the_variable_gets_no_key_file_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("LIGHTHOUSE_MASTER_KEY", KEY_HEX)];
    init(&data, &env);
    assert!(!data.join("master.key").exists());
    // Without the variable: refused with what to do, and no new key file
    // (which used to be written before the store refused it).
    for args in [
        vec!["init"],
        vec!["serve", "--dev", "--listen", "127.0.0.1:0"],
        vec!["agents", "list"],
    ] {
        let mut args = args.clone();
        args.extend(["--data", s(&data)]);
        let o = run(&args, &[]);
        let (code, _, err) = outcome(&o);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("holds a store but no master key")
                && err.contains("LIGHTHOUSE_MASTER_KEY"),
            "{args:?}: {err}"
        );
        assert!(!data.join("master.key").exists(), "{args:?} wrote a key");
    }
    let o = run(&["agents", "list", "--data", s(&data)], &env);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
}

#[test]
fn a_restore_says_what_it_needs_and_brings_back_the_registry_of_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, &[]);
    let o = run(&["agents", "add", "alice", "--data", s(&data)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    let backup = dir.path().join("b.backup");
    let o = run(&["store", "backup", s(&backup), "--data", s(&data)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));
    let o = run(&["agents", "revoke", "alice", "--data", s(&data)], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", outcome(&o));

    // A backup that is not there is bad input, named as the backup.
    let missing = dir.path().join("missing.backup");
    let o = run(&["store", "restore", s(&missing), "--data", s(&data)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot read the backup") && err.contains(s(&missing)),
        "{err}"
    );

    // A fresh host without the key: not "run init" (a new key would make the
    // restore fail) but the original key.
    let fresh = dir.path().join("fresh");
    let o = run(&["store", "restore", s(&backup), "--data", s(&fresh)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("copy its original master.key") && err.contains("LIGHTHOUSE_MASTER_KEY"),
        "{err}"
    );
    assert!(!fresh.exists());
    // Under another key: refused, naming the key to use.
    let other = dir.path().join("other");
    init(&other, &[]);
    std::fs::rename(other.join("store"), dir.path().join("other-store")).unwrap();
    let o = run(&["store", "restore", s(&backup), "--data", s(&other)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another master key"), "{err}");
    assert!(!other.join("store").exists());
    // Over an existing store: refused, saying to stop the bridge and move it.
    let o = run(&["store", "restore", s(&backup), "--data", s(&data)], &[]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Stop the bridge") && err.contains(&format!("mv {}", s(&data.join("store")))),
        "{err}"
    );

    // With the original key: restored, and with it the registry as it was
    // when the backup was taken, so alice, revoked since, is active again.
    std::fs::create_dir(&fresh).unwrap();
    std::fs::copy(data.join("master.key"), fresh.join("master.key")).unwrap();
    let o = run(&["store", "restore", s(&backup), "--data", s(&fresh)], &[]);
    let (code, out, err) = outcome(&o);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("verify ok"), "{out}");
    let o = run(&["agents", "list", "--json", "--data", s(&fresh)], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let alice = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "alice")
        .unwrap();
    assert_eq!(alice["revoked"], false);
}

/// After a leak of the only admin key, the offline tools revoke it at once
/// (the API refuses to revoke the last admin) and register a new one.
#[test]
fn the_offline_tools_may_revoke_the_last_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, &[]);
    for args in [
        vec!["agents", "revoke", "admin"],
        vec!["agents", "add", "new-admin", "--role", "admin"],
    ] {
        let mut args = args.clone();
        args.extend(["--data", s(&data)]);
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {:?}", outcome(&o));
    }
    // The reserved id of the offline actor cannot be registered.
    let o = run(&["agents", "add", "local-admin", "--data", s(&data)], &[]);
    assert_ne!(o.status.code(), Some(0), "{:?}", outcome(&o));
}

/// The offline commands on a directory a running bridge holds say so and
/// what to use instead (they showed sled's raw lock error, and `store
/// backup` was pointed at `POST /v1/ops/verify`).
#[tokio::test]
async fn offline_commands_on_a_directory_in_use_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = common::free_port();
    let _bridge = common::spawn(&data, port);
    common::wait_ready(&format!("http://127.0.0.1:{port}")).await;
    let backup = dir.path().join("b.backup");
    for args in [
        vec!["agents", "revoke", "alice", "--data", s(&data)],
        vec!["store", "backup", s(&backup), "--data", s(&data)],
    ] {
        let o = run(&args, &[]);
        let (code, _, err) = outcome(&o);
        assert_eq!(code, Some(3), "{args:?}");
        assert!(
            err.contains("in use by another process") && err.contains("lighthouse agents"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("Os {"), "{err}");
    }
    assert!(!backup.exists());
    // `healthcheck` takes the base URL, or a probe's own; not-a-URL is bad input.
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/health/ready"),
        format!("http://127.0.0.1:{port}/health/live"),
    ] {
        let o = run(&["healthcheck", "--url", &url], &[]);
        assert_eq!(o.status.code(), Some(0), "{url}: {:?}", outcome(&o));
    }
    let o = run(&["healthcheck", "--url", "not-a-url"], &[]);
    assert_eq!(o.status.code(), Some(2), "{:?}", outcome(&o));
}
