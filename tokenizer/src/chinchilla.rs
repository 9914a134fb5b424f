//! The Chinchilla plan of a dataset (Hoffmann et al. 2022, "Training Compute-Optimal Large
//! Language Models"): the compute-optimal model for a number of training tokens at about 20
//! tokens per parameter, training FLOPs ≈ 6·N·D, and the loss their parametric fit predicts,
//! L(N, D) = E + A/N^α + B/D^β with E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28
//! (their Approach 3). Also the fit's own optimum for the same compute, which puts fewer
//! tokens per parameter than the rule of thumb.

use std::fmt::Write as _;

pub const E: f64 = 1.69;
pub const A: f64 = 406.4;
pub const B: f64 = 410.7;
pub const ALPHA: f64 = 0.34;
pub const BETA: f64 = 0.28;
/// Tokens per parameter of a compute-optimal model (the paper's rule of thumb).
pub const TOKENS_PER_PARAM: f64 = 20.0;

/// The fit's predicted loss (nats per token) of N parameters trained on D tokens.
pub fn loss(params: f64, tokens: f64) -> f64 {
    E + A / params.powf(ALPHA) + B / tokens.powf(BETA)
}

/// Training FLOPs ≈ 6·N·D.
pub fn flops(params: f64, tokens: f64) -> f64 {
    6.0 * params * tokens
}

/// The fit's loss-minimizing (N, D) for a compute budget C = 6·N·D:
/// N = G·(C/6)^(β/(α+β)), D = (C/6)/N with G = (αA/(βB))^(1/(α+β)).
pub fn fit_optimum(compute: f64) -> (f64, f64) {
    let g = (ALPHA * A / (BETA * B)).powf(1.0 / (ALPHA + BETA));
    let n = g * (compute / 6.0).powf(BETA / (ALPHA + BETA));
    (n, compute / 6.0 / n)
}

/// A plan: model size, tokens, FLOPs and expected loss.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    pub params: f64,
    pub tokens: f64,
    pub flops: f64,
    pub loss: f64,
    /// The fit's optimum for the same FLOPs: (params, tokens, loss).
    pub fit_params: f64,
    pub fit_tokens: f64,
    pub fit_loss: f64,
}

impl Plan {
    fn of(params: f64, tokens: f64) -> Plan {
        let c = flops(params, tokens);
        let (fp, ft) = fit_optimum(c);
        Plan {
            params,
            tokens,
            flops: c,
            loss: loss(params, tokens),
            fit_params: fp,
            fit_tokens: ft,
            fit_loss: loss(fp, ft),
        }
    }

    /// The compute-optimal model for a dataset of `tokens` tokens (N = D / 20).
    pub fn for_tokens(tokens: f64) -> Plan {
        Plan::of(tokens / TOKENS_PER_PARAM, tokens)
    }

    /// The data a model of `params` parameters should see (D = 20·N).
    pub fn for_params(params: f64) -> Plan {
        Plan::of(params, params * TOKENS_PER_PARAM)
    }

    /// The plan as a few lines of text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Chinchilla plan (Hoffmann et al. 2022; ~20 tokens per parameter, FLOPs = 6ND)"
        );
        let _ = writeln!(s, "  training tokens       {}", human(self.tokens));
        let _ = writeln!(
            s,
            "  compute-optimal size  {} parameters",
            human(self.params)
        );
        let _ = writeln!(s, "  training FLOPs        {:.3e}", self.flops);
        let _ = writeln!(
            s,
            "  expected loss         {:.3} nats/token  (L = {E} + {A}/N^{ALPHA} + {B}/D^{BETA})",
            self.loss
        );
        let _ = writeln!(
            s,
            "  the fit's optimum for the same FLOPs: {} parameters on {} tokens, loss {:.3}",
            human(self.fit_params),
            human(self.fit_tokens),
            self.fit_loss
        );
        s
    }
}

/// 1.23M, 4.5B, 70.0B...
pub fn human(x: f64) -> String {
    let (v, unit) = if x >= 1e12 {
        (x / 1e12, "T")
    } else if x >= 1e9 {
        (x / 1e9, "B")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    format!("{v:.2}{unit} ({x:.0})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinchilla_itself_is_reproduced() {
        // Chinchilla: 70B parameters on 1.4T tokens, 5.88e23 FLOPs (6ND).
        let p = Plan::for_tokens(1.4e12);
        assert!((p.params - 70e9).abs() < 1.0);
        assert!((p.flops - 5.88e23).abs() / 5.88e23 < 1e-9);
        // L = 1.69 + 406.4/70e9^0.34 + 410.7/1.4e12^0.28 ≈ 1.937
        assert!((p.loss - 1.937).abs() < 0.002, "{}", p.loss);
        let q = Plan::for_params(70e9);
        assert_eq!(p, q);
    }

    #[test]
    fn the_fit_optimum_minimizes_loss_at_fixed_compute() {
        let c = 1e21;
        let (n, d) = fit_optimum(c);
        assert!((flops(n, d) - c).abs() / c < 1e-9);
        let best = loss(n, d);
        for f in [0.5, 0.8, 1.25, 2.0] {
            assert!(loss(n * f, d / f) > best);
        }
    }
}
