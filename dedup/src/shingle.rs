//! What two documents are compared by: their word tokens and the set of word n-gram
//! shingles, the same definition as the benchmark's reference (`re.findall(r"\w+",
//! text.lower())`, n-grams of tokens joined by one space; a text with fewer than n tokens is
//! one shingle of all of them). Shingles are kept as 64-bit hashes, sorted and unique, so a
//! set is a `Vec<u64>` and Jaccard is a merge.
//!
//! Also the normalized text the exact dedup hashes: the lowercased tokens joined by single
//! spaces, so documents differing only in case, punctuation or spacing are exact duplicates.

use unicode_normalization::char::is_combining_mark;

/// A word character as Python's `\w` sees it: letters, digits and other numerals, and `_`
/// (not combining marks, which Rust counts as alphabetic when they are vowel signs).
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        c.is_alphanumeric() && !is_combining_mark(c)
    }
}

/// The tokens of one document: the normalized text and each token's byte range in it.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    /// Lowercased tokens joined by one space.
    pub normalized: String,
    /// Byte ranges of the tokens in `normalized`.
    pub spans: Vec<(u32, u32)>,
}

impl Tokens {
    /// Tokenize `text` into this buffer (reused between documents).
    pub fn fill(&mut self, text: &str) {
        self.normalized.clear();
        self.spans.clear();
        if text.is_ascii() {
            self.push_tokens(text.chars());
        } else {
            // `str::to_lowercase` applies the context rule for final sigma, as Python does.
            let lower = text.to_lowercase();
            self.push_tokens(lower.chars());
        }
    }

