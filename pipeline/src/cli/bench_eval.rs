//! `harman bench eval`: scoring throughput of the eval stage's log-likelihood requests
//! (HellaSwag items, four choices each, as lm-evaluation-harness builds them) on a model of
//! a preset size with GPT-2 initialization (speed does not depend on the weights): items/s
//! and scored requests' tokens/s, at the given batch size and threads, on the CPU or
//! (`--device cuda`) the GPU.

use super::Failure;
use anyhow::anyhow;
use harman_eval::loglik::{encode_pair, Scorer};
use harman_eval::tasks;
use harman_tokenizer::Tokenizer;
use harman_train::model::Params;
use harman_train::trainer::Device;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct EvalBenchArgs {
    #[command(flatten)]
    pub model: super::train::ModelArgs,
    /// HellaSwag JSONL(.gz) (default: the bundled 40-item sample, or the full validation set
    /// in ../shared/data/hellaswag when present).
    #[arg(long)]
    pub hellaswag: Option<PathBuf>,
    /// Items to score.
    #[arg(long, default_value_t = 40)]
    pub items: usize,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the forward passes run: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
}

pub fn bench_eval(args: EvalBenchArgs) -> Result<(), Failure> {
    let cfg = args
        .model
        .spec()
        .config()
        .map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
    let params = Params::init(cfg, 0);
    let tok = Tokenizer::gpt2();
    let path = args.hellaswag.clone().unwrap_or_else(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let full = root.join("../shared/data/hellaswag/hellaswag_val.preprocessed.jsonl.gz");
        if full.exists() {
            full
        } else {
            root.join("tests/data/eval/hellaswag_sample.jsonl")
        }
    });
    let items = tasks::hellaswag(&path, Some(args.items))?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut scorer = Scorer::new(&params, &tok, args.batch, threads);
    let backend = scorer.on_device(args.device)?;
    let tokens: usize = items
        .iter()
        .flat_map(|it| {
            it.choices.iter().map(|c| {
                let (a, b) = encode_pair(&tok, &it.context, &format!(" {c}"));
                (a.len() + b.len()).min(cfg.max_seq_len + 1) - 1
            })
        })
        .sum();
    let t0 = Instant::now();
    let r = tasks::score_choices(&scorer, &items)?;
    let s = t0.elapsed().as_secs_f64();
    println!(
        "model {} layers × {} channels, {} positions ({:.1}M parameters); {} HellaSwag items from {}; batch {}; {backend}",
        cfg.num_layers,
        cfg.channels,
        cfg.max_seq_len,
        cfg.num_parameters() as f64 / 1e6,
        r.items,
        path.display(),
        args.batch
    );
    println!(
        "{:.2} items/s, {:.0} tokens/s through the model ({:.1} s; acc {:.3}, acc_norm {:.3})",
        r.items as f64 / s,
        tokens as f64 / s,
        s,
        r.acc,
        r.acc_norm
    );
    Ok(())
}
