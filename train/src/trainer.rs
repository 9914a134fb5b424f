//! The training loop: micro-batches from the data loader, gradient accumulation to a total
//! batch size in tokens, global-norm gradient clipping, AdamW with decoupled weight decay on
//! matrices and embeddings only, a learning-rate schedule, validation loss every N steps,
//! a JSONL log and checkpoints. On the CPU backend every step is bit-for-bit reproducible, so a
//! run resumed from a checkpoint logs exactly the losses the uninterrupted run logs.

use crate::checkpoint::{self, TrainState};
use crate::cpu::{self, Activations};
use crate::cuda::{self, GpuModel, Placement};
use crate::data::DataLoader;
use crate::model::{GptConfig, ParamLayout, Params};
use crate::schedule::Schedule;
use harman_kernels::cpu::adamw::{self, AdamW};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Training options (the `[train]` table of a config, or `harman train` flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Tokens per optimizer step (a multiple of batch_size × seq_len; 0 = one micro-batch).
    pub total_batch_tokens: usize,
    pub steps: u64,
    pub schedule: Schedule,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f32,
    /// Dropout probability on the embeddings, the attention probabilities and the residual
    /// branches (0 = off).
    pub dropout: f32,
    /// Validation loss every this many steps (0 = never; always at the end when val data is given).
    pub val_every: u64,
    /// Batches per validation pass.
    pub val_batches: usize,
    /// Checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            batch_size: 4,
            seq_len: 64,
            total_batch_tokens: 0,
            steps: 100,
            schedule: Schedule {
                lr: 6e-4,
                min_lr: 6e-5,
                warmup_steps: 10,
                steps: 100,
                decay: crate::schedule::Decay::Cosine,
            },
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            dropout: 0.0,
            val_every: 0,
            val_batches: 10,
            checkpoint_every: 0,
            seed: 1337,
        }
    }
}

/// A training option that is wrong: the field and the fix.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct OptionsError {
    pub field: &'static str,
    pub message: String,
}

impl TrainOptions {
    /// Micro-batches per optimizer step.
    pub fn accumulation(&self) -> Result<usize, OptionsError> {
        let micro = self.batch_size * self.seq_len;
        if micro == 0 {
            return Err(OptionsError {
                field: "batch_size",
                message: "batch_size and seq_len must be at least 1".into(),
            });
        }
        if self.total_batch_tokens == 0 {
            return Ok(1);
        }
        if self.total_batch_tokens % micro != 0 {
            return Err(OptionsError {
                field: "total_batch_tokens",
                message: format!(
                    "total_batch_tokens = {} is not a multiple of batch_size × seq_len = {micro}; use {}",
                    self.total_batch_tokens,
                    self.total_batch_tokens.div_ceil(micro) * micro
                ),
            });
        }
        Ok(self.total_batch_tokens / micro)
    }

    pub fn check(&self, cfg: &GptConfig) -> Result<(), OptionsError> {
        self.accumulation()?;
        if self.seq_len > cfg.max_seq_len {
            return Err(OptionsError {
                field: "seq_len",
                message: format!(
                    "seq_len = {} exceeds the model's {} positions",
                    self.seq_len, cfg.max_seq_len
                ),
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(OptionsError {
                field: "dropout",
                message: format!("dropout = {} is outside [0, 1)", self.dropout),
            });
        }
        if self.schedule.lr.is_nan()
            || self.schedule.lr <= 0.0
            || self.schedule.min_lr < 0.0
            || self.schedule.min_lr > self.schedule.lr
        {
            return Err(OptionsError {
                field: "schedule.lr",
                message: "need 0 <= min_lr <= lr and lr > 0".into(),
            });
        }
        Ok(())
    }
}

/// One line of the training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: u64,
    pub loss: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f32>,
    pub lr: f32,
    pub grad_norm: f32,
    pub tokens: u64,
    pub ms: f64,
    pub tokens_per_s: f64,
}

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Batch(#[from] cpu::BatchError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{0}")]
    Io(String),
    #[error("resuming {checkpoint}: {message}")]
    Resume { checkpoint: String, message: String },
    #[error("CUDA backend: {0}")]
    Gpu(#[from] harman_kernels::cuda::GpuError),
}

/// The line saying a run is on the CPU backend with `threads` threads (and why not the GPU).
pub fn cpu_backend(threads: usize, why_not_gpu: Option<String>) -> String {
    match why_not_gpu {
        Some(why) => format!("CPU backend, {threads} threads ({why})"),
        None => format!("CPU backend, {threads} threads"),
    }
}

/// Where the passes run: `auto` (the GPU when one is usable, else the CPU), `cpu`, `cuda`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Device, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            _ => Err(format!("device {s:?}: use auto, cpu or cuda")),
        }
    }
}

