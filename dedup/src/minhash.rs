//! MinHash signatures and their LSH band keys. Each of the `bands × rows` hash functions is a
//! multiply-add-shift of the (already random, 64-bit) shingle hash with its own odd
//! multiplier and offset, both drawn from seeded gxhash, so a signature depends only on the
//! shingle set and the seed. A band key is the gxhash of the band's `rows` minima seeded
//! with the band's number, so keys of different bands never meet in one bucket.

/// The hash family and banding of one dedup configuration.
#[derive(Debug, Clone)]
pub struct MinHasher {
    bands: usize,
    rows: usize,
    seed: i64,
    mul: Vec<u64>,
    add: Vec<u64>,
}

/// A document's MinHash signature: `bands × rows` minima.
pub type Signature = Vec<u32>;

impl MinHasher {
    pub fn new(bands: usize, rows: usize, seed: u64) -> Self {
        let k = bands * rows;
        let seed = seed as i64;
        let draw = |i: usize, salt: u8| {
            let mut key = [0u8; 9];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            key[8] = salt;
            gxhash::gxhash64(&key, seed)
        };
        MinHasher {
            bands,
            rows,
            seed,
            mul: (0..k).map(|i| draw(i, b'm') | 1).collect(),
            add: (0..k).map(|i| draw(i, b'a')).collect(),
        }
    }

    pub fn bands(&self) -> usize {
        self.bands
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of hash functions.
    pub fn len(&self) -> usize {
        self.mul.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mul.is_empty()
    }

    /// The signature of a shingle set (into `out`); all `u32::MAX` for an empty set.
    pub fn signature(&self, shingles: &[u64], out: &mut Signature) {
        out.clear();
        out.resize(self.len(), u32::MAX);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { self.minima_avx2(shingles, out) };
            return;
        }
        self.minima(shingles, out);
    }

    /// The same loop compiled for AVX2 (4 lanes of 64-bit arithmetic), chosen at run time so
    /// the binary still runs on CPUs without it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn minima_avx2(&self, shingles: &[u64], out: &mut [u32]) {
        self.minima(shingles, out);
    }

    #[inline(always)]
    fn minima(&self, shingles: &[u64], out: &mut [u32]) {
        for &s in shingles {
            for (m, (&a, &b)) in out.iter_mut().zip(self.mul.iter().zip(self.add.iter())) {
                let v = (a.wrapping_mul(s).wrapping_add(b) >> 32) as u32;
                *m = (*m).min(v);
            }
        }
    }

    /// The band keys of a signature (one per band), into `out`.
    pub fn band_keys(&self, signature: &[u32], out: &mut Vec<u64>) {
        out.clear();
        let mut bytes = Vec::with_capacity(self.rows * 4);
        for (band, rows) in signature.chunks_exact(self.rows).enumerate() {
            bytes.clear();
            for v in rows {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            out.push(gxhash::gxhash64(&bytes, self.seed ^ (band as i64 + 1)));
        }
    }

    /// Share of equal minima: the signature's estimate of Jaccard similarity.
    pub fn estimate(a: &[u32], b: &[u32]) -> f64 {
        if a.is_empty() {
            return 0.0;
        }
        a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shingle::{jaccard, Shingler};

    /// Deterministic word salad from a small vocabulary (xorshift).
    fn words(seed: u64, n: usize) -> Vec<String> {
        let vocab = [
            "grain", "chaff", "floor", "wind", "sieve", "harvest", "barley", "wheat", "stone",
            "basket", "river", "field", "morning", "oxen", "winnow", "straw", "sun", "rain",
        ];
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                vocab[(x % vocab.len() as u64) as usize].to_string()
            })
            .collect()
    }

    #[test]
    fn signatures_estimate_jaccard_and_are_reproducible() {
        let hasher = MinHasher::new(16, 16, 42);
        let mut shingler = Shingler::new(5, 42);
        let base = words(1, 400);
        let mut worst: f64 = 0.0;
        for edits in [0usize, 20, 60, 150] {
            let mut variant = base.clone();
            let replacement = words(99 + edits as u64, edits);
            for (i, w) in replacement.into_iter().enumerate() {
                let at = (i * 37) % variant.len();
                variant[at] = w;
            }
            let (mut sa, mut sb) = (Vec::new(), Vec::new());
            shingler.read(&base.join(" "));
            shingler.shingles(&mut sa);
            shingler.read(&variant.join(" "));
            shingler.shingles(&mut sb);
            let truth = jaccard(&sa, &sb);
            let (mut ga, mut gb) = (Vec::new(), Vec::new());
            hasher.signature(&sa, &mut ga);
            hasher.signature(&sb, &mut gb);
            let est = MinHasher::estimate(&ga, &gb);
            worst = worst.max((est - truth).abs());
            if edits == 0 {
                assert_eq!(est, 1.0);
            }
        }
        // 256 hashes: standard error <= 0.031; 4 sigma.
        assert!(worst < 0.125, "MinHash estimate off by {worst}");

        let again = MinHasher::new(16, 16, 42);
        assert_eq!(again.mul, hasher.mul);
        let other = MinHasher::new(16, 16, 43);
        assert_ne!(other.mul, hasher.mul);
    }

    #[test]
    fn band_keys_differ_by_band_and_match_for_equal_bands() {
        let hasher = MinHasher::new(4, 2, 5);
        let sig = vec![1, 2, 1, 2, 1, 2, 9, 9];
        let mut keys = Vec::new();
        hasher.band_keys(&sig, &mut keys);
        assert_eq!(keys.len(), 4);
        // Bands 0..2 hold the same values yet get distinct keys (band number in the seed).
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1], keys[2]);
        let mut other = Vec::new();
        hasher.band_keys(&[1, 2, 7, 7, 7, 7, 7, 7], &mut other);
        assert_eq!(keys[0], other[0]);
        assert_ne!(keys[1], other[1]);
    }
}
