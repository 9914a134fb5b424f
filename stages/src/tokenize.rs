//! The `tokenize` stage: every document of a text table (`text`, `filtered`, or any table
//! with an id and a text column) encoded with a byte-level BPE (GPT-2's by default, or a
//! `tokenizer.json`), then packed into llm.c training shards.
//!
//! Per part, the `tokens` table: each document's ids, its split (train/val from
//! sha256(seed ‖ id), so a document's split never depends on what else is in the data) and
//! its shuffle key (more bits of the same hash), sorted by that key. Once every part is
//! committed, [`Stage::finish`] merges the sorted parts by key — a global shuffle in
//! bounded memory, one batch per part — and writes `train_NNNNNN.bin` / `val_NNNNNN.bin`
//! (llm.c's format: [`harman_tokenizer::shard`]; each document preceded by the end-of-text
//! token, as llm.c's data scripts do; a document may continue into the next shard) and
//! `index.parquet` (shard, id, offset, length). Tokens are counted per source (the ingest
//! stage a document came from) and per language, and the Chinchilla plan of the train split
//! is written to `_model_plan.txt`.

use crate::parquet_io::read_part;
use crate::report::{ReportData, ShardReport};
use crate::stage::{
    FinishContext, Finished, FinishedFile, OptionError, ShardInput, Stage, StageContext,
    StageError, StageInputs,
};
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, RecordBatch, StringArray, StringBuilder,
    UInt32Array, UInt32Builder, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::{StreamExt, TryStreamExt};
use harman_tokenizer::{chinchilla, shard, Tokenizer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

pub const KIND: &str = "tokenize";

/// Options of a `tokenize` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizeOptions {
    /// `gpt2` (built in) or the path of a `tokenizer.json` (byte-level BPE, e.g. one
    /// `harman train-tokenizer` wrote), relative to the config's folder.
    pub tokenizer: String,
    /// The column holding the text (null or empty texts are skipped and counted).
    pub text_column: String,
    /// The column holding the document id.
    pub id_column: String,
    /// The column holding the language (`und` when absent).
    pub lang_column: String,
    /// Fraction of documents in the validation split.
    pub val_fraction: f64,
    /// Seed of the split and of the shuffle.
    pub seed: u64,
    /// Shuffle documents (by a hash of seed and id); false keeps the input order.
    pub shuffle: bool,
    /// Tokens per shard file (llm.c's FineWeb shards: 100,000,000).
    pub shard_tokens: u64,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        TokenizeOptions {
            tokenizer: "gpt2".into(),
            text_column: "text".into(),
            id_column: "id".into(),
            lang_column: "lang".into(),
            val_fraction: 0.01,
            seed: 0,
            shuffle: true,
            shard_tokens: 100_000_000,
        }
    }
}

/// The `tokenize` stage.
#[derive(Debug)]
pub struct TokenizeStage {
    opts: TokenizeOptions,
    tokenizer: Arc<Tokenizer>,
    /// sha256 of the tokenizer file (so a changed vocabulary reruns the stage).
    tokenizer_sha256: String,
    eot: u32,
    schema: SchemaRef,
}

/// Rows of one output batch at most (Binary offsets are 32-bit).
const BATCH_TOKEN_BYTES: usize = 256 << 20;

impl TokenizeStage {
    pub fn factory(
        options: &serde_json::Value,
        context: &StageContext,
    ) -> Result<Arc<dyn Stage>, OptionError> {
        let mut opts: TokenizeOptions = OptionError::parse(options)?;
        if opts.tokenizer != "gpt2" {
            opts.tokenizer = context.resolve(&opts.tokenizer).display().to_string();
        }
        Ok(Arc::new(TokenizeStage::new(opts)?))
    }

