//! Key material: the bridge's master key, agent secrets derived from it
//! (PROTOCOL.md 2.1), and the purpose keys the rest of the crate uses.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// HMAC-SHA256, the one MAC of the protocol.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The environment variable [`MasterKey::from_env`] reads by default: 64 hex chars.
pub const MASTER_KEY_ENV: &str = "LIGHTHOUSE_MASTER_KEY";

/// The prefix of the agent secret derivation (PROTOCOL.md 2.1).
const AGENT_KEY_LABEL: &[u8] = b"lighthouse/agent-key/v1\n";

/// Largest key file read; a real one is 65 bytes.
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// Overwrites `bytes` in a way the optimiser may not remove, so key material does
/// not linger in freed memory.
pub(crate) fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to one byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(Error::Random)
}

fn decode_hex32(text: &str, what: &'static str) -> Result<[u8; 32]> {
    let invalid = Error::InvalidKey {
        what,
        expected: "64 hex characters (32 bytes)",
    };
    let text = text.trim_ascii();
    if text.len() != 64 {
        return Err(invalid);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| invalid)?;
    Ok(out)
}

/// The bridge's 32-byte master key. Every agent secret, the token key and the
/// event store's integrity key are derived from it.
///
/// Its `Debug` output never shows the bytes, and the bytes are wiped on drop.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl MasterKey {
    /// 32 fresh bytes from the operating system's random source.
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; 32];
        random_bytes(&mut k)?;
        Ok(MasterKey(k))
    }

    /// A master key from its bytes (tests and the PROTOCOL.md vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// A master key from 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        decode_hex32(text, "master key").map(MasterKey)
    }

    /// The key in the environment variable `var` (64 hex characters), `None` when
    /// the variable is not set. A set but invalid value is an error, never ignored.
    ///
    /// The error of an invalid value ([`Error::InvalidMasterKey`]) names the
    /// variable, so it is not mistaken for a problem with a key file.
    pub fn from_env(var: &str) -> Result<Option<Self>> {
        let invalid = || Error::InvalidMasterKey {
            from: format!("the environment variable {var}"),
            reason: "expected 64 hex characters (32 bytes)".into(),
        };
        match std::env::var_os(var) {
            None => Ok(None),
            Some(v) => {
                let text = v.to_str().ok_or_else(invalid)?;
                Self::from_hex(text).map(Some).map_err(|_| invalid())
            }
        }
    }

    /// Loads a key file written by [`create_file`](Self::create_file).
    ///
    /// Refuses a file that its group or others may read or write
    /// ([`Error::InsecureFileMode`]), checked on the opened file itself, and
    /// one that holds no valid key ([`Error::InvalidMasterKey`], naming the file).
    pub fn load_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let invalid = |reason: String| Error::InvalidMasterKey {
            from: path.display().to_string(),
            reason,
        };
        let text = read_private_file(path).map_err(|e| match e {
            Error::InvalidKey { expected, .. } => invalid(expected.into()),
            e => e,
        })?;
        Self::from_hex(&text).map_err(|_| {
            invalid(if text.trim_ascii().is_empty() {
                // Only a key file written in place by an earlier version, its
                // write interrupted, is empty: this one never shows it.
                "the file is empty; if no store was ever opened with it, remove it and start again"
                    .into()
            } else {
                "expected 64 hex characters (32 bytes)".into()
            })
        })
    }

    /// Generates a key and writes it to a new file with mode 0600, as 64
    /// lowercase hex characters and a newline. Refuses to overwrite an existing file.
    ///
    /// The file appears whole or not at all: the key is written to a temporary
    /// file beside it and synced, then linked into place, and the directory is
    /// synced. An interrupted creation leaves no `path` (at most a
    /// `.<name>.tmp-*` file), never an empty key file.
    pub fn create_file(path: impl AsRef<Path>) -> Result<Self> {
        let key = Self::generate()?;
        let mut text = hex::encode(key.0);
        text.push('\n');
        let written = publish_private_file(path.as_ref(), text.as_bytes());
        // SAFETY: `text` is ASCII hex; wiping keeps it ASCII.
        wipe(unsafe { text.as_bytes_mut() });
        written.map(|()| key)
    }

    /// [`load_file`](Self::load_file) when `path` exists, else
    /// [`create_file`](Self::create_file). Returns the key and whether it was created.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<(Self, bool)> {
        let path = path.as_ref();
        if path.exists() {
            Ok((Self::load_file(path)?, false))
        } else {
            Ok((Self::create_file(path)?, true))
        }
    }

    /// The secret of `agent` for key id `key_id` (PROTOCOL.md 2.1):
    /// `HMAC-SHA256(master_key, "lighthouse/agent-key/v1\n" + agent + "\n" + key_id)`.
    pub fn agent_secret(&self, agent: &str, key_id: u64) -> AgentSecret {
        let mut mac = self.mac();
        mac.update(AGENT_KEY_LABEL);
        mac.update(agent.as_bytes());
        mac.update(b"\n");
        mac.update(itoa_u64(key_id, &mut [0u8; 20]));
        AgentSecret(mac.finalize().into_bytes().into())
    }

    /// The event store's integrity key (`HMAC(master, "lighthouse/store-key/v1")`),
    /// so one secret protects both requests and the log.
    pub fn store_key(&self) -> [u8; 32] {
        self.purpose_key(b"lighthouse/store-key/v1")
    }

    /// The key bearer tokens are MACed with.
    pub(crate) fn token_key(&self) -> [u8; 32] {
        self.purpose_key(b"lighthouse/token-key/v1")
    }

    /// The secret the verifier uses for unknown or revoked agents (PROTOCOL.md 2.2
    /// step 2): a real-looking key no agent holds.
    pub(crate) fn dummy_secret(&self) -> AgentSecret {
        AgentSecret(self.purpose_key(b"lighthouse/dummy-key/v1"))
    }

    /// Purpose labels contain no newline, so they never collide with an agent
    /// derivation, whose input always does.
    fn purpose_key(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

/// Writes `n` in decimal into `buf`, returning the digits.
pub(crate) fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// An agent's 32-byte secret for one key id: what its credential file holds and
/// what it signs requests with. `Debug` never shows it; wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentSecret([u8; 32]);

impl fmt::Debug for AgentSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentSecret(<redacted>)")
    }
}

