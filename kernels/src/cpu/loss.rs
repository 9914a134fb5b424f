//! Softmax over the vocabulary and cross-entropy, fused in the backward pass:
//! `probs = softmax(logits[..V])` (the padded columns V..Vp get probability 0),
//! `loss = −ln probs[target]`, `dlogits = (probs − onehot(target)) · dloss`.

use super::{par_blocks, ROW_BLOCK};

/// Softmax of each `[Vp]` row of `logits` over its first `v` columns into `probs`.
pub fn softmax_forward(probs: &mut [f32], logits: &[f32], v: usize, vp: usize, threads: usize) {
    par_blocks(probs, vp, ROW_BLOCK, threads, |first, rows| {
        for (k, p) in rows.chunks_exact_mut(vp).enumerate() {
            let l = &logits[(first + k) * vp..][..vp];
            let max = l[..v].iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for i in 0..v {
                p[i] = (l[i] - max).exp();
                sum += p[i];
            }
            for x in &mut p[..v] {
                *x /= sum;
            }
            p[v..].fill(0.0);
        }
    });
}

/// `losses[n] = −ln probs[n, targets[n]]`.
pub fn crossentropy_forward(losses: &mut [f32], probs: &[f32], targets: &[u32], vp: usize) {
    for (n, (l, &t)) in losses.iter_mut().zip(targets).enumerate() {
        *l = -probs[n * vp + t as usize].ln();
    }
}

/// `dlogits[n, i] += (probs[n, i] − [i = targets[n]]) · dlosses[n]` for i < V.
pub fn crossentropy_softmax_backward(
    dlogits: &mut [f32],
    dlosses: &[f32],
    probs: &[f32],
    targets: &[u32],
    v: usize,
    vp: usize,
    threads: usize,
) {
    par_blocks(dlogits, vp, ROW_BLOCK, threads, |first, rows| {
        for (k, d) in rows.chunks_exact_mut(vp).enumerate() {
            let n = first + k;
            let p = &probs[n * vp..][..vp];
            let g = dlosses[n];
            for i in 0..v {
                let indicator = if i == targets[n] as usize { 1.0 } else { 0.0 };
                d[i] += (p[i] - indicator) * g;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::check::{grad_check, Rng};

    #[test]
    fn gradients_match_finite_differences() {
        let (n, v, vp) = (5, 7, 8);
        let mut rng = Rng(8);
        let logits: Vec<f32> = rng.vec(n * vp).iter().map(|x| x * 2.0).collect();
        let targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
        let dlosses = rng.vec(n);
        let run = |l: &[f32]| {
            let mut probs = vec![0.0; n * vp];
            softmax_forward(&mut probs, l, v, vp, 2);
            let mut losses = vec![0.0; n];
            crossentropy_forward(&mut losses, &probs, &targets, vp);
            (losses, probs)
        };
        let (losses, probs) = run(&logits);
        assert!(losses.iter().all(|l| *l > 0.0));
        assert!(probs
            .chunks_exact(vp)
            .all(|p| p[v] == 0.0 && (p.iter().sum::<f32>() - 1.0).abs() < 1e-5));
        let mut d = vec![0.0; n * vp];
        crossentropy_softmax_backward(&mut d, &dlosses, &probs, &targets, v, vp, 2);
        assert!(d.chunks_exact(vp).all(|r| r[v] == 0.0));
        grad_check("logits", &logits, &d, &dlosses, |x| run(x).0);
    }
}
