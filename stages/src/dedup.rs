//! The `dedup` stage: exact and MinHash-LSH near-duplicate removal across every input part,
//! as DataFusion plans (Lee et al., "Deduplicating Training Data Makes Language Models
//! Better"; the banding of FineWeb).
//!
//! [`DedupStage::prepare`] runs once over all parts:
//! 1. every document with text gets a key `part << 40 | row` and, from one UDF,
//!    its exact hash (gxhash-128 of the normalized text), its LSH band keys and its shingle
//!    set (the signatures table, spilled to Parquet in a scratch folder);
//! 2. exact duplicates are joined to the first document with the same hash;
//! 3. the remaining documents are grouped by band key (`GROUP BY`, never an in-memory map);
//!    each document is paired with the first `bucket_anchors` documents of its buckets,
//!    and the pairs are verified by exact Jaccard of their shingle sets (`verify`);
//! 4. connected components of the pairs by alternating large-star / small-star rounds
//!    (Kiveris et al. 2014), each round a join and an aggregation, until every component is
//!    a star around its smallest key: the document kept.
//!
//! The components become the `clusters` table (`clusters.parquet` next to the parts); each
//! part's output is then its input minus the documents not kept, in input order. With
//! `substring`, the documents kept are then read once more in key order, in groups, and the
//! spans that repeat an earlier occurrence (ExactSubstr, `harman_dedup::substring`) are cut
//! from their text as the parts are written. Every
//! intermediate is Parquet on local disk and DataFusion spills joins, sorts and aggregates
//! past `memory_limit_mb`, so memory stays bounded; what stays in memory across the stage is
//! the list of removed rows. Everything is keyed and sorted by document key, so the result
//! is the same at any thread count.

use crate::parquet_io::read_part;
use crate::report::{ReportData, ShardReport};
use crate::stage::{
    OptionError, Prepared, ShardInput, Stage, StageContext, StageError, StageInputs,
};
use crate::struct_udf::{spread, StructFunction, StructUdf};
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, FixedSizeBinaryBuilder, Float64Array,
    ListBuilder, RecordBatch, StringArray, StructArray, UInt64Array, UInt64Builder,
};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, UInt64Type};
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{exec_err, Result as DfResult};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{col, DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use harman_dedup::lsh::{check_banding, s_curve, Banding};
use harman_dedup::shingle::jaccard_le_bytes;
use harman_dedup::{MinHasher, Shingler};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const KIND: &str = "dedup";

/// Bits of a document key that hold the row; the part index is above them.
pub const ROW_BITS: u32 = 40;
const ROW_MASK: u64 = (1 << ROW_BITS) - 1;
/// Rows per batch of the `clusters` table as written (fixed, so the file's bytes are too).
const CLUSTER_BATCH_ROWS: usize = 8192;

/// Options of a `dedup` stage (all optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupOptions {
    /// The table its `depends_on` stages write: `text` (rows with text take part) or
    /// `filtered` (rows with `keep` take part). The output is the same table.
    pub table: String,
    /// Remove documents whose normalized text equals an earlier one's.
    pub exact: bool,
    /// Remove MinHash-LSH near-duplicates.
    pub near: bool,
    /// Words per shingle.
    pub ngram: usize,
    /// LSH bands and rows per band (bands × rows MinHash functions).
    pub bands: usize,
    pub rows: usize,
    /// Jaccard similarity from which two documents are duplicates.
    pub threshold: f64,
    /// Check every candidate pair by exact Jaccard of the shingle sets (no false positives).
    pub verify: bool,
    /// Seed of every hash (shingles, MinHash functions, band keys, exact hash).
    pub seed: u64,
    /// A document is paired with at most this many of the first documents of each bucket
    /// (by key), which bounds the pairs of a huge bucket to a star around them.
    pub bucket_anchors: usize,
    /// Memory DataFusion may use before it spills to disk.
    pub memory_limit_mb: usize,
    /// Also remove repeated spans (ExactSubstr) from the documents that remain.
    pub substring: bool,
    /// Spans of at least this many bytes that occurred earlier are removed.
    pub substring_min_bytes: usize,
    /// Documents are searched for repeats in groups of this many MiB of text (a suffix
    /// array needs ~13 bytes per byte of its group); repeats across groups are not found.
    pub substring_group_mb: usize,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions {
            table: harman_schemas::TEXT_TABLE.to_string(),
            exact: true,
            near: true,
            ngram: 5,
            bands: 14,
            rows: 8,
            threshold: 0.8,
            verify: true,
            seed: 0,
            bucket_anchors: 32,
            memory_limit_mb: 2048,
            substring: false,
            substring_min_bytes: 100,
            substring_group_mb: 64,
        }
    }
}

impl DedupOptions {
    pub fn banding(&self) -> Banding {
        Banding {
            bands: self.bands,
            rows: self.rows,
        }
    }

