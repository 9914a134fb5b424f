//! The `train_log` table the train stage writes (`log.parquet`): the loss curve of a run.

use crate::with_table_metadata;
use arrow::datatypes::{DataType, Field, Schema};

pub const TRAIN_LOG_TABLE: &str = "train_log";
/// Version 1: first release.
pub const TRAIN_LOG_VERSION: u32 = 1;

/// Columns of `train_log` v1 (`log.parquet` of the train stage), one row per optimizer step.
///
/// | column | meaning |
/// |---|---|
/// | `step` | optimizer steps done (from 1) |
/// | `loss` | mean training loss of the step's batch (nats per token) |
/// | `val_loss` | validation loss measured before the step, when one was |
/// | `lr` | learning rate of the step |
/// | `grad_norm` | global gradient norm before clipping |
/// | `tokens` | tokens trained on so far |
pub fn train_log_schema() -> Schema {
    with_table_metadata(
        vec![
            Field::new("step", DataType::UInt64, false),
            Field::new("loss", DataType::Float32, false),
            Field::new("val_loss", DataType::Float32, true),
            Field::new("lr", DataType::Float32, false),
            Field::new("grad_norm", DataType::Float32, false),
            Field::new("tokens", DataType::UInt64, false),
        ],
        TRAIN_LOG_TABLE,
        TRAIN_LOG_VERSION,
    )
}
