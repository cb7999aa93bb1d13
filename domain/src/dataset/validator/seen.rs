//! Bounded sets for a validator that must not grow with the file.
//!
//! `SeenSet` remembers strings (conversation ids, speakers) as 64-bit hashes, exactly up to a
//! limit; past it, it moves to a Bloom filter of fixed size, so memory stays bounded whatever
//! the file holds. After the switch a "seen before" answer is probable, not certain (a false
//! positive rate under 0.1 % up to 30 million entries with the default size), and the report says so.
//!
//! `LengthCounts` keeps a count per distinct length, not one entry per conversation: a line
//! is bounded in bytes, so the distinct lengths are too, and the percentiles stay exact.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use super::LengthDistribution;

/// 2^29 bits (64 MiB) and 7 probes.
const BLOOM_BITS: u64 = 1 << 29;
const BLOOM_PROBES: u64 = 7;

pub(super) struct SeenSet {
    exact: HashSet<u64>,
    bloom: Option<Vec<u64>>,
    exact_limit: usize,
    distinct: u64,
}

impl SeenSet {
    pub(super) fn new(exact_limit: usize) -> SeenSet {
        SeenSet {
            exact: HashSet::new(),
            bloom: None,
            exact_limit,
            distinct: 0,
        }
    }

    /// Records `key`; answers whether it was (probably, once approximate) seen before.
    pub(super) fn seen_before(&mut self, key: &str) -> bool {
        let (h1, h2) = hashes(key);
        if let Some(bits) = self.bloom.as_mut() {
            let seen = bloom_insert(bits, h1, h2);
            if !seen {
                self.distinct += 1;
            }
            return seen;
        }
        if !self.exact.insert(h1) {
            return true;
        }
        self.distinct += 1;
        if self.exact.len() > self.exact_limit {
            let mut bits = vec![0u64; (BLOOM_BITS / 64) as usize];
            for h in self.exact.drain() {
                bloom_insert(&mut bits, h, second_hash(h));
            }
            self.exact = HashSet::new();
            self.bloom = Some(bits);
        }
        false
    }

    /// Whether answers are exact (no switch to the Bloom filter happened).
    pub(super) fn is_exact(&self) -> bool {
        self.bloom.is_none()
    }

    /// Distinct keys recorded (a lower bound once approximate).
    pub(super) fn distinct(&self) -> u64 {
        self.distinct
    }
}

fn hashes(key: &str) -> (u64, u64) {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let h1 = hasher.finish();
    (h1, second_hash(h1))
}