    /// Check every option, naming the field and the fix.
    pub fn validate(&self) -> Result<&'static str, OptionError> {
        let table = match self.table.as_str() {
            "text" => harman_schemas::TEXT_TABLE,
            "filtered" => harman_schemas::FILTERED_TABLE,
            other => {
                return Err(OptionError::field(
                    "table",
                    format!("table = {other:?}: the dedup stage reads \"text\" (extract) or \"filtered\" (filter) tables"),
                ))
            }
        };
        if !self.exact && !self.near {
            return Err(OptionError::field(
                "near",
                "exact = false and near = false: nothing to do; enable at least one",
            ));
        }
        if self.ngram == 0 || self.ngram > 64 {
            return Err(OptionError::field(
                "ngram",
                format!(
                    "ngram = {}: words per shingle must be 1..=64 (5 is usual)",
                    self.ngram
                ),
            ));
        }
        if self.bucket_anchors == 0 {
            return Err(OptionError::field(
                "bucket_anchors",
                "bucket_anchors must be at least 1 (32 is the default)",
            ));
        }
        if self.substring && self.substring_min_bytes < 8 {
            return Err(OptionError::field(
                "substring_min_bytes",
                "substring_min_bytes must be at least 8 (100 is the default)",
            ));
        }
        if self.substring && !(1..=1536).contains(&self.substring_group_mb) {
            return Err(OptionError::field(
                "substring_group_mb",
                "substring_group_mb must be 1..=1536 (a suffix array needs ~13 bytes per byte)",
            ));
        }
        if self.memory_limit_mb < 64 {
            return Err(OptionError::field(
                "memory_limit_mb",
                "memory_limit_mb must be at least 64",
            ));
        }
        if self.near {
            check_banding(self.banding(), self.threshold, self.verify)
                .map_err(|e| OptionError::field(e.field, e.message))?;
        }
        Ok(table)
    }
}

/// Removed rows of each part, sorted.
type Removed = BTreeMap<u32, Vec<u64>>;

#[derive(Debug)]
pub struct DedupStage {
    opts: DedupOptions,
    table: &'static str,
    schema: SchemaRef,
    removed: Mutex<Option<Arc<Removed>>>,
    /// Spans removed from the kept documents' text (substring), by document key.
    edits: Mutex<Option<Arc<Edits>>>,
}

/// Byte ranges to remove from a document's text, by document key.
type Edits = BTreeMap<u64, Vec<(usize, usize)>>;

impl DedupStage {
    pub fn new(opts: DedupOptions) -> Result<Self, OptionError> {
        let table = opts.validate()?;
        let schema = harman_schemas::all_tables()
            .into_iter()
            .find(|t| t.name == table)
            .map(|t| Arc::new(t.schema))
            .ok_or_else(|| OptionError::field("table", format!("unknown table {table}")))?;
        Ok(DedupStage {
            opts,
            table,
            schema,
            removed: Mutex::new(None),
            edits: Mutex::new(None),
        })
    }

    pub fn factory(
        options: &serde_json::Value,
        _context: &StageContext,
    ) -> Result<Arc<dyn Stage>, OptionError> {
        let opts: DedupOptions = OptionError::parse(options)?;
        Ok(Arc::new(DedupStage::new(opts)?))
    }

    pub fn options(&self) -> &DedupOptions {
        &self.opts
    }

    /// The S-curve of the configured banding, as text.
    pub fn s_curve(&self) -> String {
        s_curve(self.opts.banding(), self.opts.threshold)
    }

    fn session(&self, threads: usize, spill_dir: &Path) -> Result<SessionContext, StageError> {
        let limit = self.opts.memory_limit_mb << 20;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
            .with_temp_file_path(spill_dir)
            .build_arc()?;
        let config = SessionConfig::new()
            // At least 2: DataFusion plans sort-merge joins only for partitioned plans.
            .with_target_partitions(threads.max(2))
            // Sort-merge joins spill; hash joins hold their build side in memory.
            .set_bool("datafusion.optimizer.prefer_hash_join", false)
            // ... also for joins with a small side, which would otherwise be collected whole.
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                0,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                0,
            )
            // Scratch tables are read once or twice and mostly hashes: no compression, no
            // dictionaries, no statistics.
            .set_str("datafusion.execution.parquet.compression", "uncompressed")
            .set_bool("datafusion.execution.parquet.dictionary_enabled", false)
            .set_str("datafusion.execution.parquet.statistics_enabled", "none")
            // Small row groups: a Parquet writer holds its open row group in memory.
            .set_usize("datafusion.execution.parquet.max_row_group_size", 16 * 1024);
        Ok(SessionContext::new_with_config_rt(config, runtime))
    }
}

/// The scratch folder of one `prepare`: each intermediate table is a Parquet folder in it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run `df` into a Parquet folder and register it as table `name`.
    async fn materialize(&self, ctx: &SessionContext, name: &str, df: DataFrame) -> DfResult<()> {
        let path = self.path(name);
        let url = format!("{}/", path.display());
        // An empty result writes no file: the schema is given, not inferred.
        let schema = df.schema().as_arrow().clone();
        std::fs::create_dir_all(&path)?;
        df.write_parquet(&url, DataFrameWriteOptions::new(), None)
            .await?;
        ctx.register_parquet(name, &url, ParquetReadOptions::default().schema(&schema))
            .await
    }

    async fn sql(&self, ctx: &SessionContext, name: &str, sql: &str) -> DfResult<()> {
        let started = Instant::now();
        let df = ctx.sql(sql).await?;
        self.materialize(ctx, name, df).await?;
        tracing::debug!(
            table = name,
            seconds = started.elapsed().as_secs_f64(),
            "dedup table written"
        );
        Ok(())
    }

    /// Forget a table and delete its files.
    fn drop_table(&self, ctx: &SessionContext, name: &str) {
        let _ = ctx.deregister_table(name);
        let _ = std::fs::remove_dir_all(self.path(name));
    }
}