/// Everything a run needs.
pub struct Trainer {
    pub params: Params,
    m: Vec<f32>,
    v: Vec<f32>,
    opts: TrainOptions,
    train: DataLoader,
    val: Option<DataLoader>,
    out: PathBuf,
    step: u64,
    tokens: u64,
    rng: u64,
    threads: usize,
    /// Whether log.jsonl records ms and tokens/s (off where outputs must be byte-identical).
    log_timings: bool,
    /// The model on the GPU when the CUDA backend runs it (the host copy is then refreshed
    /// only for checkpoints).
    gpu: Option<GpuModel>,
    /// On the GPU, recompute activations in the backward pass (see [`GpuModel::new`]).
    recompute: bool,
}

/// Why a checkpoint's state cannot continue a run of `config` with `options` (the
/// options as JSON), or None when it can.
pub fn resume_mismatch(
    state: &TrainState,
    config: &GptConfig,
    options: &serde_json::Value,
) -> Option<String> {
    if state.config != *config {
        return Some(format!(
            "its model is {:?}, this run's is {config:?}",
            state.config
        ));
    }
    if state.options != *options {
        return Some(
            "it was trained with other options; use another output folder or the same options"
                .into(),
        );
    }
    None
}

/// The factor clipping scales the gradients by: `clip / norm` when a clip is set
/// (`clip > 0`) and the norm exceeds it, else 1.
pub fn clip_scale(norm: f32, clip: f32) -> f32 {
    if clip > 0.0 && norm > clip {
        clip / norm
    } else {
        1.0
    }
}

/// Global L2 norm of the gradients (summed in f64, in order).
pub fn grad_norm(grads: &[f32]) -> f32 {
    grads
        .iter()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt() as f32
}

