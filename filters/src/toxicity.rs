//! The trainable toxicity classifier: a linear model over hashed word and character n-grams
//! (fastText-style features, logistic regression fitted with AdaGrad), its training, scoring
//! and versioned file format. The filter stage, `harman classify` and `harman
//! train-classifier` all go through this module, so a score is the same number everywhere.
//!
//! Features of a text (lowercased, Unicode-aware): its words (maximal runs of alphanumeric
//! characters), word bigrams, and the character n-grams (`min_char_n..=max_char_n` characters)
//! of each word wrapped in `<` `>`. Each feature is hashed (64-bit FNV-1a, see [`fnv`]) into
//! one of `2^bucket_bits` weights. The score is `sigmoid(bias + Σ w[f] / sqrt(N))` over the N
//! feature occurrences, so no per-document table is needed and long documents are not
//! favoured.
//!
//! File format (little endian): `HRMNTOX\0`, u32 format version, u32 header length, the header
//! as JSON ([`ModelHeader`]: feature settings and where the model came from), then
//! `2^bucket_bits` f32 weights. The weights' sha256 is in the header and checked on load.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The model shipped with harman: trained by `harman train-classifier` on the training 80% of
/// `toxicity_labeled` (see `filters/models/SOURCE.md`).
pub const SHIPPED_MODEL: &[u8] = include_bytes!("../models/toxicity-v1.htox");

const MAGIC: &[u8; 8] = b"HRMNTOX\0";
/// Version of the file layout (not of a model).
pub const FORMAT_VERSION: u32 = 1;

/// Errors reading or writing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a harman toxicity model (bad magic bytes; expected a file written by `harman train-classifier`)")]
    Magic,
    #[error("model file format version {0} is not supported by this harman (it reads version {FORMAT_VERSION}); retrain with this version")]
    Version(u32),
    #[error("model file is damaged: {0}")]
    Damaged(String),
}

/// Feature settings (part of the model: scoring must use the ones it was trained with).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// log2 of the number of hashed weights.
    pub bucket_bits: u32,
    /// Word n-grams up to this length (1 = words only, 2 = words and bigrams).
    pub word_ngrams: u32,
    /// Character n-gram lengths inside `<word>`; 0 = none.
    pub min_char_n: u32,
    pub max_char_n: u32,
    /// Only the first this many bytes (cut at a character boundary) are scored; 0 = all.
    pub max_bytes: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            bucket_bits: 18,
            word_ngrams: 2,
            min_char_n: 2,
            max_char_n: 5,
            max_bytes: 16_384,
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: u32,
    /// AdaGrad learning rate.
    pub learning_rate: f32,
    /// L2 penalty on the weights a step touches.
    pub l2: f32,
    /// Seed of the (deterministic) example order.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            learning_rate: 0.2,
            l2: 1e-6,
            seed: 0x5eed,
        }
    }
}

/// What a model file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelHeader {
    /// The model's own version label (e.g. `toxicity-v1`).
    pub name: String,
    /// Languages (ISO 639-1) of the training data: the filter stage scores documents in
    /// these languages only (others get a null score). Empty = any language.
    #[serde(default)]
    pub languages: Vec<String>,
    pub features: FeatureConfig,
    pub training: TrainConfig,
    pub bias: f32,
    /// Rows and positive rows it was trained on.
    pub train_rows: u64,
    pub train_positives: u64,
    /// Where the training data came from (free text: file names, split rule).
    pub trained_on: String,
    /// The harman version that trained it.
    pub harman_version: String,
    /// sha256 of the weight bytes.
    pub weights_sha256: String,
}

/// A loaded model.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub header: ModelHeader,
    weights: Vec<f32>,
}

/// 64-bit FNV-1a over `bytes`, continuing from `state` (start from [`FNV_BASIS`]).
#[inline]
pub fn fnv(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= b as u64;
        state = state.wrapping_mul(0x100_0000_01b3);
    }
    state
}

pub const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// Character n-grams start from a different state than words, so `<ab` never equals a word.
const CHAR_BASIS: u64 = FNV_BASIS ^ 0x9e37_79b9_7f4a_7c15;