/// A single number from a query.
async fn scalar(ctx: &SessionContext, sql: &str) -> DfResult<u64> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(0);
    };
    let value = cast(batch.column(0), &DataType::UInt64)?;
    let value = value.as_primitive::<UInt64Type>();
    Ok(if value.is_null(0) { 0 } else { value.value(0) })
}

#[derive(Serialize)]
struct Params<'a> {
    #[serde(flatten)]
    opts: &'a DedupOptions,
    shingles: &'static str,
}

#[async_trait]
impl Stage for DedupStage {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn output_table(&self) -> &'static str {
        self.table
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::to_value(Params {
            opts: &self.opts,
            shingles: "lowercased \\w+ words (Unicode), n-grams joined by one space",
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn inputs(&self) -> StageInputs {
        StageInputs::Upstream
    }

    fn input_table(&self) -> Option<&'static str> {
        Some(self.table)
    }

    fn global(&self) -> bool {
        true
    }

    async fn prepare(&self, shards: &[ShardInput], threads: usize) -> Result<Prepared, StageError> {
        let started = Instant::now();
        let scratch = Scratch {
            dir: tempfile::Builder::new()
                .prefix("harman-dedup-")
                .tempdir()
                .map_err(|e| StageError::Input(format!("cannot create a scratch folder: {e}")))?,
        };
        let spill = scratch.path("spill");
        std::fs::create_dir_all(&spill)
            .map_err(|e| StageError::Input(format!("{}: {e}", spill.display())))?;
        let ctx = self.session(threads, &spill)?;
        ctx.register_udf(ScalarUDF::from(ShingleJaccard::new()));
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        let mut timings = Vec::new();

        // 1. Signatures.
        let participating = Arc::new(AtomicU64::new(0));
        // `threads` partitions, each reading its parts one after another: at most that many
        // parts are open at once, however many there are.
        let lanes = threads.max(1).min(shards.len());
        let partitions: Vec<Arc<dyn PartitionStream>> = (0..lanes)
            .map(|lane| {
                Arc::new(DocsPartition {
                    shards: shards.iter().skip(lane).step_by(lanes).cloned().collect(),
                    filtered: self.table == harman_schemas::FILTERED_TABLE,
                    count: participating.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let docs = if partitions.is_empty() {
            ctx.read_batch(RecordBatch::new_empty(docs_schema()))?
        } else {
            ctx.read_table(Arc::new(StreamingTable::try_new(
                docs_schema(),
                partitions,
            )?))?
        };
        let signature = SignatureFn::new(&self.opts);
        let fields = signature.fields();
        let udf = StructUdf::udf(signature, Volatility::Immutable);
        let sigs = spread(docs, &["doc", "id"], &udf, vec![col("text")], &fields)?;
        scratch.materialize(&ctx, "sigs", sigs).await?;
        counters.insert(
            "dedup.documents".into(),
            participating.load(Ordering::Relaxed),
        );
        timings.push(("signatures".to_string(), started.elapsed().as_secs_f64()));
        let clustering = Instant::now();

        // 2. Exact duplicates: an edge from each to the first document with its hash.
        if self.opts.exact {
            scratch
                .sql(
                    &ctx,
                    "firsts",
                    "SELECT exact, MIN(doc) AS first FROM sigs GROUP BY exact",
                )
                .await?;
            scratch
                .sql(
                    &ctx,
                    "exact_edges",
                    "SELECT s.doc AS u, f.first AS v FROM sigs s JOIN firsts f ON s.exact = f.exact WHERE s.doc <> f.first",
                )
                .await?;
        } else {
            let empty = RecordBatch::new_empty(edge_schema());
            ctx.register_batch("exact_edges", empty)?;
        }
        counters.insert(
            "dedup.exact_duplicates".into(),
            scalar(&ctx, "SELECT COUNT(*) FROM exact_edges").await?,
        );

        // 3. Near duplicates among the first of each exact group.
        let mut edge_tables = vec!["SELECT u, v FROM exact_edges".to_string()];
        if self.opts.near {
            // The band keys of the first document of each exact group (all, without exact).
            let members = if self.opts.exact {
                "SELECT s.doc, unnest(s.buckets) AS bucket FROM sigs s JOIN firsts f ON s.doc = f.first"
            } else {
                "SELECT doc, unnest(buckets) AS bucket FROM sigs"
            };
            scratch.sql(&ctx, "members", members).await?;
            scratch
                .sql(
                    &ctx,
                    "ranked",
                    "SELECT m.bucket, m.doc, ROW_NUMBER() OVER (PARTITION BY m.bucket ORDER BY m.doc) AS pos \
                     FROM members m JOIN (SELECT bucket FROM members GROUP BY bucket HAVING COUNT(*) > 1) b \
                     ON m.bucket = b.bucket",
                )
                .await?;
            scratch.drop_table(&ctx, "members");
            scratch
                .sql(
                    &ctx,
                    "candidates",
                    &format!(
                        "SELECT DISTINCT a.doc AS u, b.doc AS v FROM ranked a JOIN ranked b ON a.bucket = b.bucket \
                         WHERE a.pos <= {} AND a.doc < b.doc",
                        self.opts.bucket_anchors
                    ),
                )
                .await?;
            scratch.drop_table(&ctx, "ranked");
            counters.insert(
                "dedup.candidate_pairs".into(),
                scalar(&ctx, "SELECT COUNT(*) FROM candidates").await?,
            );
            if self.opts.verify {
                scratch
                    .sql(
                        &ctx,
                        "near_edges",
                        &format!(
                            "SELECT c.u, c.v FROM candidates c JOIN sigs x ON c.u = x.doc JOIN sigs y ON c.v = y.doc \
                             WHERE shingle_jaccard(x.shingles, y.shingles) >= {:?}",
                            self.opts.threshold
                        ),
                    )
                    .await?;
                counters.insert(
                    "dedup.verified_pairs".into(),
                    scalar(&ctx, "SELECT COUNT(*) FROM near_edges").await?,
                );
                edge_tables.push("SELECT u, v FROM near_edges".to_string());
            } else {
                edge_tables.push("SELECT u, v FROM candidates".to_string());
            }
        }
        scratch
            .sql(&ctx, "e0", &edge_tables.join(" UNION ALL "))
            .await?;

        // 4. Connected components.
        let (components, rounds) = star_components(&ctx, &scratch, "e0").await?;
        counters.insert("dedup.component_rounds".into(), rounds);
        scratch
            .sql(
                &ctx,
                "clusters",
                &format!(
                    "WITH m AS (SELECT u AS doc, v AS root FROM {components} \
                                UNION ALL SELECT DISTINCT v AS doc, v AS root FROM {components}), \
                          sized AS (SELECT doc, root, COUNT(*) OVER (PARTITION BY root) AS size FROM m) \
                     SELECT s.id, z.root AS cluster_id, arrow_cast(z.size, 'UInt64') AS cluster_size, \
                            z.doc = z.root AS kept, \
                            CASE WHEN z.doc = z.root THEN NULL WHEN x.u IS NOT NULL THEN 'exact' ELSE 'near' END AS \"match\", \
                            arrow_cast(z.doc >> {ROW_BITS}, 'UInt32') AS part, z.doc & {ROW_MASK} AS \"row\", z.doc \
                     FROM sized z JOIN sigs s ON s.doc = z.doc LEFT JOIN exact_edges x ON x.u = z.doc"
                ),
            )
            .await?;
        let removed = scalar(&ctx, "SELECT COUNT(*) FROM clusters WHERE NOT kept").await?;
        let exact = counters.get("dedup.exact_duplicates").copied().unwrap_or(0);
        counters.insert("dedup.removed".into(), removed);
        counters.insert(
            "dedup.near_duplicates".into(),
            removed.saturating_sub(exact),
        );
        let sizes = ctx
            .sql("SELECT cluster_size, COUNT(*) FROM clusters WHERE kept GROUP BY cluster_size")
            .await?
            .collect()
            .await?;
        let mut clusters = 0;
        for batch in &sizes {
            let size = cast(batch.column(0), &DataType::UInt64)?;
            let n = cast(batch.column(1), &DataType::UInt64)?;
            let (size, n) = (
                size.as_primitive::<UInt64Type>(),
                n.as_primitive::<UInt64Type>(),
            );
            for i in 0..batch.num_rows() {
                clusters += n.value(i);
                *counters
                    .entry(format!("dedup.cluster_size.{}", size_bin(size.value(i))))
                    .or_default() += n.value(i);
            }
        }
        counters.insert("dedup.clusters".into(), clusters);

        // The removed rows of each part, for the part plans.
        let mut decision: Removed = BTreeMap::new();
        let mut removed_rows = ctx
            .sql("SELECT part, \"row\" FROM clusters WHERE NOT kept")
            .await?
            .execute_stream()
            .await?;
        while let Some(batch) = removed_rows.next().await {
            let batch = batch?;
            let part = cast(batch.column(0), &DataType::UInt64)?;
            let part = part.as_primitive::<UInt64Type>();
            let row = batch.column(1).as_primitive::<UInt64Type>();
            for i in 0..batch.num_rows() {
                decision
                    .entry(part.value(i) as u32)
                    .or_default()
                    .push(row.value(i));
            }
        }
        for rows in decision.values_mut() {
            rows.sort_unstable();
        }
        let mut substring_seconds = 0.0;
        if self.opts.substring {
            let started = Instant::now();
            let filtered = self.table == harman_schemas::FILTERED_TABLE;
            let (edits, found) = substring_edits(shards, &decision, filtered, &self.opts).await?;
            counters.extend(found);
            *self.edits.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(edits));
            substring_seconds = started.elapsed().as_secs_f64();
            timings.push(("substring".to_string(), substring_seconds));
        }
        *self.removed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(decision));

        // The clusters table, sorted by key, in fixed-size batches.
        let sorted = ctx
            .sql("SELECT id, cluster_id, cluster_size, kept, \"match\", part, \"row\" FROM clusters ORDER BY doc")
            .await?
            .execute_stream()
            .await?;
        let schema = Arc::new(harman_schemas::clusters_schema());
        timings.push((
            "clustering".to_string(),
            clustering.elapsed().as_secs_f64() - substring_seconds,
        ));
        tracing::info!(
            documents = counters.get("dedup.documents").copied().unwrap_or(0),
            removed,
            clusters,
            rounds,
            seconds = started.elapsed().as_secs_f64(),
            "dedup clusters computed"
        );
        // Streamed from the scratch folder, which lives until the stream ends.
        let stream = rebatched(schema.clone(), sorted, CLUSTER_BATCH_ROWS, scratch);
        Ok(Prepared {
            tables: vec![("clusters.parquet".to_string(), schema, stream)],
            counters,
            timings,
        })
    }

    async fn plan_shard(
        &self,
        ctx: &SessionContext,
        shard: &ShardInput,
        report: Arc<ShardReport>,
    ) -> Result<DataFrame, StageError> {
        let removed = self
            .removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                StageError::Input(
                    "dedup: a part was planned before the clusters were computed".into(),
                )
            })?;
        let rows = removed
            .get(&(shard.index as u32))
            .cloned()
            .unwrap_or_default();
        let part = (shard.index as u64) << ROW_BITS;
        let edits: BTreeMap<u64, Vec<(usize, usize)>> = self
            .edits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| {
                e.range(part..part + (1 << ROW_BITS))
                    .map(|(k, v)| (k & ROW_MASK, v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let partition = DedupedPartition {
            shard: shard.clone(),
            schema: self.schema.clone(),
            removed: Arc::new(rows),
            edits: Arc::new(edits),
            report,
        };
        let table = StreamingTable::try_new(self.schema.clone(), vec![Arc::new(partition)])?;
        Ok(ctx.read_table(Arc::new(table))?)
    }

    fn summary_files(&self, _counters: &BTreeMap<String, u64>) -> Vec<(String, Vec<u8>)> {
        if self.opts.near {
            vec![("_s_curve.txt".to_string(), self.s_curve().into_bytes())]
        } else {
            Vec::new()
        }
    }
}

/// Power-of-two bins of cluster sizes: 2, 3-4, 5-8, 9-16, …
fn size_bin(size: u64) -> String {
    if size <= 2 {
        return size.to_string();
    }
    let hi = size.next_power_of_two();
    format!("{}-{hi}", hi / 2 + 1)
}

fn edge_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("u", DataType::UInt64, false),
        Field::new("v", DataType::UInt64, false),
    ]))
}

