//! A byte-level BPE trainer: count the pre-tokenization pieces of a corpus, then repeatedly
//! merge the most frequent adjacent pair of tokens (ties: the smallest pair of ids), as
//! Hugging Face's `BpeTrainer` and Sennrich et al. do, until the vocabulary has the asked
//! size. Deterministic: counts are sums, so neither the order documents are counted in nor
//! the thread count changes the result. The 256 bytes are ids 0–255 (id = byte value);
//! merged tokens follow in merge order; special tokens come last.

use crate::bpe::{Bpe, Id, MergeRule};
use crate::{pretokenize, Tokenizer, TokenizerError, END_OF_TEXT};
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Counts of the pre-tokenization pieces of a corpus.
#[derive(Debug, Default, Clone)]
pub struct WordCounts {
    counts: FxHashMap<String, u64>,
    /// Bytes of text counted.
    pub bytes: u64,
}

impl WordCounts {
    /// Counts the pieces of one text.
    pub fn add(&mut self, text: &str) {
        self.bytes += text.len() as u64;
        for piece in pretokenize::pieces(text) {
            match self.counts.get_mut(piece) {
                Some(c) => *c += 1,
                None => {
                    self.counts.insert(piece.to_string(), 1);
                }
            }
        }
    }

    /// Adds another counter's counts.
    pub fn merge(&mut self, other: WordCounts) {
        self.bytes += other.bytes;
        for (w, c) in other.counts {
            *self.counts.entry(w).or_default() += c;
        }
    }

    /// Distinct pieces.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Ids in the trained vocabulary, special tokens included (≥ 256 + specials).
    pub vocab_size: usize,
    /// Pairs seen fewer times than this are never merged.
    pub min_frequency: u64,
    /// Special tokens, after the merged tokens (default `<|endoftext|>`).
    pub special_tokens: Vec<String>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            vocab_size: 8192,
            min_frequency: 2,
            special_tokens: vec![END_OF_TEXT.to_string()],
        }
    }
}

type Pair = (Id, Id);

