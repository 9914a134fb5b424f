//! AdamW (Loshchilov & Hutter) with decoupled weight decay, as llm.c and PyTorch apply it:
//! `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`, `p −= lr·(m̂/(√v̂ + ε) + λ·p)` with bias
//! corrections m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ); `weight_decay` is 0 for parameters that are
//! not decayed.

/// Hyperparameters of one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// One update at step `t` (from 1) of `params` with `grads`, moments `m`, `v`.
pub fn update(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], h: &AdamW, t: u32) {
    let c1 = 1.0 - h.beta1.powi(t as i32);
    let c2 = 1.0 - h.beta2.powi(t as i32);
    for i in 0..params.len() {
        let g = grads[i];
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g;
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
        let mhat = m[i] / c1;
        let vhat = v[i] / c2;
        params[i] -= h.lr * (mhat / (vhat.sqrt() + h.eps) + h.weight_decay * params[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_each_parameter_by_about_lr() {
        // At t = 1, m̂ = g and v̂ = g², so the step is lr·sign(g) (plus decay).
        let h = AdamW {
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut p = vec![1.0, -2.0, 0.5];
        let g = vec![0.3, -4.0, 1e-3];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        update(&mut p, &g, &mut m, &mut v, &h, 1);
        for (after, (before, gi)) in p.iter().zip([1.0f32, -2.0, 0.5].iter().zip(&g)) {
            assert!((before - after - h.lr * gi.signum()).abs() < 1e-6);
        }
        // Decoupled decay shrinks a parameter with zero gradient.
        let h = AdamW {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut p = vec![2.0];
        update(&mut p, &[0.0], &mut [0.0], &mut [0.0], &h, 1);
        assert!((p[0] - (2.0 - h.lr * 0.1 * 2.0)).abs() < 1e-7);
    }

    #[test]
    fn it_minimizes_a_quadratic() {
        let h = AdamW {
            lr: 0.05,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut p = vec![3.0f32, -2.0];
        let (mut m, mut v) = (vec![0.0; 2], vec![0.0; 2]);
        for t in 1..=500 {
            let g: Vec<f32> = p.iter().map(|x| 2.0 * x).collect();
            update(&mut p, &g, &mut m, &mut v, &h, t);
        }
        assert!(p.iter().all(|x| x.abs() < 0.05), "{p:?}");
    }
}
