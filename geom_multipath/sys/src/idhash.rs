//! The hash for maps keyed by request tokens and path ids: small integers handed out in
//! sequence, never chosen by a peer. The standard SipHash guards against keys picked to
//! collide, which these cannot be, and costs a hundred-odd instructions a lookup; the
//! daemon does several per request (in flight, attempts, ring slots), so these maps use
//! one multiplication instead (Fibonacci hashing, as rustc's FxHash does).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by ids the program hands out itself.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of integer keys (see the module doc).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

/// 2^64 / φ, odd: multiplying by it spreads consecutive keys over the whole word.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash<T: Hash>(t: &T) -> u64 {
        BuildHasherDefault::<IdHasher>::default().hash_one(t)
    }

    #[test]
    fn consecutive_tokens_spread_over_the_high_bits() {
        // hashbrown takes its 7 control bits from the top of the hash and the bucket from
        // the bottom: both must vary between neighbours.
        let tops: std::collections::BTreeSet<u64> = (0..128u64).map(|t| hash(&t) >> 57).collect();
        assert!(
            tops.len() > 64,
            "only {} distinct top-7-bit values",
            tops.len()
        );
        let lows: std::collections::BTreeSet<u64> = (0..128u64).map(|t| hash(&t) & 127).collect();
        assert!(
            lows.len() > 64,
            "only {} distinct low-7-bit values",
            lows.len()
        );
    }

    #[test]
    fn tuples_and_bytes_hash_by_every_part() {
        assert_ne!(hash(&(1u64, 2u32)), hash(&(2u64, 1u32)));
        assert_ne!(hash(&"loop0"), hash(&"loop1"));
        assert_eq!(hash(&(7u64, 1u32)), hash(&(7u64, 1u32)));
    }

    #[test]
    fn a_map_works_as_any_map() {
        let mut m: IdMap<u64, &str> = IdMap::default();
        for t in 0..10_000u64 {
            m.insert(t, "x");
        }
        for t in (0..10_000u64).step_by(2) {
            m.remove(&t);
        }
        assert_eq!(m.len(), 5000);
        assert!(m.contains_key(&9999) && !m.contains_key(&9998));
    }
}
