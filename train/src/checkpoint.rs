//! Checkpoints: a folder `step_NNNNNNNN/` with the weights (`model.safetensors`, harman's
//! tensor names and shapes), the optimizer's moments (`optimizer.safetensors`, `m.<name>` and
//! `v.<name>`) and `state.json` (step, data position, RNG state, model config, the training
//! options); written into a temporary folder and renamed, so a checkpoint is complete or
//! absent. Also the Hugging Face GPT-2 layout (`config.json` + `model.safetensors`) that
//! `transformers`' `GPT2LMHeadModel` loads, and llm.c's `gpt2_124M.bin` (fp32, version 3).

use crate::data::Position;
use crate::model::{GptConfig, ParamLayout, Params};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a checkpoint cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn format_err(path: &Path, message: impl ToString) -> CheckpointError {
    CheckpointError::Format {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// What a checkpoint holds besides tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Where the training data continues.
    pub data: Position,
    pub rng: u64,
    pub config: GptConfig,
    /// The training options, as given (checked on resume).
    pub options: serde_json::Value,
    /// Tokens trained on so far.
    pub tokens: u64,
}

/// Tensors (name, shape, values) as safetensors bytes, with metadata (at most one key:
/// safetensors writes the map in hash order).
fn serialize(
    tensors: Vec<(String, Vec<usize>, &[f32])>,
    meta: BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    assert!(
        meta.len() <= 1,
        "one metadata key keeps the bytes deterministic"
    );
    let meta: std::collections::HashMap<String, String> = meta.into_iter().collect();
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

/// Tensors by name: (shape, values).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The f32 values of each tensor of a safetensors file, by name, with shapes.
pub fn read_tensors(path: &Path) -> Result<Tensors, CheckpointError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format_err(path, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format_err(
                path,
                format!("{name} is {:?}, not F32", view.dtype()),
            ));
        }
        let vals = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), vals));
    }
    Ok(out)
}

fn per_tensor<'a>(
    layout: &ParamLayout,
    data: &'a [f32],
    prefix: &str,
) -> Vec<(String, Vec<usize>, &'a [f32])> {
    layout
        .tensors
        .iter()
        .map(|(name, _, shape)| {
            (
                format!("{prefix}{name}"),
                shape.clone(),
                &data[layout.range(name)],
            )
        })
        .collect()
}

/// Writes a checkpoint folder `dir/step_NNNNNNNN` atomically and points `dir/latest` at it.
pub fn save(
    dir: &Path,
    params: &Params,
    m: &[f32],
    v: &[f32],
    state: &TrainState,
) -> Result<PathBuf, CheckpointError> {
    let name = format!("step_{:08}", state.step);
    let final_dir = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // One metadata key: safetensors writes the metadata map in hash order, and a checkpoint
    // must be the same bytes on every run.
    let mut meta = BTreeMap::new();
    meta.insert(
        "harman".to_string(),
        serde_json::json!({"format": "harman-gpt", "config": params.config}).to_string(),
    );
    let model = serialize(per_tensor(&params.layout, &params.data, ""), meta.clone())
        .map_err(|e| format_err(&tmp, e))?;
    let p = tmp.join("model.safetensors");
    std::fs::write(&p, model).map_err(io(&p))?;
    let mut moments = per_tensor(&params.layout, m, "m.");
    moments.extend(per_tensor(&params.layout, v, "v."));
    let opt = serialize(moments, meta).map_err(|e| format_err(&tmp, e))?;
    let p = tmp.join("optimizer.safetensors");
    std::fs::write(&p, opt).map_err(io(&p))?;
    let p = tmp.join("state.json");
    let mut json = serde_json::to_vec_pretty(state).map_err(|e| format_err(&p, e))?;
    json.push(b'\n');
    std::fs::write(&p, json).map_err(io(&p))?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    let latest_tmp = dir.join(".latest.tmp");
    std::fs::write(&latest_tmp, format!("{name}\n")).map_err(io(&latest_tmp))?;
    std::fs::rename(&latest_tmp, dir.join("latest")).map_err(io(dir))?;
    Ok(final_dir)
}

