//! Quality heuristics with their published parameters as defaults — Gopher (Rae et al. 2021,
//! appendix A: quality filter and the repetition thresholds of table A1), C4 (Raffel et al.
//! 2020, the "clean" rules) and FineWeb's additional rules (Penedo et al. 2024). Every rule is
//! evaluated (no short-circuit), so a document carries all the rules it fails, and the keep
//! decision can change without recomputing anything.
//!
//! Words are whitespace-separated tokens with surrounding punctuation removed; lines are split
//! at `\n`, paragraphs at blank lines.

use gxhash::HashSet;
use serde::{Deserialize, Serialize};

/// Thresholds; the defaults are the published ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityParams {
    // Gopher quality
    pub min_words: usize,
    pub max_words: usize,
    pub min_mean_word_len: f64,
    pub max_mean_word_len: f64,
    pub max_symbol_word_ratio: f64,
    pub max_bullet_lines: f64,
    pub max_ellipsis_lines: f64,
    pub min_alpha_words: f64,
    pub min_stop_words: usize,
    // Gopher repetition
    pub max_dup_line_frac: f64,
    pub max_dup_para_frac: f64,
    pub max_dup_line_char_frac: f64,
    pub max_dup_para_char_frac: f64,
    /// (n, max fraction of characters in the most frequent n-gram)
    pub top_ngram: Vec<(usize, f64)>,
    /// (n, max fraction of characters in repeated n-grams)
    pub dup_ngram: Vec<(usize, f64)>,
    // C4
    pub c4_min_sentences: usize,
    pub c4_max_word_len: usize,
    // FineWeb
    pub fw_min_line_punct: f64,
    pub fw_max_short_lines: f64,
    pub fw_short_line_len: usize,
    pub fw_max_char_dup: f64,
    pub fw_max_newline_word_ratio: f64,
}

impl Default for QualityParams {
    fn default() -> Self {
        QualityParams {
            min_words: 50,
            max_words: 100_000,
            min_mean_word_len: 3.0,
            max_mean_word_len: 10.0,
            max_symbol_word_ratio: 0.1,
            max_bullet_lines: 0.9,
            max_ellipsis_lines: 0.3,
            min_alpha_words: 0.8,
            min_stop_words: 2,
            max_dup_line_frac: 0.30,
            max_dup_para_frac: 0.30,
            max_dup_line_char_frac: 0.20,
            max_dup_para_char_frac: 0.20,
            top_ngram: vec![(2, 0.20), (3, 0.18), (4, 0.16)],
            dup_ngram: vec![
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ],
            c4_min_sentences: 5,
            c4_max_word_len: 1000,
            fw_min_line_punct: 0.12,
            fw_max_short_lines: 0.67,
            fw_short_line_len: 30,
            fw_max_char_dup: 0.01,
            fw_max_newline_word_ratio: 0.3,
        }
    }
}

/// The Gopher stop words a real English document contains at least two of.
const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

/// Line endings C4 and FineWeb count as the end of a sentence.
const TERMINAL: [char; 10] = ['.', '!', '?', '"', '”', '\'', '。', '！', '？', '…'];

/// Phrases that mark C4's boilerplate lines (cookie and legal notices).
const C4_POLICY: [&str; 6] = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
];

/// Every rule's verdict (true = the document fails it) and the measurements behind them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quality {
    pub words: usize,
    pub mean_word_len: f64,
    /// Names of the rules failed, in a fixed order (see [`RULES`]).
    pub failed: Vec<&'static str>,
    /// Lines C4's line rules would keep, as a fraction of non-empty lines.
    pub c4_lines_kept: f64,
}

/// Every rule name, in the order they are evaluated and reported.
pub const RULES: [&str; 24] = [
    "gopher_word_count",
    "gopher_mean_word_length",
    "gopher_symbol_ratio",
    "gopher_bullet_lines",
    "gopher_ellipsis_lines",
    "gopher_alpha_words",
    "gopher_stop_words",
    "gopher_dup_para_frac",
    "gopher_dup_para_char_frac",
    "gopher_dup_line_frac",
    "gopher_dup_line_char_frac",
    "gopher_top_2gram",
    "gopher_top_3gram",
    "gopher_top_4gram",
    "gopher_dup_ngrams",
    "c4_lorem_ipsum",
    "c4_curly_bracket",
    "c4_long_word",
    "c4_few_sentences",
    "c4_javascript",
    "fineweb_line_punct",
    "fineweb_short_lines",
    "fineweb_char_dup",
    "fineweb_list_ratio",
];

