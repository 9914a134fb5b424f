//! The `eval_results` table the eval stage writes (`results.parquet`): one row per metric.

use crate::with_table_metadata;
use arrow::datatypes::{DataType, Field, Schema};

pub const EVAL_RESULTS_TABLE: &str = "eval_results";
/// Version 1: first release.
pub const EVAL_RESULTS_VERSION: u32 = 1;

/// Columns of `eval_results` v1, one row per metric of one checkpoint.
///
/// | column | meaning |
/// |---|---|
/// | `step` | the checkpoint's optimizer step |
/// | `task` | `val`, a raw text set's name, `hellaswag`, a multiple-choice set's name, `lambada` |
/// | `metric` | `loss`, `perplexity`, `bits_per_byte`, `acc`, `acc_norm` |
/// | `value` | the metric |
/// | `chance` | a uniform guess's expected value, for accuracies that have one |
/// | `items` | items (tasks) or tokens (loss metrics) it is measured on |
pub fn eval_results_schema() -> Schema {
    with_table_metadata(
        vec![
            Field::new("step", DataType::UInt64, false),
            Field::new("task", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
            Field::new("chance", DataType::Float64, true),
            Field::new("items", DataType::UInt64, false),
        ],
        EVAL_RESULTS_TABLE,
        EVAL_RESULTS_VERSION,
    )
}