/// The checkpoint `dir/latest` names, if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    let name = std::fs::read_to_string(dir.join("latest")).ok()?;
    let p = dir.join(name.trim());
    p.join("state.json").exists().then_some(p)
}

/// A loaded checkpoint.
pub struct Loaded {
    pub params: Params,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub state: TrainState,
}

fn gather(
    path: &Path,
    layout: &ParamLayout,
    tensors: &Tensors,
    prefix: &str,
) -> Result<Vec<f32>, CheckpointError> {
    let mut data = vec![0f32; layout.total];
    for (name, _, shape) in &layout.tensors {
        let key = format!("{prefix}{name}");
        let (s, vals) = tensors
            .get(&key)
            .ok_or_else(|| format_err(path, format!("no tensor {key}")))?;
        if s != shape {
            return Err(format_err(
                path,
                format!("{key} has shape {s:?}, the config says {shape:?}"),
            ));
        }
        data[layout.range(name)].copy_from_slice(vals);
    }
    Ok(data)
}

/// The `state.json` of a checkpoint folder.
pub fn read_state(ckpt: &Path) -> Result<TrainState, CheckpointError> {
    let sp = ckpt.join("state.json");
    serde_json::from_slice(&std::fs::read(&sp).map_err(io(&sp))?).map_err(|e| format_err(&sp, e))
}

/// Reads a checkpoint folder (weights only when `optimizer.safetensors` is absent: moments 0).
pub fn load(ckpt: &Path) -> Result<Loaded, CheckpointError> {
    let state = read_state(ckpt)?;
    let layout = ParamLayout::new(&state.config);
    let mp = ckpt.join("model.safetensors");
    let data = gather(&mp, &layout, &read_tensors(&mp)?, "")?;
    let op = ckpt.join("optimizer.safetensors");
    let (m, v) = if op.exists() {
        let t = read_tensors(&op)?;
        (
            gather(&op, &layout, &t, "m.")?,
            gather(&op, &layout, &t, "v.")?,
        )
    } else {
        (vec![0.0; layout.total], vec![0.0; layout.total])
    };
    Ok(Loaded {
        params: Params {
            config: state.config,
            layout,
            data,
        },
        m,
        v,
        state,
    })
}

/// One tensor of Hugging Face's GPT-2 layout and where it lives in harman's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfTensor {
    /// e.g. `transformer.h.0.attn.c_attn.weight`.
    pub name: String,
    /// harman's tensor and the layer's slice of it.
    pub ours: &'static str,
    pub layer: Option<usize>,
    /// HF's shape.
    pub shape: Vec<usize>,
    /// HF stores Conv1D weights `[in, out]`: harman's `[out, in]` transposed.
    pub transposed: bool,
}

