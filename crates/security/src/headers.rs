//! Collecting and checking the authentication headers (PROTOCOL.md 2.2 step 1).
//!
//! [`AuthHeaders`] has a fixed size: it borrows at most one value per header and
//! remembers duplicates, so nothing here allocates whatever the client sends.

use crate::refusal::Unauthenticated;
use crate::signing::{
    HEADER_AGENT, HEADER_AUTHORIZATION, HEADER_KEY_ID, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
};

/// Shortest nonce accepted.
pub const MIN_NONCE_LEN: usize = 16;
/// Longest nonce accepted.
pub const MAX_NONCE_LEN: usize = 64;
/// Longest decimal key id or timestamp accepted (enough for any `u64`/`i64`).
const MAX_DECIMAL_LEN: usize = 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Slot<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    Duplicated,
}

const NAMES: [&str; 6] = [
    HEADER_AGENT,
    HEADER_KEY_ID,
    HEADER_TIMESTAMP,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_AUTHORIZATION,
];

/// The authentication headers of one request, borrowed from it.
///
/// ```
/// use lighthouse_security::AuthHeaders;
/// let mut h = AuthHeaders::new();
/// h.add("X-Lighthouse-Agent", b"alice");
/// h.add("content-type", b"application/json"); // ignored
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthHeaders<'a> {
    slots: [Slot<'a>; 6],
}

/// What a request presented, once step 1 passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    Signature(SignatureHeaders<'a>),
    Bearer(&'a [u8]),
}

/// The five signature headers, well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignatureHeaders<'a> {
    pub agent: &'a str,
    pub key_id: u64,
    pub key_id_raw: &'a [u8],
    pub timestamp: i64,
    pub timestamp_raw: &'a [u8],
    pub nonce: &'a str,
    pub signature: [u8; 32],
}

impl<'a> AuthHeaders<'a> {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one header (name case-insensitive). Headers other than the five
    /// signature headers and `Authorization` are ignored.
    pub fn add(&mut self, name: &str, value: &'a [u8]) {
        if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            self.slots[i] = match self.slots[i] {
                Slot::Absent => Slot::One(value),
                _ => Slot::Duplicated,
            };
        }
    }

    /// Headers from `(name, value)` pairs.
    pub fn from_pairs<I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut h = Self::new();
        for (n, v) in pairs {
            h.add(n, v);
        }
        h
    }

    /// The value of header `name` when it was sent exactly once.
    pub fn value(&self, name: &str) -> Option<&'a [u8]> {
        let i = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name))?;
        match self.slots[i] {
            Slot::One(v) => Some(v),
            _ => None,
        }
    }

    /// The token of an `Authorization: Bearer` header sent exactly once.
    pub fn bearer(&self) -> Option<&'a [u8]> {
        self.value(HEADER_AUTHORIZATION).and_then(bearer_token)
    }

    fn get(&self, i: usize) -> Result<Option<&'a [u8]>, Unauthenticated> {
        match self.slots[i] {
            Slot::Absent => Ok(None),
            Slot::One(v) => Ok(Some(v)),
            Slot::Duplicated => Err(Unauthenticated::DuplicatedHeader(NAMES[i])),
        }
    }

    fn required(&self, i: usize) -> Result<&'a [u8], Unauthenticated> {
        self.get(i)?.ok_or(Unauthenticated::MissingHeader(NAMES[i]))
    }

    /// Step 1: which credential the request presents, well formed.
    pub(crate) fn presented(&self) -> Result<Presented<'a>, Unauthenticated> {
        let any_signature_header = self.slots[..5].iter().any(|s| *s != Slot::Absent);
        let bearer = match self.get(5)? {
            Some(v) => bearer_token(v),
            None => None,
        };
        match (any_signature_header, bearer) {
            (true, Some(_)) => Err(Unauthenticated::AmbiguousCredentials),
            (false, Some(token)) => Ok(Presented::Bearer(token)),
            (false, None) => match self.get(5)? {
                Some(_) => Err(Unauthenticated::MalformedHeader(HEADER_AUTHORIZATION)),
                None => Err(Unauthenticated::NoCredentials),
            },
            (true, None) => self.signature_headers().map(Presented::Signature),
        }
    }

    fn signature_headers(&self) -> Result<SignatureHeaders<'a>, Unauthenticated> {
        let agent = self.required(0)?;
        let key_id_raw = self.required(1)?;
        let timestamp_raw = self.required(2)?;
        let nonce = self.required(3)?;
        let signature = self.required(4)?;
        let malformed = Unauthenticated::MalformedHeader;
        let agent = valid_agent(agent).ok_or(malformed(HEADER_AGENT))?;
        let key_id = canonical_decimal(key_id_raw).ok_or(malformed(HEADER_KEY_ID))?;
        let timestamp = canonical_timestamp(timestamp_raw).ok_or(malformed(HEADER_TIMESTAMP))?;
        let nonce = valid_nonce(nonce).ok_or(malformed(HEADER_NONCE))?;
        let signature = lower_hex32(signature).ok_or(malformed(HEADER_SIGNATURE))?;
        Ok(SignatureHeaders {
            agent,
            key_id,
            key_id_raw,
            timestamp,
            timestamp_raw,
            nonce,
            signature,
        })
    }
}

