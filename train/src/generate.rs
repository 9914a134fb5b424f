//! Sampling text from a model: each new token drawn from the softmax of the last position's
//! logits divided by the temperature, restricted to the top-k (temperature 0 = greedy).

use crate::cpu::{self, Activations, BatchError};
use crate::model::Params;
use crate::rng::Rng;

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub max_new_tokens: usize,
    pub temperature: f32,
    /// 0 = the whole vocabulary.
    pub top_k: usize,
    pub seed: u64,
    /// Stop after this token (e.g. end of text).
    pub stop: Option<u32>,
}

/// The prompt's continuation (new tokens only).
pub fn generate(
    params: &Params,
    prompt: &[u32],
    s: &Sampling,
    threads: usize,
) -> Result<Vec<u32>, BatchError> {
    let cfg = &params.config;
    let mut rng = Rng::new(s.seed);
    let mut ctx: Vec<u32> = prompt.to_vec();
    if ctx.is_empty() {
        ctx.push(cfg.vocab_size.saturating_sub(1) as u32);
    }
    let mut out = Vec::new();
    for _ in 0..s.max_new_tokens {
        let window = &ctx[ctx.len().saturating_sub(cfg.max_seq_len)..];
        let t = window.len();
        let mut acts = Activations::new(cfg, 1, t);
        cpu::forward(params, &mut acts, window, None, threads)?;
        let probs = &acts.probs[(t - 1) * cfg.padded_vocab_size..][..cfg.vocab_size];
        let next = sample(probs, s.temperature, s.top_k, &mut rng);
        out.push(next);
        ctx.push(next);
        if Some(next) == s.stop {
            break;
        }
    }
    Ok(out)
}

/// Draws an id from probabilities reshaped by temperature (p^(1/T), renormalized) and top-k.
pub fn sample(probs: &[f32], temperature: f32, top_k: usize, rng: &mut Rng) -> u32 {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    // Highest first; ties by id, so sampling is deterministic.
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    if temperature <= 0.0 {
        return idx[0] as u32;
    }
    if top_k > 0 {
        idx.truncate(top_k);
    }
    let weights: Vec<f64> = idx
        .iter()
        .map(|&i| (probs[i].max(1e-30) as f64).powf(1.0 / temperature as f64))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.uniform() as f64 * total;
    for (w, &i) in weights.iter().zip(&idx) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    idx[idx.len() - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_and_temperature() {
        let p = [0.1f32, 0.6, 0.3];
        let mut rng = Rng::new(1);
        assert_eq!(sample(&p, 0.0, 0, &mut rng), 1);
        for _ in 0..100 {
            assert_eq!(sample(&p, 1.0, 1, &mut rng), 1, "top-1 is greedy");
            assert_ne!(
                sample(&p, 1.0, 2, &mut rng),
                0,
                "top-2 never draws the third"
            );
        }
        let draws: Vec<u32> = (0..4000).map(|_| sample(&p, 1.0, 0, &mut rng)).collect();
        let frac = draws.iter().filter(|&&d| d == 2).count() as f32 / 4000.0;
        assert!((frac - 0.3).abs() < 0.03, "{frac}");
        let cold: Vec<u32> = (0..4000).map(|_| sample(&p, 0.25, 0, &mut rng)).collect();
        assert!(
            cold.iter().filter(|&&d| d == 1).count() > 3600,
            "low temperature sharpens"
        );
    }

    #[test]
    fn generation_is_seeded() {
        let cfg = crate::model::GptConfig::padded(50, 8, 1, 2, 16);
        let p = Params::init(cfg, 3);
        let s = Sampling {
            max_new_tokens: 12,
            temperature: 1.0,
            top_k: 10,
            seed: 5,
            stop: None,
        };
        let a = generate(&p, &[1, 2, 3], &s, 1).unwrap();
        assert_eq!(a.len(), 12, "the context slides past max_seq_len");
        assert_eq!(a, generate(&p, &[1, 2, 3], &s, 2).unwrap());
        assert!(a.iter().all(|&t| t < 50));
    }
}
