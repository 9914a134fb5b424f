//! The contract every stage implements, and the registry the pipeline looks stage kinds up
//! in. A stage is a DataFusion extension: for each shard it returns a DataFusion plan (a
//! `DataFrame`) whose output the engine writes as one Parquet file; the engine never knows
//! which stage it runs.

use crate::report::ShardReport;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionContext};
use object_store::path::Path;
use object_store::ObjectStore;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// One input shard of a stage: a file of a source dataset, or one output part of the
/// upstream stage.
#[derive(Debug, Clone)]
pub struct ShardInput {
    /// Position in the stage's sorted shard list; names the output part.
    pub index: usize,
    /// The shard's URL as written in manifests (no credentials).
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub size: u64,
    /// The file on this machine, for `file://` shards (read without the object-store layer).
    pub local_path: Option<PathBuf>,
    /// The ingest stage the shard's rows come from (followed back through the upstream
    /// manifests); None for a source file.
    pub origin: Option<String>,
}

/// Where a stage's shards come from.
#[derive(Debug, Clone, PartialEq)]
pub enum StageInputs {
    /// URLs or globs of source files (ingest).
    Urls(Vec<String>),
    /// The output parts of the stages it depends on.
    Upstream,
}

/// Errors a stage reports.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Input(String),
}

/// A stage option that is wrong: which field, and what would be valid.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OptionError {
    /// The option's key inside the stage's table, when known.
    pub field: Option<String>,
    pub message: String,
}

impl OptionError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        OptionError {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// Deserialize a stage's options, naming the offending field on error.
    pub fn parse<T: serde::de::DeserializeOwned>(
        options: &serde_json::Value,
    ) -> Result<T, OptionError> {
        serde_path_to_error::deserialize(options.clone()).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // Unknown keys are reported by serde inside the message, not in the path.
            let field = if inner.starts_with("unknown field") {
                inner.split('`').nth(1).map(str::to_string)
            } else {
                path.split(['.', '['])
                    .next()
                    .filter(|p| !p.is_empty() && *p != "?")
                    .map(str::to_string)
            };
            OptionError {
                field,
                message: inner,
            }
        })
    }
}

/// The contract of a stage.
#[async_trait]
pub trait Stage: Send + Sync + fmt::Debug {
    /// The `kind` this stage is registered under.
    fn kind(&self) -> &'static str;

    /// The name of the table it writes (a schema in `harman-schemas`).
    fn output_table(&self) -> &'static str;

    /// Arrow schema of its output.
    fn output_schema(&self) -> SchemaRef;

    /// Its resolved parameters, recorded in the manifest and hashed into the config hash.
    fn params(&self) -> serde_json::Value;

    /// Where its shards come from.
    fn inputs(&self) -> StageInputs;

    /// The table an upstream-reading stage expects its `depends_on` stages to write (checked
    /// when the config is loaded); None = any.
    fn input_table(&self) -> Option<&'static str> {
        None
    }

    /// The plan producing this stage's output for one shard. What the shard's reading
    /// observes (counters, rejects, input hash) goes into `report`, complete once the plan's
    /// stream has ended. Every stage with parts implements it; the default is the refusal of
    /// one without ([`Stage::per_shard`] false).
    async fn plan_shard(
        &self,
        _ctx: &SessionContext,
        shard: &ShardInput,
        _report: Arc<ShardReport>,
    ) -> Result<DataFrame, StageError> {
        Err(StageError::Input(format!(
            "the {} stage has no parts (asked for {})",
            self.kind(),
            shard.url
        )))
    }

    /// Whether a shard's output depends on every shard (dedup). The executor then calls
    /// [`Stage::prepare`] with all shards before any shard's plan, and a change to any input
    /// recomputes every shard.
    fn global(&self) -> bool {
        false
    }

    /// Global stages: the work across all shards, run before [`Stage::plan_shard`], with
    /// `threads` workers. It keeps what the shard plans need and returns the tables to write
    /// next to the parts and the counters to record.
    async fn prepare(
        &self,
        _shards: &[ShardInput],
        _threads: usize,
    ) -> Result<Prepared, StageError> {
        Ok(Prepared::default())
    }

    /// Whether the stage writes one output part per input shard (the default). A stage that
    /// does not (`train`) has only its whole-output step, which gets the stage's inputs.
    fn per_shard(&self) -> bool {
        true
    }

    /// Whether the stage writes files made from all its committed parts once every part is
    /// committed ([`Stage::finish`]; the tokenize stage's training shards). A stage without
    /// parts always does: its whole-output step is all it has.
    fn finishes(&self) -> bool {
        !self.per_shard()
    }

    /// The whole-output step of a finishing stage: reads the stage's own committed parts
    /// (in order) and writes its files under `ctx.staging`; the executor moves them into the
    /// stage folder, lists them in the manifest and skips the step on a rerun while the parts
    /// and the files are unchanged.
    async fn finish(&self, _ctx: FinishContext) -> Result<Finished, StageError> {
        Ok(Finished::default())
    }

    /// Files written next to the stage manifest once every shard is committed (name,
    /// content), made from the stage's summed counters: e.g. the filter stage's funnel plot.
    fn summary_files(&self, _counters: &BTreeMap<String, u64>) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }
}