/// Connected components of the undirected edges in table `edges` (u, v): alternating
/// large-star and small-star rounds until every edge points from a node to the smallest
/// node of its component and that node has no edge of its own. Returns the final table
/// (`u` = a node, `v` = its component's smallest node; smallest nodes are not listed) and
/// the number of rounds.
async fn star_components(
    ctx: &SessionContext,
    scratch_dir: &Scratch,
    edges: &str,
) -> DfResult<(String, u64)> {
    let mut current = edges.to_string();
    for round in 1..=200u64 {
        let large = format!("large{round}");
        scratch_dir
            .sql(
                ctx,
                &large,
                &format!(
                    "WITH d AS (SELECT u, v FROM {current} UNION ALL SELECT v AS u, u AS v FROM {current}), \
                          m AS (SELECT u, MIN(v) AS mv FROM d GROUP BY u) \
                     SELECT DISTINCT d.v AS u, LEAST(m.mv, d.u) AS v FROM d JOIN m ON d.u = m.u WHERE d.v > d.u"
                ),
            )
            .await?;
        if current != edges {
            scratch_dir.drop_table(ctx, &current);
        }
        let small = format!("small{round}");
        scratch_dir
            .sql(
                ctx,
                &small,
                &format!(
                    "WITH d AS (SELECT GREATEST(u, v) AS u, LEAST(u, v) AS v FROM {large} WHERE u <> v), \
                          m AS (SELECT u, MIN(v) AS mv FROM d GROUP BY u) \
                     SELECT DISTINCT x AS u, mv AS v FROM \
                       (SELECT d.v AS x, m.mv FROM d JOIN m ON d.u = m.u UNION ALL SELECT u AS x, mv FROM m) t \
                     WHERE x <> mv"
                ),
            )
            .await?;
        scratch_dir.drop_table(ctx, &large);
        current = small;
        let chained = scalar(
            ctx,
            &format!("SELECT COUNT(*) FROM {current} a JOIN {current} b ON a.v = b.u"),
        )
        .await?;
        let repeated = scalar(
            ctx,
            &format!("SELECT COUNT(*) - COUNT(DISTINCT u) FROM {current}"),
        )
        .await?;
        if chained == 0 && repeated == 0 {
            return Ok((current, round));
        }
    }
    exec_err!("connected components did not converge in 200 rounds")
}

