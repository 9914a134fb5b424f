//! The byte-level BPE model: token bytes, the merge table and the merge loop that turns one
//! pre-tokenization piece into ids, and decoding back to bytes.
//!
//! Two merge semantics, because the two reference implementations differ on paper:
//! - [`MergeRule::TokenRank`] (tiktoken): an adjacent pair may merge when its concatenated
//!   bytes are a token, at the rank (= id) of that token, and a piece that is a token as a
//!   whole is that token. GPT-2 is encoded this way, as tiktoken encodes it.
//! - [`MergeRule::MergeList`] (Hugging Face `tokenizers`): only the listed merges apply, in
//!   list order. Tokenizers trained here are encoded this way, as `tokenizer.json` is.
//!
//! Both repeatedly merge the lowest-ranked adjacent pair, the leftmost on ties. Short pieces
//! are merged by rescanning a small array; long ones (CJK runs, long symbol runs) with a
//! heap over a linked list, so a piece of n bytes costs O(n log n), not O(n²).

use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Token id.
pub type Id = u32;

/// How adjacent pairs merge (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    TokenRank,
    MergeList,
}

/// A byte-level BPE vocabulary with its merge table.
#[derive(Debug, Clone)]
pub struct Bpe {
    /// Bytes of every id (special tokens included).
    tokens: Vec<Vec<u8>>,
    /// Ids of the 256 single bytes.
    byte_ids: [Id; 256],
    /// (left id, right id) → (rank, merged id).
    pairs: FxHashMap<u64, (u32, Id)>,
    /// Ordinary tokens by their bytes (a piece that is one is that token under TokenRank).
    whole: FxHashMap<Vec<u8>, Id>,
    /// Merges in rank order, for serializing (MergeList) — (left, right).
    merges: Vec<(Id, Id)>,
    rule: MergeRule,
}

/// Pieces longer than this many bytes are merged with the heap.
const HEAP_FROM: usize = 64;

#[inline(always)]
fn key(a: Id, b: Id) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Why a vocabulary cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BpeError {
    #[error("byte {0:#04x} has no token: a byte-level vocabulary needs all 256 bytes")]
    MissingByte(u8),
    #[error("merge {rank} ({left:?} + {right:?}): {reason}")]
    BadMerge {
        rank: usize,
        left: String,
        right: String,
        reason: String,
    },
    #[error("token {0:?} appears twice in the vocabulary")]
    DuplicateToken(String),
}

impl Bpe {
    /// A vocabulary from the bytes of each id, its merges as id pairs (in rank order) and the
    /// merge rule. For `TokenRank` the merges are not needed: every split of every token into
    /// two tokens is a pair, ranked by the token's id. `specials` are ids that decode but never
    /// come out of a merge (special tokens).
    pub fn new(
        tokens: Vec<Vec<u8>>,
        merges: Vec<(Id, Id)>,
        rule: MergeRule,
        specials: &[Id],
    ) -> Result<Bpe, BpeError> {
        let mut whole: FxHashMap<Vec<u8>, Id> = FxHashMap::default();
        for (id, t) in tokens.iter().enumerate() {
            if specials.contains(&(id as Id)) {
                continue;
            }
            if whole.insert(t.clone(), id as Id).is_some() {
                return Err(BpeError::DuplicateToken(String::from_utf8_lossy(t).into()));
            }
        }
        let mut byte_ids = [0 as Id; 256];
        for b in 0..=255u8 {
            byte_ids[b as usize] = *whole.get(&vec![b]).ok_or(BpeError::MissingByte(b))?;
        }
        let mut pairs: FxHashMap<u64, (u32, Id)> = FxHashMap::default();
        match rule {
            MergeRule::TokenRank => {
                for (id, t) in tokens.iter().enumerate() {
                    if specials.contains(&(id as Id)) {
                        continue;
                    }
                    for cut in 1..t.len() {
                        if let (Some(&a), Some(&b)) = (whole.get(&t[..cut]), whole.get(&t[cut..])) {
                            pairs.entry(key(a, b)).or_insert((id as u32, id as Id));
                        }
                    }
                }
            }
            MergeRule::MergeList => {
                for (rank, &(a, b)) in merges.iter().enumerate() {
                    let bad = |reason: &str| BpeError::BadMerge {
                        rank,
                        left: String::from_utf8_lossy(
                            tokens.get(a as usize).map_or(&[][..], |v| v),
                        )
                        .into(),
                        right: String::from_utf8_lossy(
                            tokens.get(b as usize).map_or(&[][..], |v| v),
                        )
                        .into(),
                        reason: reason.to_string(),
                    };
                    let (Some(ta), Some(tb)) = (tokens.get(a as usize), tokens.get(b as usize))
                    else {
                        return Err(bad("an id outside the vocabulary"));
                    };
                    let joined = [ta.as_slice(), tb.as_slice()].concat();
                    let Some(&merged) = whole.get(&joined) else {
                        return Err(bad("the merged bytes are not a token"));
                    };
                    pairs.entry(key(a, b)).or_insert((rank as u32, merged));
                }
            }
        }
        Ok(Bpe {
            tokens,
            byte_ids,
            pairs,
            whole,
            merges,
            rule,
        })
    }