/// Every tensor of a GPT2LMHeadModel (the output head is tied to `wte`, not stored).
pub fn hf_tensors(cfg: &GptConfig) -> Vec<HfTensor> {
    let c = cfg.channels;
    let t = |name: String, ours, layer, shape: Vec<usize>, transposed| HfTensor {
        name,
        ours,
        layer,
        shape,
        transposed,
    };
    let mut v = vec![
        t(
            "transformer.wte.weight".into(),
            "wte",
            None,
            vec![cfg.vocab_size, c],
            false,
        ),
        t(
            "transformer.wpe.weight".into(),
            "wpe",
            None,
            vec![cfg.max_seq_len, c],
            false,
        ),
    ];
    for i in 0..cfg.num_layers {
        let h = format!("transformer.h.{i}");
        let l = Some(i);
        v.extend([
            t(format!("{h}.ln_1.weight"), "ln1w", l, vec![c], false),
            t(format!("{h}.ln_1.bias"), "ln1b", l, vec![c], false),
            t(
                format!("{h}.attn.c_attn.weight"),
                "qkvw",
                l,
                vec![c, 3 * c],
                true,
            ),
            t(
                format!("{h}.attn.c_attn.bias"),
                "qkvb",
                l,
                vec![3 * c],
                false,
            ),
            t(
                format!("{h}.attn.c_proj.weight"),
                "attprojw",
                l,
                vec![c, c],
                true,
            ),
            t(
                format!("{h}.attn.c_proj.bias"),
                "attprojb",
                l,
                vec![c],
                false,
            ),
            t(format!("{h}.ln_2.weight"), "ln2w", l, vec![c], false),
            t(format!("{h}.ln_2.bias"), "ln2b", l, vec![c], false),
            t(
                format!("{h}.mlp.c_fc.weight"),
                "fcw",
                l,
                vec![c, 4 * c],
                true,
            ),
            t(format!("{h}.mlp.c_fc.bias"), "fcb", l, vec![4 * c], false),
            t(
                format!("{h}.mlp.c_proj.weight"),
                "fcprojw",
                l,
                vec![4 * c, c],
                true,
            ),
            t(format!("{h}.mlp.c_proj.bias"), "fcprojb", l, vec![c], false),
        ]);
    }
    v.push(t(
        "transformer.ln_f.weight".into(),
        "lnfw",
        None,
        vec![c],
        false,
    ));
    v.push(t(
        "transformer.ln_f.bias".into(),
        "lnfb",
        None,
        vec![c],
        false,
    ));
    v
}

impl HfTensor {
    /// The range of harman's flat buffer this tensor maps to.
    pub fn range(&self, layout: &ParamLayout) -> std::ops::Range<usize> {
        let r = layout.range(self.ours);
        let n: usize = self.shape.iter().product();
        let start = r.start + self.layer.map_or(0, |l| l * n);
        start..start + n
    }

    /// HF's values from harman's (a transpose for Conv1D weights).
    pub fn from_ours(&self, ours: &[f32]) -> Vec<f32> {
        if !self.transposed {
            return ours.to_vec();
        }
        let (rows_in, cols_out) = (self.shape[0], self.shape[1]);
        let mut t = vec![0f32; ours.len()];
        for o in 0..cols_out {
            for i in 0..rows_in {
                t[i * cols_out + o] = ours[o * rows_in + i];
            }
        }
        t
    }

    /// harman's values from HF's.
    pub fn to_ours(&self, hf: &[f32]) -> Vec<f32> {
        if !self.transposed {
            return hf.to_vec();
        }
        let (rows_in, cols_out) = (self.shape[0], self.shape[1]);
        let mut t = vec![0f32; hf.len()];
        for i in 0..rows_in {
            for o in 0..cols_out {
                t[o * rows_in + i] = hf[i * cols_out + o];
            }
        }
        t
    }
}

/// Writes `config.json` + `model.safetensors` in Hugging Face's GPT-2 layout into `out`:
/// Conv1D weights transposed to `[in, out]`, the embedding cut to the real vocabulary, the
/// output head tied (not stored).
pub fn export_hf(params: &Params, out: &Path) -> Result<(), CheckpointError> {
    let cfg = &params.config;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let owned: Vec<(String, Vec<usize>, Vec<f32>)> = hf_tensors(cfg)
        .into_iter()
        .map(|t| {
            let vals = t.from_ours(&params.data[t.range(&params.layout)]);
            (t.name, t.shape, vals)
        })
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let bytes = serialize(
        owned
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
            .collect(),
        meta,
    )
    .map_err(|e| format_err(out, e))?;
    let p = out.join("model.safetensors");
    std::fs::write(&p, bytes).map_err(io(&p))?;
    let config = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_seq_len,
        "n_ctx": cfg.max_seq_len,
        "n_embd": cfg.channels,
        "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads,
        "n_inner": null,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": true,
        "bos_token_id": cfg.vocab_size.saturating_sub(1),
        "eos_token_id": cfg.vocab_size.saturating_sub(1),
        "torch_dtype": "float32"
    });
    let p = out.join("config.json");
    let mut json = serde_json::to_vec_pretty(&config).map_err(|e| format_err(&p, e))?;
    json.push(b'\n');
    std::fs::write(&p, json).map_err(io(&p))?;
    Ok(())
}

