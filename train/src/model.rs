//! The GPT-2 architecture: token and learned position embeddings, pre-LayerNorm blocks of
//! causal multi-head attention and a GELU MLP, a final LayerNorm and an output head tied to
//! the token embedding. Parameters live in one flat fp32 buffer in llm.c's order
//! ([`ParamLayout`]), so the optimizer, checkpoints and the CUDA backend see one array.

use crate::rng::Rng;
use harman_kernels::cpu::adamw::AdamW;
use serde::{Deserialize, Serialize};

/// Model shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Longest sequence (rows of the position embedding).
    pub max_seq_len: usize,
    /// Real vocabulary (token ids < vocab_size).
    pub vocab_size: usize,
    /// Vocabulary rounded up for the embedding and the logits ([`GptConfig::padded`]).
    pub padded_vocab_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub channels: usize,
}

/// Why a shape is not a model.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl GptConfig {
    /// A config with the vocabulary padded to a multiple of 128 (64 for vocabularies under
    /// 8,192), as llm.c pads GPT-2's 50,257 to 50,304.
    pub fn padded(
        vocab_size: usize,
        max_seq_len: usize,
        num_layers: usize,
        num_heads: usize,
        channels: usize,
    ) -> GptConfig {
        let to = if vocab_size < 8192 { 64 } else { 128 };
        GptConfig {
            max_seq_len,
            vocab_size,
            padded_vocab_size: vocab_size.div_ceil(to) * to,
            num_layers,
            num_heads,
            channels,
        }
    }

    /// GPT-2 124M: 12 layers, 12 heads, 768 channels, 1024 positions, 50,257 tokens.
    pub fn gpt2_124m() -> GptConfig {
        GptConfig::padded(50257, 1024, 12, 12, 768)
    }

    /// A named preset: `gpt2-124m`, `gpt2-350m`, `gpt2-774m`, `gpt2-1558m`, or `tiny`
    /// (4 layers, 4 heads, 256 channels, 64 positions — a smoke-test size).
    pub fn preset(name: &str, vocab_size: usize) -> Option<GptConfig> {
        let (l, h, c, t) = match name {
            "gpt2-124m" => (12, 12, 768, 1024),
            "gpt2-350m" => (24, 16, 1024, 1024),
            "gpt2-774m" => (36, 20, 1280, 1024),
            "gpt2-1558m" => (48, 25, 1600, 1024),
            "tiny" => (4, 4, 256, 64),
            _ => return None,
        };
        Some(GptConfig::padded(vocab_size, t, l, h, c))
    }

    /// Checks the shape: every size positive, channels divisible by heads, padded ≥ real.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |field, message: String| Err(ConfigError { field, message });
        for (field, v) in [
            ("max_seq_len", self.max_seq_len),
            ("vocab_size", self.vocab_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("channels", self.channels),
        ] {
            if v == 0 {
                return bad(field, format!("{field} = 0; it must be at least 1"));
            }
        }
        if self.channels % self.num_heads != 0 {
            return bad(
                "num_heads",
                format!(
                    "channels = {} is not divisible by num_heads = {}; use a divisor of {}",
                    self.channels, self.num_heads, self.channels
                ),
            );
        }
        if self.padded_vocab_size < self.vocab_size {
            return bad(
                "padded_vocab_size",
                format!(
                    "{} is below vocab_size {}",
                    self.padded_vocab_size, self.vocab_size
                ),
            );
        }
        Ok(())
    }

    pub fn head_size(&self) -> usize {
        self.channels / self.num_heads
    }

    /// Parameter count (the padded embedding rows included).
    pub fn num_parameters(&self) -> usize {
        ParamLayout::new(self).total
    }
}

/// A model named by a preset, with overrides: a config's `[model]` table, `harman train`'s
/// flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    /// `tiny`, `gpt2-124m`, `gpt2-350m`, `gpt2-774m`, `gpt2-1558m`.
    pub preset: String,
    /// The tokenizer's vocabulary (GPT-2's: 50257).
    pub vocab_size: usize,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub channels: Option<usize>,
    pub max_seq_len: Option<usize>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            preset: "tiny".into(),
            vocab_size: 50257,
            layers: None,
            heads: None,
            channels: None,
            max_seq_len: None,
        }
    }
}

impl ModelSpec {
    /// The checked config.
    pub fn config(&self) -> Result<GptConfig, ConfigError> {
        let mut c =
            GptConfig::preset(&self.preset, self.vocab_size).ok_or_else(|| ConfigError {
                field: "preset",
                message: format!(
                    "preset = {:?}: use tiny, gpt2-124m, gpt2-350m, gpt2-774m or gpt2-1558m",
                    self.preset
                ),
            })?;
        c.num_layers = self.layers.unwrap_or(c.num_layers);
        c.num_heads = self.heads.unwrap_or(c.num_heads);
        c.channels = self.channels.unwrap_or(c.channels);
        c.max_seq_len = self.max_seq_len.unwrap_or(c.max_seq_len);
        c.check()?;
        Ok(c)
    }
}

/// Names and shapes of the parameter tensors, in storage order (llm.c's).
pub const TENSORS: [&str; 16] = [
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw",
    "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb",
];