    pub fn rule(&self) -> MergeRule {
        self.rule
    }

    /// Number of ids (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Bytes of a token.
    pub fn token_bytes(&self, id: Id) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(Vec::as_slice)
    }

    /// The id of a byte string that is a whole token, if any.
    pub fn id_of(&self, bytes: &[u8]) -> Option<Id> {
        self.whole.get(bytes).copied()
    }

    /// Merges in rank order (as given to [`Bpe::new`]).
    pub fn merges(&self) -> &[(Id, Id)] {
        &self.merges
    }

    #[inline(always)]
    fn pair(&self, a: Id, b: Id) -> Option<(u32, Id)> {
        self.pairs.get(&key(a, b)).copied()
    }

    /// Appends the ids of one piece to `out`.
    #[inline]
    pub fn encode_piece(&self, piece: &[u8], out: &mut Vec<Id>) {
        match piece.len() {
            0 => {}
            1 => out.push(self.byte_ids[piece[0] as usize]),
            n => {
                if self.rule == MergeRule::TokenRank {
                    if let Some(&id) = self.whole.get(piece) {
                        out.push(id);
                        return;
                    }
                }
                if n <= HEAP_FROM {
                    self.merge_scan(piece, out)
                } else {
                    self.merge_heap(piece, out)
                }
            }
        }
    }

    /// Merge by rescanning: parts hold (id, rank of the pair with the next part).
    fn merge_scan(&self, piece: &[u8], out: &mut Vec<Id>) {
        const NONE: u32 = u32::MAX;
        let mut ids: [Id; HEAP_FROM] = [0; HEAP_FROM];
        let mut ranks: [u32; HEAP_FROM] = [NONE; HEAP_FROM];
        let mut merged: [Id; HEAP_FROM] = [0; HEAP_FROM];
        let mut n = piece.len();
        for (i, &b) in piece.iter().enumerate() {
            ids[i] = self.byte_ids[b as usize];
        }
        for i in 0..n - 1 {
            if let Some((r, m)) = self.pair(ids[i], ids[i + 1]) {
                ranks[i] = r;
                merged[i] = m;
            }
        }
        ranks[n - 1] = NONE;
        loop {
            let mut best = NONE;
            let mut at = 0;
            for (i, &r) in ranks[..n - 1].iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == NONE {
                break;
            }
            ids[at] = merged[at];
            // Remove part at+1.
            ids.copy_within(at + 2..n, at + 1);
            ranks.copy_within(at + 2..n, at + 1);
            merged.copy_within(at + 2..n, at + 1);
            n -= 1;
            ranks[n - 1] = NONE;
            if at + 1 < n {
                match self.pair(ids[at], ids[at + 1]) {
                    Some((r, m)) => {
                        ranks[at] = r;
                        merged[at] = m;
                    }
                    None => ranks[at] = NONE,
                }
            } else {
                ranks[at] = NONE;
            }
            if at > 0 {
                match self.pair(ids[at - 1], ids[at]) {
                    Some((r, m)) => {
                        ranks[at - 1] = r;
                        merged[at - 1] = m;
                    }
                    None => ranks[at - 1] = NONE,
                }
            }
            if n == 1 {
                break;
            }
        }
        out.extend_from_slice(&ids[..n]);
    }

    /// Merge with a heap of candidate pairs over a linked list of parts; stale candidates
    /// (a side already merged, or the pair's rank changed) are skipped when popped.
    fn merge_heap(&self, piece: &[u8], out: &mut Vec<Id>) {
        const END: usize = usize::MAX;
        let n = piece.len();
        let mut ids: Vec<Id> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<usize> = (1..=n).map(|i| if i == n { END } else { i }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        // (rank, left position, right position, merged id)
        let mut heap: BinaryHeap<Reverse<(u32, usize, usize, Id)>> = BinaryHeap::new();
        for i in 0..n - 1 {
            if let Some((r, m)) = self.pair(ids[i], ids[i + 1]) {
                heap.push(Reverse((r, i, i + 1, m)));
            }
        }
        while let Some(Reverse((rank, left, right, m))) = heap.pop() {
            if !alive[left] || !alive[right] || next[left] != right {
                continue;
            }
            match self.pair(ids[left], ids[right]) {
                Some((r, mm)) if r == rank && mm == m => {}
                _ => continue,
            }
            ids[left] = m;
            alive[right] = false;
            let after = next[right];
            next[left] = after;
            if after != END {
                prev[after] = left;
                if let Some((r, mm)) = self.pair(m, ids[after]) {
                    heap.push(Reverse((r, left, after, mm)));
                }
            }
            let before = prev[left];
            if before != usize::MAX {
                if let Some((r, mm)) = self.pair(ids[before], m) {
                    heap.push(Reverse((r, before, left, mm)));
                }
            }
        }
        let mut i = 0;
        while i != END {
            out.push(ids[i]);
            i = next[i];
        }
    }

    /// The bytes of a sequence of ids; unknown ids are an error.
    pub fn decode_bytes(&self, ids: &[Id]) -> Result<Vec<u8>, Id> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(self.tokens.get(id as usize).ok_or(id)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny vocabulary: the 256 bytes plus a few merges.
    fn tiny(rule: MergeRule) -> Bpe {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut merges = Vec::new();
        for (a, b) in [
            ("a", "b"),
            ("ab", "c"),
            ("b", "c"),
            ("a", "a"),
            ("aa", "aa"),
            ("x", "y"),
        ] {
            let ia = tokens.iter().position(|t| t == a.as_bytes()).unwrap() as Id;
            let ib = tokens.iter().position(|t| t == b.as_bytes()).unwrap() as Id;
            tokens.push([a, b].concat().into_bytes());
            merges.push((ia, ib));
        }
        Bpe::new(tokens, merges, rule, &[]).unwrap()
    }

    fn enc(bpe: &Bpe, s: &str) -> Vec<String> {
        let mut out = Vec::new();
        bpe.encode_piece(s.as_bytes(), &mut out);
        out.iter()
            .map(|&i| String::from_utf8(bpe.token_bytes(i).unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn lowest_rank_first_then_leftmost() {
        let bpe = tiny(MergeRule::MergeList);
        assert_eq!(enc(&bpe, "abc"), ["abc"]);
        assert_eq!(enc(&bpe, "aaa"), ["aa", "a"]);
        assert_eq!(enc(&bpe, "aaaaa"), ["aaaa", "a"]);
        assert_eq!(enc(&bpe, "xbc"), ["x", "bc"]);
    }

    #[test]
    fn the_rules_differ_where_a_token_has_an_unlisted_split() {
        // bc (rank 0), ab (1), ab + c = abc (2): in "abc", bc merges first and a + bc is not
        // a listed merge, so MergeList stops at a, bc; TokenRank finds abc whole.
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        tokens.extend([b"bc".to_vec(), b"ab".to_vec(), b"abc".to_vec()]);
        let merges = vec![(98, 99), (97, 98), (257, 99)];
        let list = Bpe::new(tokens.clone(), merges.clone(), MergeRule::MergeList, &[]).unwrap();
        let rank = Bpe::new(tokens, merges, MergeRule::TokenRank, &[]).unwrap();
        assert_eq!(enc(&list, "abc"), ["a", "bc"]);
        assert_eq!(enc(&rank, "abc"), ["abc"]);
        assert_eq!(enc(&list, "abcab"), ["a", "bc", "ab"]);
    }

    #[test]
    fn heap_and_scan_agree_on_long_pieces() {
        for rule in [MergeRule::MergeList, MergeRule::TokenRank] {
            let bpe = tiny(rule);
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            for len in [65usize, 100, 300, 1000] {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        b"abcxy"[(state % 5) as usize]
                    })
                    .collect();
                let mut heap = Vec::new();
                bpe.merge_heap(&s, &mut heap);
                // The scan on the same input, in windows it can hold: compare on a prefix
                // of HEAP_FROM bytes, and on the whole by a plain reference.
                let reference = reference_merge(&bpe, &s);
                assert_eq!(heap, reference, "{rule:?} len {len}");
                let mut scan = Vec::new();
                bpe.merge_scan(&s[..HEAP_FROM], &mut scan);
                assert_eq!(scan, reference_merge(&bpe, &s[..HEAP_FROM]));
            }
        }
    }

    /// The textbook loop: merge the lowest-ranked, leftmost pair until none is left.
    fn reference_merge(bpe: &Bpe, s: &[u8]) -> Vec<Id> {
        let mut ids: Vec<Id> = s.iter().map(|&b| bpe.byte_ids[b as usize]).collect();
        loop {
            let best = (0..ids.len().saturating_sub(1))
                .filter_map(|i| bpe.pair(ids[i], ids[i + 1]).map(|(r, m)| (r, i, m)))
                .min();
            let Some((_, i, m)) = best else { break };
            ids[i] = m;
            ids.remove(i + 1);
        }
        ids
    }
}