    pub fn new(opts: TokenizeOptions) -> Result<TokenizeStage, OptionError> {
        if !(0.0..1.0).contains(&opts.val_fraction) {
            return Err(OptionError::field(
                "val_fraction",
                format!(
                    "val_fraction = {} is outside [0, 1): use e.g. 0.01 for 1% validation documents",
                    opts.val_fraction
                ),
            ));
        }
        if opts.shard_tokens < 1024 {
            return Err(OptionError::field(
                "shard_tokens",
                format!(
                    "shard_tokens = {} is too small: use at least 1024 (llm.c's shards hold 100,000,000)",
                    opts.shard_tokens
                ),
            ));
        }
        let tokenizer = Tokenizer::load(&opts.tokenizer).map_err(|e| {
            OptionError::field(
                "tokenizer",
                format!(
                    "tokenizer = {:?}: {e} (use \"gpt2\" or a tokenizer.json)",
                    opts.tokenizer
                ),
            )
        })?;
        let eot = tokenizer.eot().ok_or_else(|| {
            OptionError::field(
                "tokenizer",
                format!(
                    "{} has no <|endoftext|> token to separate documents; train one with it \
                     (harman train-tokenizer adds it)",
                    opts.tokenizer
                ),
            )
        })?;
        let tokenizer_sha256 = if opts.tokenizer == "gpt2" {
            "gpt2".to_string()
        } else {
            let bytes = std::fs::read(&opts.tokenizer)
                .map_err(|e| OptionError::field("tokenizer", e.to_string()))?;
            hex::encode(Sha256::digest(&bytes))
        };
        Ok(TokenizeStage {
            opts,
            tokenizer,
            tokenizer_sha256,
            eot,
            schema: Arc::new(harman_schemas::tokens_schema()),
        })
    }

    pub fn options(&self) -> &TokenizeOptions {
        &self.opts
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The shard format version for this vocabulary.
    fn version(&self) -> i32 {
        shard::version_for(self.tokenizer.vocab_size())
    }
}

/// A string column of a batch, whatever its string type; None when absent.
fn string_column(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>, StageError> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let cast = arrow::compute::cast(col, &DataType::Utf8)?;
    Ok(Some(cast.as_string::<i32>().clone()))
}

/// One tokenized document before sorting.
struct Doc {
    id: String,
    lang: String,
    val: bool,
    order: u64,
    n_bytes: u64,
    tokens: Vec<u32>,
}

/// Split and shuffle key of a document: sha256(seed little-endian ‖ id).
pub fn split_and_order(seed: u64, id: &str) -> (u64, u64) {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(id.as_bytes());
    let d = h.finalize();
    let word = |i: usize| u64::from_be_bytes(d[i..i + 8].try_into().expect("8 bytes"));
    (word(0), word(8))
}

impl TokenizeStage {
    /// Tokenizes one part's batches: the sorted output batches and the part's counters.
    fn tokenize_part(
        &self,
        batches: &[RecordBatch],
        part: usize,
        origin: &str,
        threads: usize,
    ) -> Result<(Vec<RecordBatch>, ReportData), StageError> {
        let mut data = ReportData::default();
        let val_below = (self.opts.val_fraction * 2f64.powi(64)) as u64;
        let mut docs: Vec<Doc> = Vec::new();
        // Each batch's text column, and (batch, row) of every document to encode.
        let mut columns: Vec<StringArray> = Vec::new();
        let mut rows: Vec<(usize, usize)> = Vec::new();
        let mut position = 0u64;
        for batch in batches {
            let ids = string_column(batch, &self.opts.id_column)?.ok_or_else(|| {
                StageError::Input(format!(
                    "the input has no `{}` column (id_column)",
                    self.opts.id_column
                ))
            })?;
            let text = string_column(batch, &self.opts.text_column)?.ok_or_else(|| {
                StageError::Input(format!(
                    "the input has no `{}` column (text_column)",
                    self.opts.text_column
                ))
            })?;
            let lang = string_column(batch, &self.opts.lang_column)?;
            let keep: Option<BooleanArray> = batch
                .column_by_name("keep")
                .and_then(|c| c.as_boolean_opt().cloned());
            for row in 0..batch.num_rows() {
                position += 1;
                data.add("documents", 1);
                if keep
                    .as_ref()
                    .is_some_and(|k| !k.is_null(row) && !k.value(row))
                {
                    data.add("documents.dropped", 1);
                    continue;
                }
                if text.is_null(row) || text.value(row).is_empty() {
                    data.add("documents.empty", 1);
                    continue;
                }
                let id = ids.value(row).to_string();
                let (split, order) = split_and_order(self.opts.seed, &id);
                let order = if self.opts.shuffle {
                    order
                } else {
                    ((part as u64) << 40) | (position - 1)
                };
                docs.push(Doc {
                    id,
                    lang: lang
                        .as_ref()
                        .filter(|l| !l.is_null(row) && !l.value(row).is_empty())
                        .map_or_else(|| "und".to_string(), |l| l.value(row).to_string()),
                    val: split < val_below,
                    order,
                    n_bytes: text.value(row).len() as u64,
                    tokens: Vec::new(),
                });
                rows.push((columns.len(), row));
            }
            columns.push(text);
        }
        let texts: Vec<&str> = rows.iter().map(|&(c, r)| columns[c].value(r)).collect();
        let encoded = self.tokenizer.encode_batch(&texts, threads);
        drop(texts);
        for (doc, ids) in docs.iter_mut().zip(encoded) {
            doc.tokens = ids;
        }
        // Stable: equal keys (the same id twice) keep their input order.
        docs.sort_by_key(|d| d.order);

        let mut out = Vec::new();
        let mut start = 0;
        while start < docs.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < docs.len()
                && (end == start || bytes + docs[end].tokens.len() * 4 <= BATCH_TOKEN_BYTES)
            {
                bytes += docs[end].tokens.len() * 4;
                end += 1;
            }
            out.push(self.batch(&docs[start..end], origin, &mut data)?);
            start = end;
        }
        Ok((out, data))
    }

