//! The `eval` stage, the DAG's last node: the final checkpoint of its upstream `train` stage
//! evaluated (harman-eval) on the held-out shards of its upstream `tokenize` stage and on
//! the datasets its options name (HellaSwag, LAMBADA, generic multiple-choice JSONL, raw
//! text). It has no parts: its whole-output step writes `eval.json` (the report),
//! `report.md` (the human summary with the loss curve and sample generations), `loss.svg`
//! and `results.parquet` (the `eval_results` table). Everything is computed in a fixed
//! order, so reruns are byte-identical: on the CPU by default, or with `device = "cuda"`
//! (or `"auto"`) the scoring's forward passes on the GPU (bf16, recorded in the report).

use crate::stage::{
    FinishContext, Finished, OptionError, ShardInput, Stage, StageContext, StageError, StageInputs,
};
use arrow::array::{Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use harman_eval::run::{evaluate, EvalSpec};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const KIND: &str = "eval";

/// The `eval` stage.
#[derive(Debug)]
pub struct EvalStage {
    /// The options as given (paths as written, so the config hash does not depend on where
    /// the config lives).
    given: EvalSpec,
    /// The same with paths resolved against the config's folder.
    spec: EvalSpec,
    /// sha256 of every dataset file (so that new data means a new evaluation).
    files: BTreeMap<String, String>,
    tokenizer: String,
    schema: SchemaRef,
}

impl EvalStage {
    pub fn factory(
        options: &serde_json::Value,
        context: &StageContext,
    ) -> Result<Arc<dyn Stage>, OptionError> {
        let mut options = options.clone();
        let tokenizer = match options.as_object_mut().and_then(|o| o.remove("tokenizer")) {
            Some(serde_json::Value::String(t)) => t,
            Some(_) => {
                return Err(OptionError::field(
                    "tokenizer",
                    "`gpt2` or the path of a tokenizer.json",
                ))
            }
            None => "gpt2".to_string(),
        };
        let given: EvalSpec = OptionError::parse(&options)?;
        let spec = given.resolved(|p| context.resolve(&p.to_string_lossy()));
        let mut files = BTreeMap::new();
        for (name, path) in spec.files() {
            let bytes = std::fs::read(&path).map_err(|e| {
                OptionError::field(
                    name.split('.').next().unwrap_or(&name),
                    format!("{name}: cannot read {}: {e}", path.display()),
                )
            })?;
            files.insert(name, hex::encode(Sha256::digest(&bytes)));
        }
        let tokenizer = if tokenizer == "gpt2" {
            tokenizer
        } else {
            context.resolve(&tokenizer).display().to_string()
        };
        Ok(Arc::new(EvalStage {
            given,
            spec,
            files,
            tokenizer,
            schema: Arc::new(harman_schemas::eval_results_schema()),
        }))
    }
}

/// The local path of the input whose path ends with `suffix`.
fn input_ending(parts: &[ShardInput], suffix: &str) -> Option<PathBuf> {
    parts
        .iter()
        .find(|p| p.path.as_ref().ends_with(suffix))
        .and_then(|p| p.local_path.clone())
}

/// `val_*.bin` next to the upstream token parts.
fn val_shards(parts: &[ShardInput]) -> Result<Vec<PathBuf>, StageError> {
    let Some(dir) = parts
        .iter()
        .find(|p| p.path.as_ref().ends_with(".parquet") && p.path.as_ref().contains("part-"))
        .and_then(|p| p.local_path.as_ref())
        .and_then(|p| p.parent().map(Path::to_path_buf))
    else {
        return Ok(Vec::new());
    };
    crate::train::shards_in(&dir, "val")
}

fn results_batch(
    schema: &SchemaRef,
    report: &harman_eval::report::EvalReport,
) -> Result<RecordBatch, StageError> {
    let rows = report.table();
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(vec![report.step; rows.len()])),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.4))),
        ],
    )?)
}

