//! Learning-rate schedules: linear warmup from 0, then cosine, linear, step or exponential
//! decay down to a floor, warmup-stable-decay (WSD), or constant.

use serde::{Deserialize, Serialize};

/// The decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decay {
    /// Half a cosine from the peak to `min_lr` at the last step.
    #[default]
    Cosine,
    /// A straight line from the peak to `min_lr` at the last step.
    Linear,
    /// Multiply by `gamma` every `every` steps (after warmup), not below `min_lr`.
    Step { every: u64, gamma: f32 },
    /// Multiply by `gamma` every step (after warmup), not below `min_lr`.
    Exponential { gamma: f32 },
    /// Warmup-stable-decay: the peak until the last `decay_fraction` of the steps, then a
    /// linear decay to `min_lr`.
    Wsd { decay_fraction: f32 },
    /// The peak throughout.
    Constant,
}

/// A schedule over `steps` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    pub lr: f32,
    pub min_lr: f32,
    pub warmup_steps: u64,
    pub steps: u64,
    pub decay: Decay,
}

impl Default for Schedule {
    /// llm.c's GPT-2 settings: 6e-4 peak, cosine to a tenth, no warmup by default.
    fn default() -> Self {
        Schedule {
            lr: 6e-4,
            min_lr: 6e-5,
            warmup_steps: 0,
            steps: 100,
            decay: Decay::Cosine,
        }
    }
}

impl Schedule {
    /// The learning rate of step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f32 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let after = step - self.warmup_steps;
        let span = self.steps.saturating_sub(self.warmup_steps).max(1);
        let frac = (after as f32 / span as f32).min(1.0);
        let (peak, floor) = (self.lr, self.min_lr);
        match self.decay {
            Decay::Cosine => {
                floor + 0.5 * (peak - floor) * (1.0 + (std::f32::consts::PI * frac).cos())
            }
            Decay::Linear => peak - (peak - floor) * frac,
            Decay::Step { every, gamma } => {
                (peak * gamma.powi((after / every.max(1)) as i32)).max(floor)
            }
            Decay::Exponential { gamma } => (peak * gamma.powf(after as f32)).max(floor),
            Decay::Wsd { decay_fraction } => {
                let decay_steps = ((self.steps as f32 * decay_fraction) as u64).max(1);
                let start = self.steps.saturating_sub(decay_steps);
                if step < start {
                    peak
                } else {
                    let f = ((step - start) as f32 / decay_steps as f32).min(1.0);
                    peak - (peak - floor) * f
                }
            }
            Decay::Constant => peak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(decay: Decay) -> Schedule {
        Schedule {
            lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 10,
            steps: 110,
            decay,
        }
    }

    #[test]
    fn warmup_then_each_decay() {
        let c = s(Decay::Cosine);
        assert!((c.lr_at(0) - 0.1).abs() < 1e-6);
        assert!((c.lr_at(9) - 1.0).abs() < 1e-6);
        assert!((c.lr_at(10) - 1.0).abs() < 1e-6);
        assert!((c.lr_at(60) - 0.55).abs() < 1e-5, "{}", c.lr_at(60));
        assert!((c.lr_at(110) - 0.1).abs() < 1e-6);
        let l = s(Decay::Linear);
        assert!((l.lr_at(60) - 0.55).abs() < 1e-5);
        let st = s(Decay::Step {
            every: 20,
            gamma: 0.5,
        });
        assert_eq!(st.lr_at(29), 1.0);
        assert_eq!(st.lr_at(30), 0.5);
        assert_eq!(st.lr_at(109), 0.1, "floored");
        let e = s(Decay::Exponential { gamma: 0.9 });
        assert!((e.lr_at(12) - 0.81).abs() < 1e-6);
        let w = s(Decay::Wsd {
            decay_fraction: 0.2,
        });
        assert_eq!(w.lr_at(87), 1.0);
        assert!((w.lr_at(99) - 0.55).abs() < 1e-5);
        assert_eq!(s(Decay::Constant).lr_at(100), 1.0);
    }
}
