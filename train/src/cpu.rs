//! The CPU backend: the model's forward pass (loss and, for generation, probabilities) and
//! backward pass (gradients of every parameter) over a batch of B sequences of T tokens,
//! composed of `harman-kernels`' reference ops in llm.c's order. Activations are kept for
//! the backward pass; the gradients of activations use a few per-layer scratch buffers.

use crate::model::{GptConfig, Params};
use harman_kernels::cpu::{attention, dropout, encoder, gelu, layernorm, loss, matmul, residual};

/// Dropout of one micro-step: probability `p` on the embeddings, the attention
/// probabilities and both residual branches of every block (GPT-2's `embd_pdrop`,
/// `attn_pdrop`, `resid_pdrop`), masks keyed by (seed, step, micro-step, site).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f32,
    pub seed: u64,
    pub step: u64,
    pub micro: u64,
}

impl Dropout {
    /// Site 0 = embeddings, 1 + 2l = block l's attention projection, 2 + 2l = its MLP.
    fn apply(self, x: &mut [f32], site: u64) {
        dropout::apply(x, self.p, self.key(site));
    }

    /// The mask key of `site` in this micro-step.
    pub fn key(self, site: u64) -> u64 {
        dropout::key(self.seed, self.step, self.micro, site)
    }

    /// (p, key) of block `l`'s attention probabilities (site 1,000,000 + l).
    pub fn attention(self, l: usize) -> (f32, u64) {
        (self.p, self.key(1_000_000 + l as u64))
    }
}

/// Saved activations of one forward pass, `[L, B, T, …]` for per-layer ones.
#[derive(Debug, Clone)]
pub struct Activations {
    pub b: usize,
    pub t: usize,
    encoded: Vec<f32>,
    ln1: Vec<f32>,
    ln1_mean: Vec<f32>,
    ln1_rstd: Vec<f32>,
    qkv: Vec<f32>,
    atty: Vec<f32>,
    att: Vec<f32>,
    residual2: Vec<f32>,
    ln2: Vec<f32>,
    ln2_mean: Vec<f32>,
    ln2_rstd: Vec<f32>,
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    residual3: Vec<f32>,
    lnf: Vec<f32>,
    lnf_mean: Vec<f32>,
    lnf_rstd: Vec<f32>,
    /// `[B, T, Vp]` softmax probabilities (the logits are overwritten).
    pub probs: Vec<f32>,
    /// `[B, T]` per-token losses (when targets were given).
    pub losses: Vec<f32>,
    /// Inputs and targets of the pass.
    inputs: Vec<u32>,
    targets: Vec<u32>,
    /// Dropout of the next pass (None: evaluation).
    pub dropout: Option<Dropout>,
}

impl Activations {
    /// The final LayerNorm's output `[B, T, C]` of the last pass (the output head's input).
    pub fn hidden(&self) -> &[f32] {
        &self.lnf
    }

    pub fn new(cfg: &GptConfig, b: usize, t: usize) -> Activations {
        let (l, c, nh, vp) = (
            cfg.num_layers,
            cfg.channels,
            cfg.num_heads,
            cfg.padded_vocab_size,
        );
        let n = b * t;
        Activations {
            b,
            t,
            encoded: vec![0.0; n * c],
            ln1: vec![0.0; l * n * c],
            ln1_mean: vec![0.0; l * n],
            ln1_rstd: vec![0.0; l * n],
            qkv: vec![0.0; l * n * 3 * c],
            atty: vec![0.0; l * n * c],
            att: vec![0.0; l * b * nh * t * t],
            residual2: vec![0.0; l * n * c],
            ln2: vec![0.0; l * n * c],
            ln2_mean: vec![0.0; l * n],
            ln2_rstd: vec![0.0; l * n],
            fch: vec![0.0; l * n * 4 * c],
            fch_gelu: vec![0.0; l * n * 4 * c],
            residual3: vec![0.0; l * n * c],
            lnf: vec![0.0; n * c],
            lnf_mean: vec![0.0; n],
            lnf_rstd: vec![0.0; n],
            probs: vec![0.0; n * vp],
            losses: vec![0.0; n],
            inputs: Vec::new(),
            targets: Vec::new(),
            dropout: None,
        }
    }
}

