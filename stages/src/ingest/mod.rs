//! The `ingest` stage: reads source shards (WARC/WET/WAT/ARC, JSONL, Parquet) from object
//! storage and produces the `documents` table, one output part per shard, plus the rejects of
//! every record that could not be read. In DataFusion terms it is a table source: each shard
//! is a streaming partition.

mod builder;
mod chunk;
mod http;
mod inflate;
mod jsonl;
mod parquet_input;
mod source;
mod stream;
mod warc;

pub use builder::{document_id, DocRow, DocumentBatchBuilder, DocumentSink, SinkOptions};
pub use jsonl::JsonlFields;
pub use source::{ByteSource, Compression};
pub use stream::DecodedStream;
pub use warc::{read_records, Container, RawRecord, ReadError, RecordSink, Stop, WarcReadOptions};

use crate::report::{ReportData, ShardReport};
use crate::stage::{OptionError, ShardInput, Stage, StageError, StageInputs};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The kind name in configs.
pub const KIND: &str = "ingest";

/// WARC-Types that can be named in `record_types`.
pub const KNOWN_RECORD_TYPES: [&str; 9] = [
    "response",
    "resource",
    "conversion",
    "metadata",
    "request",
    "revisit",
    "warcinfo",
    "continuation",
    "unknown",
];

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// From each shard's name: `.warc`, `.arc`, `.wet`, `.wat` (optionally `.gz`/`.zst`),
    /// `.jsonl`/`.json`/`.ndjson` (optionally `.gz`/`.zst`), `.parquet`.
    #[default]
    Auto,
    Warc,
    Jsonl,
    Parquet,
}

impl InputFormat {
    /// The format of a shard named `url`, if its name tells.
    pub fn from_name(url: &str) -> Option<InputFormat> {
        let name = url.rsplit('/').next().unwrap_or(url).to_ascii_lowercase();
        let mut stem = name.as_str();
        for ext in [".gz", ".zst", ".zstd"] {
            if let Some(s) = stem.strip_suffix(ext) {
                stem = s;
                break;
            }
        }
        let ext = stem.rsplit('.').next().unwrap_or("");
        match ext {
            "warc" | "arc" | "wet" | "wat" => Some(InputFormat::Warc),
            "jsonl" | "json" | "ndjson" => Some(InputFormat::Jsonl),
            "parquet" => Some(InputFormat::Parquet),
            _ => None,
        }
    }

    /// The concrete format of a shard under this setting.
    pub fn resolve(self, url: &str) -> Result<InputFormat, String> {
        match self {
            InputFormat::Auto => InputFormat::from_name(url).ok_or_else(|| {
                format!(
                    "cannot tell the format of {url} from its name; set format = \"warc\", \"jsonl\" or \"parquet\" in the stage"
                )
            }),
            f => Ok(f),
        }
    }
}

fn default_record_types() -> Vec<String> {
    ["response", "resource", "conversion", "metadata"]
        .map(String::from)
        .to_vec()
}
fn default_max_record_bytes() -> u64 {
    32 << 20
}
fn default_text_field() -> String {
    "text".into()
}
fn default_true() -> bool {
    true
}
fn default_batch_rows() -> usize {
    4096
}
fn default_batch_bytes() -> usize {
    8 << 20
}

/// Options of an `ingest` stage (its TOML table).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestOptions {
    /// URLs, paths or globs of the shards (`s3://bucket/crawl/*/warc/*.warc.gz`).
    pub inputs: Vec<String>,
    #[serde(default)]
    pub format: InputFormat,
    /// WARC-Types turned into documents; the others are counted as skipped.
    #[serde(default = "default_record_types")]
    pub record_types: Vec<String>,
    /// Largest record (WARC block, decoded HTTP body, JSONL line) accepted.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// JSONL field / Parquet column holding the text (dotted paths reach into objects).
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// JSONL field / Parquet column copied to `warc_record_id`.
    #[serde(default)]
    pub id_field: Option<String>,
    /// Use the `id_field` value as the document's `id` (ids must then be unique), instead of
    /// the default: a hash of the shard URL and the record's position.
    #[serde(default)]
    pub ids_from_field: bool,
    /// JSONL field / Parquet column copied to `url`.
    #[serde(default)]
    pub url_field: Option<String>,
    /// JSONL fields / Parquet columns kept in `meta` (Pile: `meta.pile_set_name`).
    #[serde(default)]
    pub meta_fields: Vec<String>,
    /// Undo HTTP chunked transfer encoding and gzip/deflate/br content encoding.
    #[serde(default = "default_true")]
    pub decode_http: bool,
    /// Rows per record batch (and bound on rows buffered per shard).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Payload bytes per record batch.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
}

