//! The string to sign (PROTOCOL.md 2.2) and the client-side [`Signer`].

use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::keys::{AgentSecret, HmacSha256, random_bytes};

/// `X-Lighthouse-Agent` (lower case, as HTTP/2 sends header names).
pub const HEADER_AGENT: &str = "x-lighthouse-agent";
/// `X-Lighthouse-Key-Id`.
pub const HEADER_KEY_ID: &str = "x-lighthouse-key-id";
/// `X-Lighthouse-Timestamp`.
pub const HEADER_TIMESTAMP: &str = "x-lighthouse-timestamp";
/// `X-Lighthouse-Nonce`.
pub const HEADER_NONCE: &str = "x-lighthouse-nonce";
/// `X-Lighthouse-Signature`.
pub const HEADER_SIGNATURE: &str = "x-lighthouse-signature";
/// `Authorization` (bearer tokens).
pub const HEADER_AUTHORIZATION: &str = "authorization";

/// The first line of every string to sign.
const SCHEME: &[u8] = b"LH1-HMAC-SHA256\n";

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of the SHA-256 of `body`.
pub fn body_hash_hex(body: &[u8]) -> [u8; 64] {
    hex64(&Sha256::digest(body).into())
}

/// Lowercase hex of 32 bytes.
fn hex64(bytes: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// The parts of a request that are signed, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    /// HTTP method (upper-cased while signing).
    pub method: &'a str,
    /// The path exactly as sent on the wire, without the query.
    pub path: &'a str,
    /// The query exactly as sent, without `?`; empty when there is none.
    pub query: &'a str,
    /// Agent id.
    pub agent: &'a str,
    /// Key id, canonical decimal.
    pub key_id: &'a [u8],
    /// Unix seconds, canonical decimal.
    pub timestamp: &'a [u8],
    /// The nonce.
    pub nonce: &'a str,
    /// Lowercase hex SHA-256 of the body.
    pub body_hash: &'a [u8; 64],
}

/// Feeds the nine lines of the string to sign into `mac`, without building the
/// string (no allocation whatever the sizes).
pub(crate) fn feed(mac: &mut HmacSha256, s: &SigningInput<'_>) {
    mac.update(SCHEME);
    let mut upper = [0u8; 32];
    for chunk in s.method.as_bytes().chunks(upper.len()) {
        let out = &mut upper[..chunk.len()];
        out.copy_from_slice(chunk);
        out.make_ascii_uppercase();
        mac.update(out);
    }
    for part in [
        b"\n".as_slice(),
        s.path.as_bytes(),
        b"\n",
        s.query.as_bytes(),
        b"\n",
        s.agent.as_bytes(),
        b"\n",
        s.key_id,
        b"\n",
        s.timestamp,
        b"\n",
        s.nonce.as_bytes(),
        b"\n",
        s.body_hash,
    ] {
        mac.update(part);
    }
}

/// The string to sign as text (for debugging clients and for the tests; the
/// signer and verifier stream it into the MAC instead).
pub fn string_to_sign(s: &SigningInput<'_>) -> String {
    let hash = std::str::from_utf8(s.body_hash).unwrap_or("");
    format!(
        "LH1-HMAC-SHA256\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        s.method.to_ascii_uppercase(),
        s.path,
        s.query,
        s.agent,
        String::from_utf8_lossy(s.key_id),
        String::from_utf8_lossy(s.timestamp),
        s.nonce,
        hash
    )
}

/// The five headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `X-Lighthouse-Agent`.
    pub agent: String,
    /// `X-Lighthouse-Key-Id`.
    pub key_id: String,
    /// `X-Lighthouse-Timestamp`.
    pub timestamp: String,
    /// `X-Lighthouse-Nonce`.
    pub nonce: String,
    /// `X-Lighthouse-Signature`.
    pub signature: String,
}