/// `input` cut into batches of exactly `rows` rows (the last one shorter) and cast to
/// `schema`, so the written file does not depend on how the engine batched it; `keep` (the
/// scratch folder the input reads) lives until the stream ends.
fn rebatched<K: Send + 'static>(
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    rows: usize,
    keep: K,
) -> SendableRecordBatchStream {
    struct State<K> {
        input: SendableRecordBatchStream,
        pending: Vec<RecordBatch>,
        pending_rows: usize,
        done: bool,
        _keep: K,
    }
    let state = State {
        input,
        pending: Vec::new(),
        pending_rows: 0,
        done: false,
        _keep: keep,
    };
    let out_schema = schema.clone();
    let stream = futures::stream::try_unfold(state, move |mut st| {
        let schema = schema.clone();
        async move {
            while st.pending_rows < rows && !st.done {
                match st.input.next().await {
                    Some(batch) => {
                        let batch = batch?;
                        if batch.num_rows() > 0 {
                            let columns = schema
                                .fields()
                                .iter()
                                .zip(batch.columns())
                                .map(|(f, c)| cast(c, f.data_type()))
                                .collect::<Result<Vec<_>, _>>()?;
                            st.pending_rows += batch.num_rows();
                            st.pending
                                .push(RecordBatch::try_new(schema.clone(), columns)?);
                        }
                    }
                    None => st.done = true,
                }
            }
            if st.pending_rows == 0 {
                return Ok(None);
            }
            let all = arrow::compute::concat_batches(&schema, &st.pending)?;
            let n = rows.min(all.num_rows());
            let rest = all.slice(n, all.num_rows() - n);
            st.pending_rows = rest.num_rows();
            st.pending = if rest.num_rows() > 0 {
                vec![rest]
            } else {
                Vec::new()
            };
            Ok::<_, DataFusionError>(Some((all.slice(0, n), st)))
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(out_schema, stream))
}

/// Columns the signature UDF reads.
fn docs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("doc", DataType::UInt64, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
    ]))
}

