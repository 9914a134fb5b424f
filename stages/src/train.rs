//! The `train` stage: a GPT model trained (`harman-train`; the CPU backend unless the stage's
//! `device` says "cuda" or "auto") on the token shards
//! of its upstream `tokenize` stage, as the DAG's training node. It has no parts: its
//! whole-output step ([`Stage::finish`]) trains and commits the final checkpoint
//! (`checkpoint/model.safetensors`, `optimizer.safetensors`, `state.json`), the step log
//! (`log.jsonl`, and `log.parquet` as the `train_log` table) and `loss.svg`. Intermediate
//! checkpoints go to `_checkpoints/` in the stage folder (a local temporary folder for remote
//! outputs), so a killed run resumes from the last one, bit for bit.

use crate::stage::{
    FinishContext, Finished, OptionError, ShardInput, Stage, StageContext, StageError, StageInputs,
};
use arrow::array::{Float32Array, RecordBatch, UInt64Array};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use harman_train::model::{GptConfig, ModelSpec};
use harman_train::trainer::{Device, TrainOptions, Trainer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

pub const KIND: &str = "train";

/// Options of a `train` stage: `[stages.NAME.model]` and `[stages.NAME.train]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainStageOptions {
    /// `[stages.NAME.model]`: preset, vocab_size, layers, heads, channels, max_seq_len.
    pub model: ModelSpec,
    pub train: TrainOptions,
    /// "cpu" (the default: the same bytes on every machine), "cuda" (fails without a usable
    /// GPU) or "auto" (a GPU where there is one: the outputs then depend on the machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// On the GPU, recompute the GELU outputs in the backward pass (less device memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recompute: Option<bool>,
}

/// The `train` stage.
#[derive(Debug)]
pub struct TrainStage {
    opts: TrainStageOptions,
    device: Device,
    config: GptConfig,
    schema: SchemaRef,
}

impl TrainStage {
    pub fn factory(
        options: &serde_json::Value,
        _context: &StageContext,
    ) -> Result<Arc<dyn Stage>, OptionError> {
        let mut opts: TrainStageOptions = OptionError::parse(options)?;
        // The schedule spans the run unless its steps are given.
        let schedule_steps = options
            .get("train")
            .and_then(|t| t.get("schedule"))
            .and_then(|s| s.get("steps"))
            .is_some();
        if !schedule_steps {
            opts.train.schedule.steps = opts.train.steps;
        }
        Ok(Arc::new(TrainStage::new(opts)?))
    }

    pub fn new(opts: TrainStageOptions) -> Result<TrainStage, OptionError> {
        let config = opts.model.config().map_err(|e| {
            OptionError::field("model", format!("model.{}: {}", e.field, e.message))
        })?;
        opts.train.check(&config).map_err(|e| {
            OptionError::field("train", format!("train.{}: {}", e.field, e.message))
        })?;
        let device = match opts.device.as_deref() {
            None => Device::Cpu,
            Some(d) => d
                .parse()
                .map_err(|e: String| OptionError::field("device", e))?,
        };
        Ok(TrainStage {
            opts,
            device,
            config,
            schema: Arc::new(harman_schemas::train_log_schema()),
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.config
    }
}

/// The shards of one split next to the upstream parts (`train_*.bin` / `val_*.bin`).
fn split_shards(parts: &[ShardInput], split: &str) -> Result<Vec<PathBuf>, StageError> {
    let Some(dir) = parts
        .first()
        .and_then(|p| p.local_path.as_ref())
        .and_then(|p| p.parent())
    else {
        return Err(StageError::Input(
            "the train stage reads its upstream token shards from local files; run the tokenize \
             stage with a local output (or copy its shards locally)"
                .into(),
        ));
    };
    shards_in(dir, split)
}

/// The token shards `{split}_*.bin` in `dir`, in name order.
pub(crate) fn shards_in(dir: &std::path::Path, split: &str) -> Result<Vec<PathBuf>, StageError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| StageError::Input(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with(&format!("{split}_")) && n.ends_with(".bin"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The step lines of a JSONL training log as a `train_log` batch.
fn log_batch(schema: &SchemaRef, jsonl: &str) -> Result<RecordBatch, StageError> {
    let (mut step, mut loss, mut val, mut lr, mut norm, mut tokens) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for line in jsonl.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| StageError::Input(format!("log.jsonl: {e}")))?;
        let Some(l) = v["loss"].as_f64() else {
            continue;
        };
        step.push(v["step"].as_u64().unwrap_or(0));
        loss.push(l as f32);
        val.push(v["val_loss"].as_f64().map(|x| x as f32));
        lr.push(v["lr"].as_f64().unwrap_or(0.0) as f32);
        norm.push(v["grad_norm"].as_f64().unwrap_or(0.0) as f32);
        tokens.push(v["tokens"].as_u64().unwrap_or(0));
    }
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(step)),
            Arc::new(Float32Array::from(loss)),
            Arc::new(Float32Array::from(val)),
            Arc::new(Float32Array::from(lr)),
            Arc::new(Float32Array::from(norm)),
            Arc::new(UInt64Array::from(tokens)),
        ],
    )?)
}

