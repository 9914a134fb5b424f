//! Token + position embedding: `out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]`.

/// Forward. `out` `[B,T,C]`, `inp` `[B,T]`, `wte` `[V,C]`, `wpe` `[maxT,C]`.
pub fn forward(out: &mut [f32], inp: &[u32], wte: &[f32], wpe: &[f32], t: usize, c: usize) {
    for (bt, (row, &ix)) in out.chunks_exact_mut(c).zip(inp).enumerate() {
        let tok = &wte[ix as usize * c..(ix as usize + 1) * c];
        let pos = &wpe[(bt % t) * c..(bt % t + 1) * c];
        for ((o, a), b) in row.iter_mut().zip(tok).zip(pos) {
            *o = a + b;
        }
    }
}

/// Backward: `dwte[inp[b,t]] += dout[b,t]`, `dwpe[t] += dout[b,t]`, in row order.
pub fn backward(dwte: &mut [f32], dwpe: &mut [f32], dout: &[f32], inp: &[u32], t: usize, c: usize) {
    for (bt, (row, &ix)) in dout.chunks_exact(c).zip(inp).enumerate() {
        let tok = &mut dwte[ix as usize * c..(ix as usize + 1) * c];
        for (d, g) in tok.iter_mut().zip(row) {
            *d += g;
        }
        let pos = &mut dwpe[(bt % t) * c..(bt % t + 1) * c];
        for (d, g) in pos.iter_mut().zip(row) {
            *d += g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::check::{grad_check, Rng};

    #[test]
    fn gradients_match_finite_differences() {
        let (b, t, c, v) = (2, 3, 4, 5);
        let mut rng = Rng(1);
        let inp: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
        let wpe = rng.vec(t * c);
        let wte = rng.vec(v * c);
        let dout = rng.vec(b * t * c);
        let run = |wte: &[f32], wpe: &[f32]| {
            let mut out = vec![0.0; b * t * c];
            forward(&mut out, &inp, wte, wpe, t, c);
            out
        };
        let mut dwte = vec![0.0; v * c];
        let mut dwpe = vec![0.0; t * c];
        backward(&mut dwte, &mut dwpe, &dout, &inp, t, c);
        grad_check("wte", &wte, &dwte, &dout, |x| run(x, &wpe));
        grad_check("wpe", &wpe, &dwpe, &dout, |x| run(&wte, x));
    }
}