/// The token of an `Authorization` value `Bearer <token>` (scheme
/// case-insensitive, one space); `None` for any other value.
pub fn bearer_token(v: &[u8]) -> Option<&[u8]> {
    if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
        Some(&v[7..])
    } else {
        None
    }
}

/// An agent id: `^[a-z0-9][a-z0-9._-]{0,63}$`.
pub(crate) fn valid_agent(v: &[u8]) -> Option<&str> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.iter().enumerate().all(|(i, &b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    // All bytes are ASCII when `ok`.
    if ok {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// 16 to 64 of `[A-Za-z0-9_-]`.
fn valid_nonce(v: &[u8]) -> Option<&str> {
    let ok = (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&v.len())
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// Decimal digits without sign or leading zero (`0` itself allowed), fitting a `u64`.
pub(crate) fn canonical_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > MAX_DECIMAL_LEN || (v.len() > 1 && v[0] == b'0') {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// A timestamp: canonical decimal digits as [`canonical_decimal`] takes
/// them, but of any length. One beyond `i64` is a well-formed time too far
/// off for any window: it is taken as `i64::MAX`, so the window check (step
/// 3) refuses it as stale, as it does `i64::MAX` itself, rather than step 1
/// as malformed.
fn canonical_timestamp(v: &[u8]) -> Option<i64> {
    let canonical =
        !v.is_empty() && (v.len() == 1 || v[0] != b'0') && v.iter().all(u8::is_ascii_digit);
    canonical.then(|| {
        canonical_decimal(v)
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or(i64::MAX)
    })
}

/// Value of a lowercase hex digit, 0xff for anything else.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes exactly `2 * N` lowercase hex characters.
pub(crate) fn lower_hex<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    if v.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(v.chunks_exact(2)) {
        let hi = HEX_VALUE[usize::from(pair[0])];
        let lo = HEX_VALUE[usize::from(pair[1])];
        bad |= (hi | lo) & 0xf0;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad == 0).then_some(out)
}

/// Exactly 64 lowercase hex characters.
pub(crate) fn lower_hex32(v: &[u8]) -> Option<[u8; 32]> {
    lower_hex(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("X-Lighthouse-Agent", b"alice".as_slice()),
            ("X-Lighthouse-Key-Id", b"1"),
            ("X-Lighthouse-Timestamp", b"1790000000"),
            ("X-Lighthouse-Nonce", b"n0nce-0001-abcdef"),
            (
                "X-Lighthouse-Signature",
                b"d2bbea5c20f77139a957cee659902328dceefb21bf4d5792d503c881df7a9a85",
            ),
        ]
    }

    fn refusal(pairs: Vec<(&'static str, &'static [u8])>) -> Unauthenticated {
        AuthHeaders::from_pairs(pairs).presented().unwrap_err()
    }

    #[test]
    fn well_formed_headers_parse() {
        let Presented::Signature(s) = AuthHeaders::from_pairs(good()).presented().unwrap() else {
            panic!("expected a signature");
        };
        assert_eq!(
            (s.agent, s.key_id, s.timestamp),
            ("alice", 1, 1_790_000_000)
        );
        assert_eq!(s.nonce, "n0nce-0001-abcdef");
    }

    #[test]
    fn each_missing_header_is_named() {
        for (i, name) in NAMES.iter().take(5).enumerate() {
            let mut pairs = good();
            pairs.remove(i);
            assert_eq!(
                refusal(pairs),
                Unauthenticated::MissingHeader(name),
                "{name}"
            );
        }
    }

    #[test]
    fn duplicated_header_is_refused() {
        let mut pairs = good();
        pairs.push(("x-lighthouse-nonce", b"another-nonce-0001"));
        assert_eq!(
            refusal(pairs),
            Unauthenticated::DuplicatedHeader(HEADER_NONCE)
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        let cases: [(usize, &'static [u8], &str); 12] = [
            (0, b"Alice", HEADER_AGENT),
            (0, b"-alice", HEADER_AGENT),
            (1, b"01", HEADER_KEY_ID),
            (1, b"+1", HEADER_KEY_ID),
            (1, b"99999999999999999999", HEADER_KEY_ID),
            (2, b"-5", HEADER_TIMESTAMP),
            (2, b"01790000000", HEADER_TIMESTAMP),
            (3, b"short", HEADER_NONCE),
            (3, b"has space in the nonce", HEADER_NONCE),
            (
                4,
                b"D2BBEA5C20F77139A957CEE659902328DCEEFB21BF4D5792D503C881DF7A9A85",
                HEADER_SIGNATURE,
            ),
            (4, b"d2bb", HEADER_SIGNATURE),
            (
                4,
                "é".repeat(32).as_bytes().to_vec().leak(),
                HEADER_SIGNATURE,
            ),
        ];
        for (i, value, name) in cases {
            let mut pairs = good();
            pairs[i].1 = value;
            assert_eq!(
                refusal(pairs),
                Unauthenticated::MalformedHeader(name),
                "{value:?}"
            );
        }
    }

    #[test]
    fn bearer_and_signature_together_are_ambiguous() {
        let mut pairs = good();
        pairs.push(("Authorization", b"Bearer abc"));
        assert_eq!(refusal(pairs), Unauthenticated::AmbiguousCredentials);
        assert_eq!(refusal(vec![]), Unauthenticated::NoCredentials);
        assert_eq!(
            refusal(vec![("authorization", b"Basic abc")]),
            Unauthenticated::MalformedHeader(HEADER_AUTHORIZATION)
        );
        assert_eq!(
            AuthHeaders::from_pairs([("authorization", b"bearer tok".as_slice())]).presented(),
            Ok(Presented::Bearer(b"tok"))
        );
    }

    #[test]
    fn lower_hex_accepts_only_lowercase_digits() {
        assert_eq!(lower_hex::<2>(b"00ff"), Some([0, 255]));
        assert_eq!(lower_hex::<2>(b"a1b2"), Some([0xa1, 0xb2]));
        for bad in [
            &b"00FF"[..],
            b"0g00",
            b"000",
            b"00000",
            b"0 00",
            b"\xff\xff00",
        ] {
            assert_eq!(lower_hex::<2>(bad), None, "{bad:?}");
        }
        for b in 0..=255u8 {
            let ok = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert_eq!(lower_hex::<1>(&[b, b'0']).is_some(), ok, "{b}");
        }
    }

    #[test]
    fn canonical_timestamps_beyond_i64_are_the_largest_time() {
        assert_eq!(canonical_timestamp(b"0"), Some(0));
        assert_eq!(canonical_timestamp(b"1790000000"), Some(1_790_000_000));
        assert_eq!(canonical_timestamp(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(canonical_timestamp(b"9223372036854775808"), Some(i64::MAX));
        assert_eq!(canonical_timestamp(&[b'9'; 400]), Some(i64::MAX));
        for bad in [&b""[..], b"00", b"01", b"-1", b"+1", b"1.5", b"1e9", b" 1"] {
            assert_eq!(canonical_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn canonical_decimals() {
        assert_eq!(canonical_decimal(b"0"), Some(0));
        assert_eq!(canonical_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(canonical_decimal(b"18446744073709551616"), None);
        assert_eq!(canonical_decimal(b""), None);
        assert_eq!(canonical_decimal(b"00"), None);
    }
}