    fn batch(
        &self,
        docs: &[Doc],
        origin: &str,
        data: &mut ReportData,
    ) -> Result<RecordBatch, StageError> {
        let n = docs.len();
        let mut id = StringBuilder::with_capacity(n, n * 32);
        let mut source = StringBuilder::with_capacity(n, n * origin.len());
        let mut lang = StringBuilder::with_capacity(n, n * 2);
        let mut split = StringBuilder::with_capacity(n, n * 5);
        let mut order = UInt64Builder::with_capacity(n);
        let mut n_bytes = UInt64Builder::with_capacity(n);
        let mut n_tokens = UInt32Builder::with_capacity(n);
        let total: usize = docs.iter().map(|d| d.tokens.len() * 4).sum();
        let mut tokens = BinaryBuilder::with_capacity(n, total);
        let mut buf = Vec::new();
        for d in docs {
            let split_name = if d.val { "val" } else { "train" };
            let t = d.tokens.len() as u64;
            data.add("tokens", t);
            data.add(&format!("tokens.{split_name}"), t);
            data.add(&format!("documents.{split_name}"), 1);
            data.add(&format!("tokens.source.{origin}"), t);
            data.add(&format!("tokens.lang.{}", d.lang), t);
            data.add("bytes", d.n_bytes);
            id.append_value(&d.id);
            source.append_value(origin);
            lang.append_value(&d.lang);
            split.append_value(split_name);
            order.append_value(d.order);
            n_bytes.append_value(d.n_bytes);
            n_tokens.append_value(d.tokens.len() as u32);
            buf.clear();
            for &tok in &d.tokens {
                buf.extend_from_slice(&tok.to_le_bytes());
            }
            tokens.append_value(&buf);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(source.finish()),
            Arc::new(lang.finish()),
            Arc::new(split.finish()),
            Arc::new(order.finish()),
            Arc::new(n_bytes.finish()),
            Arc::new(n_tokens.finish()),
            Arc::new(tokens.finish()),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[derive(Serialize)]
struct Params<'a> {
    #[serde(flatten)]
    opts: &'a TokenizeOptions,
    tokenizer_sha256: &'a str,
    vocab_size: usize,
}

#[async_trait]
impl Stage for TokenizeStage {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn output_table(&self) -> &'static str {
        harman_schemas::TOKENS_TABLE
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::to_value(Params {
            opts: &self.opts,
            tokenizer_sha256: &self.tokenizer_sha256,
            vocab_size: self.tokenizer.vocab_size(),
        })
        .unwrap_or_default()
    }

    fn inputs(&self) -> StageInputs {
        StageInputs::Upstream
    }

    async fn plan_shard(
        &self,
        ctx: &SessionContext,
        shard: &ShardInput,
        report: Arc<ShardReport>,
    ) -> Result<DataFrame, StageError> {
        let batches: Vec<RecordBatch> = read_part(shard).await?.try_collect().await?;
        report
            .bytes_read
            .fetch_add(shard.size, std::sync::atomic::Ordering::Relaxed);
        let origin = shard.origin.clone().unwrap_or_else(|| "unknown".into());
        // The run's thread count (the executor sizes each shard's session with it).
        let threads = ctx.copied_config().target_partitions().max(1);
        let (out, data) = tokio::task::block_in_place(|| {
            self.tokenize_part(&batches, shard.index, &origin, threads)
        })?;
        report.merge(data);
        if out.is_empty() {
            return Ok(ctx.read_batch(RecordBatch::new_empty(self.schema.clone()))?);
        }
        Ok(ctx.read_batches(out)?)
    }

    fn finishes(&self) -> bool {
        true
    }

    async fn finish(&self, ctx: FinishContext) -> Result<Finished, StageError> {
        let version = self.version();
        let mut cursors = Vec::new();
        for part in &ctx.parts {
            cursors.push(Cursor::open(part).await?);
        }
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
        for (i, c) in cursors.iter().enumerate() {
            if let Some(order) = c.order() {
                heap.push(Reverse((order, i)));
            }
        }
        let mut writers = [
            ShardWriter::new("train", version, self.opts.shard_tokens, &ctx),
            ShardWriter::new("val", version, self.opts.shard_tokens, &ctx),
        ];
        let mut ids = Vec::new();
        while let Some(Reverse((_, i))) = heap.pop() {
            let c = &mut cursors[i];
            let (batch, row) = c
                .current()
                .ok_or_else(|| StageError::Input("cursor ended".into()))?;
            let id = batch.column(0).as_string::<i32>().value(row).to_string();
            let val = batch.column(3).as_string::<i32>().value(row) == "val";
            let bytes = batch.column(7).as_binary::<i32>().value(row);
            ids.clear();
            ids.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            writers[usize::from(val)].push(&id, self.eot, &ids).await?;
            c.advance().await?;
            if let Some(order) = c.order() {
                heap.push(Reverse((order, i)));
            }
        }
        let mut finished = Finished::default();
        let mut index = IndexBuilder::default();
        for w in &mut writers {
            w.flush().await?;
            finished
                .counters
                .insert(format!("shards.{}", w.split), w.files.len() as u64);
            finished
                .counters
                .insert(format!("shard_tokens.{}", w.split), w.written);
            finished.files.append(&mut w.files);
            index.append(&mut w.index);
        }
        finished.files.push(index.write(&ctx).await?);
        Ok(finished)
    }

    fn summary_files(&self, counters: &BTreeMap<String, u64>) -> Vec<(String, Vec<u8>)> {
        let train = counters.get("tokens.train").copied().unwrap_or(0);
        let plan = chinchilla::Plan::for_tokens(train as f64);
        let mut text = format!(
            "dataset: {train} train tokens, {} validation tokens ({} tokenizer, {} ids)\n",
            counters.get("tokens.val").copied().unwrap_or(0),
            self.tokenizer.name(),
            self.tokenizer.vocab_size()
        );
        text.push_str(&plan.render());
        vec![("_model_plan.txt".to_string(), text.into_bytes())]
    }
}

/// Reads one sorted part row by row.
struct Cursor {
    stream: futures::stream::BoxStream<
        'static,
        Result<RecordBatch, datafusion::error::DataFusionError>,
    >,
    batch: Option<RecordBatch>,
    row: usize,
}

impl Cursor {
    async fn open(part: &ShardInput) -> Result<Cursor, StageError> {
        let stream = read_part(part).await?.boxed();
        let mut c = Cursor {
            stream,
            batch: None,
            row: 0,
        };
        c.next_batch().await?;
        Ok(c)
    }

