//! The training commands: `harman train` (a GPT model on llm.c token shards, CPU backend,
//! resumable from its output folder), `harman generate` (sample from a checkpoint) and
//! `harman export-hf` (a checkpoint in Hugging Face's GPT-2 layout) and `harman export-llmc`
//! (llm.c's `gpt2_124M.bin` format).

use super::{options_error, Failure};
use anyhow::{anyhow, Context};
use harman_tokenizer::Tokenizer;
use harman_train::checkpoint;
use harman_train::generate::{self, Sampling};
use harman_train::model::ModelSpec;
use harman_train::trainer::{TrainOptions, Trainer};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training shards (paths or globs, e.g. out/quickstart/tokens/train_*.bin).
    #[arg(long, required = true, num_args = 1..)]
    pub train: Vec<String>,
    /// Validation shards (paths or globs).
    #[arg(long, num_args = 1..)]
    pub val: Vec<String>,
    /// Output folder: checkpoints (step_NNNNNNNN/, latest), log.jsonl, loss.svg.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Training options as TOML (keys of TrainOptions: batch_size, seq_len,
    /// total_batch_tokens, steps, weight_decay, grad_clip, val_every, val_batches,
    /// checkpoint_every, seed, [schedule] lr/min_lr/warmup_steps/steps/decay).
    #[arg(long, default_value = "")]
    pub options: String,
    /// Stop after this many steps of this invocation (resume later).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Start over even if the output folder has a checkpoint.
    #[arg(long)]
    pub no_resume: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where to train: auto (the GPU when one is usable, else the CPU), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: harman_train::trainer::Device,
    /// On the GPU, recompute the GELU outputs in the backward pass instead of keeping them
    /// (less device memory, a little more time).
    #[arg(long)]
    pub recompute: bool,
}

/// The model flags shared by `train` and `bench train`.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Model preset: tiny, gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Vocabulary size (GPT-2: 50257; a trained tokenizer: its size).
    #[arg(long, default_value_t = 50257)]
    pub vocab_size: usize,
    /// Override the preset's layers / heads / channels / positions.
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub channels: Option<usize>,
    #[arg(long)]
    pub max_seq_len: Option<usize>,
}

impl ModelArgs {
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            preset: self.preset.clone(),
            vocab_size: self.vocab_size,
            layers: self.layers,
            heads: self.heads,
            channels: self.channels,
            max_seq_len: self.max_seq_len,
        }
    }
}