/// The rule families, in the order their `<family>_drop` flags are reported.
pub const FAMILIES: [&str; 3] = ["gopher", "c4", "fineweb"];

/// The family of a rule name (one of [`FAMILIES`]).
pub fn family(rule: &str) -> &str {
    rule.split('_').next().unwrap_or(rule)
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect()
}

/// A document's words with their hashes and lengths in characters: n-grams are compared by
/// a 64-bit hash of their words' hashes (no n-gram is materialized).
struct WordSeq {
    hashes: Vec<u64>,
    chars: Vec<u32>,
}

impl WordSeq {
    fn new(words: &[&str]) -> WordSeq {
        WordSeq {
            hashes: words
                .iter()
                .map(|w| gxhash::gxhash64(w.as_bytes(), 0x51_7cc1))
                .collect(),
            chars: words.iter().map(|w| char_len(w) as u32).collect(),
        }
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Hash of the n-gram starting at `i`.
    fn ngram(&self, i: usize, n: usize) -> u64 {
        self.hashes[i..i + n]
            .iter()
            .fold(0x9e37_79b9_7f4a_7c15u64, |h, &w| {
                (h.rotate_left(23) ^ w).wrapping_mul(0xbf58_476d_1ce4_e5b9)
            })
    }

    /// Characters in words `i..i + n`.
    fn chars_in(&self, i: usize, n: usize) -> usize {
        self.chars[i..i + n].iter().map(|&c| c as usize).sum()
    }
}

fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// A hasher for keys that already are hashes.
#[derive(Default, Clone, Copy)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByHash = std::hash::BuildHasherDefault<Prehashed>;

/// (duplicate elements, characters in duplicates)
fn duplicates<'a>(items: impl Iterator<Item = &'a str>) -> (usize, usize) {
    let mut seen = HashSet::default();
    let (mut n, mut chars) = (0, 0);
    for item in items {
        if !seen.insert(item) {
            n += 1;
            chars += char_len(item);
        }
    }
    (n, chars)
}

/// Gopher's n-gram repetition measures, for every n in `top` (characters — joined with
/// spaces — times count of the most frequent n-gram, the first to occur among equally
/// frequent ones) and in `dup` (characters covered by n-grams seen before; a repeated
/// n-gram's words are counted once: the scan jumps past it). One sweep over n = 1, 2, …:
/// an n-gram can occur twice only where both (n−1)-grams inside it do, so each n hashes only
/// the positions the previous n left as candidates, and positions whose n-gram occurs once
/// are skipped without hashing (they can never be "seen before").
fn ngram_repetition(w: &WordSeq, top: &[usize], dup: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut top_chars = vec![0; top.len()];
    let mut dup_chars = vec![0; dup.len()];
    let max_n = top.iter().chain(dup).copied().max().unwrap_or(0);
    let min_n = top
        .iter()
        .chain(dup)
        .copied()
        .filter(|&n| n > 0)
        .min()
        .unwrap_or(1);
    // rep[i]: the (n−1)-gram at i occurs at least twice; below the smallest n asked for,
    // every position is a candidate (no pass is spent on n-grams nobody asked about).
    let mut rep = vec![true; w.len() + 1];
    let mut next: Vec<bool> = Vec::with_capacity(w.len());
    let mut hashes: Vec<u64> = vec![0; w.len()];
    let mut counts: std::collections::HashMap<u64, (u32, u32), ByHash> =
        std::collections::HashMap::with_capacity_and_hasher(w.len(), ByHash::default());
    for n in min_n..=max_n.min(w.len()) {
        let positions = w.len() - n + 1;
        counts.clear();
        let mut any = false;
        for i in 0..positions {
            if rep[i] && rep[i + 1] {
                let h = w.ngram(i, n);
                hashes[i] = h;
                counts.entry(h).or_insert((0, i as u32)).0 += 1;
                any = true;
            }
        }
        next.clear();
        next.extend(
            (0..positions)
                .map(|i| rep[i] && rep[i + 1] && counts.get(&hashes[i]).is_some_and(|c| c.0 >= 2)),
        );
        std::mem::swap(&mut rep, &mut next);
        for (k, _) in top.iter().enumerate().filter(|(_, &t)| t == n) {
            let best = counts
                .values()
                .filter(|c| c.0 >= 2)
                .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
                .copied()
                // Every n-gram occurs once: the first one, once.
                .unwrap_or((1, 0));
            top_chars[k] = (w.chars_in(best.1 as usize, n) + n - 1) * best.0 as usize;
        }
        if dup.contains(&n) {
            let mut seen: std::collections::HashSet<u64, ByHash> =
                std::collections::HashSet::with_capacity_and_hasher(
                    if any { counts.len() } else { 0 },
                    ByHash::default(),
                );
            let (mut i, mut chars) = (0, 0);
            while i < positions {
                if rep[i] {
                    if seen.contains(&hashes[i]) {
                        chars += w.chars_in(i, n);
                        i += n;
                        continue;
                    }
                    seen.insert(hashes[i]);
                }
                i += 1;
            }
            for (k, _) in dup.iter().enumerate().filter(|(_, &d)| d == n) {
                dup_chars[k] = chars;
            }
        }
    }
    (top_chars, dup_chars)
}