    async fn next_batch(&mut self) -> Result<(), StageError> {
        self.row = 0;
        self.batch = None;
        while let Some(b) = self.stream.next().await {
            let b = b?;
            if b.num_rows() > 0 {
                self.batch = Some(b);
                break;
            }
        }
        Ok(())
    }

    fn current(&self) -> Option<(&RecordBatch, usize)> {
        self.batch.as_ref().map(|b| (b, self.row))
    }

    fn order(&self) -> Option<u64> {
        let (b, row) = self.current()?;
        Some(
            b.column(4)
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .value(row),
        )
    }

    async fn advance(&mut self) -> Result<(), StageError> {
        self.row += 1;
        if self
            .batch
            .as_ref()
            .is_some_and(|b| self.row >= b.num_rows())
        {
            self.next_batch().await?;
        }
        Ok(())
    }
}

/// Rows of `index.parquet`.
#[derive(Default)]
struct IndexBuilder {
    shard: Vec<String>,
    id: Vec<String>,
    offset: Vec<u64>,
    length: Vec<u64>,
    piece: Vec<u32>,
}

impl IndexBuilder {
    fn append(&mut self, other: &mut IndexBuilder) {
        self.shard.append(&mut other.shard);
        self.id.append(&mut other.id);
        self.offset.append(&mut other.offset);
        self.length.append(&mut other.length);
        self.piece.append(&mut other.piece);
    }