/// Paths and globs (`*`, `?` in the file name) to a sorted list of files.
pub fn expand(patterns: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in patterns {
        let path = PathBuf::from(p);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?', '[']) {
            out.push(path);
            continue;
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let glob = globset::Glob::new(&name)?.compile_matcher();
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.file_name().is_some_and(|n| glob.is_match(n)))
            .collect();
        if found.is_empty() {
            return Err(anyhow!("{p} matches no file"));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

pub fn train(args: TrainArgs, bars: bool) -> Result<(), Failure> {
    let cfg = args.model.spec().config().map_err(|e| {
        options_error(
            format!("--{}: {}", e.field.replace('_', "-"), e.message),
            None,
        )
    })?;
    let opts: TrainOptions = {
        let table: toml::Table = toml::from_str(&args.options)
            .map_err(|e| options_error(format!("not valid TOML: {}", e.message()), None))?;
        let json = serde_json::to_value(&table)?;
        let mut opts: TrainOptions = serde_path_to_error::deserialize(json)
            .map_err(|e| options_error(format!("`{}`: {}", e.path(), e.inner()), None))?;
        // The schedule spans the run unless given.
        if !table
            .get("schedule")
            .and_then(|s| s.as_table())
            .is_some_and(|s| s.contains_key("steps"))
        {
            opts.schedule.steps = opts.steps;
        }
        opts.check(&cfg)
            .map_err(|e| options_error(format!("`{}`: {}", e.field, e.message), None))?;
        opts
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let train = expand(&args.train)?;
    let val = expand(&args.val)?;
    let mut trainer = Trainer::new(
        cfg,
        opts.clone(),
        train,
        val,
        &args.out,
        !args.no_resume,
        threads,
    )?
    .with_recompute(args.recompute);
    eprintln!("{}", trainer.set_device(args.device)?);
    eprintln!(
        "model: {} layers, {} heads, {} channels, {} positions, vocabulary {} (padded {}): {} parameters; \
         {} tokens per step; from step {}",
        cfg.num_layers,
        cfg.num_heads,
        cfg.channels,
        cfg.max_seq_len,
        cfg.vocab_size,
        cfg.padded_vocab_size,
        cfg.num_parameters(),
        opts.accumulation()? * opts.batch_size * opts.seq_len,
        trainer.step()
    );
    let bar = if bars {
        let b = indicatif::ProgressBar::new(opts.steps);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(trainer.step());
        Some(b)
    } else {
        None
    };
    let logs = trainer.run(args.stop_after, |s| {
        let line = format!(
            "loss {:.4}{} lr {:.2e} norm {:.3} {:.0} tok/s",
            s.loss,
            s.val_loss.map_or(String::new(), |v| format!(" val {v:.4}")),
            s.lr,
            s.grad_norm,
            s.tokens_per_s
        );
        match &bar {
            Some(b) => {
                b.set_position(s.step);
                b.set_message(line);
            }
            None => tracing::info!(step = s.step, "{line}"),
        }
    })?;
    if let Some(b) = bar {
        b.finish();
    }
    if let Some(last) = logs.last() {
        println!(
            "step {} loss {:.4}; checkpoint {}; log {}",
            last.step,
            last.loss,
            checkpoint::latest(&args.out).map_or_else(String::new, |p| p.display().to_string()),
            args.out.join("log.jsonl").display()
        );
    } else {
        println!(
            "nothing to do: the run in {} is at its last step",
            args.out.display()
        );
    }
    Ok(())
}

/// A checkpoint folder, or a training output folder (its latest checkpoint).
pub fn checkpoint_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if path.join("state.json").exists() {
        return Ok(path.to_path_buf());
    }
    // A DAG train stage's folder holds its final checkpoint in checkpoint/.
    if path.join("checkpoint").join("state.json").exists() {
        return Ok(path.join("checkpoint"));
    }
    checkpoint::latest(path).ok_or_else(|| {
        anyhow!(
            "{} is neither a checkpoint nor a training folder",
            path.display()
        )
    })
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A checkpoint (step_NNNNNNNN/) or a training output folder (its latest).
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// `gpt2` or the tokenizer.json the model was trained with.
    #[arg(long, default_value = "gpt2")]
    pub tokenizer: String,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn generate(args: GenerateArgs) -> Result<(), Failure> {
    let dir = checkpoint_dir(&args.checkpoint)?;
    let loaded = checkpoint::load(&dir)?;
    let tok = Tokenizer::load(&args.tokenizer)?;
    if tok.vocab_size() != loaded.params.config.vocab_size {
        return Err(anyhow!(
            "the tokenizer has {} ids, the model {}: pass the tokenizer it was trained with",
            tok.vocab_size(),
            loaded.params.config.vocab_size
        )
        .into());
    }
    let prompt = tok.encode(&args.prompt);
    let sampling = Sampling {
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
        stop: tok.eot(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ids = generate::generate(&loaded.params, &prompt, &sampling, threads)?;
    let text = tok.decode(
        ids.strip_suffix(&[tok.eot().unwrap_or(u32::MAX)])
            .unwrap_or(&ids),
    )?;
    println!("{}{}", args.prompt, text);
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint (step_NNNNNNNN/) or a training output folder (its latest).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The folder to write config.json and model.safetensors into.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn export_hf(args: ExportArgs) -> Result<(), Failure> {
    let dir = checkpoint_dir(&args.checkpoint)?;
    let loaded = checkpoint::load(&dir)?;
    checkpoint::export_hf(&loaded.params, &args.out)?;
    println!(
        "wrote {} (GPT2LMHeadModel: config.json, model.safetensors) from {}",
        args.out.display(),
        dir.display()
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ExportLlmcArgs {
    /// A checkpoint (step_NNNNNNNN/) or a training output folder (its latest).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The file to write (llm.c reads it as gpt2_124M.bin).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn export_llmc(args: ExportLlmcArgs) -> Result<(), Failure> {
    let dir = checkpoint_dir(&args.checkpoint)?;
    let loaded = checkpoint::load(&dir)?;
    checkpoint::export_llmc(&loaded.params, &args.out)?;
    println!(
        "wrote {} (llm.c fp32 checkpoint, version {}) from {}",
        args.out.display(),
        checkpoint::LLMC_VERSION,
        dir.display()
    );
    Ok(())
}