/// What a global stage's [`Stage::prepare`] produced.
#[derive(Default)]
pub struct Prepared {
    /// Tables written next to the parts by file name (e.g. `clusters.parquet`), listed with
    /// the manifest's reports; each stream yields the same batches on every run.
    pub tables: Vec<(String, SchemaRef, SendableRecordBatchStream)>,
    /// Counters recorded in the manifest next to the shards' counters.
    pub counters: BTreeMap<String, u64>,
    /// Seconds per phase, for logs and benchmarks (never in the manifest).
    pub timings: Vec<(String, f64)>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field(
                "tables",
                &self.tables.iter().map(|t| &t.0).collect::<Vec<_>>(),
            )
            .field("counters", &self.counters)
            .field("timings", &self.timings)
            .finish()
    }
}

/// What [`Stage::finish`] works with.
#[derive(Debug, Clone)]
pub struct FinishContext {
    pub store: Arc<dyn ObjectStore>,
    /// The folder to write the files into (the executor commits them from there).
    pub staging: Path,
    /// The stage's committed output parts, in order (a stage without parts: its inputs).
    pub parts: Vec<ShardInput>,
    pub threads: usize,
    /// The stage folder on this machine, for local outputs.
    pub local_dir: Option<PathBuf>,
    /// The stage's config hash (names caches that belong to this configuration).
    pub config_hash: String,
}

impl FinishContext {
    /// Writes one file into the staging folder and describes it (`rows`: rows of a table,
    /// tokens of a token shard, else 0).
    pub async fn put(
        &self,
        name: &str,
        bytes: Vec<u8>,
        rows: u64,
    ) -> Result<FinishedFile, StageError> {
        use object_store::ObjectStoreExt;
        use sha2::Digest;
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        let len = bytes.len() as u64;
        self.store
            .put(
                &Path::from(format!("{}/{name}", self.staging)),
                object_store::PutPayload::from(bytes),
            )
            .await
            .map_err(|e| StageError::Input(format!("cannot write {name}: {e}")))?;
        Ok(FinishedFile {
            name: name.to_string(),
            rows,
            bytes: len,
            sha256,
        })
    }

    /// Writes `batch` as one Parquet file (`compression`, written by "harman") into the
    /// staging folder and describes it, its rows counted.
    pub async fn put_parquet(
        &self,
        name: &str,
        batch: &arrow::record_batch::RecordBatch,
        compression: parquet::basic::Compression,
    ) -> Result<FinishedFile, StageError> {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(compression)
            .set_created_by("harman".into())
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props))
                .map_err(|e| StageError::Input(format!("{name}: {e}")))?;
        writer
            .write(batch)
            .and_then(|_| writer.close().map(|_| ()))
            .map_err(|e| StageError::Input(format!("{name}: {e}")))?;
        self.put(name, bytes, batch.num_rows() as u64).await
    }
}

/// A file [`Stage::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedFile {
    /// Name inside the staging (and then the stage) folder.
    pub name: String,
    /// Rows (tables) or tokens (token shards).
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// What [`Stage::finish`] produced.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    pub files: Vec<FinishedFile>,
    /// Counters recorded in the manifest next to the parts' counters.
    pub counters: BTreeMap<String, u64>,
}

/// What a stage factory knows besides the stage's options.
#[derive(Debug, Clone, Default)]
pub struct StageContext {
    /// The folder relative paths in the config are resolved against (the config's folder).
    pub base_dir: PathBuf,
}

impl StageContext {
    /// A path option as written in the config, resolved against the config's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = std::path::Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Builds a stage from its options (the stage's TOML table as JSON, minus the common keys).
pub type StageFactory =
    fn(&serde_json::Value, &StageContext) -> Result<Arc<dyn Stage>, OptionError>;

/// Stage kinds by name.
#[derive(Clone)]
pub struct StageRegistry {
    factories: BTreeMap<&'static str, StageFactory>,
}

impl fmt::Debug for StageRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl StageRegistry {
    pub fn empty() -> Self {
        StageRegistry {
            factories: BTreeMap::new(),
        }
    }

    pub fn register(&mut self, kind: &'static str, factory: StageFactory) {
        self.factories.insert(kind, factory);
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    pub fn build(
        &self,
        kind: &str,
        options: &serde_json::Value,
        context: &StageContext,
    ) -> Option<Result<Arc<dyn Stage>, OptionError>> {
        self.factories.get(kind).map(|f| f(options, context))
    }
}