impl SignedHeaders {
    /// `(lower-case header name, value)` pairs, ready to put on a request.
    pub fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            (HEADER_AGENT, &self.agent),
            (HEADER_KEY_ID, &self.key_id),
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_NONCE, &self.nonce),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }
}

/// Signs requests for one agent and key id (client side).
///
/// ```
/// use lighthouse_security::{MasterKey, Signer};
/// let secret = MasterKey::from_bytes([0; 32]).agent_secret("alice", 1);
/// let signer = Signer::new("alice", 1, &secret);
/// let h = signer.sign("GET", "/v1/events", "limit=10", b"", 1_790_000_000);
/// assert_eq!(h.signature.len(), 64);
/// assert_eq!(h.nonce.len(), 24);
/// ```
#[derive(Clone)]
pub struct Signer {
    agent: String,
    key_id: u64,
    mac: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("agent", &self.agent)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `agent` with the secret of `key_id`.
    pub fn new(agent: &str, key_id: u64, secret: &AgentSecret) -> Self {
        Signer {
            agent: agent.to_owned(),
            key_id,
            mac: secret.mac(),
        }
    }

    /// The agent this signer signs for.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// Signs a request with a fresh random nonce (24 characters).
    ///
    /// If the operating system's random source fails, the nonce falls back to one
    /// derived from the time and a process-wide counter, still unique per request.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        timestamp: i64,
    ) -> SignedHeaders {
        let nonce = fresh_nonce();
        self.sign_with_nonce(method, path, query, body, timestamp, &nonce)
    }

    /// Signs a request with the given nonce (tests and vectors).
    pub fn sign_with_nonce(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> SignedHeaders {
        let key_id = self.key_id.to_string();
        let ts = timestamp.to_string();
        let hash = body_hash_hex(body);
        let mut mac = self.mac.clone();
        feed(
            &mut mac,
            &SigningInput {
                method,
                path,
                query,
                agent: &self.agent,
                key_id: key_id.as_bytes(),
                timestamp: ts.as_bytes(),
                nonce,
                body_hash: &hash,
            },
        );
        SignedHeaders {
            agent: self.agent.clone(),
            key_id,
            timestamp: ts,
            nonce: nonce.to_owned(),
            signature: String::from_utf8_lossy(&hex64(&mac.finalize().into_bytes().into()))
                .into_owned(),
        }
    }
}

const NONCE_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// 24 characters of `[A-Za-z0-9_-]` carrying 144 random bits.
pub fn fresh_nonce() -> String {
    let mut raw = [0u8; 18];
    if random_bytes(&mut raw).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        raw[..8].copy_from_slice(&n.to_le_bytes());
        raw[8..].copy_from_slice(&t.to_le_bytes()[..10]);
    }
    let mut out = String::with_capacity(24);
    for chunk in raw.chunks(3) {
        let v = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(char::from(NONCE_ALPHABET[((v >> shift) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn fresh_nonces_are_valid_and_distinct() {
        let a = fresh_nonce();
        let b = fresh_nonce();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn streamed_string_to_sign_equals_the_text_form() {
        let secret = MasterKey::from_bytes([3; 32]).agent_secret("bob", 9);
        let hash = body_hash_hex(b"{}");
        let input = SigningInput {
            method: "post",
            path: "/v1/x",
            query: "a=1",
            agent: "bob",
            key_id: b"9",
            timestamp: b"100",
            nonce: "abcdefghijklmnop",
            body_hash: &hash,
        };
        let mut streamed = secret.mac();
        feed(&mut streamed, &input);
        let mut whole = secret.mac();
        whole.update(string_to_sign(&input).as_bytes());
        assert_eq!(
            streamed.finalize().into_bytes(),
            whole.finalize().into_bytes()
        );
        assert!(
            string_to_sign(&input).starts_with("LH1-HMAC-SHA256\nPOST\n/v1/x\na=1\nbob\n9\n100\n")
        );
    }
}
