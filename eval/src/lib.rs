//! Evaluation of a trained model, the DAG's final stage: log-likelihood scoring of
//! (context, continuation) requests exactly as lm-evaluation-harness builds and scores them
//! ([`loglik`]), the tasks that use it — HellaSwag, LAMBADA and a generic multiple-choice
//! JSONL format ([`tasks`]) — intrinsic metrics on token shards and raw text ([`intrinsic`]),
//! and the `eval.json` + Markdown report with side-by-side comparison of runs ([`report`]).

pub mod intrinsic;
pub mod loglik;
pub mod report;
pub mod run;
pub mod tasks;

/// Why an evaluation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error(transparent)]
    Batch(#[from] harman_train::cpu::BatchError),
    #[error(transparent)]
    Tokenizer(#[from] harman_tokenizer::TokenizerError),
    #[error(transparent)]
    Data(#[from] harman_train::data::DataError),
    #[error("GPU: {0}")]
    Gpu(#[from] harman_kernels::cuda::GpuError),
}

pub(crate) fn input_err(path: &std::path::Path, message: impl ToString) -> EvalError {
    EvalError::Input {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}