/// The probe step is derived from the first hash (the exact set keeps only that one).
fn second_hash(h1: u64) -> u64 {
    // splitmix64 finaliser; odd, so every probe lands on a distinct bit sequence.
    let mut z = h1.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// Sets the probes' bits; answers whether all were already set.
fn bloom_insert(bits: &mut [u64], h1: u64, h2: u64) -> bool {
    let mut all_set = true;
    for i in 0..BLOOM_PROBES {
        let bit = h1.wrapping_add(i.wrapping_mul(h2)) % BLOOM_BITS;
        let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
        if bits[word] & mask == 0 {
            all_set = false;
            bits[word] |= mask;
        }
    }
    all_set
}

/// Ids below this are kept as bits (a real BPE vocabulary has a few hundred thousand: 128
/// KiB at most); any above, in a hash set.
const DENSE_TOKEN_IDS: u32 = 1 << 20;

/// The distinct token ids seen: a bitset grown to the largest id below `DENSE_TOKEN_IDS`, so
/// recording a token is a shift and an or, not a hash (the validator records every token).
#[derive(Default)]
pub(super) struct TokenSet {
    dense: Vec<u64>,
    sparse: HashSet<u32>,
}

impl TokenSet {
    pub(super) fn insert(&mut self, id: u32) {
        if id >= DENSE_TOKEN_IDS {
            self.sparse.insert(id);
            return;
        }
        let (word, mask) = ((id / 64) as usize, 1u64 << (id % 64));
        if word >= self.dense.len() {
            self.dense.resize(word + 1, 0);
        }
        self.dense[word] |= mask;
    }

    pub(super) fn extend(&mut self, ids: impl IntoIterator<Item = u32>) {
        for id in ids {
            self.insert(id);
        }
    }

    /// Adds every id of `other`.
    pub(super) fn union(&mut self, other: TokenSet) {
        if other.dense.len() > self.dense.len() {
            self.dense.resize(other.dense.len(), 0);
        }
        for (mine, theirs) in self.dense.iter_mut().zip(&other.dense) {
            *mine |= theirs;
        }
        self.sparse.extend(other.sparse);
    }

    pub(super) fn len(&self) -> u64 {
        let dense: u64 = self.dense.iter().map(|w| u64::from(w.count_ones())).sum();
        dense + self.sparse.len() as u64
    }
}

/// Tokens per conversation, as counts per distinct value.
#[derive(Default)]
pub(super) struct LengthCounts {
    counts: BTreeMap<u64, u64>,
    n: u64,
    sum: u128,
}

impl LengthCounts {
    pub(super) fn push(&mut self, length: u64) {
        *self.counts.entry(length).or_default() += 1;
        self.n += 1;
        self.sum += u128::from(length);
    }

    /// The value at 1-based rank `rank` in sorted order.
    fn at_rank(&self, rank: u64) -> u64 {
        let mut passed = 0;
        for (&value, &count) in &self.counts {
            passed += count;
            if passed >= rank {
                return value;
            }
        }
        0
    }

    pub(super) fn distribution(&self) -> LengthDistribution {
        let n = self.n;
        if n == 0 {
            return LengthDistribution::of_sorted(&[]);
        }
        let median = if n % 2 == 1 {
            self.at_rank(n / 2 + 1) as f64
        } else {
            (self.at_rank(n / 2) + self.at_rank(n / 2 + 1)) as f64 / 2.0
        };
        LengthDistribution {
            min: self.counts.keys().next().copied().unwrap_or(0),
            max: self.counts.keys().next_back().copied().unwrap_or(0),
            mean: self.sum as f64 / n as f64,
            median,
            p95: self.at_rank((n * 95).div_ceil(100).max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_the_limit() {
        let mut seen = SeenSet::new(10);
        assert!(!seen.seen_before("a"));
        assert!(!seen.seen_before("b"));
        assert!(seen.seen_before("a"));
        assert!(seen.is_exact());
        assert_eq!(seen.distinct(), 2);
    }

    #[test]
    fn past_the_limit_duplicates_are_still_found_and_new_keys_pass() {
        let mut seen = SeenSet::new(100);
        for i in 0..1000 {
            assert!(!seen.seen_before(&format!("id-{i}")), "id-{i} is new");
        }
        assert!(!seen.is_exact());
        for i in 0..1000 {
            assert!(seen.seen_before(&format!("id-{i}")), "id-{i} was seen");
        }
        assert_eq!(seen.distinct(), 1000);
    }

    #[test]
    fn token_set_counts_distinct_ids_dense_or_not() {
        let mut a = TokenSet::default();
        a.extend([3, 3, 64, 199_997, DENSE_TOKEN_IDS, u32::MAX, u32::MAX]);
        assert_eq!(a.len(), 5);
        let mut b = TokenSet::default();
        b.extend([3, 5, 1 << 19, u32::MAX - 1]);
        a.union(b);
        let expected: HashSet<u32> = [
            3,
            64,
            199_997,
            DENSE_TOKEN_IDS,
            u32::MAX,
            5,
            1 << 19,
            u32::MAX - 1,
        ]
        .into();
        assert_eq!(a.len(), expected.len() as u64);
        let mut empty = TokenSet::default();
        empty.union(TokenSet::default());
        assert_eq!(empty.len(), 0);
    }

    #[test]
    fn length_counts_match_the_sorted_distribution() {
        let values = [5u64, 1, 9, 9, 3, 7, 1, 12, 4, 9, 100];
        let mut counts = LengthCounts::default();
        for v in values {
            counts.push(v);
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            counts.distribution(),
            LengthDistribution::of_sorted(&sorted)
        );
        let mut even = LengthCounts::default();
        for v in [1, 2, 3, 10] {
            even.push(v);
        }
        assert_eq!(even.distribution().median, 2.5);
    }
}
