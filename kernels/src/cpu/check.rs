//! Test helpers: a small deterministic RNG and a finite-difference gradient check.

/// xorshift64*; uniform values in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

/// Checks `grad` = d(Σ f(x)·dout)/dx by central differences (in f64 sums), within 1e-2
/// relative error of the whole vector, and asserts the gradient is not trivially zero.
pub fn grad_check<F: Fn(&[f32]) -> Vec<f32>>(
    name: &str,
    x: &[f32],
    grad: &[f32],
    dout: &[f32],
    f: F,
) {
    let loss = |x: &[f32]| -> f64 {
        f(x).iter()
            .zip(dout)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    let eps = 1e-2f32;
    let mut num = vec![0f64; x.len()];
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        let orig = xp[i];
        xp[i] = orig + eps;
        let lp = loss(&xp);
        xp[i] = orig - eps;
        let lm = loss(&xp);
        xp[i] = orig;
        num[i] = (lp - lm) / (2.0 * eps as f64);
    }
    let diff: f64 = num
        .iter()
        .zip(grad)
        .map(|(n, g)| (n - *g as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = num.iter().map(|n| n * n).sum::<f64>().sqrt();
    assert!(norm > 1e-6, "{name}: gradient is zero");
    assert!(
        diff / norm < 1e-2,
        "{name}: |analytic - numeric| / |numeric| = {}",
        diff / norm
    );
}
