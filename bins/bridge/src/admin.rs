//! `agents` and `store`: offline administration of a data directory (the bridge
//! must be stopped, since one process at a time may open it; while it runs, use
//! the HTTP API: `POST /v1/agents`, `POST /v1/ops/verify`, ...).
//!
//! None of them creates a store: a data directory without one is refused
//! ([`require_store`]) before anything is opened. The `agents` commands act as
//! [`local_admin`], which works whether or not any admin agent is still
//! registered: they are the way back in when every admin credential is lost.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use lighthouse_event_store::EventStore;
use lighthouse_security::{Caller, Credential, Role, check_agent_id};

use crate::config::ServeConfig;
use crate::serve::{credentials_dir, load_master_key, open, require_store, store_dir};
use crate::{DEFAULT_PUBLIC_URL, Failure, say};

/// Where the credential of `id` goes: `out`, else `<data>/credentials/<id>.json`.
/// The id is checked first, since it becomes part of a path (`../../x` would
/// name a file outside the data directory). `out` must name a file: an
/// existing directory, or a path ending in `/`, is refused rather than
/// guessed at.
fn credential_path(data: &Path, id: &str, out: Option<&Path>) -> Result<PathBuf, Failure> {
    check_agent_id(id).map_err(|e| Failure::input(e.to_string()))?;
    let Some(out) = out else {
        return Ok(credentials_dir(data).join(format!("{id}.json")));
    };
    if out.is_dir() || out.as_os_str().as_bytes().ends_with(b"/") {
        return Err(Failure::input(format!(
            "--out {} is a directory; name the credential file, e.g. --out {}",
            out.display(),
            out.join(format!("{id}.json")).display()
        )));
    }
    Ok(out.to_path_buf())
}