/// Why a batch cannot be run.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum BatchError {
    #[error("the batch has {got} tokens, B×T = {want}")]
    Shape { got: usize, want: usize },
    #[error("token id {id} at position {at} is outside the vocabulary ({vocab} ids)")]
    Token { id: u32, at: usize, vocab: usize },
    #[error("T = {t} is longer than the model's {max} positions")]
    TooLong { t: usize, max: usize },
}

fn check(cfg: &GptConfig, tokens: &[u32], b: usize, t: usize) -> Result<(), BatchError> {
    if tokens.len() != b * t {
        return Err(BatchError::Shape {
            got: tokens.len(),
            want: b * t,
        });
    }
    if t > cfg.max_seq_len {
        return Err(BatchError::TooLong {
            t,
            max: cfg.max_seq_len,
        });
    }
    if let Some((at, &id)) = tokens
        .iter()
        .enumerate()
        .find(|(_, &id)| id as usize >= cfg.vocab_size)
    {
        return Err(BatchError::Token {
            id,
            at,
            vocab: cfg.vocab_size,
        });
    }
    Ok(())
}

/// Forward pass over `inputs` `[B, T]`; with `targets`, the mean loss (else NaN).
pub fn forward(
    p: &Params,
    acts: &mut Activations,
    inputs: &[u32],
    targets: Option<&[u32]>,
    threads: usize,
) -> Result<f32, BatchError> {
    let (b, t) = (acts.b, acts.t);
    if let Some(tg) = targets {
        check(&p.config, tg, b, t)?;
    }
    forward_hidden(p, acts, inputs, threads)?;
    let cfg = &p.config;
    let (c, v, vp, n) = (cfg.channels, cfg.vocab_size, cfg.padded_vocab_size, b * t);
    acts.targets = targets.map(<[u32]>::to_vec).unwrap_or_default();
    let mut logits = vec![0f32; n * vp];
    matmul::forward(&mut logits, &acts.lnf, p.tensor("wte"), &[], c, vp, threads);
    loss::softmax_forward(&mut acts.probs, &logits, v, vp, threads);
    match targets {
        Some(tg) => {
            loss::crossentropy_forward(&mut acts.losses, &acts.probs, tg, vp);
            Ok(acts.losses.iter().map(|&x| x as f64).sum::<f64>() as f32 / n as f32)
        }
        None => Ok(f32::NAN),
    }
}

