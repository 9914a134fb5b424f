//! Log-likelihood of a continuation given a context, built and scored as
//! lm-evaluation-harness does for a causal LM: trailing spaces of the context move to the
//! continuation; the continuation's ids are those of `encode(context + continuation)` after
//! `encode(context)` (an empty context is the end-of-text token); the model reads the last
//! `max_seq_len + 1` ids minus the last, and the score is the sum of the continuation ids'
//! log-probabilities, with `greedy` telling whether each was the argmax. Requests run in
//! batches sorted by length (longest first), results returned in request order.

use crate::EvalError;
use harman_kernels::cpu::matmul;
use harman_tokenizer::Tokenizer;
use harman_train::cpu::{self, Activations};
use harman_train::cuda::{self, GpuModel, Placement};
use harman_train::model::Params;
use harman_train::trainer::{cpu_backend, Device};
use std::cell::RefCell;

/// One (context, continuation) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub context: String,
    pub continuation: String,
}

/// The score of a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogLik {
    /// Σ log p(continuation id | everything before it), natural log.
    pub ll: f64,
    /// Every continuation id was the most likely one.
    pub greedy: bool,
    /// Continuation ids scored.
    pub tokens: usize,
}

/// (context ids, continuation ids) of a request, as lm-evaluation-harness' `_encode_pair`.
pub fn encode_pair(tok: &Tokenizer, context: &str, continuation: &str) -> (Vec<u32>, Vec<u32>) {
    if context.is_empty() {
        let eot = tok.eot().unwrap_or(0);
        return (vec![eot], tok.encode(continuation));
    }
    let trimmed = context.trim_end();
    let moved = &context[trimmed.len()..];
    let (context, continuation) = if moved.is_empty() {
        (context.to_string(), continuation.to_string())
    } else {
        (trimmed.to_string(), format!("{moved}{continuation}"))
    };
    let whole = tok.encode(&format!("{context}{continuation}"));
    let ctx = tok.encode(&context);
    let split = ctx.len().min(whole.len());
    (ctx, whole[split..].to_vec())
}

/// Scores requests with a model on the CPU backend, or with its forward passes on the GPU
/// ([`Scorer::on_device`]).
pub struct Scorer<'a> {
    pub params: &'a Params,
    pub tokenizer: &'a Tokenizer,
    /// Sequences per forward pass.
    pub batch: usize,
    pub threads: usize,
    /// The model on the GPU (CUDA backend, or the kernel simulator), when scoring there.
    gpu: Option<RefCell<GpuModel>>,
}

/// A model input: ids (at most max_seq_len), the targets, and where the scored targets start.
#[derive(Debug, Clone)]
pub struct Window {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub first: usize,
}

/// The log-probability of each scored target of a window, and whether it was the argmax.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    pub logp: Vec<f64>,
    pub greedy: bool,
}

impl<'a> Scorer<'a> {
    /// A scorer on the CPU backend: `batch` sequences per forward pass, `threads` threads.
    pub fn new(params: &'a Params, tokenizer: &'a Tokenizer, batch: usize, threads: usize) -> Self {
        Scorer {
            params,
            tokenizer,
            batch: batch.max(1),
            threads,
            gpu: None,
        }
    }

    /// Runs the forward passes on `device` (`cuda`: the GPU or an error; `auto`: the GPU
    /// where one is usable, else the CPU; `cpu`); returns a line saying where, and why not
    /// the GPU for `auto`. On the GPU the passes compute in bf16 (fp32 accumulation), so
    /// scores differ from the CPU's in their last digits; log-probabilities are taken from
    /// the logits in f64 on the host either way.
    pub fn on_device(&mut self, device: Device) -> Result<String, EvalError> {
        self.gpu = None;
        let zeros = vec![0f32; self.params.data.len()];
        let (b, t) = (self.batch, self.params.config.max_seq_len);
        let placed = cuda::place(device, || {
            GpuModel::new(self.params, &zeros, &zeros, b, t, false)
        })?;
        Ok(match placed {
            Placement::Gpu(gpu) => {
                let line = format!("CUDA backend on {} ({})", gpu.gpu.name, gpu.gpu.arch);
                self.gpu = Some(RefCell::new(*gpu));
                line
            }
            Placement::Cpu(why) => cpu_backend(self.threads, why),
        })
    }

    /// Whether the forward passes run on the GPU.
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    fn window(&self, req: &Request) -> Window {
        let (ctx, cont) = encode_pair(self.tokenizer, &req.context, &req.continuation);
        let max = self.params.config.max_seq_len;
        let mut all = ctx;
        all.extend_from_slice(&cont);
        let keep = all.len().min(max + 1);
        let ids = &all[all.len() - keep..];
        let inputs = ids[..ids.len() - 1].to_vec();
        let targets = ids[1..].to_vec();
        let scored = cont.len().min(targets.len());
        Window {
            first: targets.len() - scored,
            inputs,
            targets,
        }
    }