/// Reads a Hugging Face GPT-2 folder (`config.json` + `model.safetensors`, e.g. from
/// `save_pretrained` or [`export_hf`]) into harman's layout (vocabulary padded as
/// [`GptConfig::padded`] pads it, the padded rows zero).
pub fn import_hf(dir: &Path) -> Result<Params, CheckpointError> {
    let cp = dir.join("config.json");
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cp).map_err(io(&cp))?)
        .map_err(|e| format_err(&cp, e))?;
    let get = |k: &str| {
        c[k].as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| format_err(&cp, format!("no `{k}`")))
    };
    let act = c["activation_function"].as_str().unwrap_or("gelu_new");
    if act != "gelu_new" && act != "gelu_pytorch_tanh" {
        return Err(format_err(
            &cp,
            format!(
                "activation_function {act:?}: harman's GELU is the tanh approximation (gelu_new)"
            ),
        ));
    }
    let config = GptConfig::padded(
        get("vocab_size")?,
        get("n_positions")?,
        get("n_layer")?,
        get("n_head")?,
        get("n_embd")?,
    );
    config.check().map_err(|e| format_err(&cp, e))?;
    let mp = dir.join("model.safetensors");
    let tensors = read_tensors(&mp)?;
    let layout = ParamLayout::new(&config);
    let mut data = vec![0f32; layout.total];
    for t in hf_tensors(&config) {
        let (shape, vals) = tensors
            .get(&t.name)
            .or_else(|| tensors.get(t.name.trim_start_matches("transformer.")))
            .ok_or_else(|| format_err(&mp, format!("no tensor {}", t.name)))?;
        if *shape != t.shape {
            return Err(format_err(
                &mp,
                format!("{} has shape {shape:?}, expected {:?}", t.name, t.shape),
            ));
        }
        let r = t.range(&layout);
        data[r].copy_from_slice(&t.to_ours(vals));
    }
    Ok(Params {
        config,
        layout,
        data,
    })
}

/// llm.c's checkpoint magic (`gpt2_124M.bin`: 256 int32 header, then fp32 parameters).
pub const LLMC_MAGIC: i32 = 20240326;
/// llm.c's fp32 checkpoint version.
pub const LLMC_VERSION: i32 = 3;

/// Writes the parameters as llm.c's `gpt2_124M.bin` (`train_gpt2.c` reads it): a header of
/// 256 int32 — magic, version 3, max_seq_len, vocab_size, num_layers, num_heads, channels,
/// padded_vocab_size — then every parameter as little-endian fp32 in llm.c's order, which is
/// harman's own ([`ParamLayout`]). Written to a temporary name and renamed.
pub fn export_llmc(params: &Params, out: &Path) -> Result<(), CheckpointError> {
    let c = &params.config;
    let mut header = [0i32; 256];
    header[0] = LLMC_MAGIC;
    header[1] = LLMC_VERSION;
    let sizes = [
        c.max_seq_len,
        c.vocab_size,
        c.num_layers,
        c.num_heads,
        c.channels,
        c.padded_vocab_size,
    ];
    for (i, v) in sizes.into_iter().enumerate() {
        header[i + 2] =
            i32::try_from(v).map_err(|_| format_err(out, "a model size exceeds int32"))?;
    }
    let mut bytes = Vec::with_capacity(1024 + params.data.len() * 4);
    for v in header {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for v in &params.data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))
}