#[async_trait]
impl Stage for EvalStage {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn output_table(&self) -> &'static str {
        harman_schemas::EVAL_RESULTS_TABLE
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "spec": self.given, "files": self.files, "tokenizer": self.tokenizer })
    }

    fn inputs(&self) -> StageInputs {
        StageInputs::Upstream
    }

    fn per_shard(&self) -> bool {
        false
    }

    async fn finish(&self, ctx: FinishContext) -> Result<Finished, StageError> {
        let ckpt_part = ctx
            .parts
            .iter()
            .find(|p| p.path.as_ref().ends_with("checkpoint/model.safetensors"));
        let ckpt = ckpt_part
            .and_then(|p| p.local_path.as_ref())
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or_else(|| {
                StageError::Input(
                    "no checkpoint among the inputs: an eval stage depends on a train stage \
                     (and, for held-out loss, the tokenize stage before it), with local outputs"
                        .into(),
                )
            })?;
        // The train stage's name: the folder above its checkpoint/.
        let run_name = ckpt_part
            .and_then(|p| p.path.as_ref().split('/').rev().nth(2).map(str::to_string))
            .unwrap_or_else(|| "model".into());
        let log = input_ending(&ctx.parts, "log.jsonl");
        let val = val_shards(&ctx.parts)?;
        let (spec, tokenizer, threads) = (self.spec.clone(), self.tokenizer.clone(), ctx.threads);
        let job = tokio::task::spawn_blocking(move || {
            let loaded = harman_train::checkpoint::load(&ckpt).map_err(|e| e.to_string())?;
            let tok = harman_tokenizer::Tokenizer::load(&tokenizer).map_err(|e| e.to_string())?;
            let report = evaluate(
                &loaded.params,
                &tok,
                &spec,
                &val,
                &run_name,
                loaded.state.step,
                threads,
            )
            .map_err(|e| e.to_string())?;
            let log = match &log {
                Some(p) => {
                    Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?)
                }
                None => None,
            };
            Ok::<_, String>((report, log))
        });
        let (report, log) = job
            .await
            .map_err(|e| StageError::Input(format!("evaluation failed: {e}")))?
            .map_err(StageError::Input)?;
        let mut finished = Finished::default();
        for (name, bytes) in report.files(log.as_deref()) {
            finished.files.push(ctx.put(name, bytes, 0).await?);
        }
        let batch = results_batch(&self.schema, &report)?;
        let rows = batch.num_rows() as u64;
        finished.files.push(
            ctx.put_parquet(
                "results.parquet",
                &batch,
                parquet::basic::Compression::UNCOMPRESSED,
            )
            .await?,
        );
        finished.counters.insert("metrics".into(), rows);
        for (name, m) in &report.multiple_choice {
            finished
                .counters
                .insert(format!("items.{name}"), m.items as u64);
        }
        if let Some(l) = &report.lambada {
            finished
                .counters
                .insert("items.lambada".into(), l.items as u64);
        }
        for (name, m) in &report.intrinsic {
            finished.counters.insert(format!("tokens.{name}"), m.tokens);
        }
        Ok(finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_the_field() {
        let bad = |json: serde_json::Value| {
            EvalStage::factory(&json, &StageContext::default())
                .err()
                .and_then(|e| e.field)
        };
        assert_eq!(
            bad(serde_json::json!({"tasks": 1})).as_deref(),
            Some("tasks")
        );
        assert_eq!(
            bad(serde_json::json!({"hellaswag": "/no/such/file.jsonl"})).as_deref(),
            Some("hellaswag")
        );
        assert_eq!(
            bad(serde_json::json!({"multiple_choice": {"arc": "/no/such.jsonl"}})).as_deref(),
            Some("multiple_choice")
        );
        assert_eq!(
            bad(serde_json::json!({"device": "tpu"})).as_deref(),
            Some("device")
        );
        assert!(
            EvalStage::factory(&serde_json::json!({"limit": 5}), &StageContext::default()).is_ok()
        );
        for device in ["cpu", "cuda", "auto"] {
            let ok = EvalStage::factory(
                &serde_json::json!({"device": device}),
                &StageContext::default(),
            );
            assert!(ok.is_ok(), "{device}");
        }
    }
}