/// The forward pass up to the final LayerNorm (no output head): [`Activations::hidden`]
/// then holds each position's `[C]` vector, for callers that need the logits of a few
/// positions only (evaluation).
pub fn forward_hidden(
    p: &Params,
    acts: &mut Activations,
    inputs: &[u32],
    threads: usize,
) -> Result<(), BatchError> {
    let cfg = &p.config;
    let (b, t) = (acts.b, acts.t);
    check(cfg, inputs, b, t)?;
    let (l_n, c, nh) = (cfg.num_layers, cfg.channels, cfg.num_heads);
    let n = b * t;
    let w = |name: &str| p.tensor(name);
    acts.inputs = inputs.to_vec();
    encoder::forward(&mut acts.encoded, inputs, w("wte"), w("wpe"), t, c);
    let drop = acts.dropout;
    if let Some(d) = drop {
        d.apply(&mut acts.encoded, 0);
    }
    let mut attproj = vec![0f32; n * c];
    let mut fcproj = vec![0f32; n * c];
    for l in 0..l_n {
        let nc = l * n * c..(l + 1) * n * c;
        // The block's input: the embeddings, or the previous block's output (disjoint fields
        // of `acts`, borrowed in place).
        let residual: &[f32] = if l == 0 {
            &acts.encoded
        } else {
            &acts.residual3[(l - 1) * n * c..l * n * c]
        };
        let (lw, lb) = (
            &w("ln1w")[l * c..(l + 1) * c],
            &w("ln1b")[l * c..(l + 1) * c],
        );
        layernorm::forward(
            &mut acts.ln1[nc.clone()],
            &mut acts.ln1_mean[l * n..(l + 1) * n],
            &mut acts.ln1_rstd[l * n..(l + 1) * n],
            residual,
            lw,
            lb,
            c,
        );
        let qkv = &mut acts.qkv[l * n * 3 * c..(l + 1) * n * 3 * c];
        matmul::forward(
            qkv,
            &acts.ln1[nc.clone()],
            &w("qkvw")[l * 3 * c * c..(l + 1) * 3 * c * c],
            &w("qkvb")[l * 3 * c..(l + 1) * 3 * c],
            c,
            3 * c,
            threads,
        );
        attention::forward(
            &mut acts.atty[nc.clone()],
            &mut acts.att[l * b * nh * t * t..(l + 1) * b * nh * t * t],
            &acts.qkv[l * n * 3 * c..(l + 1) * n * 3 * c],
            b,
            t,
            c,
            nh,
            drop.map(|d| d.attention(l)),
            threads,
        );
        matmul::forward(
            &mut attproj,
            &acts.atty[nc.clone()],
            &w("attprojw")[l * c * c..(l + 1) * c * c],
            &w("attprojb")[l * c..(l + 1) * c],
            c,
            c,
            threads,
        );
        if let Some(d) = drop {
            d.apply(&mut attproj, 1 + 2 * l as u64);
        }
        residual::forward(&mut acts.residual2[nc.clone()], residual, &attproj);
        let (lw, lb) = (
            &w("ln2w")[l * c..(l + 1) * c],
            &w("ln2b")[l * c..(l + 1) * c],
        );
        layernorm::forward(
            &mut acts.ln2[nc.clone()],
            &mut acts.ln2_mean[l * n..(l + 1) * n],
            &mut acts.ln2_rstd[l * n..(l + 1) * n],
            &acts.residual2[nc.clone()],
            lw,
            lb,
            c,
        );
        let n4 = l * n * 4 * c..(l + 1) * n * 4 * c;
        matmul::forward(
            &mut acts.fch[n4.clone()],
            &acts.ln2[nc.clone()],
            &w("fcw")[l * 4 * c * c..(l + 1) * 4 * c * c],
            &w("fcb")[l * 4 * c..(l + 1) * 4 * c],
            c,
            4 * c,
            threads,
        );
        gelu::forward(&mut acts.fch_gelu[n4.clone()], &acts.fch[n4.clone()]);
        matmul::forward(
            &mut fcproj,
            &acts.fch_gelu[n4],
            &w("fcprojw")[l * 4 * c * c..(l + 1) * 4 * c * c],
            &w("fcprojb")[l * c..(l + 1) * c],
            4 * c,
            c,
            threads,
        );
        if let Some(d) = drop {
            d.apply(&mut fcproj, 2 + 2 * l as u64);
        }
        residual::forward(
            &mut acts.residual3[nc.clone()],
            &acts.residual2[nc],
            &fcproj,
        );
    }
    let last = &acts.residual3[(l_n - 1) * n * c..l_n * n * c];
    layernorm::forward(
        &mut acts.lnf,
        &mut acts.lnf_mean,
        &mut acts.lnf_rstd,
        last,
        w("lnfw"),
        w("lnfb"),
        c,
    );
    Ok(())
}