impl Trainer {
    /// A new run (or the continuation of the checkpoint `out/latest` when there is one and
    /// `resume` is set). `train` / `val` are shard lists.
    pub fn new(
        config: GptConfig,
        opts: TrainOptions,
        train: Vec<PathBuf>,
        val: Vec<PathBuf>,
        out: &Path,
        resume: bool,
        threads: usize,
    ) -> Result<Trainer, TrainError> {
        config.check().map_err(|e| OptionsError {
            field: e.field,
            message: e.message,
        })?;
        opts.check(&config)?;
        let train = DataLoader::open(train, opts.batch_size, opts.seq_len, config.vocab_size)?;
        let val = if val.is_empty() {
            None
        } else {
            Some(DataLoader::open(
                val,
                opts.batch_size,
                opts.seq_len,
                config.vocab_size,
            )?)
        };
        std::fs::create_dir_all(out)
            .map_err(|e| TrainError::Io(format!("{}: {e}", out.display())))?;
        let options = serde_json::to_value(&opts).map_err(|e| TrainError::Io(e.to_string()))?;
        let mut t = Trainer {
            params: Params::init(config, opts.seed),
            m: Vec::new(),
            v: Vec::new(),
            opts,
            train,
            val,
            out: out.to_path_buf(),
            step: 0,
            tokens: 0,
            rng: 0,
            threads,
            log_timings: true,
            gpu: None,
            recompute: false,
        };
        t.m = vec![0.0; t.params.data.len()];
        t.v = vec![0.0; t.params.data.len()];
        t.rng = t.opts.seed;
        if resume {
            if let Some(ckpt) = checkpoint::latest(out) {
                let loaded = checkpoint::load(&ckpt)?;
                if let Some(message) = resume_mismatch(&loaded.state, &config, &options) {
                    return Err(TrainError::Resume {
                        checkpoint: ckpt.display().to_string(),
                        message,
                    });
                }
                t.params = loaded.params;
                t.m = loaded.m;
                t.v = loaded.v;
                t.step = loaded.state.step;
                t.tokens = loaded.state.tokens;
                t.rng = loaded.state.rng;
                t.train.seek(loaded.state.data);
            }
        }
        Ok(t)
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    /// Moves the run to `device`; returns a line saying where it runs (and, for `auto`
    /// without a usable GPU, why the CPU). `cuda` without a GPU is an error.
    pub fn set_device(&mut self, device: Device) -> Result<String, TrainError> {
        if let Some(gpu) = self.gpu.take() {
            gpu.download(&mut self.params, &mut self.m, &mut self.v)?;
        }
        let placed = cuda::place(device, || {
            GpuModel::new(
                &self.params,
                &self.m,
                &self.v,
                self.opts.batch_size,
                self.opts.seq_len,
                self.recompute,
            )
        })?;
        Ok(match placed {
            Placement::Gpu(gpu) => {
                let line = format!("CUDA backend on {} ({})", gpu.gpu.name, gpu.gpu.arch);
                self.gpu = Some(*gpu);
                line
            }
            Placement::Cpu(why) => cpu_backend(self.threads, why),
        })
    }

    /// Leaves the timings (ms, tokens/s) out of `log.jsonl`, so the log is the same on
    /// every run (the DAG's train stage, whose outputs are compared byte for byte).
    pub fn without_logged_timings(mut self) -> Self {
        self.log_timings = false;
        self
    }

    /// On the GPU, recompute the GELU outputs in the backward pass instead of keeping them
    /// (less device memory, one more GELU pass per layer; results differ from a run without
    /// it by the rounding of the fused GELU epilogue). Takes effect at [`Trainer::set_device`].
    pub fn with_recompute(mut self, on: bool) -> Self {
        self.recompute = on;
        self
    }

    /// Mean validation loss over `val_batches` batches from the start of the val shards.
    pub fn val_loss(&mut self) -> Result<Option<f32>, TrainError> {
        let (b, t) = (self.opts.batch_size, self.opts.seq_len);
        let Some(val) = self.val.as_mut() else {
            return Ok(None);
        };
        val.reset();
        let mut sum = 0f64;
        if let Some(gpu) = self.gpu.as_mut() {
            gpu.set_dropout(None);
            for _ in 0..self.opts.val_batches.max(1) {
                let (x, y) = val.next_batch()?;
                sum += gpu.forward(&x, &y, 0.0)? as f64;
            }
            return Ok(Some((sum / self.opts.val_batches.max(1) as f64) as f32));
        }
        let mut acts = Activations::new(&self.params.config, b, t);
        for _ in 0..self.opts.val_batches.max(1) {
            let (x, y) = val.next_batch()?;
            sum += cpu::forward(&self.params, &mut acts, &x, Some(&y), self.threads)? as f64;
        }
        Ok(Some((sum / self.opts.val_batches.max(1) as f64) as f32))
    }

    /// Saves a checkpoint of the current state (from the GPU when the model is there).
    pub fn save(&mut self) -> Result<PathBuf, TrainError> {
        if let Some(gpu) = &self.gpu {
            gpu.download(&mut self.params, &mut self.m, &mut self.v)?;
        }
        let state = TrainState {
            step: self.step,
            data: self.train.position(),
            rng: self.rng,
            config: self.params.config,
            options: serde_json::to_value(&self.opts).map_err(|e| TrainError::Io(e.to_string()))?,
            tokens: self.tokens,
        };
        Ok(checkpoint::save(
            &self.out,
            &self.params,
            &self.m,
            &self.v,
            &state,
        )?)
    }

    /// The dropout of micro-step `micro` of the current step (None when p = 0): the same
    /// masks on either backend.
    fn dropout(&self, micro: usize) -> Option<cpu::Dropout> {
        (self.opts.dropout > 0.0).then_some(cpu::Dropout {
            p: self.opts.dropout,
            seed: self.opts.seed,
            step: self.step,
            micro: micro as u64,
        })
    }

    /// One optimizer step on the CPU backend: `accum` micro-batches forward and backward,
    /// clipping, AdamW. Returns (mean loss, gradient norm before clipping).
    fn cpu_step(
        &mut self,
        acts: &mut Activations,
        grads: &mut [f32],
        accum: usize,
        h: &AdamW,
    ) -> Result<(f64, f32), TrainError> {
        grads.fill(0.0);
        let mut loss = 0f64;
        for micro in 0..accum {
            acts.dropout = self.dropout(micro);
            let (x, y) = self.train.next_batch()?;
            loss +=
                cpu::forward(&self.params, acts, &x, Some(&y), self.threads)? as f64 / accum as f64;
            cpu::backward(&self.params, acts, grads, 1.0 / accum as f32, self.threads);
        }
        let norm = grad_norm(grads);
        let s = clip_scale(norm, self.opts.grad_clip);
        if s < 1.0 {
            for g in grads.iter_mut() {
                *g *= s;
            }
        }
        let layout: &ParamLayout = &self.params.layout;
        for (name, _, _) in &layout.tensors {
            let r = layout.range(name);
            let hp = ParamLayout::adamw_for(name, h);
            adamw::update(
                &mut self.params.data[r.clone()],
                &grads[r.clone()],
                &mut self.m[r.clone()],
                &mut self.v[r],
                &hp,
                self.step as u32 + 1,
            );
        }
        Ok((loss, norm))
    }

    /// Trains until `opts.steps` (or `stop_after` more steps), calling `on_step` after each;
    /// appends every step to `out/log.jsonl` and writes `out/loss.svg`.
    pub fn run(
        &mut self,
        stop_after: Option<u64>,
        mut on_step: impl FnMut(&StepLog),
    ) -> Result<Vec<StepLog>, TrainError> {
        let accum = self.opts.accumulation()?;
        let (b, t) = (self.opts.batch_size, self.opts.seq_len);
        let cfg = self.params.config;
        let mut acts = Activations::new(&cfg, b, t);
        let mut grads = vec![0f32; self.params.data.len()];
        let log_path = self.out.join("log.jsonl");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| TrainError::Io(format!("{}: {e}", log_path.display())))?;
        let mut logs = Vec::new();
        let end = match stop_after {
            Some(n) => (self.step + n).min(self.opts.steps),
            None => self.opts.steps,
        };
        while self.step < end {
            let started = Instant::now();
            let val_loss = if self.opts.val_every > 0 && self.step % self.opts.val_every == 0 {
                self.val_loss()?
            } else {
                None
            };
            let lr = self.opts.schedule.lr_at(self.step);
            let adamw = AdamW {
                lr,
                beta1: self.opts.beta1,
                beta2: self.opts.beta2,
                eps: self.opts.eps,
                weight_decay: self.opts.weight_decay,
            };
            let drops: Vec<_> = (0..accum).map(|micro| self.dropout(micro)).collect();
            let (loss, norm) = if let Some(gpu) = self.gpu.as_mut() {
                gpu.zero_grads()?;
                let mut loss = 0f64;
                let dloss = 1.0 / (accum * b * t) as f32;
                for drop in drops {
                    gpu.set_dropout(drop);
                    let (x, y) = self.train.next_batch()?;
                    loss += gpu.forward(&x, &y, dloss)? as f64 / accum as f64;
                    gpu.backward()?;
                }
                let norm = gpu.grad_norm()?;
                let scale = clip_scale(norm, self.opts.grad_clip);
                gpu.update(&adamw, self.step as u32 + 1, scale)?;
                (loss, norm)
            } else {
                self.cpu_step(&mut acts, &mut grads, accum, &adamw)?
            };
            self.step += 1;
            self.tokens += (accum * b * t) as u64;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let entry = StepLog {
                step: self.step,
                loss: loss as f32,
                val_loss,
                lr,
                grad_norm: norm,
                tokens: self.tokens,
                ms,
                tokens_per_s: (accum * b * t) as f64 / (ms / 1e3),
            };
            let mut value =
                serde_json::to_value(&entry).map_err(|e| TrainError::Io(e.to_string()))?;
            if !self.log_timings {
                if let Some(o) = value.as_object_mut() {
                    o.remove("ms");
                    o.remove("tokens_per_s");
                }
            }
            let line = value.to_string();
            writeln!(log, "{line}")
                .map_err(|e| TrainError::Io(format!("{}: {e}", log_path.display())))?;
            on_step(&entry);
            logs.push(entry);
            if self.opts.checkpoint_every > 0 && self.step % self.opts.checkpoint_every == 0 {
                self.save()?;
            }
        }
        if self.step == self.opts.steps {
            if let Some(v) = self.val_loss()? {
                let line = serde_json::json!({"step": self.step, "val_loss": v});
                writeln!(log, "{line}").map_err(|e| TrainError::Io(e.to_string()))?;
            }
        }
        self.save()?;
        write_plot(&log_path, &self.out.join("loss.svg"))?;
        Ok(logs)
    }
}