/// Trains a tokenizer on the counted pieces. It stops early, with a smaller vocabulary, when
/// no pair occurs `min_frequency` times any more.
pub fn train(counts: &WordCounts, opts: &TrainOptions) -> Result<Tokenizer, TokenizerError> {
    let floor = 256 + opts.special_tokens.len();
    if opts.vocab_size < floor {
        return Err(TokenizerError::Format(format!(
            "vocab_size {} is too small: the 256 bytes and {} special token(s) need {floor}",
            opts.vocab_size,
            opts.special_tokens.len()
        )));
    }
    let target = opts.vocab_size - opts.special_tokens.len();
    // Words in a fixed order (by bytes), so ids of words never depend on hashing.
    let mut sorted: Vec<(&String, &u64)> = counts.counts.iter().collect();
    sorted.sort_unstable();
    let mut words: Vec<Vec<Id>> = sorted
        .iter()
        .map(|(w, _)| w.bytes().map(Id::from).collect())
        .collect();
    let freq: Vec<i64> = sorted.iter().map(|(_, &c)| c as i64).collect();
    drop(sorted);

    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut by_bytes: FxHashMap<Vec<u8>, Id> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as Id))
        .collect();
    let mut merges: Vec<Pair> = Vec::new();

    let mut pair_counts: FxHashMap<Pair, i64> = FxHashMap::default();
    let mut pair_words: FxHashMap<Pair, FxHashSet<u32>> = FxHashMap::default();
    for (w, symbols) in words.iter().enumerate() {
        for p in symbols.windows(2) {
            let pair = (p[0], p[1]);
            *pair_counts.entry(pair).or_default() += freq[w];
            pair_words.entry(pair).or_default().insert(w as u32);
        }
    }
    // Max count first; on ties the smallest pair.
    let mut heap: BinaryHeap<(i64, Reverse<Pair>)> =
        pair_counts.iter().map(|(&p, &c)| (c, Reverse(p))).collect();

    while tokens.len() < target {
        let Some((count, Reverse(pair))) = heap.pop() else {
            break;
        };
        let current = pair_counts.get(&pair).copied().unwrap_or(0);
        if current != count {
            if current > 0 {
                heap.push((current, Reverse(pair)));
            }
            continue;
        }
        if (count as u64) < opts.min_frequency.max(1) {
            break;
        }
        let joined = [
            tokens[pair.0 as usize].as_slice(),
            tokens[pair.1 as usize].as_slice(),
        ]
        .concat();
        let new_id = match by_bytes.get(&joined) {
            Some(&id) => id,
            None => {
                let id = tokens.len() as Id;
                tokens.push(joined.clone());
                by_bytes.insert(joined, id);
                id
            }
        };
        merges.push(pair);
        let mut touched: FxHashSet<Pair> = FxHashSet::default();
        let mut affected: Vec<u32> = pair_words
            .get(&pair)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        affected.sort_unstable();
        for w in affected {
            let symbols = &words[w as usize];
            if !symbols.windows(2).any(|p| (p[0], p[1]) == pair) {
                continue;
            }
            let f = freq[w as usize];
            for p in symbols.windows(2) {
                *pair_counts.entry((p[0], p[1])).or_default() -= f;
            }
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && (symbols[i], symbols[i + 1]) == pair {
                    merged.push(new_id);
                    i += 2;
                } else {
                    merged.push(symbols[i]);
                    i += 1;
                }
            }
            for p in merged.windows(2) {
                let q = (p[0], p[1]);
                *pair_counts.entry(q).or_default() += f;
                pair_words.entry(q).or_default().insert(w);
                touched.insert(q);
            }
            words[w as usize] = merged;
        }
        pair_counts.remove(&pair);
        pair_words.remove(&pair);
        let mut touched: Vec<Pair> = touched.into_iter().collect();
        touched.sort_unstable();
        for q in touched {
            if let Some(&c) = pair_counts.get(&q) {
                if c > 0 && q != pair {
                    heap.push((c, Reverse(q)));
                }
            }
        }
    }

    let mut specials = Vec::new();
    for s in &opts.special_tokens {
        specials.push((s.clone(), tokens.len() as Id));
        tokens.push(s.as_bytes().to_vec());
    }
    let special_ids: Vec<Id> = specials.iter().map(|&(_, id)| id).collect();
    let bpe = Bpe::new(tokens, merges, MergeRule::MergeList, &special_ids)?;
    Ok(Tokenizer::new(bpe, specials, "trained"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_learns_the_frequent_pairs_deterministically() {
        let text = "low lower lowest newer newest wider wide low low newest ";
        let mut counts = WordCounts::default();
        for _ in 0..3 {
            counts.add(text);
        }
        let opts = TrainOptions {
            vocab_size: 256 + 10 + 1,
            ..Default::default()
        };
        let a = train(&counts, &opts).unwrap();
        // Counted in another order and split: same tokenizer.
        let mut other = WordCounts::default();
        other.add(text);
        let mut rest = WordCounts::default();
        rest.add(text);
        rest.add(text);
        other.merge(rest);
        let b = train(&other, &opts).unwrap();
        assert_eq!(a.bpe().merges(), b.bpe().merges());
        assert_eq!(a.vocab_size(), 267);
        assert_eq!(a.eot(), Some(266));
        // Asked for more than the corpus has pairs for: it stops when none occurs twice.
        let all = train(
            &counts,
            &TrainOptions {
                vocab_size: 10_000,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(all.vocab_size() < 300);
        assert!(a.encode(text).len() < text.len() / 2);
        assert_eq!(a.decode(&a.encode(text)).unwrap(), text);
        // The first merge is the most frequent pair: "w" after "o" (" low", "low", ...)
        let first = a.bpe().merges()[0];
        let counts_of = |s: &str| text.matches(s).count();
        let best = [("o", "w"), ("l", "o"), ("e", "w"), ("Ġ", "l")]
            .iter()
            .map(|(x, y)| counts_of(&format!("{x}{y}")))
            .max()
            .unwrap();
        let (x, y) = (
            a.bpe().token_bytes(first.0).unwrap(),
            a.bpe().token_bytes(first.1).unwrap(),
        );
        let pair = [x, y].concat();
        assert_eq!(counts_of(std::str::from_utf8(&pair).unwrap()), best);
    }

    #[test]
    fn too_small_a_vocabulary_is_refused() {
        let opts = TrainOptions {
            vocab_size: 200,
            ..Default::default()
        };
        let err = train(&WordCounts::default(), &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vocab_size 200"), "{err}");
    }
}