/// Backward pass of the last [`forward`] (which must have had targets): adds the gradient
/// of the mean loss to `grads` (same layout as the parameters), scaled by `scale` (1 / the
/// number of micro-steps when accumulating).
pub fn backward(p: &Params, acts: &Activations, grads: &mut [f32], scale: f32, threads: usize) {
    let cfg = &p.config;
    let (b, t) = (acts.b, acts.t);
    let (l_n, c, nh, v, vp) = (
        cfg.num_layers,
        cfg.channels,
        cfg.num_heads,
        cfg.vocab_size,
        cfg.padded_vocab_size,
    );
    let n = b * t;
    let lay = &p.layout;
    let w = |name: &str| p.tensor(name);
    let dlosses = vec![scale / n as f32; n];
    let mut dlogits = vec![0f32; n * vp];
    loss::crossentropy_softmax_backward(
        &mut dlogits,
        &dlosses,
        &acts.probs,
        &acts.targets,
        v,
        vp,
        threads,
    );
    let mut dlnf = vec![0f32; n * c];
    {
        let g = &mut grads[lay.range("wte")];
        matmul::backward(
            &mut dlnf,
            g,
            &mut [],
            &dlogits,
            &acts.lnf,
            w("wte"),
            c,
            vp,
            threads,
        );
    }
    drop(dlogits);
    // The gradient flowing along the residual stream.
    let mut dres = vec![0f32; n * c];
    {
        let (lnfw, lnfb) = (lay.range("lnfw"), lay.range("lnfb"));
        let (gw, gb) = two(grads, lnfw, lnfb);
        let last = &acts.residual3[(l_n - 1) * n * c..l_n * n * c];
        layernorm::backward(
            &mut dres,
            gw,
            gb,
            &dlnf,
            last,
            w("lnfw"),
            &acts.lnf_mean,
            &acts.lnf_rstd,
            c,
            threads,
        );
    }
    let mut dfch_gelu = vec![0f32; n * 4 * c];
    let mut dfch = vec![0f32; n * 4 * c];
    let mut dln = vec![0f32; n * c];
    let mut datty = vec![0f32; n * c];
    let mut dqkv = vec![0f32; n * 3 * c];
    for l in (0..l_n).rev() {
        let nc = l * n * c..(l + 1) * n * c;
        let n4 = l * n * 4 * c..(l + 1) * n * 4 * c;
        let residual: &[f32] = if l == 0 {
            &acts.encoded
        } else {
            &acts.residual3[(l - 1) * n * c..l * n * c]
        };
        // residual3 = residual2 + fcproj: dfcproj = dres, dres goes on as dresidual2.
        let mut dfcproj = dres.clone();
        if let Some(d) = acts.dropout {
            d.apply(&mut dfcproj, 2 + 2 * l as u64);
        }
        dfch_gelu.fill(0.0);
        linear_backward(
            p,
            grads,
            ("fcprojw", "fcprojb"),
            l,
            &mut dfch_gelu,
            &dfcproj,
            &acts.fch_gelu[n4.clone()],
            4 * c,
            c,
            threads,
        );
        dfch.fill(0.0);
        gelu::backward(&mut dfch, &acts.fch[n4.clone()], &dfch_gelu);
        dln.fill(0.0);
        linear_backward(
            p,
            grads,
            ("fcw", "fcb"),
            l,
            &mut dln,
            &dfch,
            &acts.ln2[nc.clone()],
            c,
            4 * c,
            threads,
        );
        let rows = l * n..(l + 1) * n;
        layernorm_backward(
            p,
            grads,
            ("ln2w", "ln2b"),
            l,
            &mut dres,
            &dln,
            &acts.residual2[nc.clone()],
            (&acts.ln2_mean[rows.clone()], &acts.ln2_rstd[rows]),
            threads,
        );
        // residual2 = residual + attproj.
        let mut dattproj = dres.clone();
        if let Some(d) = acts.dropout {
            d.apply(&mut dattproj, 1 + 2 * l as u64);
        }
        datty.fill(0.0);
        linear_backward(
            p,
            grads,
            ("attprojw", "attprojb"),
            l,
            &mut datty,
            &dattproj,
            &acts.atty[nc.clone()],
            c,
            c,
            threads,
        );
        dqkv.fill(0.0);
        attention::backward(
            &mut dqkv,
            &datty,
            &acts.qkv[l * n * 3 * c..(l + 1) * n * 3 * c],
            &acts.att[l * b * nh * t * t..(l + 1) * b * nh * t * t],
            b,
            t,
            c,
            nh,
            acts.dropout.map(|d| d.attention(l)),
            threads,
        );
        dln.fill(0.0);
        linear_backward(
            p,
            grads,
            ("qkvw", "qkvb"),
            l,
            &mut dln,
            &dqkv,
            &acts.ln1[nc.clone()],
            c,
            3 * c,
            threads,
        );
        let rows = l * n..(l + 1) * n;
        layernorm_backward(
            p,
            grads,
            ("ln1w", "ln1b"),
            l,
            &mut dres,
            &dln,
            residual,
            (&acts.ln1_mean[rows.clone()], &acts.ln1_rstd[rows]),
            threads,
        );
    }
    if let Some(d) = acts.dropout {
        d.apply(&mut dres, 0);
    }
    let (rte, rpe) = (lay.range("wte"), lay.range("wpe"));
    let (gte, gpe) = two(grads, rte, rpe);
    encoder::backward(gte, gpe, &dres, &acts.inputs, t, c);
}