/// Reads an llm.c fp32 checkpoint (see [`export_llmc`]); the header's sizes must make a
/// valid config and the file must hold exactly its parameters.
pub fn import_llmc(path: &Path) -> Result<Params, CheckpointError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.len() < 1024 {
        return Err(format_err(path, "shorter than llm.c's 1,024-byte header"));
    }
    let word = |i: usize| {
        i32::from_le_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    if word(0) != LLMC_MAGIC {
        return Err(format_err(
            path,
            format!("magic {} is not llm.c's {LLMC_MAGIC}", word(0)),
        ));
    }
    if word(1) != LLMC_VERSION {
        return Err(format_err(
            path,
            format!(
                "version {} (only the fp32 version {LLMC_VERSION} is read)",
                word(1)
            ),
        ));
    }
    let size = |i: usize, field: &str| {
        usize::try_from(word(i)).map_err(|_| format_err(path, format!("negative {field}")))
    };
    let config = GptConfig {
        max_seq_len: size(2, "max_seq_len")?,
        vocab_size: size(3, "vocab_size")?,
        num_layers: size(4, "num_layers")?,
        num_heads: size(5, "num_heads")?,
        channels: size(6, "channels")?,
        padded_vocab_size: size(7, "padded_vocab_size")?,
    };
    config.check().map_err(|e| format_err(path, e))?;
    let layout = ParamLayout::new(&config);
    let body = &bytes[1024..];
    if body.len() != layout.total * 4 {
        return Err(format_err(
            path,
            format!(
                "{} parameter bytes after the header, the config needs {}",
                body.len(),
                layout.total * 4
            ),
        ));
    }
    let data = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Params {
        config,
        layout,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_exactly() {
        let dir = std::env::temp_dir().join(format!("harman-ckpt-{}", std::process::id()));
        let cfg = GptConfig::padded(100, 16, 2, 4, 32);
        let p = Params::init(cfg, 9);
        let m: Vec<f32> = p.data.iter().map(|x| x * 0.5).collect();
        let v: Vec<f32> = p.data.iter().map(|x| x * x).collect();
        let state = TrainState {
            step: 7,
            data: Position {
                epoch: 1,
                shard: 2,
                offset: 300,
            },
            rng: 12345,
            config: cfg,
            options: serde_json::json!({"lr": 0.001}),
            tokens: 999,
        };
        let path = save(&dir, &p, &m, &v, &state).unwrap();
        assert_eq!(latest(&dir), Some(path.clone()));
        let back = load(&path).unwrap();
        assert_eq!(back.params, p);
        assert_eq!(back.m, m);
        assert_eq!(back.v, v);
        assert_eq!(back.state, state);
        export_hf(&p, &dir.join("hf")).unwrap();
        assert_eq!(
            import_hf(&dir.join("hf")).unwrap(),
            p,
            "export then import is exact"
        );
        let hf = read_tensors(&dir.join("hf/model.safetensors")).unwrap();
        let (shape, w) = &hf["transformer.h.1.mlp.c_fc.weight"];
        assert_eq!(shape, &vec![32, 128]);
        // HF's Conv1D weight [in, out] is ours [out, in] transposed.
        let ours = &p.tensor("fcw")[128 * 32..];
        assert_eq!(w[5 * 128 + 7], ours[7 * 32 + 5]);
        assert_eq!(hf["transformer.wte.weight"].0, vec![100, 32]);
        let llmc = dir.join("model.bin");
        export_llmc(&p, &llmc).unwrap();
        assert_eq!(import_llmc(&llmc).unwrap(), p, "llm.c's format is exact");
        let bytes = std::fs::read(&llmc).unwrap();
        assert_eq!(bytes.len(), 1024 + 4 * p.data.len());
        assert_eq!(&bytes[..8], &[0xc6, 0xd7, 0x34, 0x01, 3, 0, 0, 0]);
        std::fs::write(&llmc, &bytes[..bytes.len() - 4]).unwrap();
        let err = import_llmc(&llmc).unwrap_err().to_string();
        assert!(err.contains("parameter bytes"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