/// Where each parameter tensor starts in the flat buffer, and its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamLayout {
    /// (name, offset, shape) in storage order.
    pub tensors: Vec<(&'static str, usize, Vec<usize>)>,
    pub total: usize,
}

impl ParamLayout {
    pub fn new(cfg: &GptConfig) -> ParamLayout {
        let (vp, c, l, t) = (
            cfg.padded_vocab_size,
            cfg.channels,
            cfg.num_layers,
            cfg.max_seq_len,
        );
        let shapes: [Vec<usize>; 16] = [
            vec![vp, c],
            vec![t, c],
            vec![l, c],
            vec![l, c],
            vec![l, 3 * c, c],
            vec![l, 3 * c],
            vec![l, c, c],
            vec![l, c],
            vec![l, c],
            vec![l, c],
            vec![l, 4 * c, c],
            vec![l, 4 * c],
            vec![l, c, 4 * c],
            vec![l, c],
            vec![c],
            vec![c],
        ];
        let mut offset = 0;
        let tensors = TENSORS
            .iter()
            .zip(shapes)
            .map(|(&name, shape)| {
                let at = offset;
                offset += shape.iter().product::<usize>();
                (name, at, shape)
            })
            .collect();
        ParamLayout {
            tensors,
            total: offset,
        }
    }

    /// (offset, length) of a tensor.
    pub fn range(&self, name: &str) -> std::ops::Range<usize> {
        let (_, at, shape) = self
            .tensors
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("no tensor {name}"));
        *at..*at + shape.iter().product::<usize>()
    }

    /// Whether AdamW decays a tensor: matrices and embeddings yes, biases and LayerNorm
    /// gains no.
    pub fn decayed(name: &str) -> bool {
        matches!(
            name,
            "wte" | "wpe" | "qkvw" | "attprojw" | "fcw" | "fcprojw"
        )
    }

    /// AdamW's hyperparameters for tensor `name`: `h`, without weight decay where the
    /// tensor is not [`decayed`](ParamLayout::decayed).
    pub fn adamw_for(name: &str, h: &AdamW) -> AdamW {
        AdamW {
            weight_decay: if ParamLayout::decayed(name) {
                h.weight_decay
            } else {
                0.0
            },
            ..*h
        }
    }
}

/// The parameters of a model: its config, layout and one flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub config: GptConfig,
    pub layout: ParamLayout,
    pub data: Vec<f32>,
}

impl Params {
    /// GPT-2's initialization: weights N(0, 0.02), the residual projections (`attprojw`,
    /// `fcprojw`) N(0, 0.02/√(2L)), biases 0, LayerNorm gains 1; the padded embedding rows 0.
    pub fn init(config: GptConfig, seed: u64) -> Params {
        let layout = ParamLayout::new(&config);
        let mut data = vec![0f32; layout.total];
        let mut rng = Rng::new(seed);
        let resid_std = 0.02 / ((2 * config.num_layers) as f32).sqrt();
        for (name, _, _) in &layout.tensors {
            let r = layout.range(name);
            match *name {
                "ln1w" | "ln2w" | "lnfw" => data[r].fill(1.0),
                "wte" | "wpe" | "qkvw" | "fcw" => {
                    for x in &mut data[r] {
                        *x = 0.02 * rng.normal();
                    }
                }
                "attprojw" | "fcprojw" => {
                    for x in &mut data[r] {
                        *x = resid_std * rng.normal();
                    }
                }
                _ => {}
            }
        }
        let wte = layout.range("wte");
        data[wte.start + config.vocab_size * config.channels..wte.end].fill(0.0);
        Params {
            config,
            layout,
            data,
        }
    }

    pub fn tensor(&self, name: &str) -> &[f32] {
        &self.data[self.layout.range(name)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_124m_has_its_parameter_count() {
        let cfg = GptConfig::gpt2_124m();
        assert_eq!(cfg.padded_vocab_size, 50304);
        // llm.c: "num_parameters: 124475904" (padded vocabulary).
        assert_eq!(cfg.num_parameters(), 124_475_904);
        assert!(cfg.check().is_ok());
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let mut cfg = GptConfig::padded(100, 16, 2, 3, 32);
        assert_eq!(cfg.check().unwrap_err().field, "num_heads");
        cfg.num_heads = 4;
        cfg.num_layers = 0;
        assert_eq!(cfg.check().unwrap_err().field, "num_layers");
    }

    #[test]
    fn initialization_follows_gpt2() {
        let cfg = GptConfig::padded(100, 16, 2, 4, 32);
        let p = Params::init(cfg, 1);
        assert_eq!(p, Params::init(cfg, 1));
        assert_ne!(p.data, Params::init(cfg, 2).data);
        assert!(p.tensor("ln1w").iter().all(|&x| x == 1.0));
        assert!(p.tensor("qkvb").iter().all(|&x| x == 0.0));
        let std = |xs: &[f32]| (xs.iter().map(|x| x * x).sum::<f32>() / xs.len() as f32).sqrt();
        assert!((std(p.tensor("fcw")) - 0.02).abs() < 0.002);
        assert!((std(p.tensor("fcprojw")) - 0.01).abs() < 0.001);
        let wte = p.tensor("wte");
        assert!(
            wte[100 * 32..].iter().all(|&x| x == 0.0),
            "padded rows are zero"
        );
    }
}