/// Input parts, read one after another, as the documents that take part: key, id and text
/// of each row with text (and, in a `filtered` table, `keep`), keyed by position as read.
#[derive(Debug)]
struct DocsPartition {
    shards: Vec<ShardInput>,
    filtered: bool,
    count: Arc<AtomicU64>,
}

impl PartitionStream for DocsPartition {
    fn schema(&self) -> &SchemaRef {
        static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(docs_schema)
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let filtered = self.filtered;
        let count = self.count.clone();
        let parts = self.shards.clone().into_iter().map(move |shard| {
            let count = count.clone();
            let part = (shard.index as u64) << ROW_BITS;
            let url = shard.url.clone();
            let open = async move {
                let stream = read_part(&shard).await?;
                let mut next_row = 0u64;
                Ok::<_, DataFusionError>(stream.map(move |batch| {
                    let batch = batch?;
                    let first = next_row;
                    next_row += batch.num_rows() as u64;
                    let out = participating_rows(&batch, part | first, filtered, &url)?;
                    count.fetch_add(out.num_rows() as u64, Ordering::Relaxed);
                    Ok(out)
                }))
            };
            futures::stream::once(open).try_flatten()
        });
        let stream = futures::stream::iter(parts).flatten();
        Box::pin(RecordBatchStreamAdapter::new(docs_schema(), stream))
    }
}

/// The rows of `batch` that take part (text, and `keep` in a filtered table) as (key, id,
/// text), the first row having key `first_key`.
fn participating_rows(
    batch: &RecordBatch,
    first_key: u64,
    filtered: bool,
    url: &str,
) -> DfResult<RecordBatch> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| DataFusionError::Execution(format!("{url} has no `{name}` column")))
    };
    let id = cast(&column("id")?, &DataType::Utf8)?;
    let text = cast(&column("text")?, &DataType::Utf8)?;
    let mut take: Vec<bool> = (0..batch.num_rows()).map(|i| text.is_valid(i)).collect();
    if filtered {
        let keep = column("keep")?;
        let keep = keep.as_boolean();
        for (i, t) in take.iter_mut().enumerate() {
            *t = *t && keep.is_valid(i) && keep.value(i);
        }
    }
    let keys: ArrayRef = Arc::new(UInt64Array::from_iter_values(
        (0..batch.num_rows() as u64).map(|i| first_key + i),
    ));
    let mask = BooleanArray::from(take);
    let columns = [keys, id, text]
        .iter()
        .map(|c| arrow::compute::filter(c, &mask))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(docs_schema(), columns)?)
}

/// One input part minus its removed rows, in input order.
#[derive(Debug)]
struct DedupedPartition {
    shard: ShardInput,
    schema: SchemaRef,
    removed: Arc<Vec<u64>>,
    /// Spans to cut from the text of rows, by row.
    edits: Arc<BTreeMap<u64, Vec<(usize, usize)>>>,
    report: Arc<ShardReport>,
}

impl PartitionStream for DedupedPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let shard = self.shard.clone();
        let schema = self.schema.clone();
        let removed = self.removed.clone();
        let edits = self.edits.clone();
        let report = self.report.clone();
        let url = shard.url.clone();
        let open = async move {
            report
                .bytes_read
                .fetch_add(shard.size, std::sync::atomic::Ordering::Relaxed);
            let stream = read_part(&shard).await?;
            let mut next_row = 0u64;
            let mut cursor = 0usize;
            Ok::<_, DataFusionError>(stream.map(move |batch| {
                let batch = batch?;
                let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|e| {
                        DataFusionError::Execution(format!(
                            "{url} is not a part of the expected table: {e}"
                        ))
                    })?;
                let first = next_row;
                let n = batch.num_rows() as u64;
                next_row += n;
                let mut keep = vec![true; batch.num_rows()];
                let mut dropped = 0;
                while cursor < removed.len() && removed[cursor] < first + n {
                    if removed[cursor] >= first {
                        keep[(removed[cursor] - first) as usize] = false;
                        dropped += 1;
                    }
                    cursor += 1;
                }
                let mut data = ReportData::default();
                data.add("documents", n);
                data.add("removed", dropped);
                data.add("written", n - dropped);
                report.merge(data);
                let batch = apply_edits(batch, first, &edits)?;
                if dropped == 0 {
                    return Ok(batch);
                }
                Ok(filter_record_batch(&batch, &BooleanArray::from(keep))?)
            }))
        };
        let stream = futures::stream::once(open).try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// `batch` (rows `first`…) with the spans of `edits` cut from its `text` (and `bytes_out`,