impl IngestOptions {
    /// Options with every default and these inputs.
    pub fn with_inputs(inputs: Vec<String>) -> Self {
        IngestOptions {
            inputs,
            format: InputFormat::Auto,
            record_types: default_record_types(),
            max_record_bytes: default_max_record_bytes(),
            text_field: default_text_field(),
            id_field: None,
            ids_from_field: false,
            url_field: None,
            meta_fields: Vec::new(),
            decode_http: true,
            batch_rows: default_batch_rows(),
            batch_bytes: default_batch_bytes(),
        }
    }

    pub fn validate(&self) -> Result<(), OptionError> {
        if self.inputs.is_empty() {
            return Err(OptionError::field(
                "inputs",
                "`inputs` is empty; list at least one URL, path or glob, e.g. inputs = [\"data/*.warc.gz\"]",
            ));
        }
        for t in &self.record_types {
            if !KNOWN_RECORD_TYPES.contains(&t.as_str()) {
                return Err(OptionError::field(
                    "record_types",
                    format!(
                        "unknown record type {t:?}; valid types are {}",
                        KNOWN_RECORD_TYPES.join(", ")
                    ),
                ));
            }
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > i32::MAX as u64 {
            return Err(OptionError::field(
                "max_record_bytes",
                format!(
                    "max_record_bytes = {} is out of range; use a size between 1 and {} bytes (default {})",
                    self.max_record_bytes,
                    i32::MAX,
                    default_max_record_bytes()
                ),
            ));
        }
        if self.text_field.trim().is_empty() {
            return Err(OptionError::field(
                "text_field",
                "text_field is empty; name the field holding the text, e.g. text_field = \"text\"",
            ));
        }
        if self.batch_rows == 0 || self.batch_bytes == 0 {
            let field = if self.batch_rows == 0 {
                "batch_rows"
            } else {
                "batch_bytes"
            };
            return Err(OptionError::field(
                field,
                format!("{field} must be at least 1"),
            ));
        }
        Ok(())
    }

    fn sink_options(&self) -> SinkOptions {
        SinkOptions {
            max_record_bytes: self.max_record_bytes,
            decode_http: self.decode_http,
            batch_rows: self.batch_rows,
            batch_bytes: self.batch_bytes,
        }
    }

    fn fields(&self) -> JsonlFields {
        JsonlFields {
            text: self.text_field.clone(),
            id: self.id_field.clone(),
            url: self.url_field.clone(),
            meta: self.meta_fields.clone(),
            max_line_bytes: self.max_record_bytes,
        }
    }
}

/// The ingest stage.
#[derive(Debug)]
pub struct IngestStage {
    opts: IngestOptions,
    schema: SchemaRef,
}

impl IngestStage {
    pub fn new(opts: IngestOptions) -> Result<Self, OptionError> {
        opts.validate()?;
        Ok(IngestStage {
            opts,
            schema: Arc::new(harman_schemas::documents_schema()),
        })
    }

    pub fn factory(
        options: &serde_json::Value,
        _context: &crate::stage::StageContext,
    ) -> Result<Arc<dyn Stage>, OptionError> {
        let opts: IngestOptions = OptionError::parse(options)?;
        Ok(Arc::new(IngestStage::new(opts)?))
    }

    pub fn options(&self) -> &IngestOptions {
        &self.opts
    }
}

#[async_trait]
impl Stage for IngestStage {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn output_table(&self) -> &'static str {
        harman_schemas::DOCUMENTS_TABLE
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::to_value(&self.opts).unwrap_or(serde_json::Value::Null)
    }

    fn inputs(&self) -> StageInputs {
        StageInputs::Urls(self.opts.inputs.clone())
    }

    async fn plan_shard(
        &self,
        ctx: &SessionContext,
        shard: &ShardInput,
        report: Arc<ShardReport>,
    ) -> Result<DataFrame, StageError> {
        let format = self
            .opts
            .format
            .resolve(&shard.url)
            .map_err(StageError::Input)?;
        let partition = ShardPartition {
            shard: shard.clone(),
            format,
            opts: self.opts.clone(),
            schema: self.schema.clone(),
            report,
        };
        let table = StreamingTable::try_new(self.schema.clone(), vec![Arc::new(partition)])?;
        Ok(ctx.read_table(Arc::new(table))?)
    }
}