    fn push_tokens(&mut self, chars: impl Iterator<Item = char>) {
        let mut start: Option<usize> = None;
        for c in chars {
            let c = c.to_ascii_lowercase();
            if is_word_char(c) {
                if start.is_none() {
                    if !self.normalized.is_empty() {
                        self.normalized.push(' ');
                    }
                    start = Some(self.normalized.len());
                }
                self.normalized.push(c);
            } else if let Some(s) = start.take() {
                self.spans.push((s as u32, self.normalized.len() as u32));
            }
        }
        if let Some(s) = start {
            self.spans.push((s as u32, self.normalized.len() as u32));
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The token strings.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.spans
            .iter()
            .map(|&(a, b)| &self.normalized[a as usize..b as usize])
    }
}

/// Turns documents into shingle sets and exact-dedup hashes, with one seed.
#[derive(Debug, Clone)]
pub struct Shingler {
    n: usize,
    seed: i64,
    tokens: Tokens,
    token_hashes: Vec<u64>,
}

/// Odd multiplier of the polynomial that combines token hashes into a shingle hash.
const COMBINE: u64 = 0x9e37_79b9_7f4a_7c15;

/// Final avalanche (MurmurHash3's fmix64).
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Shingler {
    /// Shingles of `n` words (n ≥ 1), token hashes seeded with `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        Shingler {
            n: n.max(1),
            seed: seed as i64,
            tokens: Tokens::default(),
            token_hashes: Vec::new(),
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Tokenize `text`; then [`Self::tokens`], [`Self::exact_hash`] and [`Self::shingles`]
    /// describe it.
    pub fn read(&mut self, text: &str) {
        self.tokens.fill(text);
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// 128-bit gxhash of the normalized text of the last document read.
    pub fn exact_hash(&self) -> u128 {
        gxhash::gxhash128(self.tokens.normalized.as_bytes(), self.seed)
    }

    /// The shingle set of the last document read: sorted, unique 64-bit hashes (empty when
    /// the document has no word).
    pub fn shingles(&mut self, out: &mut Vec<u64>) {
        out.clear();
        let seed = self.seed;
        self.token_hashes.clear();
        self.token_hashes.extend(
            self.tokens
                .iter()
                .map(|t| gxhash::gxhash64(t.as_bytes(), seed)),
        );
        let h = &self.token_hashes;
        if h.is_empty() {
            return;
        }
        let n = self.n.min(h.len());
        out.reserve(h.len() + 1 - n);
        for window in h.windows(n) {
            let mut acc = n as u64;
            for &t in window {
                acc = acc.wrapping_mul(COMBINE).wrapping_add(t);
            }
            out.push(fmix64(acc));
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// Jaccard similarity of two sorted, unique sets (two empty sets: 1).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// [`jaccard`] of two sets stored as their sorted, unique values in little-endian bytes.
pub fn jaccard_le_bytes(a: &[u8], b: &[u8]) -> f64 {
    let decode = |s: &[u8]| -> Vec<u64> {
        s.chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()
    };
    jaccard(&decode(a), &decode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<String> {
        let mut t = Tokens::default();
        t.fill(text);
        t.iter().map(str::to_string).collect()
    }

    fn set(text: &str, n: usize) -> Vec<u64> {
        let mut s = Shingler::new(n, 7);
        s.read(text);
        let mut out = Vec::new();
        s.shingles(&mut out);
        out
    }

    #[test]
    fn tokens_follow_python_word_regex_on_lowercased_text() {
        // Values from Python 3: re.findall(r"\w+", text.lower())
        assert_eq!(
            toks("Hello, World! it's_ok 3.14"),
            ["hello", "world", "it", "s_ok", "3", "14"]
        );
        assert_eq!(
            toks("ΟΔΟΣ Straße İstanbul"),
            ["\u{3bf}\u{3b4}\u{3bf}\u{3c2}", "straße", "i", "stanbul"]
        );
        // Devanagari vowel signs are combining marks, not \w: they split words in Python.
        assert_eq!(toks("हिन्दी"), ["ह", "न", "द"]);
        assert_eq!(toks("日本語のテキスト"), ["日本語のテキスト"]);
        assert_eq!(toks("  \n\t "), Vec::<String>::new());
    }

    #[test]
    fn shingle_sets_and_jaccard_match_the_definition() {
        let a = "the quick brown fox jumps over the lazy dog";
        // 9 tokens, 5 distinct 5-grams.
        assert_eq!(set(a, 5).len(), 5);
        // Case, punctuation and spacing do not matter.
        assert_eq!(
            set(a, 5),
            set("The  quick, brown fox -- jumps over the LAZY dog!", 5)
        );
        // One substituted word in the middle kills the 5 shingles that contain it: J = 0/10.
        let b = "the quick brown fox leaps over the lazy dog";
        assert_eq!(jaccard(&set(a, 5), &set(b, 5)), 0.0);
        // At the end it kills one of five: J = 4/6.
        let c = "the quick brown fox jumps over the lazy cat";
        assert!((jaccard(&set(a, 5), &set(c, 5)) - 4.0 / 6.0).abs() < 1e-12);
        // Fewer tokens than n: one shingle of all of them.
        assert_eq!(set("two words", 5).len(), 1);
        assert_ne!(set("two words", 5), set("words two", 5));
        assert!(set("...", 5).is_empty());
        assert_eq!(jaccard(&[], &[]), 1.0);
        let bytes = |s: &[u64]| -> Vec<u8> { s.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let (x, y) = (set(a, 5), set(c, 5));
        assert_eq!(jaccard_le_bytes(&bytes(&x), &bytes(&y)), jaccard(&x, &y));
    }

    #[test]
    fn exact_hash_ignores_case_and_punctuation_only() {
        let mut s = Shingler::new(5, 1);
        let mut h = |t: &str| {
            s.read(t);
            s.exact_hash()
        };
        assert_eq!(h("Hello,   world."), h("hello world"));
        assert_ne!(h("hello world"), h("hello, world, again"));
        let mut other = Shingler::new(5, 2);
        other.read("hello world");
        assert_ne!(
            h("hello world"),
            other.exact_hash(),
            "the seed is part of the hash"
        );
    }
}
