//! `harman eval`: a checkpoint evaluated on held-out token shards, raw text and
//! multiple-choice benchmarks (harman-eval), written as `eval.json` + `report.md` (+ the
//! training loss curve), and `harman eval compare`, several runs side by side.

use super::train::{checkpoint_dir, expand};
use super::{options_error, Failure};
use anyhow::Context;
use harman_eval::report::{compare, EvalReport};
use harman_eval::run::{evaluate, EvalSpec};
use harman_tokenizer::Tokenizer;
use harman_train::checkpoint;
use harman_train::trainer::Device;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// A checkpoint (step_NNNNNNNN/), a training output folder (its latest) or a DAG train
    /// stage's folder (its checkpoint/).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Held-out token shards (paths or globs): loss, perplexity, bits per byte.
    #[arg(long, num_args = 1..)]
    pub val: Vec<String>,
    /// HellaSwag JSONL(.gz).
    #[arg(long)]
    pub hellaswag: Option<PathBuf>,
    /// LAMBADA JSONL (OpenAI's version: {"text": …}).
    #[arg(long)]
    pub lambada: Option<PathBuf>,
    /// A multiple-choice JSONL set as NAME=PATH ({question, choices, answer}); repeatable.
    #[arg(long = "mc", value_name = "NAME=PATH")]
    pub multiple_choice: Vec<String>,
    /// A raw text dataset as NAME=PATH (.txt, or JSONL with "text"); repeatable.
    #[arg(long, value_name = "NAME=PATH")]
    pub text: Vec<String>,
    /// At most N items per task (documents per text set).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Further options as TOML (keys of the eval stage: batch_size, device, max_tokens,
    /// prompts, max_new_tokens, temperature, top_k, seed).
    #[arg(long, default_value = "")]
    pub options: String,
    /// `gpt2` or the tokenizer.json the model was trained with.
    #[arg(long, default_value = "gpt2")]
    pub tokenizer: String,
    /// Where to write eval.json and report.md (default: the training folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the scoring's forward passes run: cpu (fp32), cuda (the GPU, bf16) or auto
    /// (default: the options' `device`, else cpu).
    #[arg(long)]
    pub device: Option<Device>,
}

#[derive(clap::Subcommand, Debug)]
pub enum EvalCommand {
    /// Several runs' eval.json side by side (folders holding eval.json, or the files).
    Compare {
        #[arg(required = true, num_args = 1..)]
        runs: Vec<PathBuf>,
    },
}

/// A usage error (exit code 2) naming the flag.
fn bad(flag: &str, message: String) -> Failure {
    options_error(message, Some(flag.to_string())).into()
}

fn named(items: &[String], flag: &str) -> Result<Vec<(String, PathBuf)>, Failure> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
                .ok_or_else(|| {
                    bad(
                        flag,
                        format!("--{flag} {s:?}: give NAME=PATH, e.g. arc=arc_easy.jsonl"),
                    )
                })
        })
        .collect()
}

fn read_report(path: &Path) -> anyhow::Result<EvalReport> {
    let file = if path.is_dir() {
        path.join("eval.json")
    } else {
        path.to_path_buf()
    };
    serde_json::from_slice(
        &std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
    )
    .with_context(|| format!("{} is not an eval.json", file.display()))
}

pub fn eval(args: EvalArgs) -> Result<(), Failure> {
    if let Some(EvalCommand::Compare { runs }) = args.command {
        let reports = runs
            .iter()
            .map(|r| read_report(r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        print!("{}", compare(&reports));
        return Ok(());
    }
    let Some(ckpt_arg) = args.checkpoint.clone() else {
        return Err(bad(
            "checkpoint",
            "--checkpoint is required (or `harman eval compare RUN…`)".into(),
        ));
    };
    let mut spec: EvalSpec =
        toml::from_str(&args.options).map_err(|e| bad("options", format!("--options: {e}")))?;
    spec.hellaswag = args.hellaswag.clone().or(spec.hellaswag);
    spec.lambada = args.lambada.clone().or(spec.lambada);
    spec.limit = args.limit.or(spec.limit);
    spec.device = args.device.unwrap_or(spec.device);
    spec.multiple_choice
        .extend(named(&args.multiple_choice, "mc")?);
    spec.text.extend(named(&args.text, "text")?);
    for (name, path) in spec.files() {
        if !path.exists() {
            return Err(bad(
                &name,
                format!("{name}: {} does not exist", path.display()),
            ));
        }
    }
    let dir = checkpoint_dir(&ckpt_arg)?;
    let loaded = checkpoint::load(&dir)?;
    let tok = Tokenizer::load(&args.tokenizer)?;
    let val = expand(&args.val)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let run_name = ckpt_arg
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| ckpt_arg.display().to_string());
    let started = std::time::Instant::now();
    let report = evaluate(
        &loaded.params,
        &tok,
        &spec,
        &val,
        &run_name,
        loaded.state.step,
        threads,
    )?;
    let out = args.out.clone().unwrap_or_else(|| {
        if ckpt_arg.join("log.jsonl").exists() || !ckpt_arg.join("state.json").exists() {
            ckpt_arg.clone()
        } else {
            dir.clone()
        }
    });
    std::fs::create_dir_all(&out)?;
    let log = [ckpt_arg.join("log.jsonl"), dir.join("../log.jsonl")]
        .into_iter()
        .find(|p| p.exists())
        .map(std::fs::read_to_string)
        .transpose()?;
    for (name, bytes) in report.files(log.as_deref()) {
        std::fs::write(out.join(name), bytes)?;
    }
    for (name, v, chance) in report.rows() {
        match chance {
            Some(c) => println!("{name:32} {v:10.4}   (chance {c:.4})"),
            None => println!("{name:32} {v:10.4}"),
        }
    }
    println!(
        "wrote {} and {} in {:.1} s",
        out.join("eval.json").display(),
        out.join("report.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
