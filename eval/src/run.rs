//! One evaluation as the `harman eval` command and the DAG's `eval` stage run it: the
//! datasets named in an [`EvalSpec`] scored against a checkpoint, plus held-out token shards
//! and sample generations, into an [`EvalReport`].

use crate::intrinsic;
use crate::loglik::Scorer;
use crate::report::{EvalReport, Generation};
use crate::tasks;
use crate::EvalError;
use harman_tokenizer::Tokenizer;
use harman_train::generate::{self, Sampling};
use harman_train::model::Params;
use harman_train::trainer::Device;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to evaluate (the `eval` stage's options; paths relative to the config's folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSpec {
    /// HellaSwag JSONL(.gz), preprocessed (`ctx`, `endings`, `label`) or original.
    pub hellaswag: Option<PathBuf>,
    /// LAMBADA JSONL (`text`).
    pub lambada: Option<PathBuf>,
    /// Generic multiple-choice sets by name: JSONL with `question`, `choices`, `answer`.
    pub multiple_choice: BTreeMap<String, PathBuf>,
    /// Raw text datasets by name: a .txt file or JSONL(.gz) with `text`.
    pub text: BTreeMap<String, PathBuf>,
    /// At most this many items per task and documents per text set (all when absent).
    pub limit: Option<usize>,
    /// At most this many tokens of the held-out shards.
    pub max_tokens: Option<u64>,
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Where the scoring's forward passes run: `cpu` (the default: fp32, the same digits on
    /// every machine), `cuda` (the GPU, bf16) or `auto` (the GPU where one is usable). Sample
    /// generations run on the CPU.
    pub device: Device,
    /// Prompts for sample generations.
    pub prompts: Vec<String>,
    pub max_new_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub seed: u64,
}

impl Default for EvalSpec {
    fn default() -> Self {
        EvalSpec {
            hellaswag: None,
            lambada: None,
            multiple_choice: BTreeMap::new(),
            text: BTreeMap::new(),
            limit: None,
            max_tokens: None,
            batch_size: 8,
            device: Device::Cpu,
            prompts: vec!["The".into(), "Once upon a time".into()],
            max_new_tokens: 24,
            temperature: 0.8,
            top_k: 40,
            seed: 1337,
        }
    }
}

impl EvalSpec {
    /// The spec with every path resolved by `resolve`.
    pub fn resolved(&self, resolve: impl Fn(&Path) -> PathBuf) -> EvalSpec {
        let mut s = self.clone();
        s.hellaswag = s.hellaswag.as_deref().map(&resolve);
        s.lambada = s.lambada.as_deref().map(&resolve);
        for p in s.multiple_choice.values_mut() {
            *p = resolve(p);
        }
        for p in s.text.values_mut() {
            *p = resolve(p);
        }
        s
    }

    /// Every dataset file named (for input hashing and existence checks).
    pub fn files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        if let Some(p) = &self.hellaswag {
            out.push(("hellaswag".to_string(), p.clone()));
        }
        if let Some(p) = &self.lambada {
            out.push(("lambada".to_string(), p.clone()));
        }
        for (n, p) in &self.multiple_choice {
            out.push((format!("multiple_choice.{n}"), p.clone()));
        }
        for (n, p) in &self.text {
            out.push((format!("text.{n}"), p.clone()));
        }
        out
    }
}

/// Evaluates `params` on everything `spec` names and on `val_shards` (the forward passes on
/// `spec.device`: where they ran is logged).
pub fn evaluate(
    params: &Params,
    tokenizer: &Tokenizer,
    spec: &EvalSpec,
    val_shards: &[PathBuf],
    run: &str,
    step: u64,
    threads: usize,
) -> Result<EvalReport, EvalError> {
    let mut scorer = Scorer::new(params, tokenizer, spec.batch_size, threads);
    let backend = scorer.on_device(spec.device)?;
    tracing::info!("eval: {backend}");
    let mut report = EvalReport {
        run: run.to_string(),
        step,
        parameters: params.config.num_parameters() as u64,
        config: serde_json::to_value(params.config).unwrap_or_default(),
        device: if scorer.on_gpu() { "cuda" } else { "cpu" }.into(),
        intrinsic: BTreeMap::new(),
        multiple_choice: BTreeMap::new(),
        lambada: None,
        generations: Vec::new(),
    };
    if !val_shards.is_empty() {
        report.intrinsic.insert(
            "val".into(),
            intrinsic::on_shards(&scorer, val_shards, spec.max_tokens)?,
        );
    }
    for (name, path) in &spec.text {
        report
            .intrinsic
            .insert(name.clone(), intrinsic::on_text(&scorer, path, spec.limit)?);
    }
    if let Some(p) = &spec.hellaswag {
        let items = tasks::hellaswag(p, spec.limit)?;
        report
            .multiple_choice
            .insert("hellaswag".into(), tasks::score_choices(&scorer, &items)?);
    }
    for (name, p) in &spec.multiple_choice {
        let items = tasks::multiple_choice(p, spec.limit)?;
        report
            .multiple_choice
            .insert(name.clone(), tasks::score_choices(&scorer, &items)?);
    }
    if let Some(p) = &spec.lambada {
        let requests = tasks::lambada(p, spec.limit)?;
        report.lambada = Some(tasks::score_lambada(&scorer, &requests)?);
    }
    for prompt in &spec.prompts {
        let ids = tokenizer.encode(prompt);
        let sampling = Sampling {
            max_new_tokens: spec.max_new_tokens,
            temperature: spec.temperature,
            top_k: spec.top_k,
            seed: spec.seed,
            stop: tokenizer.eot(),
        };
        let out = generate::generate(params, &ids, &sampling, threads)?;
        let bytes = tokenizer.decode_bytes(
            out.strip_suffix(&[tokenizer.eot().unwrap_or(u32::MAX)])
                .unwrap_or(&out),
        )?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        report.generations.push(Generation {
            prompt: prompt.clone(),
            text,
        });
    }
    Ok(report)
}
