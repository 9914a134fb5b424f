//! GELU, tanh approximation (GPT-2's): `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.

const SCALE: f32 = 0.797_884_6; // sqrt(2/pi)

pub fn forward(out: &mut [f32], inp: &[f32]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        let cube = 0.044715 * x * x * x;
        *o = 0.5 * x * (1.0 + (SCALE * (x + cube)).tanh());
    }
}

/// `dinp += gelu'(inp) · dout`.
pub fn backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
        let cube = 0.044715 * x * x * x;
        let arg = SCALE * (x + cube);
        let th = arg.tanh();
        let sech2 = 1.0 - th * th;
        let local = 0.5 * (1.0 + th) + x * 0.5 * sech2 * SCALE * (1.0 + 3.0 * 0.044715 * x * x);
        *d += local * g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::check::{grad_check, Rng};

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng(7);
        let inp: Vec<f32> = rng.vec(64).iter().map(|v| v * 3.0).collect();
        let dout = rng.vec(64);
        let mut d = vec![0.0; 64];
        backward(&mut d, &inp, &dout);
        grad_check("gelu", &inp, &d, &dout, |x| {
            let mut o = vec![0.0; x.len()];
            forward(&mut o, x);
            o
        });
        let mut o = vec![0.0; 3];
        forward(&mut o, &[0.0, 10.0, -10.0]);
        assert_eq!(o[0], 0.0);
        assert!((o[1] - 10.0).abs() < 1e-4 && o[2].abs() < 1e-4);
    }
}
