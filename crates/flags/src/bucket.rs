//! Deterministic assignment of agents to buckets and variant slots
//! (PROTOCOL.md section 8).
//!
//! Both hash `"<key>:<agent>"` with MurmurHash3 x86_32, as an unsigned 32-bit
//! value, then take it modulo the range. The variant slot uses a different seed
//! so that an agent's variant is independent of whether it falls inside the
//! rollout percentage.
//!
//! [`murmur3_x86_32`] is the `murmur3` crate's implementation. Evaluation uses
//! [`Murmur3`], a streaming form of the same function that lets a flag keep the
//! hash state of its `"<key>:"` prefix and feed only the agent id per
//! evaluation, without assembling the input in a buffer; property tests check
//! that both give the same value for every input and every split of it.

/// Seed of the rollout bucket hash.
pub const BUCKET_SEED: u32 = 0;
/// Seed of the variant slot hash.
pub const VARIANT_SEED: u32 = 86_028_157;
/// Number of rollout buckets: a bucket is in `0..BUCKETS`, one per 0.01 %.
pub const BUCKETS: u32 = 10_000;
/// Number of variant slots: a slot is in `0..VARIANT_SLOTS`, so variant weights
/// sum to this.
pub const VARIANT_SLOTS: u32 = 1_000;

/// MurmurHash3 x86_32 of `data` with `seed`, computed by the `murmur3` crate.
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    let mut reader = data;
    // Reading from a byte slice cannot fail, so the error arm is unreachable; 0
    // keeps this function total without a panic path.
    murmur3::murmur3_32(&mut reader, seed).unwrap_or(0)
}

/// `murmur3_x86_32("<key>:<agent>", seed)`.
pub fn hash_key_agent(key: &str, agent: &str, seed: u32) -> u32 {
    Murmur3::new(seed)
        .key_prefix(key)
        .finish_with(agent.as_bytes())
}

/// The rollout bucket of `agent` for flag `key`: in `0..10000`.
pub fn bucket(key: &str, agent: &str) -> u32 {
    hash_key_agent(key, agent, BUCKET_SEED) % BUCKETS
}

/// The variant slot of `agent` for flag `key`: in `0..1000`.
pub fn variant_slot(key: &str, agent: &str) -> u32 {
    hash_key_agent(key, agent, VARIANT_SEED) % VARIANT_SLOTS
}

/// MurmurHash3 x86_32 fed in pieces. `Copy`, so a prepared prefix state is
/// reused by copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Murmur3 {
    h: u32,
    /// Bytes of an incomplete block, little-endian, `tail_len` of them.
    tail: u32,
    tail_len: u32,
    /// Total bytes fed (the algorithm mixes the length in modulo 2^32).
    len: u32,
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[inline(always)]
fn mix_block(h: u32, k: u32) -> u32 {
    (h ^ scramble(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

impl Murmur3 {
    /// An empty hash with `seed`.
    pub fn new(seed: u32) -> Self {
        Murmur3 {
            h: seed,
            tail: 0,
            tail_len: 0,
            len: 0,
        }
    }

    /// This state after feeding `"<key>:"`.
    pub fn key_prefix(mut self, key: &str) -> Self {
        self.write(key.as_bytes());
        self.write(b":");
        self
    }

    /// Feeds `bytes`.
    #[inline]
    pub fn write(&mut self, mut bytes: &[u8]) {
        // The length is mixed in modulo 2^32, as the reference does.
        self.len = self.len.wrapping_add(bytes.len() as u32);
        while self.tail_len != 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return;
            };
            self.push_byte(b);
            bytes = rest;
        }
        let mut blocks = bytes.chunks_exact(4);
        for block in &mut blocks {
            let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            self.h = mix_block(self.h, k);
        }
        for &b in blocks.remainder() {
            self.push_byte(b);
        }
    }

    #[inline(always)]
    fn push_byte(&mut self, b: u8) {
        self.tail |= u32::from(b) << (8 * self.tail_len);
        self.tail_len += 1;
        if self.tail_len == 4 {
            self.h = mix_block(self.h, self.tail);
            self.tail = 0;
            self.tail_len = 0;
        }
    }

    /// The hash of everything fed.
    #[inline]
    pub fn finish(self) -> u32 {
        let mut h = self.h;
        if self.tail_len != 0 {
            h ^= scramble(self.tail);
        }
        h ^= self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }

    /// The hash of everything fed followed by `bytes`, leaving `self` as it was.
    #[inline]
    pub fn finish_with(mut self, bytes: &[u8]) -> u32 {
        self.write(bytes);
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The table of PROTOCOL.md section 8, verbatim.
    const VECTORS: [(&str, &str, u32, u32, u32, u32); 3] = [
        (
            "elicitation_enabled",
            "alice",
            3_231_854_585,
            4585,
            2_453_231_491,
            491,
        ),
        (
            "elicitation_enabled",
            "bob",
            3_437_373_550,
            3550,
            3_777_216_130,
            130,
        ),
        ("new_ui", "carol", 2_285_316_254, 6254, 1_207_015_647, 647),
    ];

    #[test]
    fn reproduces_the_protocol_vectors() {
        for (key, agent, h0, b, h1, slot) in VECTORS {
            let input = format!("{key}:{agent}");
            assert_eq!(
                murmur3_x86_32(input.as_bytes(), 0),
                h0,
                "{input} seed 0, crate"
            );
            assert_eq!(
                hash_key_agent(key, agent, BUCKET_SEED),
                h0,
                "{input} seed 0, streaming"
            );
            assert_eq!(bucket(key, agent), b, "{input} bucket");
            assert_eq!(
                murmur3_x86_32(input.as_bytes(), VARIANT_SEED),
                h1,
                "{input} seed 86028157, crate"
            );
            assert_eq!(
                hash_key_agent(key, agent, VARIANT_SEED),
                h1,
                "{input} seed 86028157, streaming"
            );
            assert_eq!(variant_slot(key, agent), slot, "{input} slot");
        }
    }

    #[test]
    fn known_murmur3_reference_values() {
        // Reference values of MurmurHash3_x86_32 (Appleby's SMHasher).
        for (data, seed, h) in [
            (&b""[..], 0, 0),
            (b"", 1, 0x514E_28B7),
            (b"hello", 0, 0x248B_FA47),
        ] {
            assert_eq!(murmur3_x86_32(data, seed), h);
            assert_eq!(Murmur3::new(seed).finish_with(data), h);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn streaming_equals_the_crate_for_every_split(
            data in prop::collection::vec(any::<u8>(), 0..300),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            seed in prop_oneof![Just(BUCKET_SEED), Just(VARIANT_SEED), any::<u32>()],
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut m = Murmur3::new(seed);
            let mut start = 0;
            for p in points {
                m.write(&data[start..p]);
                start = p;
            }
            m.write(&data[start..]);
            prop_assert_eq!(m.finish(), murmur3_x86_32(&data, seed));
        }

        #[test]
        fn key_agent_hash_equals_the_crate_on_the_joined_text(
            key in "[a-z0-9][a-z0-9._-]{0,127}",
            agent in "[a-z0-9][a-z0-9._-]{0,63}",
        ) {
            let joined = format!("{key}:{agent}");
            for seed in [BUCKET_SEED, VARIANT_SEED] {
                prop_assert_eq!(hash_key_agent(&key, &agent, seed), murmur3_x86_32(joined.as_bytes(), seed));
            }
        }
    }
}
