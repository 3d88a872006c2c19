//! `agents` and `store`: offline administration of a data directory (the bridge
//! must be stopped, since one process at a time may open it; while it runs, use
//! the HTTP API: `POST /v1/agents`, `POST /v1/ops/verify`, ...).

use std::path::Path;

use lighthouse_core::setup::ADMIN_AGENT;
use lighthouse_event_store::EventStore;
use lighthouse_security::{Caller, Role};

use crate::Failure;
use crate::serve::{credentials_dir, load_master_key, open};

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

fn admin(bridge: &lighthouse_core::Bridge) -> Result<Caller, Failure> {
    bridge
        .caller_for(ADMIN_AGENT)
        .ok_or_else(|| Failure::input("no admin agent: run `lighthouse-bridge init` first"))
}

/// `agents add ID --role R`: registers and writes the credential file.
pub async fn add(
    data: &Path,
    id: &str,
    role: Role,
    out: Option<&Path>,
    public_url: String,
) -> Result<(), Failure> {
    let (key, _) = load_master_key(data, false)?;
    let c = crate::config::ServeConfig {
        public_url: Some(public_url),
        ..Default::default()
    };
    let path = out.map_or_else(
        || credentials_dir(data).join(format!("{id}.json")),
        Path::to_path_buf,
    );
    prepare_output(&path)?;
    let bridge = open(data, key, Some(&c)).await?;
    let caller = admin(&bridge)?;
    let cred = bridge
        .add_agent(&caller, id, role)
        .await
        .map_err(|p| Failure::refused(p.to_string()))?;
    cred.write(&path).map_err(|e| {
        Failure::error(format!(
            "{id} is registered, but its credential could not be written to {}: {e}; \
             `lighthouse-bridge agents rotate {id} --out FILE` issues a new one",
            path.display()
        ))
    })?;
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    println!(
        "registered {id} ({}); credential written to {}",
        role.as_str(),
        path.display()
    );
    Ok(())
}

/// `agents rotate ID`.
pub async fn rotate(data: &Path, id: &str, out: Option<&Path>) -> Result<(), Failure> {
    let (key, _) = load_master_key(data, false)?;
    let path = out.map_or_else(
        || credentials_dir(data).join(format!("{id}.json")),
        Path::to_path_buf,
    );
    prepare_output(&path)?;
    let bridge = open(data, key, None).await?;
    let caller = admin(&bridge)?;
    let cred = bridge
        .rotate_agent(&caller, id)
        .await
        .map_err(|p| Failure::refused(p.to_string()))?;
    cred.write(&path).map_err(|e| {
        Failure::error(format!(
            "{id} was rotated, but its new credential could not be written to {}: {e}; \
             the previous key stays valid for its grace period; rotate again to issue another",
            path.display()
        ))
    })?;
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    println!(
        "rotated {id} to key {}; the previous key stays valid for its grace period; credential written to {}",
        cred.key_id,
        path.display()
    );
    Ok(())
}

/// `agents revoke ID`.
pub async fn revoke(data: &Path, id: &str) -> Result<(), Failure> {
    let (key, _) = load_master_key(data, false)?;
    let bridge = open(data, key, None).await?;
    let caller = admin(&bridge)?;
    bridge
        .revoke_agent(&caller, id)
        .await
        .map_err(|p| Failure::refused(p.to_string()))?;
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    println!("revoked {id}: every key and token of it is refused from now on");
    Ok(())
}

/// `agents list`.
pub async fn list(data: &Path, json: bool) -> Result<(), Failure> {
    let (key, _) = load_master_key(data, false)?;
    let bridge = open(data, key, None).await?;
    let caller = admin(&bridge)?;
    let agents = bridge
        .list_agents(&caller)
        .map_err(|p| Failure::refused(p.to_string()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&agents).unwrap_or_default()
        );
    } else {
        println!("{:<24} {:<9} {:>6}  status", "agent", "role", "key");
        for a in &agents.agents {
            let status = if a.revoked { "revoked" } else { "active" };
            println!(
                "{:<24} {:<9} {:>6}  {status}",
                a.id,
                a.role.as_str(),
                a.key_id
            );
        }
    }
    bridge
        .shutdown()
        .await
        .map_err(|p| Failure::error(p.to_string()))?;
    Ok(())
}

fn open_store(data: &Path) -> Result<EventStore, Failure> {
    let (key, _) = load_master_key(data, false)?;
    EventStore::open(
        data.join("store"),
        lighthouse_event_store::StoreOptions::new(&key.store_key()),
    )
    .map_err(|e| {
        Failure::error(format!(
            "{e} (is the bridge running? stop it, or use POST /v1/ops/verify)"
        ))
    })
}

/// `store verify`: exit 1 when the chain is broken.
pub fn verify(data: &Path, json: bool) -> Result<(), Failure> {
    let store = open_store(data)?;
    let started = std::time::Instant::now();
    let r = store.verify().map_err(|e| Failure::error(e.to_string()))?;
    let out = serde_json::json!({
        "ok": r.ok(), "checked": r.checked, "head_seq": r.head_seq,
        "first_bad_seq": r.first_bad_seq, "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    if json {
        println!("{out}");
    } else if r.ok() {
        println!("ok: {} events checked, head {}", r.checked, r.head_seq);
    } else {
        println!(
            "BROKEN: first bad seq {} ({} intact before it, head {})",
            r.first_bad_seq.unwrap_or(0),
            r.checked,
            r.head_seq
        );
    }
    if r.ok() {
        Ok(())
    } else {
        Err(Failure::refused("the integrity chain is broken"))
    }
}

/// `store stats`.
pub fn stats(data: &Path) -> Result<(), Failure> {
    let store = open_store(data)?;
    let s = store.stats().map_err(|e| Failure::error(e.to_string()))?;
    println!(
        "{}",
        serde_json::json!({"head_seq": s.head_seq, "streams": s.streams, "size_bytes": s.size_bytes})
    );
    Ok(())
}

/// `store backup FILE`.
pub fn backup(data: &Path, file: &Path) -> Result<(), Failure> {
    let store = open_store(data)?;
    let r = store
        .backup(file)
        .map_err(|e| Failure::error(e.to_string()))?;
    println!(
        "backed up {} events and {} snapshots to {} ({} bytes)",
        r.head_seq,
        r.snapshots,
        file.display(),
        r.bytes
    );
    Ok(())
}

/// `store restore FILE`: into `<data>/store`, which must not exist yet.
pub fn restore(data: &Path, file: &Path) -> Result<(), Failure> {
    let (key, _) = load_master_key(data, false)?;
    let (store, r) = EventStore::restore(
        file,
        data.join("store"),
        lighthouse_event_store::StoreOptions::new(&key.store_key()),
    )
    .map_err(|e| Failure::error(e.to_string()))?;
    let v = store.verify().map_err(|e| Failure::error(e.to_string()))?;
    println!(
        "restored {} events and {} snapshots; verify {}",
        r.head_seq,
        r.snapshots,
        if v.ok() { "ok" } else { "FAILED" }
    );
    if !v.ok() {
        return Err(Failure::refused(
            "the restored store does not verify; do not serve it (see `store verify`)",
        ));
    }
    Ok(())
}