/// Counts bytes read into a shared progress counter.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Read one WARC or JSONL shard from `input`, handing batches of `documents` to `emit`.
/// This is the whole ingest of a streamed shard; the stage, `harman inspect` and
/// `harman bench ingest` all call it.
pub fn read_stream<R: Read>(
    input: R,
    url: &str,
    format: InputFormat,
    opts: &IngestOptions,
    emit: &mut dyn FnMut(RecordBatch) -> Result<(), Stop>,
) -> Result<ReportData, ReadError> {
    let schema = Arc::new(harman_schemas::documents_schema());
    let src = ByteSource::new(input)?;
    let mut stream = DecodedStream::new(src);
    let source_format = if format == InputFormat::Jsonl {
        "jsonl"
    } else {
        "warc"
    };
    let builder =
        DocumentBatchBuilder::new(schema, url, source_format).with_record_ids(opts.ids_from_field);
    let mut sink = DocumentSink::new(builder, opts.sink_options(), emit);
    match format {
        InputFormat::Jsonl => jsonl::read_lines(&mut stream, &opts.fields(), &mut sink)?,
        _ => {
            let warc_opts = WarcReadOptions {
                max_record_bytes: opts.max_record_bytes,
                keep_types: opts.record_types.clone(),
            };
            read_records(&mut stream, &warc_opts, &mut sink)?;
        }
    }
    sink.flush()?;
    let mut data = std::mem::take(&mut sink.data);
    data.count_records_read();
    data.add("decoded_bytes", stream.src.decoded());
    data.add("input_bytes", stream.src.compressed_offset());
    data.input_sha256 = Some(stream.src.finish_hash()?);
    Ok(data)
}

/// One shard as a DataFusion streaming partition.
#[derive(Debug)]
struct ShardPartition {
    shard: ShardInput,
    format: InputFormat,
    opts: IngestOptions,
    schema: SchemaRef,
    report: Arc<ShardReport>,
}

type BatchSender = tokio::sync::mpsc::Sender<datafusion::error::Result<RecordBatch>>;

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl PartitionStream for ShardPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let shard = self.shard.clone();
        let format = self.format;
        let opts = self.opts.clone();
        let report = self.report.clone();
        tokio::spawn(async move {
            let err_tx = tx.clone();
            if let Err(e) = read_shard(shard, format, opts, report, tx).await {
                let _ = err_tx.send(Err(e)).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Send a batch from a blocking reader thread; `Stop` when the consumer has gone.
fn sender(tx: BatchSender) -> impl FnMut(RecordBatch) -> Result<(), Stop> {
    move |batch| futures::executor::block_on(tx.send(Ok(batch))).map_err(|_| Stop)
}

async fn read_shard(
    shard: ShardInput,
    format: InputFormat,
    opts: IngestOptions,
    report: Arc<ShardReport>,
    tx: BatchSender,
) -> datafusion::error::Result<()> {
    let counter = report.bytes_read.clone();
    let url = shard.url.clone();
    if format == InputFormat::Parquet {
        let handle = tokio::runtime::Handle::current();
        let data = tokio::task::spawn_blocking(move || {
            let mut emit = sender(tx);
            let schema = Arc::new(harman_schemas::documents_schema());
            let builder = DocumentBatchBuilder::new(schema, &url, "parquet")
                .with_record_ids(opts.ids_from_field);
            let mut sink = DocumentSink::new(builder, opts.sink_options(), &mut emit);
            let fields = opts.fields();
            handle.block_on(parquet_input::read_parquet(
                shard.store.clone(),
                shard.path.clone(),
                shard.size,
                &fields,
                &mut sink,
            ))?;
            sink.flush()?;
            counter.fetch_add(shard.size, Ordering::Relaxed);
            let mut data = std::mem::take(&mut sink.data);
            data.count_records_read();
            Ok::<_, parquet_input::ParquetInputError>(data)
        })
        .await
        .map_err(external)?
        .map_err(external)?;
        report.merge(data);
        return Ok(());
    }
    let input: Box<dyn Read + Send> = match &shard.local_path {
        Some(path) => Box::new(std::fs::File::open(path).map_err(|e| {
            DataFusionError::Execution(format!("cannot open {}: {e}", path.display()))
        })?),
        None => {
            let get = shard.store.get(&shard.path).await.map_err(external)?;
            let bytes = get.into_stream().map_err(io::Error::other);
            Box::new(tokio_util::io::SyncIoBridge::new(
                tokio_util::io::StreamReader::new(bytes),
            ))
        }
    };
    let data = tokio::task::spawn_blocking(move || {
        let mut emit = sender(tx);
        let input = Counting {
            inner: input,
            counter,
        };
        read_stream(input, &url, format, &opts, &mut emit)
    })
    .await
    .map_err(external)?
    .map_err(external)?;
    report.merge(data);
    Ok(())
}

#[cfg(test)]
mod tests;
