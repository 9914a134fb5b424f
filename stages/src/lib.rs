//! harman's stages: the [`Stage`] contract every stage implements and one module per stage.
//! The pipeline crate finds stages through [`registry`] and never names one itself.

pub mod dedup;
pub mod eval;
pub mod extract;
pub mod filter;
pub mod ingest;
pub mod parquet_io;
pub mod report;
pub mod stage;
pub mod struct_udf;
pub mod tokenize;
pub mod train;

pub use report::{rejected_total, RejectRow, ReportData, ShardReport};
pub use stage::{
    FinishContext, Finished, FinishedFile, OptionError, Prepared, ShardInput, Stage, StageContext,
    StageError, StageFactory, StageInputs, StageRegistry,
};

/// Every stage kind this build of harman knows.
pub fn registry() -> StageRegistry {
    let mut r = StageRegistry::empty();
    r.register(ingest::KIND, ingest::IngestStage::factory);
    r.register(extract::KIND, extract::ExtractStage::factory);
    r.register(filter::KIND, filter::FilterStage::factory);
    r.register(dedup::KIND, dedup::DedupStage::factory);
    r.register(tokenize::KIND, tokenize::TokenizeStage::factory);
    r.register(train::KIND, train::TrainStage::factory);
    r.register(eval::KIND, eval::EvalStage::factory);
    r
}