#[async_trait]
impl Stage for TrainStage {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn output_table(&self) -> &'static str {
        harman_schemas::TRAIN_LOG_TABLE
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "options": self.opts, "config": self.config })
    }

    fn inputs(&self) -> StageInputs {
        StageInputs::Upstream
    }

    fn input_table(&self) -> Option<&'static str> {
        Some(harman_schemas::TOKENS_TABLE)
    }

    fn per_shard(&self) -> bool {
        false
    }

    async fn finish(&self, ctx: FinishContext) -> Result<Finished, StageError> {
        let train = split_shards(&ctx.parts, "train")?;
        if train.is_empty() {
            return Err(StageError::Input(
                "the upstream stage wrote no train_*.bin shards".into(),
            ));
        }
        let val = split_shards(&ctx.parts, "val")?;
        let work = match &ctx.local_dir {
            Some(dir) => dir.join("_checkpoints"),
            None => std::env::temp_dir().join(format!(
                "harman-train-{}",
                &ctx.config_hash[..16.min(ctx.config_hash.len())]
            )),
        };
        let (config, opts, threads) = (self.config, self.opts.train.clone(), ctx.threads);
        let device = self.device;
        let recompute = self.opts.recompute.unwrap_or(false);
        let run = tokio::task::spawn_blocking(move || {
            // Checkpoints of another configuration (the stage's options changed): start over.
            if let Some(ckpt) = harman_train::checkpoint::latest(&work) {
                let options = serde_json::to_value(&opts).map_err(|e| e.to_string())?;
                let same = harman_train::checkpoint::read_state(&ckpt).is_ok_and(|state| {
                    harman_train::trainer::resume_mismatch(&state, &config, &options).is_none()
                });
                if !same {
                    tracing::info!(folder = %work.display(), "checkpoints of other options; training from the start");
                    std::fs::remove_dir_all(&work).map_err(|e| e.to_string())?;
                }
            }
            let mut trainer = Trainer::new(config, opts, train, val, &work, true, threads)
                .map_err(|e| e.to_string())?
                .without_logged_timings()
                .with_recompute(recompute);
            let backend = trainer.set_device(device).map_err(|e| e.to_string())?;
            tracing::info!(%backend, "training");
            let from = trainer.step();
            let logs = trainer
                .run(None, |s| {
                    if s.step % 10 == 0 || s.val_loss.is_some() {
                        tracing::info!(
                            step = s.step,
                            loss = s.loss,
                            val_loss = s.val_loss,
                            tokens_per_s = s.tokens_per_s,
                            "training"
                        );
                    }
                })
                .map_err(|e| e.to_string())?;
            let final_dir = harman_train::checkpoint::latest(&work)
                .ok_or_else(|| "no checkpoint after training".to_string())?;
            Ok::<_, String>((work, final_dir, from, logs.len()))
        });
        let (work, final_dir, from, ran) = run
            .await
            .map_err(|e| StageError::Input(format!("training failed: {e}")))?
            .map_err(StageError::Input)?;
        tracing::info!(resumed_from = from, steps_run = ran, "training done");
        let mut finished = Finished::default();
        for name in ["model.safetensors", "optimizer.safetensors", "state.json"] {
            let bytes = std::fs::read(final_dir.join(name))
                .map_err(|e| StageError::Input(format!("{}: {e}", final_dir.display())))?;
            finished
                .files
                .push(ctx.put(&format!("checkpoint/{name}"), bytes, 0).await?);
        }
        let log = std::fs::read_to_string(work.join("log.jsonl"))
            .map_err(|e| StageError::Input(format!("log.jsonl: {e}")))?;
        let batch = log_batch(&self.schema, &log)?;
        let steps = batch.num_rows() as u64;
        finished.files.push(
            ctx.put_parquet(
                "log.parquet",
                &batch,
                parquet::basic::Compression::UNCOMPRESSED,
            )
            .await?,
        );
        finished
            .files
            .push(ctx.put("log.jsonl", log.into_bytes(), 0).await?);
        let svg = std::fs::read(work.join("loss.svg"))
            .map_err(|e| StageError::Input(format!("loss.svg: {e}")))?;
        finished.files.push(ctx.put("loss.svg", svg, 0).await?);
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(final_dir.join("state.json"))
                .map_err(|e| StageError::Input(format!("state.json: {e}")))?,
        )
        .map_err(|e| StageError::Input(format!("state.json: {e}")))?;
        finished.counters.insert("steps".into(), steps);
        finished
            .counters
            .insert("tokens".into(), state["tokens"].as_u64().unwrap_or(0));
        finished
            .counters
            .insert("parameters".into(), self.config.num_parameters() as u64);
        Ok(finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_the_field() {
        let bad = |json: serde_json::Value| {
            TrainStage::factory(&json, &StageContext::default())
                .err()
                .and_then(|e| e.field)
        };
        assert_eq!(
            bad(serde_json::json!({"model": {"preset": "huge"}})).as_deref(),
            Some("model")
        );
        assert_eq!(
            bad(serde_json::json!({"model": {"heads": 5}})).as_deref(),
            Some("model")
        );
        assert_eq!(
            bad(serde_json::json!({"train": {"total_batch_tokens": 7}})).as_deref(),
            Some("train")
        );
        assert_eq!(
            bad(serde_json::json!({"epochs": 2})).as_deref(),
            Some("epochs")
        );
        assert_eq!(
            bad(serde_json::json!({"device": "tpu"})).as_deref(),
            Some("device")
        );
        for device in ["cpu", "cuda", "auto"] {
            assert!(
                TrainStage::factory(
                    &serde_json::json!({"device": device}),
                    &StageContext::default()
                )
                .is_ok(),
                "{device}"
            );
        }
        let ok = TrainStage::factory(
            &serde_json::json!({"train": {"steps": 7}}),
            &StageContext::default(),
        )
        .unwrap();
        assert_eq!(ok.params()["options"]["train"]["schedule"]["steps"], 7);
    }
}