/// Backward of block `l`'s linear map `names` = (weight, bias), `c_in` → `c_out`.
#[allow(clippy::too_many_arguments)]
fn linear_backward(
    p: &Params,
    grads: &mut [f32],
    names: (&str, &str),
    l: usize,
    dinp: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    c_in: usize,
    c_out: usize,
    threads: usize,
) {
    let rw = sub(p.layout.range(names.0), l, c_in * c_out);
    let rb = sub(p.layout.range(names.1), l, c_out);
    let weight = &p.data[rw.clone()];
    let (gw, gb) = two(grads, rw, rb);
    matmul::backward(dinp, gw, gb, dout, inp, weight, c_in, c_out, threads);
}

/// Backward of block `l`'s LayerNorm `names` = (gain, bias), with its saved (mean, rstd).
#[allow(clippy::too_many_arguments)]
fn layernorm_backward(
    p: &Params,
    grads: &mut [f32],
    names: (&str, &str),
    l: usize,
    dinp: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    (mean, rstd): (&[f32], &[f32]),
    threads: usize,
) {
    let c = p.config.channels;
    let rw = sub(p.layout.range(names.0), l, c);
    let rb = sub(p.layout.range(names.1), l, c);
    let weight = &p.data[rw.clone()];
    let (gw, gb) = two(grads, rw, rb);
    layernorm::backward(dinp, gw, gb, dout, inp, weight, mean, rstd, c, threads);
}

/// Layer `l`'s slice of a per-layer tensor with `per` values per layer.
fn sub(r: std::ops::Range<usize>, l: usize, per: usize) -> std::ops::Range<usize> {
    r.start + l * per..r.start + (l + 1) * per
}