/// Makes sure a credential can be written at `path` before the change it
/// records is saved: creates the folder and creates (then removes) a file
/// beside the target. A registration or rotation saved with nowhere to write
/// its credential would leave an agent nobody holds a key for.
fn prepare_output(path: &Path) -> Result<(), Failure> {
    let cannot = |e: std::io::Error| {
        Failure::input(format!(
            "cannot write the credential to {}: {e}",
            path.display()
        ))
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(cannot)?;
    let name = path
        .file_name()
        .map_or_else(|| "credential".into(), |n| n.to_string_lossy().into_owned());
    let probe = parent.join(format!(".{name}.probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(cannot)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The actor the offline commands name in the events they write (the `agent`
/// of an `$agents` event): not a registered agent, so an audit trail tells an
/// offline change from one made over HTTP by a registered admin.
pub const LOCAL_ADMIN: &str = lighthouse_security::LOCAL_ADMIN_AGENT;

/// The caller the offline commands act as: a trusted administrator that needs
/// no registration. Whoever runs them holds the master key and the data
/// directory, which is more than any admin credential grants; acting as the
/// registered `admin` agent instead made every command fail once that agent
/// was revoked (routine after creating a named admin), leaving no way back in.
pub fn local_admin() -> Caller {
    Caller {
        agent: LOCAL_ADMIN.to_owned(),
        role: Role::Admin,
        // No key signs anything here: the caller is never checked against
        // the registry, only authorised by its role.
        key_id: 0,
    }
}

/// `agents add ID --role R`: registers and writes the credential file.
pub async fn add(
    data: &Path,
    id: &str,
    role: Role,
    out: Option<&Path>,
    public_url: Option<String>,
) -> Result<(), Failure> {
    let path = credential_path(data, id, out)?;
    require_store(data)?;
    let (key, _) = load_master_key(data, false)?;
    prepare_output(&path)?;
    let public_url = public_url
        .or_else(|| crate::serve::remembered_public_url(data))
        .unwrap_or_else(|| DEFAULT_PUBLIC_URL.to_owned());
    let c = ServeConfig {
        public_url: Some(public_url),
        ..Default::default()
    };
    let bridge = open(data, key, Some(&c)).await?;
    let caller = local_admin();
    let cred = bridge
        .add_agent(&caller, id, role)
        .await
        .map_err(|p| Failure::refused(p.to_string()))?;
    cred.write(&path).map_err(|e| {
        Failure::error(format!(
            "{id} is registered, but its credential could not be written: {e}; \
             `lighthouse-bridge agents rotate {id} --data {} --out FILE` issues a new one",
            data.display()
        ))
    })?;
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    say(format!(
        "registered {id} ({}); credential written to {} (bridge {})",
        role.as_str(),
        path.display(),
        cred.bridge
    ))
}

/// The `bridge` URL of `id`'s credential at the first of `paths` that holds
/// one: what a rotation writes when no URL is given, so the new credential
/// points where the old one did.
fn existing_bridge_url(id: &str, paths: &[&Path]) -> Option<String> {
    paths.iter().find_map(|p| {
        Credential::read(p)
            .ok()
            .filter(|c| c.agent == id)
            .map(|c| c.bridge)
    })
}

/// `agents rotate ID`. The new credential names `public_url`; without it, the
/// bridge URL of the agent's existing credential file (`out`, else the default
/// one), else the default URL.
pub async fn rotate(
    data: &Path,
    id: &str,
    out: Option<&Path>,
    public_url: Option<String>,
) -> Result<(), Failure> {
    let path = credential_path(data, id, out)?;
    require_store(data)?;
    let (key, _) = load_master_key(data, false)?;
    prepare_output(&path)?;
    let default_path = credential_path(data, id, None)?;
    let public_url = public_url
        .or_else(|| existing_bridge_url(id, &[&path, &default_path]))
        .or_else(|| crate::serve::remembered_public_url(data))
        .unwrap_or_else(|| DEFAULT_PUBLIC_URL.to_owned());
    let c = ServeConfig {
        public_url: Some(public_url),
        ..Default::default()
    };
    let bridge = open(data, key, Some(&c)).await?;
    let caller = local_admin();
    let cred = bridge
        .rotate_agent(&caller, id)
        .await
        .map_err(|p| Failure::refused(p.to_string()))?;
    cred.write(&path).map_err(|e| {
        Failure::error(format!(
            "{id} was rotated, but its new credential could not be written: {e}; \
             the previous key stays valid for its grace period; \
             `lighthouse-bridge agents rotate {id} --data {} --out FILE` issues another",
            data.display()
        ))
    })?;
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    say(format!(
        "rotated {id} to key {}; the previous key stays valid for its grace period; \
         credential written to {} (bridge {})",
        cred.key_id,
        path.display(),
        cred.bridge
    ))
}

/// `agents revoke ID`.
pub async fn revoke(data: &Path, id: &str) -> Result<(), Failure> {
    check_agent_id(id).map_err(|e| Failure::input(e.to_string()))?;
    require_store(data)?;
    let (key, _) = load_master_key(data, false)?;
    let bridge = open(data, key, None).await?;
    let caller = local_admin();
    bridge
        .revoke_agent(&caller, id)
        .await
        .map_err(|p| Failure::refused(p.to_string()))?;
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    say(format!(
        "revoked {id}: every key and token of it is refused from now on"
    ))
}

/// `agents list`.
pub async fn list(data: &Path, json: bool) -> Result<(), Failure> {
    require_store(data)?;
    let (key, _) = load_master_key(data, false)?;
    let bridge = open(data, key, None).await?;
    let caller = local_admin();
    let agents = bridge
        .list_agents(&caller)
        .map_err(|p| Failure::refused(p.to_string()))?;
    // Printed once the bridge is closed: a reader that stops early (`| head`)
    // must not cut the shutdown short.
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    if json {
        return say(serde_json::to_string_pretty(&agents).unwrap_or_default());
    }
    say(format!(
        "{:<24} {:<9} {:>6}  status",
        "agent", "role", "key"
    ))?;
    for a in &agents.agents {
        let status = if a.revoked { "revoked" } else { "active" };
        say(format!(
            "{:<24} {:<9} {:>6}  {status}",
            a.id,
            a.role.as_str(),
            a.key_id
        ))?;
    }
    Ok(())
}

/// A store error, with the store's directory named for a failed file
/// operation (whose own message names no path).
fn store_failure(dir: &Path, e: lighthouse_event_store::Error) -> Failure {
    match e {
        lighthouse_event_store::Error::Io(_) => Failure::error(format!("{}: {e}", dir.display())),
        e => Failure::error(e.to_string()),
    }
}

fn open_store(data: &Path) -> Result<EventStore, Failure> {
    require_store(data)?;
    let (key, _) = load_master_key(data, false)?;
    let dir = store_dir(data);
    crate::descriptors::fit_store(&dir);
    EventStore::open(
        &dir,
        lighthouse_event_store::StoreOptions::new(&key.store_key()),
    )
    .map_err(|e| match e {
        lighthouse_event_store::Error::Io(_) => store_failure(&dir, e),
        e => crate::serve::in_use(data, &e).unwrap_or_else(|| {
            Failure::error(format!(
                "{e} (is the bridge running? stop it first; while it runs, POST /v1/ops/verify checks the chain)"
            ))
        }),
    })
}

/// `store verify`: exit 1 when the chain is broken.
pub fn verify(data: &Path, json: bool) -> Result<(), Failure> {
    let store = open_store(data)?;
    let started = std::time::Instant::now();
    let r = store
        .verify()
        .map_err(|e| store_failure(&store_dir(data), e))?;
    let out = serde_json::json!({
        "ok": r.ok(), "checked": r.checked, "head_seq": r.head_seq,
        "first_bad_seq": r.first_bad_seq, "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    let printed = if json {
        say(out)
    } else if r.ok() {
        say(format!(
            "ok: {} events checked, head {}",
            r.checked, r.head_seq
        ))
    } else {
        say(format!(
            "BROKEN: first bad seq {} ({} intact before it, head {})",
            r.first_bad_seq.unwrap_or(0),
            r.checked,
            r.head_seq
        ))
    };
    // A broken chain is reported by the exit code even when nobody reads
    // the output.
    if r.ok() {
        printed
    } else {
        Err(Failure::refused("the integrity chain is broken"))
    }
}

/// `store stats`.
pub fn stats(data: &Path) -> Result<(), Failure> {
    let store = open_store(data)?;
    let s = store
        .stats()
        .map_err(|e| store_failure(&store_dir(data), e))?;
    say(
        serde_json::json!({"head_seq": s.head_seq, "streams": s.streams, "size_bytes": s.size_bytes}),
    )
}

/// `store backup FILE`. A store without events is refused unless
/// `allow_empty`: it is what a mistyped `--data` used to produce, and its
/// backup would replace a good one at `file`.
pub fn backup(data: &Path, file: &Path, allow_empty: bool) -> Result<(), Failure> {
    let store = open_store(data)?;
    if store.head_seq() == 0 && !allow_empty {
        return Err(Failure::refused(format!(
            "the store in {} holds no events; not writing an empty backup to {} \
             (check --data, or pass --allow-empty)",
            store_dir(data).display(),
            file.display()
        )));
    }
    let r = store
        .backup(file)
        .map_err(|e| store_failure(&store_dir(data), e))?;
    say(format!(
        "backed up {} events and {} snapshot{} to {} ({} bytes)",
        r.head_seq,
        r.snapshots,
        if r.snapshots == 1 { "" } else { "s" },
        file.display(),
        r.bytes
    ))
}

/// `store restore FILE`: into `<data>/store`, which must not exist yet. A
/// restored store that does not verify is moved aside (see [`set_aside`]), so
/// the next `serve` does not serve it.
pub fn restore(data: &Path, file: &Path) -> Result<(), Failure> {
    // A backup that is not there is bad input, named as such (the store's
    // own "No such file" read as if the target were missing).
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Failure::input(format!(
                "{} is not a backup file",
                file.display()
            )));
        }
        Err(e) => {
            return Err(Failure::input(format!(
                "cannot read the backup {}: {e}",
                file.display()
            )));
        }
    }
    let (key, _) = load_master_key(data, false)?;
    let dir = store_dir(data);
    let (store, r) = EventStore::restore(
        file,
        &dir,
        lighthouse_event_store::StoreOptions::new(&key.store_key()),
    )
    .map_err(|e| match e {
        lighthouse_event_store::Error::Io(_) => Failure::error(format!(
            "cannot restore {} into {}: {e}",
            file.display(),
            dir.display()
        )),
        lighthouse_event_store::Error::NotEmpty { .. } => Failure::refused(format!(
            "{} already holds a store; a restore never writes over one. Stop the bridge \
             using it, move the store aside (`mv {} {}.old`), then restore again",
            data.display(),
            dir.display(),
            dir.display()
        )),
        lighthouse_event_store::Error::WrongKey => Failure::refused(format!(
            "{} was made under another master key than this one ({}): a backup restores \
             only under the key it was made with; copy that master.key to {} or set \
             {} to it",
            file.display(),
            key_source(data),
            crate::serve::master_key_path(data).display(),
            lighthouse_security::MASTER_KEY_ENV
        )),
        e => Failure::error(e.to_string()),
    })?;
    let verified = store.verify();
    if let Ok(v) = &verified
        && v.ok()
    {
        return say(format!(
            "restored {} events and {} snapshot{}; verify ok",
            r.head_seq,
            r.snapshots,
            if r.snapshots == 1 { "" } else { "s" }
        ));
    }
    drop(store);
    let why = match verified {
        Ok(v) => format!(
            "it does not verify (first bad seq {})",
            v.first_bad_seq.unwrap_or(0)
        ),
        Err(e) => format!("it could not be verified: {e}"),
    };
    Err(match set_aside(&dir) {
        Ok(aside) => Failure::refused(format!(
            "restored {} events from {}, but {why}; moved it to {} so it is not served \
             (`lighthouse-bridge store verify` there says more)",
            r.head_seq,
            file.display(),
            aside.display()
        )),
        Err(e) => Failure::error(format!(
            "restored {} events from {}, but {why}, and it could not be moved aside: {e}; \
             do not serve {}: move it away first",
            r.head_seq,
            file.display(),
            dir.display()
        )),
    })
}

/// Where the master key in use came from, for messages.
fn key_source(data: &Path) -> String {
    if std::env::var_os(lighthouse_security::MASTER_KEY_ENV).is_some() {
        lighthouse_security::MASTER_KEY_ENV.to_owned()
    } else {
        crate::serve::master_key_path(data).display().to_string()
    }
}

/// Renames the store at `dir` to `<dir>.failed-restore-<unix seconds>` (with
/// `-2`, `-3`, ... if taken) and returns the new path.
fn set_aside(dir: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".failed-restore-{secs}"));
    let base = PathBuf::from(name);
    let mut aside = base.clone();
    let mut n = 1;
    while aside.exists() {
        n += 1;
        let mut name = base.as_os_str().to_owned();
        name.push(format!("-{n}"));
        aside = PathBuf::from(name);
    }
    std::fs::rename(dir, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_set_aside_gets_a_name_of_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a"), b"1").unwrap();
        let first = set_aside(&dir).unwrap();
        assert!(!dir.exists());
        assert_eq!(std::fs::read(first.join("a")).unwrap(), b"1");
        let name = first.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("store.failed-restore-"), "{name}");
        // A second failure in the same second does not replace the first.
        std::fs::create_dir(&dir).unwrap();
        let second = set_aside(&dir).unwrap();
        assert_ne!(first, second);
        assert!(first.is_dir() && second.is_dir() && !dir.exists());
    }
}