impl Drop for AgentSecret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl AgentSecret {
    /// A secret from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        AgentSecret(bytes)
    }

    /// A secret from 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self> {
        decode_hex32(text, "agent secret").map(AgentSecret)
    }

    /// The secret as 64 lowercase hex characters (credential files only: never log it).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A keyed MAC ready to sign with; cloning it skips the key schedule.
    pub(crate) fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

/// Reads a small file that must be private to its owner (mode `0600` or stricter).
pub(crate) fn read_private_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(Error::InvalidKey {
            what: "key file",
            expected: "at most 1 KiB",
        });
    }
    Ok(text)
}

/// Creates `path` with mode 0600 (never overwriting), writes `bytes` and syncs it.
/// A failed write leaves no partial file behind.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                Error::io(path, e)
            }
        })?;
    let result = (|| {
        // The umask can only clear bits, but be explicit in case the file system
        // ignored the creation mode.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(path);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// A name for a temporary file beside `path`: `.<name>.tmp-<16 hex>`, hidden
/// and unique, so two writers never share one.
pub(crate) fn temp_sibling(path: &Path) -> Result<PathBuf> {
    let mut suffix = [0u8; 8];
    random_bytes(&mut suffix)?;
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_else(|| "file".as_ref()));
    name.push(format!(".tmp-{}", hex::encode(suffix)));
    Ok(path.with_file_name(name))
}

/// Syncs the directory holding `path`, so that a rename or link into it
/// survives a power loss.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Creates `path` with mode 0600 holding `bytes`, never overwriting, so that
/// `path` is either absent or complete: a temporary file beside it is written
/// and synced, then hard-linked to `path` (which fails if `path` exists) and
/// removed, then the directory is synced. On a file system without hard links
/// the temporary file is renamed instead, after checking `path` is absent.
fn publish_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let exists = || std::fs::symlink_metadata(path).is_ok();
    let already = || Error::AlreadyExists {
        path: path.to_path_buf(),
    };
    if exists() {
        return Err(already());
    }
    let tmp = temp_sibling(path)?;
    write_private_file(&tmp, bytes)?;
    let placed = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(already()),
        Err(_) if !exists() => std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)),
        Err(e) => Err(Error::io(path, e)),
    };
    // After a link or a failure the temporary file goes; after a rename it is
    // gone already.
    let _ = std::fs::remove_file(&tmp);
    placed?;
    sync_parent(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_master() -> MasterKey {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        MasterKey::from_bytes(k)
    }

    #[test]
    fn agent_secrets_match_the_protocol_vectors() {
        let m = vector_master();
        assert_eq!(
            m.agent_secret("alice", 1).to_hex(),
            "9c380709a83c46c059d5f94454817a9f9cb004ccb92db601f0fcfa69bb063631"
        );
        assert_eq!(
            m.agent_secret("bob", 2).to_hex(),
            "dad9504d9ba21dea786d5285c7b4c113752e3c8b8bbef36264e67261d26a73d0"
        );
    }

    #[test]
    fn purpose_keys_differ_from_each_other() {
        let m = vector_master();
        let keys = [m.store_key(), m.token_key(), *m.dummy_secret().as_bytes()];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1], keys[2]);
        assert_ne!(keys[0], keys[2]);
    }

    #[test]
    fn key_file_is_created_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let created = MasterKey::create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = MasterKey::load_file(&path).unwrap();
        assert_eq!(created.0, loaded.0);
        assert!(matches!(
            MasterKey::create_file(&path),
            Err(Error::AlreadyExists { .. })
        ));
        let (again, fresh) = MasterKey::load_or_create(&path).unwrap();
        assert!(!fresh);
        assert_eq!(again.0, created.0);
    }

    #[test]
    fn key_file_creation_leaves_only_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::create_file(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["master.key"]);
        // Refused without touching the existing file or leaving a temporary one.
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            MasterKey::create_file(&path),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_invalid_key_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        for (text, says) in [("", "empty"), ("00\n", "64 hex")] {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = MasterKey::load_file(&path).unwrap_err();
            assert!(matches!(e, Error::InvalidMasterKey { .. }), "{e:?}");
            let message = e.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(says), "{message}");
        }
    }

    #[test]
    fn group_or_world_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::create_file(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match MasterKey::load_file(&path) {
                Err(Error::InsecureFileMode { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(MasterKey::load_file(&path).is_ok());
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(65)] {
            assert!(matches!(
                MasterKey::from_hex(bad),
                Err(Error::InvalidKey { .. })
            ));
        }
        assert!(MasterKey::from_hex(&format!("  {}\n", "ab".repeat(32))).is_ok());
    }

    #[test]
    fn unset_environment_variable_is_none() {
        let got = MasterKey::from_env("LIGHTHOUSE_TEST_SURELY_UNSET_VARIABLE").unwrap();
        assert!(got.is_none());
    }

    #[test]
    fn debug_output_hides_keys() {
        let m = vector_master();
        assert_eq!(format!("{m:?}"), "MasterKey(<redacted>)");
        assert!(!format!("{:?}", m.agent_secret("a", 1)).contains("9c"));
    }

    #[test]
    fn decimal_formatting_matches_std() {
        for n in [0u64, 1, 9, 10, 1234567890, u64::MAX] {
            assert_eq!(itoa_u64(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
