//! Fully connected layer: `out[N, OC] = inp[N, C] · weight[OC, C]ᵀ + bias[OC]`, with
//! `matrixmultiply`'s blocked SGEMM on row blocks spread over threads.

use super::{par_blocks, ROW_BLOCK};

/// `c = alpha·a·b + beta·c` for row-major a `[m,k]` (row stride `rsa`, column stride `csa`),
/// b `[k,n]` (strides `rsb`, `csb`), c `[m,n]` contiguous.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    rsb: usize,
    csb: usize,
    c: &mut [f32],
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n);
    // SAFETY: every index the kernel reads is inside `a` and `b` (checked below for the
    // last element) and it writes `c[..m*n]`, whose length is asserted above.
    if k > 0 {
        assert!((m - 1) * rsa + (k - 1) * csa < a.len());
        assert!((k - 1) * rsb + (n - 1) * csb < b.len());
    }
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Forward. `bias` may be empty (no bias).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    c: usize,
    oc: usize,
    threads: usize,
) {
    par_blocks(out, oc, ROW_BLOCK, threads, |first, rows| {
        let m = rows.len() / oc;
        if bias.is_empty() {
            rows.fill(0.0);
        } else {
            for r in rows.chunks_exact_mut(oc) {
                r.copy_from_slice(bias);
            }
        }
        // inp rows [m, C] · weightᵀ [C, OC] (weight read with strides (1, C)).
        sgemm(m, c, oc, &inp[first * c..], c, 1, weight, 1, c, rows, 1.0);
    });
}

/// Backward: `dinp += dout·weight`, `dweight += doutᵀ·inp`, `dbias += Σ_rows dout` (empty
/// `dbias` = no bias). Each output row of `dweight` sums over all N rows in one fixed order.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    c: usize,
    oc: usize,
    threads: usize,
) {
    let n = dout.len() / oc;
    par_blocks(dinp, c, ROW_BLOCK, threads, |first, rows| {
        let m = rows.len() / c;
        sgemm(
            m,
            oc,
            c,
            &dout[first * oc..],
            oc,
            1,
            weight,
            c,
            1,
            rows,
            1.0,
        );
    });
    // dweight [OC, C] = doutᵀ [OC, N] · inp [N, C], in blocks of output rows.
    par_blocks(dweight, c, ROW_BLOCK, threads, |first, rows| {
        let m = rows.len() / c;
        sgemm(m, n, c, &dout[first..], 1, oc, inp, c, 1, rows, 1.0);
    });
    if !dbias.is_empty() {
        par_blocks(dbias, 1, ROW_BLOCK, threads, |first, part| {
            for row in dout.chunks_exact(oc) {
                for (j, d) in part.iter_mut().enumerate() {
                    *d += row[first + j];
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::check::{grad_check, Rng};

    #[test]
    fn forward_is_the_plain_product() {
        let (n, c, oc) = (70, 9, 130);
        let mut rng = Rng(3);
        let (inp, w, b) = (rng.vec(n * c), rng.vec(oc * c), rng.vec(oc));
        let mut out = vec![0.0; n * oc];
        forward(&mut out, &inp, &w, &b, c, oc, 3);
        for i in 0..n {
            for o in 0..oc {
                let want: f32 = b[o] + (0..c).map(|k| inp[i * c + k] * w[o * c + k]).sum::<f32>();
                assert!((out[i * oc + o] - want).abs() < 1e-4);
            }
        }
        let mut one = vec![0.0; n * oc];
        forward(&mut one, &inp, &w, &b, c, oc, 1);
        assert_eq!(one, out, "the same bits at 1 and 3 threads");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n, c, oc) = (6, 5, 7);
        let mut rng = Rng(4);
        let (inp, w, b, dout) = (
            rng.vec(n * c),
            rng.vec(oc * c),
            rng.vec(oc),
            rng.vec(n * oc),
        );
        let run = |inp: &[f32], w: &[f32], b: &[f32]| {
            let mut out = vec![0.0; n * oc];
            forward(&mut out, inp, w, b, c, oc, 2);
            out
        };
        let (mut di, mut dw, mut db) = (vec![0.0; n * c], vec![0.0; oc * c], vec![0.0; oc]);
        backward(&mut di, &mut dw, &mut db, &dout, &inp, &w, c, oc, 2);
        grad_check("inp", &inp, &di, &dout, |x| run(x, &w, &b));
        grad_check("weight", &w, &dw, &dout, |x| run(&inp, x, &b));
        grad_check("bias", &b, &db, &dout, |x| run(&inp, &w, x));
    }
}