/// Two disjoint ranges of one buffer, mutably.
fn two(
    buf: &mut [f32],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> (&mut [f32], &mut [f32]) {
    assert!(a.end <= b.start, "ranges in storage order");
    let (head, tail) = buf.split_at_mut(b.start);
    (&mut head[a], &mut tail[..b.end - b.start])
}

#[cfg(test)]
mod tests {
    use super::*;
    use harman_kernels::cpu::adamw::{self, AdamW};

    fn tiny() -> GptConfig {
        GptConfig::padded(50, 8, 2, 2, 16)
    }

    fn batch(cfg: &GptConfig, b: usize, t: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let mut rng = crate::rng::Rng::new(seed);
        let toks: Vec<u32> = (0..b * t + 1)
            .map(|_| (rng.next_u64() % cfg.vocab_size as u64) as u32)
            .collect();
        (toks[..b * t].to_vec(), toks[1..].to_vec())
    }

    #[test]
    fn initial_loss_is_about_ln_vocab() {
        let cfg = tiny();
        let p = Params::init(cfg, 0);
        let (x, y) = batch(&cfg, 2, 8, 1);
        let mut acts = Activations::new(&cfg, 2, 8);
        let loss = forward(&p, &mut acts, &x, Some(&y), 2).unwrap();
        assert!((loss - (50f32).ln()).abs() < 0.1, "{loss}");
        let bad: Vec<u32> = vec![50; 16];
        assert!(matches!(
            forward(&p, &mut acts, &bad, None, 1),
            Err(BatchError::Token { id: 50, .. })
        ));
    }

    #[test]
    fn gradients_of_the_whole_model_match_finite_differences() {
        whole_model_check(None);
        whole_model_check(Some(Dropout {
            p: 0.2,
            seed: 1,
            step: 2,
            micro: 3,
        }));
    }

    fn whole_model_check(drop: Option<Dropout>) {
        let cfg = tiny();
        let mut p = Params::init(cfg, 3);
        // Larger weights than GPT-2's init, so every path carries gradient.
        for x in &mut p.data {
            *x *= 5.0;
        }
        let (x, y) = batch(&cfg, 2, 8, 4);
        let mut acts = Activations::new(&cfg, 2, 8);
        acts.dropout = drop;
        forward(&p, &mut acts, &x, Some(&y), 2).unwrap();
        let mut grads = vec![0f32; p.data.len()];
        backward(&p, &acts, &mut grads, 1.0, 2);
        let loss_at = |p: &Params| {
            let mut a = Activations::new(&cfg, 2, 8);
            a.dropout = drop;
            forward(p, &mut a, &x, Some(&y), 1).unwrap() as f64
        };
        for (name, _, _) in p.layout.tensors.clone() {
            let r = p.layout.range(name);
            // A few entries of each tensor (the real vocabulary rows of wte).
            let len = if name == "wte" {
                cfg.vocab_size * cfg.channels
            } else {
                r.len()
            };
            let mut num = Vec::new();
            let mut ana = Vec::new();
            for k in 0..6 {
                let i = r.start + (k * 7919) % len;
                let orig = p.data[i];
                let eps = 1e-2;
                p.data[i] = orig + eps;
                let lp = loss_at(&p);
                p.data[i] = orig - eps;
                let lm = loss_at(&p);
                p.data[i] = orig;
                num.push((lp - lm) / (2.0 * eps as f64));
                ana.push(grads[i] as f64);
            }
            let diff = num
                .iter()
                .zip(&ana)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm = num.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-4);
            assert!(
                diff / norm < 5e-2,
                "{name}: numeric {num:?} analytic {ana:?}"
            );
        }
    }

    #[test]
    fn it_overfits_one_batch() {
        let cfg = tiny();
        let mut p = Params::init(cfg, 5);
        let (x, y) = batch(&cfg, 2, 8, 6);
        let mut acts = Activations::new(&cfg, 2, 8);
        let h = AdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        };
        let (mut m, mut v) = (vec![0f32; p.data.len()], vec![0f32; p.data.len()]);
        let first = forward(&p, &mut acts, &x, Some(&y), 2).unwrap();
        let mut last = first;
        for step in 1..=150 {
            last = forward(&p, &mut acts, &x, Some(&y), 2).unwrap();
            let mut g = vec![0f32; p.data.len()];
            backward(&p, &acts, &mut g, 1.0, 2);
            adamw::update(&mut p.data, &g, &mut m, &mut v, &h, step);
        }
        assert!(last < 0.1 * first, "{first} -> {last}");
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let cfg = tiny();
        let p = Params::init(cfg, 7);
        let (x, y) = batch(&cfg, 3, 8, 8);
        let run = |threads| {
            let mut acts = Activations::new(&cfg, 3, 8);
            let loss = forward(&p, &mut acts, &x, Some(&y), threads).unwrap();
            let mut g = vec![0f32; p.data.len()];
            backward(&p, &acts, &mut g, 1.0, threads);
            (loss, g)
        };
        let (l1, g1) = run(1);
        let (l3, g3) = run(3);
        assert_eq!(l1.to_bits(), l3.to_bits());
        assert!(g1.iter().zip(&g3).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
