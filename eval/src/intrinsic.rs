//! Intrinsic metrics: mean loss (nats per token), perplexity and bits per byte
//! (−Σ log p / (bytes · ln 2), as lm-evaluation-harness defines it), on llm.c token shards
//! (disjoint windows of max_seq_len; bits per byte over the text tokens, end-of-text
//! predictions excluded, bytes = the decoded tokens' bytes) and on raw text documents
//! (each document after an end-of-text token, every token predicted once with as much
//! preceding context as fits — lm-evaluation-harness' rolling windows; bytes = the UTF-8
//! document).

use crate::loglik::{Scorer, Window};
use crate::{input_err, EvalError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Loss, perplexity and bits per byte of a set of tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intrinsic {
    /// Tokens predicted.
    pub tokens: u64,
    /// Bytes those tokens (or documents) hold.
    pub bytes: u64,
    /// Mean negative log-likelihood per token (nats).
    pub loss: f64,
    pub perplexity: f64,
    pub bits_per_byte: f64,
    /// Documents (raw text) or windows (shards) scored.
    pub units: u64,
}

fn finish(nll: f64, tokens: u64, text_nll: f64, bytes: u64, units: u64) -> Intrinsic {
    let loss = nll / tokens.max(1) as f64;
    Intrinsic {
        tokens,
        bytes,
        loss,
        perplexity: loss.exp(),
        bits_per_byte: text_nll / (bytes.max(1) as f64 * std::f64::consts::LN_2),
        units,
    }
}

/// The metrics on token shards, over at most `max_tokens` predicted tokens per shard set.
pub fn on_shards(
    scorer: &Scorer,
    shards: &[PathBuf],
    max_tokens: Option<u64>,
) -> Result<Intrinsic, EvalError> {
    let t = scorer.params.config.max_seq_len;
    let eot = scorer.tokenizer.eot();
    let mut windows = Vec::new();
    let mut budget = max_tokens.unwrap_or(u64::MAX);
    for path in shards {
        let bytes = std::fs::read(path).map_err(|e| input_err(path, e))?;
        let ids = harman_tokenizer::shard::read_tokens(&bytes).map_err(|e| input_err(path, e))?;
        let mut at = 0;
        while at + 1 < ids.len() && budget > 0 {
            let len = t.min(ids.len() - 1 - at).min(budget as usize);
            windows.push(Window {
                inputs: ids[at..at + len].to_vec(),
                targets: ids[at + 1..at + len + 1].to_vec(),
                first: 0,
            });
            budget -= len as u64;
            at += len;
        }
    }
    let scored = scorer.score_windows(&windows)?;
    let (mut nll, mut text_nll, mut tokens, mut text_bytes) = (0f64, 0f64, 0u64, 0u64);
    let mut sizes = std::collections::HashMap::new();
    for (w, s) in windows.iter().zip(&scored) {
        for (&id, &lp) in w.targets.iter().zip(&s.logp) {
            nll -= lp;
            tokens += 1;
            if Some(id) != eot {
                text_nll -= lp;
                let n = match sizes.get(&id) {
                    Some(&n) => n,
                    None => {
                        let n = scorer.tokenizer.decode_bytes(&[id])?.len() as u64;
                        sizes.insert(id, n);
                        n
                    }
                };
                text_bytes += n;
            }
        }
    }
    Ok(finish(
        nll,
        tokens,
        text_nll,
        text_bytes,
        windows.len() as u64,
    ))
}

/// Prediction windows of a document (lm-evaluation-harness' rolling loglikelihood).
fn rolling(all: &[u32], max: usize) -> Vec<Window> {
    let mut out = Vec::new();
    let mut s = 1;
    while s < all.len() {
        let e = (s + max).min(all.len());
        let w0 = (e - 1).saturating_sub(max);
        out.push(Window {
            inputs: all[w0..e - 1].to_vec(),
            targets: all[w0 + 1..e].to_vec(),
            first: s - (w0 + 1),
        });
        s = e;
    }
    out
}

/// The metrics on raw text: a .txt file (one document) or JSONL(.gz) with a `text` field.
pub fn on_text(scorer: &Scorer, path: &Path, limit: Option<usize>) -> Result<Intrinsic, EvalError> {
    let docs: Vec<String> = if path.extension().is_some_and(|e| e == "txt") {
        vec![std::fs::read_to_string(path).map_err(|e| input_err(path, e))?]
    } else {
        crate::tasks::read_jsonl(path, limit)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v["text"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| input_err(path, format!("item {}: no string `text`", i + 1)))
            })
            .collect::<Result<_, _>>()?
    };
    let eot = scorer.tokenizer.eot().unwrap_or(0);
    let max = scorer.params.config.max_seq_len;
    let (mut windows, mut bytes) = (Vec::new(), 0u64);
    for d in &docs {
        let mut all = vec![eot];
        all.extend(scorer.tokenizer.encode(d));
        windows.extend(rolling(&all, max));
        bytes += d.len() as u64;
    }
    let scored = scorer.score_windows(&windows)?;
    let nll: f64 = -scored.iter().flat_map(|s| &s.logp).sum::<f64>();
    let tokens = scored.iter().map(|s| s.logp.len() as u64).sum();
    Ok(finish(nll, tokens, nll, bytes, docs.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_windows_predict_every_token_once_with_full_context() {
        let all: Vec<u32> = (0..11).collect();
        let w = rolling(&all, 4);
        let predicted: Vec<u32> = w
            .iter()
            .flat_map(|w| w.targets[w.first..].to_vec())
            .collect();
        assert_eq!(predicted, (1..11).collect::<Vec<_>>());
        for w in &w {
            assert!(w.inputs.len() <= 4);
            assert_eq!(&w.inputs[1..], &w.targets[..w.targets.len() - 1]);
        }
        // The second window sees the 4 tokens before its last target.
        assert_eq!(w[1].inputs, vec![4, 5, 6, 7]);
        assert_eq!(w[1].first, 0);
        let last = w.last().unwrap();
        assert_eq!(last.inputs, vec![6, 7, 8, 9]);
        assert_eq!(last.targets[last.first..], [9, 10]);
    }
}
