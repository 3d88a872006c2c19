//! Credential files (PROTOCOL.md 2.1): what `lighthouse-bridge agents add` writes
//! and what clients sign with.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::caller::Role;
use crate::error::{Error, Result};
use crate::keys::{AgentSecret, read_private_file, sync_parent, temp_sibling, write_private_file};
use crate::signing::Signer;

/// One agent's credential:
/// `{"agent": "alice", "role": "agent", "key_id": 1, "secret": "<64 hex>", "bridge": "http://127.0.0.1:8765"}`.
///
/// `Debug` never shows the secret. Files are written with mode 0600 and refused
/// when group- or world-readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Agent id.
    pub agent: String,
    /// The agent's role.
    pub role: Role,
    /// The key id the secret belongs to.
    pub key_id: u64,
    /// The agent secret for `key_id`, as 64 lowercase hex characters on the wire.
    #[serde(with = "secret_hex")]
    pub secret: AgentSecret,
    /// The bridge's base URL.
    pub bridge: String,
}

mod secret_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::keys::AgentSecret;

    pub fn serialize<S: Serializer>(s: &AgentSecret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&s.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<AgentSecret, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(de)?;
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(serde::de::Error::custom(
                "secret must be 64 lowercase hex characters",
            ));
        }
        AgentSecret::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

impl Credential {
    /// Parses credential JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::InvalidCredential {
            path: "<json>".into(),
            reason: e.to_string(),
        })
    }

    /// The credential as pretty JSON (contains the secret: write it only to a
    /// private file or a response to an admin).
    pub fn to_json(&self) -> String {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| unreachable!())
    }

    /// Reads a credential file, refusing one its group or others may read.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_private_file(path)?;
        serde_json::from_str(&text).map_err(|e| Error::InvalidCredential {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes the credential to `path` with mode 0600, replacing an existing file
    /// atomically (a new file is written next to it, synced, then renamed over it).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tmp = temp_sibling(path)?;
        let mut text = self.to_json();
        text.push('\n');
        write_private_file(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })?;
        // Make the rename itself durable; failure to sync the directory is not
        // fatal to the write that already happened.
        let _ = sync_parent(path);
        Ok(())
    }

    /// A request signer for this credential.
    pub fn signer(&self) -> Signer {
        Signer::new(&self.agent, self.key_id, &self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Credential {
        Credential {
            agent: "alice".into(),
            role: Role::Agent,
            key_id: 1,
            secret: AgentSecret::from_bytes([7; 32]),
            bridge: "http://127.0.0.1:8765".into(),
        }
    }

    #[test]
    fn json_has_the_protocol_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"agent": "alice", "role": "agent", "key_id": 1,
                "secret": "07".repeat(32), "bridge": "http://127.0.0.1:8765"})
        );
        assert_eq!(
            Credential::from_json(&sample().to_json()).unwrap(),
            sample()
        );
    }

    #[test]
    fn written_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.json");
        sample().write(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Credential::read(&path).unwrap(), sample());
        let mut rotated = sample();
        rotated.key_id = 2;
        rotated.write(&path).unwrap();
        assert_eq!(Credential::read(&path).unwrap().key_id, 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn readable_credential_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.json");
        sample().write(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Credential::read(&path),
            Err(Error::InsecureFileMode { mode: 0o644, .. })
        ));
    }

    #[test]
    fn malformed_credentials_are_refused() {
        let good = sample().to_json();
        for bad in [
            good.replace("\"agent\"", "\"name\""),
            good.replace(&"07".repeat(32), &"07".repeat(31)),
            good.replace(&"07".repeat(32), &"0A".repeat(32)),
            good.replace("\"agent\",", "\"root\","),
            good.replace('}', ", \"extra\": 1}"),
        ] {
            assert!(Credential::from_json(&bad).is_err(), "{bad}");
        }
    }
}