/// Draws train (and validation) loss against step from a JSONL log as an SVG line plot.
pub fn write_plot(log: &Path, svg: &Path) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(log)
        .map_err(|e| TrainError::Io(format!("{}: {e}", log.display())))?;
    std::fs::write(svg, loss_svg(&text))
        .map_err(|e| TrainError::Io(format!("{}: {e}", svg.display())))
}

/// The SVG line plot of train (and validation) loss against step of a JSONL training log's
/// text.
pub fn loss_svg(text: &str) -> String {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let step = v["step"].as_f64().unwrap_or(0.0);
        if let Some(l) = v["loss"].as_f64() {
            train.push((step, l));
        }
        if let Some(l) = v["val_loss"].as_f64() {
            val.push((step, l));
        }
    }
    let pts: Vec<&(f64, f64)> = train.iter().chain(&val).collect();
    let (w, h, pad) = (640.0, 360.0, 48.0);
    let max_x = pts.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = pts.iter().map(|p| p.1).fold(f64::MIN, f64::max).max(1e-3);
    let min_y = pts.iter().map(|p| p.1).fold(f64::MAX, f64::min).min(max_y);
    let span = (max_y - min_y).max(1e-6);
    let xy = |(x, y): (f64, f64)| {
        (
            pad + x / max_x * (w - 2.0 * pad),
            h - pad - (y - min_y) / span * (h - 2.0 * pad),
        )
    };
    let poly = |series: &[(f64, f64)], color: &str| {
        let p: Vec<String> = series
            .iter()
            .map(|&s| xy(s))
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            p.join(" ")
        )
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{pad}\" y=\"20\">loss (train: blue, validation: orange)</text>\n\
         <text x=\"4\" y=\"{pad}\">{max_y:.3}</text><text x=\"4\" y=\"{b}\">{min_y:.3}</text>\n\
         <text x=\"{r}\" y=\"{lb}\" text-anchor=\"end\">step {max_x:.0}</text>\n{}\n{}\n</svg>\n",
        poly(&train, "#1f77b4"),
        poly(&val, "#ff7f0e"),
        b = h - pad,
        r = w - pad,
        lb = h - pad + 20.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use harman_tokenizer::shard;

    fn shards(dir: &Path, vocab: u32) -> (Vec<PathBuf>, Vec<PathBuf>) {
        // A repeating pattern the model can learn.
        let ids: Vec<u32> = (0..4000u32).map(|i| (i * 7 + i / 13) % vocab).collect();
        let write = |name: &str, ids: &[u32]| {
            let mut bytes = shard::header(1, ids.len() as u64).to_vec();
            shard::push_tokens(&mut bytes, 1, ids);
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        (
            vec![write("train_000000.bin", &ids[..3000])],
            vec![write("val_000000.bin", &ids[3000..])],
        )
    }

    fn opts(steps: u64) -> TrainOptions {
        TrainOptions {
            batch_size: 2,
            seq_len: 8,
            total_batch_tokens: 32,
            steps,
            schedule: Schedule {
                lr: 3e-3,
                min_lr: 3e-4,
                warmup_steps: 2,
                steps,
                decay: crate::schedule::Decay::Cosine,
            },
            val_every: 4,
            val_batches: 2,
            checkpoint_every: 3,
            ..Default::default()
        }
    }

    #[test]
    fn a_resumed_run_logs_the_same_losses_bit_for_bit() {
        let dir = std::env::temp_dir().join(format!("harman-trainer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (train, val) = shards(&dir, 50);
        let cfg = GptConfig::padded(50, 8, 2, 2, 16);
        let full_dir = dir.join("full");
        let mut full =
            Trainer::new(cfg, opts(8), train.clone(), val.clone(), &full_dir, true, 2).unwrap();
        let all = full.run(None, |_| {}).unwrap();
        assert_eq!(all.len(), 8);
        assert!(
            all[7].loss < all[0].loss,
            "it learns: {} -> {}",
            all[0].loss,
            all[7].loss
        );
        assert!(
            all[0].val_loss.is_some() && all[4].val_loss.is_some() && all[1].val_loss.is_none()
        );
        // Stop after 3 steps (the checkpoint at step 3), resume in a new process-like trainer.
        let part_dir = dir.join("part");
        let mut first =
            Trainer::new(cfg, opts(8), train.clone(), val.clone(), &part_dir, true, 1).unwrap();
        let head = first.run(Some(3), |_| {}).unwrap();
        drop(first);
        let mut second =
            Trainer::new(cfg, opts(8), train.clone(), val.clone(), &part_dir, true, 3).unwrap();
        assert_eq!(second.step(), 3);
        let tail = second.run(None, |_| {}).unwrap();
        let resumed: Vec<u32> = head.iter().chain(&tail).map(|l| l.loss.to_bits()).collect();
        let straight: Vec<u32> = all.iter().map(|l| l.loss.to_bits()).collect();
        assert_eq!(resumed, straight);
        assert_eq!(second.params.data, full.params.data);
        assert!(part_dir.join("loss.svg").exists());
        // Other options refuse to resume the same folder.
        let mut other = opts(8);
        other.seed = 1;
        assert!(matches!(
            Trainer::new(cfg, other, train, val, &part_dir, true, 1),
            Err(TrainError::Resume { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn options_errors_name_the_field() {
        let cfg = GptConfig::padded(50, 8, 2, 2, 16);
        let mut o = opts(4);
        o.total_batch_tokens = 20;
        assert_eq!(o.check(&cfg).unwrap_err().field, "total_batch_tokens");
        let mut o = opts(4);
        o.seq_len = 9;
        o.total_batch_tokens = 0;
        assert_eq!(o.check(&cfg).unwrap_err().field, "seq_len");
    }
}
