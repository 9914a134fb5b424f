//! LayerNorm over the last dimension: `out = (x - mean) · rstd · weight + bias`, with
//! rstd = 1/sqrt(var + 1e-5); mean and rstd are kept for the backward pass.

use super::{add_partials, par_blocks, ROW_BLOCK};

pub const EPS: f32 = 1e-5;

/// Forward over `[N, C]` rows; `mean`, `rstd` `[N]`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    c: usize,
) {
    for (i, (o, x)) in out.chunks_exact_mut(c).zip(inp.chunks_exact(c)).enumerate() {
        let m = x.iter().sum::<f32>() / c as f32;
        let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / c as f32;
        let s = 1.0 / (v + EPS).sqrt();
        for j in 0..c {
            o[j] = (x[j] - m) * s * weight[j] + bias[j];
        }
        mean[i] = m;
        rstd[i] = s;
    }
}

/// Backward: `dinp += …`, `dweight += Σ norm·dout`, `dbias += Σ dout` (row sums in fixed
/// blocks, block order).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
    threads: usize,
) {
    let n = dout.len() / c;
    let blocks = n.div_ceil(ROW_BLOCK);
    // Per block: dweight partial then dbias partial.
    let mut partials = vec![0f32; blocks * 2 * c];
    par_blocks(&mut partials, 2 * c, 1, threads, |block, part| {
        let (pw, pb) = part.split_at_mut(c);
        for i in block * ROW_BLOCK..((block + 1) * ROW_BLOCK).min(n) {
            let g = &dout[i * c..(i + 1) * c];
            let x = &inp[i * c..(i + 1) * c];
            for j in 0..c {
                let norm = (x[j] - mean[i]) * rstd[i];
                pb[j] += g[j];
                pw[j] += norm * g[j];
            }
        }
    });
    let (mut dw, mut db) = (
        Vec::with_capacity(blocks * c),
        Vec::with_capacity(blocks * c),
    );
    for p in partials.chunks_exact(2 * c) {
        dw.extend_from_slice(&p[..c]);
        db.extend_from_slice(&p[c..]);
    }
    add_partials(dweight, &dw);
    add_partials(dbias, &db);
    par_blocks(dinp, c, ROW_BLOCK, threads, |first, rows| {
        for (k, di) in rows.chunks_exact_mut(c).enumerate() {
            let i = first + k;
            let g = &dout[i * c..(i + 1) * c];
            let x = &inp[i * c..(i + 1) * c];
            let (m, s) = (mean[i], rstd[i]);
            let mut dnorm_mean = 0.0f32;
            let mut dnorm_norm_mean = 0.0f32;
            for j in 0..c {
                let dnorm = weight[j] * g[j];
                dnorm_mean += dnorm;
                dnorm_norm_mean += dnorm * (x[j] - m) * s;
            }
            dnorm_mean /= c as f32;
            dnorm_norm_mean /= c as f32;
            for j in 0..c {
                let norm = (x[j] - m) * s;
                let dnorm = weight[j] * g[j];
                di[j] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
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
        let (n, c) = (5, 8);
        let mut rng = Rng(2);
        let inp = rng.vec(n * c);
        let w = rng.vec(c);
        let b = rng.vec(c);
        let dout = rng.vec(n * c);
        let run = |inp: &[f32], w: &[f32], b: &[f32]| {
            let (mut out, mut m, mut s) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
            forward(&mut out, &mut m, &mut s, inp, w, b, c);
            (out, m, s)
        };
        let (_, m, s) = run(&inp, &w, &b);
        let (mut di, mut dw, mut db) = (vec![0.0; n * c], vec![0.0; c], vec![0.0; c]);
        backward(&mut di, &mut dw, &mut db, &dout, &inp, &w, &m, &s, c, 2);
        grad_check("inp", &inp, &di, &dout, |x| run(x, &w, &b).0);
        grad_check("weight", &w, &dw, &dout, |x| run(&inp, x, &b).0);
        grad_check("bias", &b, &db, &dout, |x| run(&inp, &w, x).0);
    }
}