/// Mixes two word hashes into a bigram hash (splitmix64's finalizer over their combination).
#[inline]
fn bigram(a: u64, b: u64) -> u64 {
    let mut z = a.rotate_left(17) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Calls `emit` with the hash of every feature occurrence of `text`.
pub fn features(text: &str, cfg: &FeatureConfig, mut emit: impl FnMut(u64)) {
    let text = if cfg.max_bytes > 0 && text.len() > cfg.max_bytes {
        let mut end = cfg.max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    } else {
        text
    };
    let mut word = String::with_capacity(32);
    // Char boundaries of `word` (byte offsets), for the character n-grams.
    let mut bounds: Vec<usize> = Vec::with_capacity(34);
    let mut prev: Option<u64> = None;
    let mut flush = |word: &mut String, bounds: &mut Vec<usize>, prev: &mut Option<u64>| {
        if word.is_empty() {
            return;
        }
        let h = fnv(FNV_BASIS, word.as_bytes());
        emit(h);
        if cfg.word_ngrams >= 2 {
            if let Some(p) = *prev {
                emit(bigram(p, h));
            }
        }
        *prev = Some(h);
        if cfg.max_char_n > 0 {
            // `<word>`: positions 0 and n+1 are the markers.
            bounds.clear();
            bounds.push(0);
            bounds.extend(word.char_indices().map(|(i, _)| i + 1));
            bounds.push(word.len() + 1);
            bounds.push(word.len() + 2);
            let n_chars = bounds.len() - 1;
            let wb = word.as_bytes();
            let byte_at = |i: usize| -> u8 {
                if i == 0 {
                    b'<'
                } else if i == wb.len() + 1 {
                    b'>'
                } else {
                    wb[i - 1]
                }
            };
            for start in 0..n_chars {
                let mut state = CHAR_BASIS;
                for n in 1..=cfg.max_char_n as usize {
                    let end = start + n;
                    if end > n_chars {
                        break;
                    }
                    for i in bounds[end - 1]..bounds[end] {
                        state ^= byte_at(i) as u64;
                        state = state.wrapping_mul(0x100_0000_01b3);
                    }
                    // A lone marker is not a feature.
                    if n >= cfg.min_char_n as usize && !(n == 1 && (start == 0 || end == n_chars)) {
                        emit(state);
                    }
                }
            }
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_ascii() {
                word.push(c.to_ascii_lowercase());
            } else {
                word.extend(c.to_lowercase());
            }
        } else if !word.is_empty() {
            flush(&mut word, &mut bounds, &mut prev);
        }
    }
    flush(&mut word, &mut bounds, &mut prev);
}

#[inline]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl Classifier {
    /// The shipped default model.
    pub fn shipped() -> Result<Classifier, ModelError> {
        Classifier::from_bytes(SHIPPED_MODEL)
    }

    /// Read a model file.
    pub fn load(path: &Path) -> Result<Classifier, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Classifier::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Classifier, ModelError> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(ModelError::Magic);
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(ModelError::Version(version));
        }
        let header_len = u32_at(12) as usize;
        let header_end = 16usize
            .checked_add(header_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| ModelError::Damaged("header runs past the end of the file".into()))?;
        let header: ModelHeader = serde_json::from_slice(&bytes[16..header_end])
            .map_err(|e| ModelError::Damaged(format!("header: {e}")))?;
        if header.features.bucket_bits == 0 || header.features.bucket_bits > 28 {
            return Err(ModelError::Damaged(format!(
                "bucket_bits = {} (1 to 28 allowed)",
                header.features.bucket_bits
            )));
        }
        let n = 1usize << header.features.bucket_bits;
        let body = &bytes[header_end..];
        if body.len() != n * 4 {
            return Err(ModelError::Damaged(format!(
                "{} weight bytes, expected {}",
                body.len(),
                n * 4
            )));
        }
        let sha = hex::encode(Sha256::digest(body));
        if sha != header.weights_sha256 {
            return Err(ModelError::Damaged(format!(
                "weights sha256 {sha} differs from the header's {}",
                header.weights_sha256
            )));
        }
        let weights = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Classifier { header, weights })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec_pretty(&self.header).unwrap_or_default();
        let mut out = Vec::with_capacity(16 + header.len() + self.weights.len() * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&weight_bytes(&self.weights));
        out
    }

    /// Write the model file (via a temporary file, so a reader never sees half of it).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let io = |source| ModelError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_bytes()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Whether the model was trained for documents in `lang` (ISO 639-1).
    pub fn covers(&self, lang: Option<&str>) -> bool {
        self.header.languages.is_empty()
            || lang.is_some_and(|l| self.header.languages.iter().any(|m| m == l))
    }

    /// The toxicity score of `text` in [0, 1] (sigmoid(bias) for text without a word).
    pub fn score(&self, text: &str) -> f32 {
        let mask = (self.weights.len() - 1) as u64;
        let (mut sum, mut n) = (0.0f32, 0u32);
        features(text, &self.header.features, |h| {
            sum += self.weights[(h & mask) as usize];
            n += 1;
        });
        if n == 0 {
            return sigmoid(self.header.bias);
        }
        sigmoid(self.header.bias + sum / (n as f32).sqrt())
    }

    /// Fit a model on `(text, label)` examples. Deterministic: same examples, same order and
    /// settings ⇒ the same weights, bit for bit.
    pub fn train<'a>(
        name: &str,
        languages: &[String],
        examples: impl IntoIterator<Item = (&'a str, bool)>,
        features_cfg: FeatureConfig,
        training: TrainConfig,
        trained_on: &str,
    ) -> Classifier {
        let mask = (1u64 << features_cfg.bucket_bits) - 1;
        // Each example as (bucket, count) pairs, its 1/sqrt(N) and label.
        struct Example {
            feats: Vec<(u32, f32)>,
            scale: f32,
            y: f32,
        }
        let mut rows: Vec<Example> = Vec::new();
        let mut buf: Vec<u32> = Vec::new();
        let mut positives = 0u64;
        for (text, label) in examples {
            buf.clear();
            features(text, &features_cfg, |h| buf.push((h & mask) as u32));
            let scale = if buf.is_empty() {
                0.0
            } else {
                1.0 / (buf.len() as f32).sqrt()
            };
            buf.sort_unstable();
            let mut feats: Vec<(u32, f32)> = Vec::new();
            for &b in &buf {
                match feats.last_mut() {
                    Some((last, c)) if *last == b => *c += 1.0,
                    _ => feats.push((b, 1.0)),
                }
            }
            positives += label as u64;
            rows.push(Example {
                feats,
                scale,
                y: if label { 1.0 } else { 0.0 },
            });
        }
        let n_weights = 1usize << features_cfg.bucket_bits;
        let mut w = vec![0.0f32; n_weights];
        let mut g2 = vec![0.0f32; n_weights];
        let (mut bias, mut bias_g2) = (0.0f32, 0.0f32);
        let lr = training.learning_rate;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut rng = training.seed;
        for _ in 0..training.epochs {
            // Fisher-Yates with splitmix64: the same order on every machine.
            for i in (1..order.len()).rev() {
                let j = (splitmix(&mut rng) % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            for &r in &order {
                let Example { feats, scale, y } = &rows[r];
                let z = bias + feats.iter().map(|&(b, c)| w[b as usize] * c).sum::<f32>() * scale;
                let g = sigmoid(z) - y;
                for &(b, c) in feats {
                    let b = b as usize;
                    let grad = g * c * scale + training.l2 * w[b];
                    g2[b] += grad * grad;
                    w[b] -= lr * grad / (g2[b].sqrt() + 1e-8);
                }
                bias_g2 += g * g;
                bias -= lr * g / (bias_g2.sqrt() + 1e-8);
            }
        }
        let header = ModelHeader {
            name: name.to_string(),
            languages: languages.to_vec(),
            features: features_cfg,
            training,
            bias,
            train_rows: rows.len() as u64,
            train_positives: positives,
            trained_on: trained_on.to_string(),
            harman_version: env!("CARGO_PKG_VERSION").to_string(),
            weights_sha256: hex::encode(Sha256::digest(weight_bytes(&w))),
        };
        Classifier { header, weights: w }
    }
}

fn weight_bytes(w: &[f32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Precision, recall, F1, accuracy and ROC-AUC of scores against labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    pub n: usize,
    pub positives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub accuracy: f64,
    pub auc: f64,
}

/// Metrics of `scores` (higher = more toxic) thresholded at `threshold`; AUC is the rank
/// statistic with ties counted one half (for 0/1 scores it equals (TPR + TNR) / 2).
pub fn metrics(labels: &[bool], scores: &[f64], threshold: f64) -> Metrics {
    let (mut tp, mut fp, mut fne) = (0usize, 0usize, 0usize);
    for (&y, &s) in labels.iter().zip(scores) {
        let p = s >= threshold;
        match (y, p) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fne += 1,
            _ => {}
        }
    }
    let n = labels.len();
    let tn = n - tp - fp - fne;
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        0.0
    };
    let recall = if tp + fne > 0 {
        tp as f64 / (tp + fne) as f64
    } else {
        0.0
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n_pos = labels.iter().filter(|&&y| y).count();
    let n_neg = n - n_pos;
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let auc = if n_pos == 0 || n_neg == 0 {
        f64::NAN
    } else {
        (rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0) / (n_pos * n_neg) as f64
    };
    Metrics {
        n,
        positives: n_pos,
        precision,
        recall,
        f1,
        accuracy: if n > 0 {
            (tp + tn) as f64 / n as f64
        } else {
            0.0
        },
        auc,
    }
}

/// The deterministic train/test split shared with the peers' scripts: a row is held out when
/// the first 8 hex digits of sha256(salt + id), read as a fraction of 2^32, are below
/// `fraction`.
pub fn is_held_out(id: &str, salt: &str, fraction: f64) -> bool {
    let d = Sha256::digest(format!("{salt}{id}").as_bytes());
    let h = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    (h as f64) / 4_294_967_296.0 < fraction
}

/// The salt of the peers' 80/20 split of `toxicity_labeled`.
pub const PEERS_SPLIT_SALT: &str = "harman-peers-80-20:";

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> FeatureConfig {
        FeatureConfig {
            bucket_bits: 14,
            word_ngrams: 2,
            min_char_n: 2,
            max_char_n: 5,
            max_bytes: 0,
        }
    }

    #[test]
    fn features_cover_words_bigrams_and_char_ngrams() {
        let mut n = 0;
        features("Ab cd", &small(), |_| n += 1);
        // words 2, bigram 1, char n-grams of <ab> (4 chars: 2-grams 3, 3-grams 2, 4-grams 1)
        // twice.
        assert_eq!(n, 2 + 1 + 6 * 2);
        let mut a = vec![];
        features("HELLO World", &small(), |h| a.push(h));
        let mut b = vec![];
        features("hello, world!", &small(), |h| b.push(h));
        assert_eq!(a, b, "case and punctuation do not change features");
    }

    #[test]
    fn training_separates_classes_and_round_trips() {
        let toxic = [
            "you are an idiot",
            "shut up idiot",
            "what a stupid idiot you are",
            "stupid moron",
        ];
        let fine = [
            "have a nice day",
            "thanks for the help",
            "the weather is nice today",
            "see you at the meeting",
        ];
        let examples: Vec<(&str, bool)> = toxic
            .iter()
            .map(|t| (*t, true))
            .chain(fine.iter().map(|t| (*t, false)))
            .collect();
        let m = Classifier::train(
            "t",
            &[],
            examples.clone(),
            small(),
            TrainConfig::default(),
            "unit test",
        );
        assert!(
            m.score("such an idiot") > 0.5,
            "{}",
            m.score("such an idiot")
        );
        assert!(m.score("nice day today") < 0.5);
        let again = Classifier::train(
            "t",
            &[],
            examples,
            small(),
            TrainConfig::default(),
            "unit test",
        );
        assert_eq!(m.to_bytes(), again.to_bytes(), "training is deterministic");
        let back = Classifier::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(back.score("stupid"), m.score("stupid"));
        let mut bytes = m.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            Classifier::from_bytes(&bytes),
            Err(ModelError::Damaged(_))
        ));
        assert!(matches!(
            Classifier::from_bytes(b"not a model at all"),
            Err(ModelError::Magic)
        ));
    }

    #[test]
    fn shipped_model_loads_and_scores() {
        let m = Classifier::shipped().unwrap();
        assert!(m.score("you are a fucking idiot") > 0.5);
        assert!(m.score("The committee will meet on Tuesday to discuss the budget.") < 0.5);
    }

    #[test]
    fn metrics_match_hand_counts() {
        let labels = [true, true, false, false];
        let m = metrics(&labels, &[0.9, 0.4, 0.6, 0.1], 0.5);
        assert_eq!((m.precision, m.recall), (0.5, 0.5));
        assert_eq!(m.auc, 0.75);
        // The same split as the peers' Python (values computed with hashlib).
        for (id, held_out) in [
            ("wiki_toxicity:598296", false),
            ("wiki_toxicity:1266286", true),
            ("wiki_toxicity:1947358", false), // 0.2010
            ("wiki_toxicity:5625901", true),  // 0.1635
        ] {
            assert_eq!(is_held_out(id, PEERS_SPLIT_SALT, 0.2), held_out, "{id}");
        }
    }
}