    async fn write(self, ctx: &FinishContext) -> Result<FinishedFile, StageError> {
        let schema = Arc::new(harman_schemas::token_index_schema());
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(self.shard)),
                Arc::new(StringArray::from(self.id)),
                Arc::new(UInt64Array::from(self.offset)),
                Arc::new(UInt64Array::from(self.length)),
                Arc::new(UInt32Array::from(self.piece)),
            ],
        )?;
        ctx.put_parquet(
            "index.parquet",
            &batch,
            parquet::basic::Compression::ZSTD(Default::default()),
        )
        .await
    }
}

/// Packs documents of one split into shard files; the open shard is kept in memory as the
/// file's bytes (at most `shard_tokens` × 2 or 4 bytes).
struct ShardWriter {
    split: &'static str,
    version: i32,
    capacity: u64,
    /// Where shards are written (its parts left out).
    ctx: FinishContext,
    /// The open shard: room for the header, then its tokens.
    bytes: Vec<u8>,
    /// Tokens in the open shard.
    open: u64,
    files: Vec<FinishedFile>,
    index: IndexBuilder,
    /// Tokens written to finished shards.
    written: u64,
}

impl ShardWriter {
    fn new(split: &'static str, version: i32, capacity: u64, ctx: &FinishContext) -> Self {
        ShardWriter {
            split,
            version,
            capacity,
            ctx: FinishContext {
                parts: Vec::new(),
                ..ctx.clone()
            },
            bytes: vec![0; shard::HEADER_BYTES],
            open: 0,
            files: Vec::new(),
            index: IndexBuilder::default(),
            written: 0,
        }
    }

    fn name(&self) -> String {
        format!("{}_{:06}.bin", self.split, self.files.len())
    }

    /// Appends the end-of-text token and a document, cutting shards where they fill.
    async fn push(&mut self, id: &str, eot: u32, ids: &[u32]) -> Result<(), StageError> {
        self.append(&[eot]).await?;
        let mut rest = ids;
        let mut piece = 0;
        while !rest.is_empty() || piece == 0 {
            let take = ((self.capacity - self.open) as usize).min(rest.len());
            self.index.shard.push(self.name());
            self.index.id.push(id.to_string());
            self.index.offset.push(self.open);
            self.index.length.push(take as u64);
            self.index.piece.push(piece);
            self.append(&rest[..take]).await?;
            rest = &rest[take..];
            piece += 1;
        }
        Ok(())
    }

    /// Adds tokens that fit in the open shard; writes it when full.
    async fn append(&mut self, ids: &[u32]) -> Result<(), StageError> {
        shard::push_tokens(&mut self.bytes, self.version, ids);
        self.open += ids.len() as u64;
        if self.open == self.capacity {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the open shard, if it holds anything.
    async fn flush(&mut self) -> Result<(), StageError> {
        if self.open == 0 {
            return Ok(());
        }
        let n = self.open;
        let mut bytes = std::mem::replace(&mut self.bytes, vec![0; shard::HEADER_BYTES]);
        bytes[..shard::HEADER_BYTES].copy_from_slice(&shard::header(self.version, n));
        self.open = 0;
        let name = self.name();
        let file = self.ctx.put(&name, bytes, n).await?;
        self.written += n;
        self.files.push(file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_with_the_field_named() {
        let bad = TokenizeOptions {
            val_fraction: 1.5,
            ..Default::default()
        };
        assert_eq!(
            TokenizeStage::new(bad).unwrap_err().field.as_deref(),
            Some("val_fraction")
        );
        let bad = TokenizeOptions {
            shard_tokens: 10,
            ..Default::default()
        };
        assert_eq!(
            TokenizeStage::new(bad).unwrap_err().field.as_deref(),
            Some("shard_tokens")
        );
        let bad = TokenizeOptions {
            tokenizer: "/nonexistent/tokenizer.json".into(),
            ..Default::default()
        };
        assert_eq!(
            TokenizeStage::new(bad).unwrap_err().field.as_deref(),
            Some("tokenizer")
        );
    }

    #[test]
    fn split_depends_on_seed_and_id_only() {
        let a = split_and_order(0, "doc-1");
        assert_eq!(a, split_and_order(0, "doc-1"));
        assert_ne!(a, split_and_order(1, "doc-1"));
        assert_ne!(a, split_and_order(0, "doc-2"));
        // About val_fraction of the documents land in val.
        let below = (0.1 * 2f64.powi(64)) as u64;
        let val = (0..10_000)
            .filter(|i| split_and_order(7, &format!("d{i}")).0 < below)
            .count();
        assert!((800..1200).contains(&val), "{val}");
    }
}