    /// The scores of `requests`, in their order.
    pub fn score(&self, requests: &[Request]) -> Result<Vec<LogLik>, EvalError> {
        let windows: Vec<Window> = requests.iter().map(|r| self.window(r)).collect();
        Ok(self
            .score_windows(&windows)?
            .into_iter()
            .map(|s| LogLik {
                ll: s.logp.iter().sum(),
                greedy: s.greedy,
                tokens: s.logp.len(),
            })
            .collect())
    }

    /// Runs windows in batches (longest first) and returns each one's scored targets, in
    /// the windows' order.
    pub fn score_windows(&self, windows: &[Window]) -> Result<Vec<Scored>, EvalError> {
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(windows[i].inputs.len()), i));
        let mut out = vec![Scored::default(); windows.len()];
        let cfg = &self.params.config;
        let pad = self.tokenizer.eot().unwrap_or(0);
        let vp = cfg.padded_vocab_size;
        for chunk in order.chunks(self.batch.max(1)) {
            let t = windows[chunk[0]].inputs.len().max(1);
            let b = chunk.len();
            let mut x = vec![pad; b * t];
            for (row, &i) in chunk.iter().enumerate() {
                let w = &windows[i];
                x[row * t..row * t + w.inputs.len()].copy_from_slice(&w.inputs);
            }
            // The logits of every scored position, window by window.
            let logits = match &self.gpu {
                Some(gpu) => self.gpu_logits(&mut gpu.borrow_mut(), windows, chunk, &x, t)?,
                None => self.cpu_logits(windows, chunk, &x, t)?,
            };
            let mut at = 0;
            for &i in chunk {
                let w = &windows[i];
                let mut r = Scored {
                    logp: Vec::with_capacity(w.targets.len() - w.first),
                    greedy: true,
                };
                for &target in &w.targets[w.first..] {
                    let z = &logits[at * vp..at * vp + cfg.vocab_size];
                    at += 1;
                    let best = argmax(z);
                    let max = z[best] as f64;
                    let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
                    r.logp.push(z[target as usize] as f64 - max - sum.ln());
                    if z[best] > z[target as usize] {
                        r.greedy = false;
                    }
                }
                out[i] = r;
            }
        }
        Ok(out)
    }

    /// The scored positions' logits (rows of the padded vocabulary) of the windows `chunk`
    /// of `windows`, laid out in `x` as a batch of `t` positions each: the CPU's forward pass,
    /// and the output head only where a target is scored.
    fn cpu_logits(
        &self,
        windows: &[Window],
        chunk: &[usize],
        x: &[u32],
        t: usize,
    ) -> Result<Vec<f32>, EvalError> {
        let cfg = &self.params.config;
        let mut acts = Activations::new(cfg, chunk.len(), t);
        cpu::forward_hidden(self.params, &mut acts, x, self.threads)?;
        let c = cfg.channels;
        let hidden = acts.hidden();
        let mut rows = Vec::new();
        for (row, &i) in chunk.iter().enumerate() {
            let w = &windows[i];
            for pos in w.first..w.targets.len() {
                rows.extend_from_slice(&hidden[(row * t + pos) * c..(row * t + pos + 1) * c]);
            }
        }
        let vp = cfg.padded_vocab_size;
        let mut logits = vec![0f32; rows.len() / c * vp];
        matmul::forward(
            &mut logits,
            &rows,
            self.params.tensor("wte"),
            &[],
            c,
            vp,
            self.threads,
        );
        Ok(logits)
    }

    /// As [`Scorer::cpu_logits`], from the GPU's forward pass (each window's scored rows
    /// downloaded in one copy).
    fn gpu_logits(
        &self,
        gpu: &mut GpuModel,
        windows: &[Window],
        chunk: &[usize],
        x: &[u32],
        t: usize,
    ) -> Result<Vec<f32>, EvalError> {
        gpu.forward_logits(x, chunk.len(), t)?;
        let mut logits = Vec::new();
        for (row, &i) in chunk.iter().enumerate() {
            let w = &windows[i];
            let scored = w.targets.len() - w.first;
            logits.extend(gpu.logits_rows(row * t + w.first, scored)?);
        }
        Ok(logits)
    }
}

/// Index of the largest value (the first of equals, as numpy's and torch's argmax).
pub fn argmax<T: PartialOrd>(xs: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in xs.iter().enumerate() {
        if *v > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_like_lm_evaluation_harness() {
        let tok = Tokenizer::gpt2();
        let (ctx, cont) = encode_pair(&tok, "The cat sat on the", " mat");
        assert_eq!(tok.decode(&ctx).unwrap(), "The cat sat on the");
        assert_eq!(tok.decode(&cont).unwrap(), " mat");
        // A trailing space moves to the continuation.
        let (ctx2, cont2) = encode_pair(&tok, "The cat sat on the ", "mat");
        assert_eq!((ctx2, cont2), (ctx, cont));
        // An empty context is the end-of-text token.
        let (ctx3, _) = encode_pair(&tok, "", "Hello");
        assert_eq!(ctx3, vec![50256]);
    }
}