/// where the table has it, updated).
fn apply_edits(
    batch: RecordBatch,
    first: u64,
    edits: &BTreeMap<u64, Vec<(usize, usize)>>,
) -> DfResult<RecordBatch> {
    let n = batch.num_rows() as u64;
    if edits.range(first..first + n).next().is_none() {
        return Ok(batch);
    }
    let schema = batch.schema();
    let Some(text_index) = schema.index_of("text").ok() else {
        return Ok(batch);
    };
    let text = batch.column(text_index).as_string::<i32>();
    let edited: StringArray = (0..batch.num_rows())
        .map(|i| {
            text.is_valid(i)
                .then(|| match edits.get(&(first + i as u64)) {
                    Some(spans) => harman_dedup::substring::remove_spans(text.value(i), spans),
                    None => text.value(i).to_string(),
                })
        })
        .collect();
    let mut columns = batch.columns().to_vec();
    if let Ok(bytes_index) = schema.index_of("bytes_out") {
        let bytes: UInt64Array = (0..edited.len())
            .map(|i| {
                Some(if edited.is_valid(i) {
                    edited.value(i).len() as u64
                } else {
                    0
                })
            })
            .collect();
        columns[bytes_index] = Arc::new(bytes);
    }
    columns[text_index] = Arc::new(edited);
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// ExactSubstr over the documents that remain after document-level dedup, in key order, in
/// groups of `substring_group_mb`: the spans to cut, by key, and counters.
async fn substring_edits(
    shards: &[ShardInput],
    removed: &Removed,
    filtered: bool,
    opts: &DedupOptions,
) -> Result<(Edits, BTreeMap<String, u64>), StageError> {
    let group_bytes = opts.substring_group_mb << 20;
    let min_bytes = opts.substring_min_bytes;
    let mut edits = Edits::new();
    let (mut spans, mut bytes, mut groups) = (0u64, 0u64, 0u64);
    let mut group: Vec<(u64, String)> = Vec::new();
    let mut group_size = 0usize;
    let mut flush = |group: &mut Vec<(u64, String)>, edits: &mut Edits| {
        if group.is_empty() {
            return;
        }
        groups += 1;
        let texts: Vec<&str> = group.iter().map(|(_, t)| t.as_str()).collect();
        let found = harman_dedup::substring::repeated_spans(&texts, min_bytes);
        for ((key, _), doc_spans) in group.iter().zip(found) {
            if !doc_spans.is_empty() {
                spans += doc_spans.len() as u64;
                bytes += doc_spans.iter().map(|(a, b)| (b - a) as u64).sum::<u64>();
                edits.insert(*key, doc_spans);
            }
        }
        group.clear();
    };
    for shard in shards {
        let gone = removed.get(&(shard.index as u32));
        let part = (shard.index as u64) << ROW_BITS;
        let mut stream = Box::pin(read_part(shard).await?);
        let mut next_row = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let first = next_row;
            next_row += batch.num_rows() as u64;
            let docs = participating_rows(&batch, part | first, filtered, &shard.url)?;
            let keys = docs.column(0).as_primitive::<UInt64Type>();
            let text = docs.column(2).as_string::<i32>();
            for i in 0..docs.num_rows() {
                let key = keys.value(i);
                if gone.is_some_and(|rows| rows.binary_search(&(key & ROW_MASK)).is_ok()) {
                    continue;
                }
                group_size += text.value(i).len() + 1;
                group.push((key, text.value(i).to_string()));
                if group_size >= group_bytes {
                    flush(&mut group, &mut edits);
                    group_size = 0;
                }
            }
        }
    }
    flush(&mut group, &mut edits);
    let counters = BTreeMap::from([
        ("dedup.substring_documents".to_string(), edits.len() as u64),
        ("dedup.substring_spans".to_string(), spans),
        ("dedup.substring_bytes".to_string(), bytes),
        ("dedup.substring_groups".to_string(), groups),
    ]);
    Ok((edits, counters))
}

/// The per-document signature UDF: exact hash, band keys and shingle set.
#[derive(Debug)]
struct SignatureFn {
    opts: DedupOptions,
    hasher: MinHasher,
}

impl SignatureFn {
    fn new(opts: &DedupOptions) -> Self {
        SignatureFn {
            opts: opts.clone(),
            hasher: MinHasher::new(opts.bands, opts.rows, opts.seed),
        }
    }
}

fn u64_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::UInt64, true)))
}

impl StructFunction for SignatureFn {
    fn name(&self) -> &'static str {
        "dedup_signature"
    }

    fn arg_types(&self) -> Vec<DataType> {
        vec![DataType::Utf8]
    }

    fn fields(&self) -> Fields {
        Fields::from(vec![
            Field::new("exact", DataType::FixedSizeBinary(16), false),
            Field::new("buckets", u64_list(), false),
            Field::new("shingles", DataType::Binary, false),
        ])
    }

    fn compute(&self, args: &[ArrayRef]) -> DfResult<StructArray> {
        let [text] = args else {
            return exec_err!("dedup_signature takes 1 argument");
        };
        let text: &StringArray = text.as_string();
        let mut shingler = Shingler::new(self.opts.ngram, self.opts.seed);
        let mut exact = FixedSizeBinaryBuilder::with_capacity(text.len(), 16);
        let mut buckets = ListBuilder::new(UInt64Builder::new());
        let mut shingles = BinaryBuilder::new();
        let mut bytes = Vec::new();
        let (mut set, mut sig, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..text.len() {
            let value = if text.is_valid(i) { text.value(i) } else { "" };
            shingler.read(value);
            exact.append_value(shingler.exact_hash().to_le_bytes())?;
            if self.opts.near {
                shingler.shingles(&mut set);
                if !set.is_empty() {
                    self.hasher.signature(&set, &mut sig);
                    self.hasher.band_keys(&sig, &mut keys);
                    buckets.values().append_slice(&keys);
                }
                bytes.clear();
                bytes.extend(set.iter().flat_map(|s| s.to_le_bytes()));
            }
            buckets.append(true);
            shingles.append_value(&bytes);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(exact.finish()),
            Arc::new(buckets.finish()),
            Arc::new(shingles.finish()),
        ];
        Ok(StructArray::try_new(self.fields(), columns, None)?)
    }

    fn identity(&self) -> String {
        serde_json::to_string(&self.opts).unwrap_or_default()
    }
}