/// Case-insensitive markers of C4's line and document rules.
static C4_MARKERS: std::sync::LazyLock<aho_corasick::AhoCorasick> =
    std::sync::LazyLock::new(|| {
        let mut pats = vec!["javascript", "lorem ipsum"];
        pats.extend(C4_POLICY);
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(pats)
            .expect("C4 markers compile")
    });

/// Which C4 markers a line contains: (javascript, lorem ipsum, policy phrase).
fn c4_markers(line: &str) -> (bool, bool, bool) {
    let (mut js, mut lorem, mut policy) = (false, false, false);
    for m in C4_MARKERS.find_overlapping_iter(line) {
        match m.pattern().as_usize() {
            0 => js = true,
            1 => lorem = true,
            _ => policy = true,
        }
    }
    (js, lorem, policy)
}

/// Evaluate every rule on a document's text.
pub fn assess(text: &str, p: &QualityParams) -> Quality {
    let mut failed = Vec::new();
    let mut fail = |rule: &'static str, cond: bool| {
        if cond {
            failed.push(rule);
        }
    };
    let w = words(text);
    let seq = WordSeq::new(&w);
    let n_words = w.len();
    let chars = char_len(text).max(1) as f64;
    let mean_word_len = if n_words == 0 {
        0.0
    } else {
        seq.chars.iter().map(|&c| c as usize).sum::<usize>() as f64 / n_words as f64
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let n_lines = lines.len().max(1) as f64;

    // Gopher quality.
    fail(
        "gopher_word_count",
        n_words < p.min_words || n_words > p.max_words,
    );
    fail(
        "gopher_mean_word_length",
        n_words > 0 && (mean_word_len < p.min_mean_word_len || mean_word_len > p.max_mean_word_len),
    );
    let symbols =
        text.matches('#').count() + text.matches("...").count() + text.matches('…').count();
    fail(
        "gopher_symbol_ratio",
        n_words > 0 && symbols as f64 / n_words as f64 > p.max_symbol_word_ratio,
    );
    let bullets = lines
        .iter()
        .filter(|l| l.starts_with(['•', '-', '*', '‣', '◦']))
        .count();
    fail(
        "gopher_bullet_lines",
        bullets as f64 / n_lines > p.max_bullet_lines,
    );
    let ellipsis = lines
        .iter()
        .filter(|l| l.ends_with("...") || l.ends_with('…'))
        .count();
    fail(
        "gopher_ellipsis_lines",
        ellipsis as f64 / n_lines > p.max_ellipsis_lines,
    );
    let alpha = w
        .iter()
        .filter(|x| x.chars().any(char::is_alphabetic))
        .count();
    fail(
        "gopher_alpha_words",
        n_words > 0 && (alpha as f64 / n_words as f64) < p.min_alpha_words,
    );
    let stop = w
        .iter()
        .filter(|x| STOP_WORDS.iter().any(|s| x.eq_ignore_ascii_case(s)))
        .count();
    fail("gopher_stop_words", stop < p.min_stop_words);

    // Gopher repetition.
    let paras: Vec<&str> = text
        .trim()
        .split("\n\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let (dp, dpc) = duplicates(paras.iter().copied());
    fail(
        "gopher_dup_para_frac",
        dp as f64 / paras.len().max(1) as f64 > p.max_dup_para_frac,
    );
    fail(
        "gopher_dup_para_char_frac",
        dpc as f64 / chars > p.max_dup_para_char_frac,
    );
    let (dl, dlc) = duplicates(lines.iter().copied());
    fail(
        "gopher_dup_line_frac",
        dl as f64 / n_lines > p.max_dup_line_frac,
    );
    fail(
        "gopher_dup_line_char_frac",
        dlc as f64 / chars > p.max_dup_line_char_frac,
    );
    let top_ns: Vec<usize> = p.top_ngram.iter().map(|&(n, _)| n).collect();
    let dup_ns: Vec<usize> = p.dup_ngram.iter().map(|&(n, _)| n).collect();
    let (top_chars, dup_chars) = ngram_repetition(&seq, &top_ns, &dup_ns);
    for (rule, n) in [
        ("gopher_top_2gram", 2),
        ("gopher_top_3gram", 3),
        ("gopher_top_4gram", 4),
    ] {
        let failed = p
            .top_ngram
            .iter()
            .zip(&top_chars)
            .any(|(&(k, f), &c)| k == n && c as f64 / chars > f);
        fail(rule, failed);
    }
    fail(
        "gopher_dup_ngrams",
        p.dup_ngram
            .iter()
            .zip(&dup_chars)
            .any(|(&(n, f), &c)| n > 0 && c as f64 / chars > f),
    );

    // C4.
    let markers: Vec<(bool, bool, bool)> = lines.iter().map(|l| c4_markers(l)).collect();
    fail("c4_lorem_ipsum", markers.iter().any(|m| m.1));
    fail("c4_curly_bracket", text.contains('{'));
    fail(
        "c4_long_word",
        seq.chars.iter().any(|&c| c as usize > p.c4_max_word_len),
    );
    let kept: Vec<&str> = lines
        .iter()
        .zip(&markers)
        .filter(|(l, m)| {
            l.ends_with(TERMINAL) && l.split_whitespace().nth(2).is_some() && !m.0 && !m.2
        })
        .map(|(l, _)| *l)
        .collect();
    let sentences: usize = kept
        .iter()
        .map(|l| {
            l.split_inclusive(['.', '!', '?', '。', '！', '？'])
                .filter(|s| s.trim().chars().count() > 1)
                .count()
        })
        .sum();
    fail("c4_few_sentences", sentences < p.c4_min_sentences);
    fail(
        "c4_javascript",
        markers.iter().any(|m| m.0) && kept.is_empty(),
    );
    let c4_lines_kept = kept.len() as f64 / n_lines;

    // FineWeb.
    let punct = lines.iter().filter(|l| l.ends_with(TERMINAL)).count();
    fail(
        "fineweb_line_punct",
        !lines.is_empty() && (punct as f64 / n_lines) < p.fw_min_line_punct,
    );
    let short = lines
        .iter()
        .filter(|l| char_len(l) <= p.fw_short_line_len)
        .count();
    fail(
        "fineweb_short_lines",
        short as f64 / n_lines > p.fw_max_short_lines,
    );
    let non_newline = (char_len(text) - text.matches('\n').count()).max(1) as f64;
    fail(
        "fineweb_char_dup",
        dlc as f64 / non_newline > p.fw_max_char_dup,
    );
    fail(
        "fineweb_list_ratio",
        n_words > 0
            && text.matches('\n').count() as f64 / n_words as f64 > p.fw_max_newline_word_ratio,
    );

    Quality {
        words: n_words,
        mean_word_len,
        failed,
        c4_lines_kept,
    }
}

/// The direct n-gram measures (one hash table per n over every position), the reference
/// the sweep in [`ngram_repetition`] is tested against.
#[cfg(test)]
mod reference {
    use super::{ByHash, WordSeq};

    /// Characters (joined with spaces) times count of the most frequent n-gram (among equally
    /// frequent ones, the first to occur).
    pub(super) fn top_ngram_chars(w: &WordSeq, n: usize) -> usize {
        if w.len() < n {
            return 0;
        }
        let mut counts: std::collections::HashMap<u64, (u32, u32), ByHash> =
            std::collections::HashMap::with_capacity_and_hasher(w.len(), ByHash::default());
        for i in 0..=w.len() - n {
            counts.entry(w.ngram(i, n)).or_insert((0, i as u32)).0 += 1;
        }
        counts
            .into_values()
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
            .map(|(c, first)| (w.chars_in(first as usize, n) + n - 1) * c as usize)
            .unwrap_or(0)
    }

    /// Characters covered by n-grams seen before (a repeated n-gram's words are counted once:
    /// the scan jumps past it).
    pub(super) fn dup_ngram_chars(w: &WordSeq, n: usize) -> usize {
        let mut seen: std::collections::HashSet<u64, ByHash> =
            std::collections::HashSet::with_capacity_and_hasher(w.len(), ByHash::default());
        let (mut i, mut chars) = (0, 0);
        while i + n <= w.len() {
            let g = w.ngram(i, n);
            if seen.contains(&g) {
                chars += w.chars_in(i, n);
                i += n;
            } else {
                seen.insert(g);
                i += 1;
            }
        }
        chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSE: &str = "The history of the river valley is long and varied. Farmers settled \
        along its banks more than three thousand years ago, and they built terraces that are \
        still visible today. Traders followed the water to the coast, carrying grain, wool and \
        pottery to the markets of the port towns. In the middle ages the valley belonged to a \
        string of small lordships that fought over the mills and the bridges. Today most of the \
        land is used for orchards and vineyards, and the old towns attract visitors who come to \
        walk the trails that follow the river from its source to the sea.";

    #[test]
    fn good_prose_passes_every_rule() {
        let q = assess(PROSE, &QualityParams::default());
        assert!(q.failed.is_empty(), "{:?}", q.failed);
        assert!(q.words > 50);
    }

    #[test]
    fn each_family_catches_its_pattern() {
        let p = QualityParams::default();
        let short = assess("Too short to be a document.", &p);
        assert!(short.failed.contains(&"gopher_word_count"));
        assert!(short.failed.contains(&"c4_few_sentences"));

        let repeated = format!("{PROSE}\n\n{PROSE}\n\n{PROSE}");
        let q = assess(&repeated, &p);
        for rule in [
            "gopher_dup_para_frac",
            "gopher_dup_para_char_frac",
            "gopher_dup_ngrams",
        ] {
            assert!(q.failed.contains(&rule), "{rule}: {:?}", q.failed);
        }

        let menu = (0..60)
            .map(|i| format!("- Menu item {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let q = assess(&menu, &p);
        for rule in [
            "gopher_bullet_lines",
            "fineweb_line_punct",
            "fineweb_short_lines",
            "fineweb_list_ratio",
        ] {
            assert!(q.failed.contains(&rule), "{rule}: {:?}", q.failed);
        }

        let code = format!("{PROSE}\nfunction f() {{ return lorem ipsum; }}");
        let q = assess(&code, &p);
        assert!(q.failed.contains(&"c4_curly_bracket"));
        assert!(q.failed.contains(&"c4_lorem_ipsum"));

        let hashtags = format!("{PROSE} {}", "#tag ".repeat(40));
        assert!(assess(&hashtags, &p)
            .failed
            .contains(&"gopher_symbol_ratio"));
    }

    #[test]
    fn thresholds_are_parameters() {
        let strict = QualityParams {
            min_words: 1000,
            ..QualityParams::default()
        };
        assert!(assess(PROSE, &strict).failed.contains(&"gopher_word_count"));
        for rule in assess("", &QualityParams::default()).failed {
            assert!(RULES.contains(&rule), "{rule} not listed");
        }
    }

    #[test]
    fn ngram_sweep_matches_the_direct_computation() {
        // Word sequences from small vocabularies repeat n-grams of every length; real prose
        // and repeated prose too.
        let mut texts: Vec<String> = vec![PROSE.to_string(), format!("{PROSE} {PROSE}")];
        let mut state = 7u64;
        for vocab in [2u64, 3, 5, 20, 200] {
            for len in [1usize, 4, 11, 60, 400] {
                let words: Vec<String> = (0..len)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        format!("w{}", (state >> 33) % vocab)
                    })
                    .collect();
                texts.push(words.join(" "));
            }
        }
        let top = [1, 2, 3, 4, 7];
        let dup = [1, 2, 5, 6, 7, 8, 9, 10, 12];
        for t in &texts {
            let w = words(t);
            let seq = WordSeq::new(&w);
            let (tops, dups) = ngram_repetition(&seq, &top, &dup);
            for (k, &n) in top.iter().enumerate() {
                assert_eq!(
                    tops[k],
                    reference::top_ngram_chars(&seq, n),
                    "top {n} of {t}"
                );
            }
            for (k, &n) in dup.iter().enumerate() {
                assert_eq!(
                    dups[k],
                    reference::dup_ngram_chars(&seq, n),
                    "dup {n} of {t}"
                );
            }
        }
    }
}
