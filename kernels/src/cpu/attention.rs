//! Causal multi-head self-attention on a fused QKV input: `inp` `[B, T, 3C]` holds the
//! queries, keys and values of NH heads of size HS = C/NH; `out` `[B, T, C]`. The softmax
//! probabilities `att` `[B, NH, T, T]` are kept for the backward pass (the CUDA kernel will
//! recompute them flash-attention style instead). Optional dropout on the probabilities
//! (`drop` = (p, key)): the values are weighted by the dropped probabilities, `att` keeps the
//! undropped ones, and the mask is recomputed in the backward pass from the key.

use super::{dropout, par_blocks};

/// Index of probability (b·h, t, t2) in the dropout mask.
#[inline]
fn mask_index(bh: usize, t: usize, ti: usize, t2: usize) -> u64 {
    ((bh * t + ti) * t + t2) as u64
}

/// Forward. Work is split by (batch, head): each writes its own head's slice.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    out: &mut [f32],
    att: &mut [f32],
    inp: &[f32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
    drop: Option<(f32, u64)>,
    threads: usize,
) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    // Each (b, h) owns att[b, h] (T×T) and computes out rows into a scratch of T×HS.
    let mut heads = vec![0f32; b * nh * t * hs];
    let mut probs = vec![0f32; b * nh * t * t];
    par_blocks(&mut probs, t * t, 1, threads, |bh, att_bh| {
        let (bi, h) = (bh / nh, bh % nh);
        for ti in 0..t {
            let q = &inp[(bi * t + ti) * 3 * c + h * hs..][..hs];
            let row = &mut att_bh[ti * t..(ti + 1) * t];
            let mut max = f32::NEG_INFINITY;
            for t2 in 0..=ti {
                let k = &inp[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
                let s: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                row[t2] = s;
                max = max.max(s);
            }
            let mut sum = 0.0;
            for v in &mut row[..=ti] {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in &mut row[..=ti] {
                *v /= sum;
            }
            row[ti + 1..].fill(0.0);
        }
    });
    let probs_ref = &probs;
    par_blocks(&mut heads, t * hs, 1, threads, |bh, head| {
        let (bi, h) = (bh / nh, bh % nh);
        let att_bh = &probs_ref[bh * t * t..(bh + 1) * t * t];
        for ti in 0..t {
            let o = &mut head[ti * hs..(ti + 1) * hs];
            o.fill(0.0);
            for t2 in 0..=ti {
                let v = &inp[(bi * t + t2) * 3 * c + 2 * c + h * hs..][..hs];
                let mut p = att_bh[ti * t + t2];
                if let Some((rate, key)) = drop {
                    p *= dropout::factor(rate, key, mask_index(bh, t, ti, t2));
                }
                for (oi, vi) in o.iter_mut().zip(v) {
                    *oi += p * vi;
                }
            }
        }
    });
    for bi in 0..b {
        for h in 0..nh {
            for ti in 0..t {
                let src = &heads[((bi * nh + h) * t + ti) * hs..][..hs];
                out[(bi * t + ti) * c + h * hs..][..hs].copy_from_slice(src);
            }
        }
    }
    att.copy_from_slice(&probs);
}

/// Backward: `dinp` `[B, T, 3C]` += the gradients of queries, keys and values.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dinp: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    att: &[f32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
    drop: Option<(f32, u64)>,
    threads: usize,
) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    // Per (b, h): dq, dk, dv for all T (3 × T × HS), then scattered into dinp.
    let mut grads = vec![0f32; b * nh * 3 * t * hs];
    par_blocks(&mut grads, 3 * t * hs, 1, threads, |bh, g| {
        let (bi, h) = (bh / nh, bh % nh);
        let (dq, rest) = g.split_at_mut(t * hs);
        let (dk, dv) = rest.split_at_mut(t * hs);
        let att_bh = &att[bh * t * t..(bh + 1) * t * t];
        let mut datt = vec![0f32; t];
        for ti in 0..t {
            let d = &dout[(bi * t + ti) * c + h * hs..][..hs];
            let p = &att_bh[ti * t..ti * t + ti + 1];
            // Through the weighted sum of values.
            for t2 in 0..=ti {
                let v = &inp[(bi * t + t2) * 3 * c + 2 * c + h * hs..][..hs];
                let keep = drop.map_or(1.0, |(rate, key)| {
                    dropout::factor(rate, key, mask_index(bh, t, ti, t2))
                });
                datt[t2] = v.iter().zip(d).map(|(a, b)| a * b).sum::<f32>() * keep;
                for (dvi, di) in dv[t2 * hs..(t2 + 1) * hs].iter_mut().zip(d) {
                    *dvi += p[t2] * keep * di;
                }
            }
            // Through the softmax: dpre = p · (datt − Σ p·datt).
            let dot: f32 = p.iter().zip(&datt[..=ti]).map(|(a, b)| a * b).sum();
            let q = &inp[(bi * t + ti) * 3 * c + h * hs..][..hs];
            for t2 in 0..=ti {
                let dpre = p[t2] * (datt[t2] - dot) * scale;
                let k = &inp[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
                for i in 0..hs {
                    dq[ti * hs + i] += k[i] * dpre;
                    dk[t2 * hs + i] += q[i] * dpre;
                }
            }
        }
    });
    for bi in 0..b {
        for h in 0..nh {
            let g = &grads[(bi * nh + h) * 3 * t * hs..][..3 * t * hs];
            for part in 0..3 {
                for ti in 0..t {
                    let src = &g[(part * t + ti) * hs..][..hs];
                    let dst = &mut dinp[(bi * t + ti) * 3 * c + part * c + h * hs..][..hs];
                    for (a, s) in dst.iter_mut().zip(src) {
                        *a += s;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::check::{grad_check, Rng};

    #[test]
    fn attention_is_causal_and_rows_sum_to_one() {
        let (b, t, c, nh) = (2, 5, 8, 2);
        let mut rng = Rng(5);
        let inp = rng.vec(b * t * 3 * c);
        let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
        forward(&mut out, &mut att, &inp, b, t, c, nh, None, 2);
        for row in att.chunks_exact(t).enumerate() {
            let ti = row.0 % t;
            assert!((row.1.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(row.1[ti + 1..].iter().all(|&p| p == 0.0));
        }
        // The first position attends only to itself: its output is its own value.
        for bi in 0..b {
            let v = &inp[bi * t * 3 * c + 2 * c..][..c];
            assert!(out[bi * t * c..][..c]
                .iter()
                .zip(v)
                .all(|(a, b)| (a - b).abs() < 1e-6));
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        check(None);
        check(Some((0.3, 77)));
    }

    fn check(drop: Option<(f32, u64)>) {
        let (b, t, c, nh) = (2, 4, 6, 2);
        let mut rng = Rng(6);
        let inp = rng.vec(b * t * 3 * c);
        let dout = rng.vec(b * t * c);
        let run = |x: &[f32]| {
            let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
            forward(&mut out, &mut att, x, b, t, c, nh, drop, 2);
            (out, att)
        };
        let (_, att) = run(&inp);
        let mut dinp = vec![0.0; inp.len()];
        backward(&mut dinp, &dout, &inp, &att, b, t, c, nh, drop, 3);
        grad_check("qkv", &inp, &dinp, &dout, |x| run(x).0);
    }
}