/// `shingle_jaccard(a, b)`: exact Jaccard similarity of two shingle sets, each stored as
/// its sorted, unique hashes in little-endian bytes (Binary moves through joins much faster
/// than a list column).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ShingleJaccard {
    signature: Signature,
}

impl ShingleJaccard {
    fn new() -> Self {
        ShingleJaccard {
            signature: Signature::exact(
                vec![DataType::Binary, DataType::Binary],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for ShingleJaccard {
    fn name(&self) -> &str {
        "shingle_jaccard"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [a, b] = arrays.as_slice() else {
            return exec_err!("shingle_jaccard takes 2 arguments");
        };
        let (a, b) = (a.as_binary::<i32>(), b.as_binary::<i32>());
        let out: Float64Array = (0..a.len())
            .map(|i| {
                (a.is_valid(i) && b.is_valid(i)).then(|| jaccard_le_bytes(a.value(i), b.value(i)))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harman_dedup::components::UnionFind;

    fn scratch() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Large-star / small-star in DataFusion gives the components union-find gives, on a
    /// random graph with long chains (which need several rounds) and repeated edges.
    #[tokio::test]
    async fn star_components_match_union_find() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut edges: Vec<(u64, u64)> = (0..400).map(|_| (next(1000), next(1000))).collect();
        // A path 5000 - 5001 - … - 5200 given in shuffled order, and a star.
        let mut path: Vec<(u64, u64)> = (5000..5200).map(|i| (i + 1, i)).collect();
        for i in (1..path.len()).rev() {
            let j = next(i as u64 + 1) as usize;
            path.swap(i, j);
        }
        edges.extend(path);
        edges.extend((0..30).map(|i| (9000, 9001 + i)));
        edges.push((7, 7));
        edges.extend(edges.clone().into_iter().take(50));

        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        let batch = RecordBatch::try_new(
            edge_schema(),
            vec![
                Arc::new(UInt64Array::from_iter_values(edges.iter().map(|e| e.0))),
                Arc::new(UInt64Array::from_iter_values(edges.iter().map(|e| e.1))),
            ],
        )
        .unwrap();
        ctx.register_batch("e0", batch).unwrap();
        let s = scratch();
        let (table, rounds) = star_components(&ctx, &s, "e0").await.unwrap();
        assert!(rounds >= 2, "{rounds} rounds");
        let got: BTreeMap<u64, u64> = ctx
            .sql(&format!("SELECT u, v FROM {table}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .iter()
            .flat_map(|b| {
                let (u, v) = (
                    b.column(0).as_primitive::<UInt64Type>(),
                    b.column(1).as_primitive::<UInt64Type>(),
                );
                (0..b.num_rows())
                    .map(move |i| (u.value(i), v.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut uf = UnionFind::default();
        for &(a, b) in &edges {
            uf.union(a, b);
        }
        let want: BTreeMap<u64, u64> = uf
            .components()
            .into_iter()
            .filter(|(n, r)| n != r)
            .collect();
        assert_eq!(got, want);
        assert_eq!(got[&5200], 5000);
    }

    #[test]
    fn options_are_checked_by_field() {
        let bad = |f: &dyn Fn(&mut DedupOptions)| {
            let mut o = DedupOptions::default();
            f(&mut o);
            o.validate().unwrap_err().field.unwrap()
        };
        assert_eq!(bad(&|o| o.table = "documents".into()), "table");
        assert_eq!(bad(&|o| o.rows = 30), "rows");
        assert_eq!(bad(&|o| o.threshold = 0.0), "threshold");
        assert_eq!(bad(&|o| o.ngram = 0), "ngram");
        assert_eq!(
            bad(&|o| {
                o.substring = true;
                o.substring_min_bytes = 4
            }),
            "substring_min_bytes"
        );
        assert_eq!(
            bad(&|o| {
                o.substring = true;
                o.substring_group_mb = 0
            }),
            "substring_group_mb"
        );
        assert_eq!(
            bad(&|o| {
                o.exact = false;
                o.near = false
            }),
            "near"
        );
        // Exact dedup alone does not look at the banding.
        let mut o = DedupOptions {
            near: false,
            rows: 30,
            ..DedupOptions::default()
        };
        assert!(o.validate().is_ok());
        o.table = "filtered".into();
        assert_eq!(o.validate().unwrap(), harman_schemas::FILTERED_TABLE);
        assert_eq!(size_bin(2), "2");
        assert_eq!(size_bin(3), "3-4");
        assert_eq!(size_bin(9), "9-16");
        assert_eq!(size_bin(16), "9-16");
    }
}
