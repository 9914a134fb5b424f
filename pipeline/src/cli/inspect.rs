//! `harman inspect URL`: what is at a location — a stage output (manifest summary, schema,
//! sample rows), a run folder (its stages), a Parquet file, or a raw WARC/JSONL shard (record
//! counts, sample documents, rejects).

use super::Failure;
use crate::exec::find_manifests;
use crate::manifest::StageManifest;
use crate::store::{self, Location};
use anyhow::Context;
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::{StreamExt, TryStreamExt};
use harman_stages::ingest::{self, IngestOptions, InputFormat};
use harman_stages::parquet_io::ObjectParquetReader;
use object_store::ObjectStoreExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A stage folder, run folder, Parquet file, or WARC/JSONL shard (path or URL).
    pub url: String,
    /// Sample rows to show.
    #[arg(long, default_value_t = 3)]
    pub rows: usize,
    /// Format of a raw shard whose name does not tell.
    #[arg(long, value_enum)]
    pub format: Option<RawFormat>,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// The tokenizer of a token shard (`.bin`): `gpt2` or a tokenizer.json.
    #[arg(long, default_value = "gpt2")]
    pub tokenizer: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum RawFormat {
    Warc,
    Jsonl,
}

pub async fn inspect(args: InspectArgs) -> Result<(), Failure> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let loc = store::resolve(&args.url, &cwd)?;
    if loc.store.head(&loc.path).await.is_ok() {
        // A single file: Parquet, or a raw shard.
        if args.url.ends_with(".parquet") {
            return Ok(show_parquet(&loc, args.rows).await?);
        }
        if args.url.ends_with(".bin") {
            return show_token_shard(&args).await;
        }
        return show_raw_shard(&loc, &args).await;
    }
    let stages = find_manifests(&loc).await?;
    if let [(dir, m)] = stages.as_slice() {
        if dir.url == loc.url {
            show_manifest(m);
            if let Some(first) = m.outputs.first() {
                println!();
                show_parquet(&loc.join(&first.path), args.rows).await?;
            }
            return Ok(());
        }
    }
    if !stages.is_empty() {
        println!("run at {}", loc.url);
        println!(
            "{:<16} {:<10} {:>7} {:>12} {:>9}  status",
            "stage", "kind", "parts", "rows", "rejected"
        );
        for (_, m) in &stages {
            println!(
                "{:<16} {:<10} {:>7} {:>12} {:>9}  {}",
                m.stage,
                m.kind,
                m.outputs.len(),
                m.rows(),
                m.rejected(),
                m.status
            );
        }
        return Ok(());
    }
    Err(anyhow::anyhow!(
        "{}: no file there, and no harman manifest in it or its stage folders",
        loc.url
    )
    .into())
}

fn show_manifest(m: &StageManifest) {
    println!(
        "stage       {} [{}] of pipeline {}",
        m.stage, m.kind, m.pipeline
    );
    println!("table       {} v{}", m.table, m.schema_version);
    println!("status      {}", m.status);
    println!("config      {}", m.config_hash);
    println!(
        "built by    harman {} ({})",
        m.harman_version, m.git_revision
    );
    println!(
        "inputs      {} shard(s), {} bytes",
        m.inputs.len(),
        m.inputs.iter().map(|i| i.size).sum::<u64>()
    );
    println!(
        "outputs     {} part(s), {} rows, {} bytes",
        m.outputs.len(),
        m.rows(),
        m.outputs.iter().map(|o| o.bytes).sum::<u64>()
    );
    println!(
        "rejected    {} ({:.4} of records; limit {})",
        m.rejected(),
        m.rejected_fraction,
        m.max_reject_fraction
    );
    for r in &m.reports {
        println!("report      {} ({} bytes)", r.path, r.bytes);
    }
    let funnel = show_funnel(m);
    println!("counters");
    for (k, v) in &m.counters {
        if funnel && (k.starts_with("dropped_first.") || k.starts_with("failed_any.")) {
            continue;
        }
        println!("  {k:<36} {v}");
    }
}

/// The filter funnel of a `filter` stage manifest: documents in, then per conjunct of the
/// keep-predicate the documents it dropped first, all that fail it, and what is left.
fn show_funnel(m: &StageManifest) -> bool {
    let Some(conjuncts) = m.params.get("conjuncts").and_then(|c| c.as_array()) else {
        return false;
    };
    let conjuncts: Vec<String> = conjuncts
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let f = harman_stages::filter::Funnel::from_counters(&conjuncts, &m.counters);
    if let Some(p) = m.params.get("predicate").and_then(|p| p.as_str()) {
        println!("keep        {p}");
    }
    println!(
        "funnel      {:<44} {:>10} {:>10} {:>10}",
        "", "dropped", "failing", "left"
    );
    println!("  {:<54} {:>32}", "documents in", f.documents);
    let mut left = f.documents;
    for (c, first, any) in &f.steps {
        left = left.saturating_sub(*first);
        println!("  {:<54} {first:>10} {any:>10} {left:>10}", cut(c, 54));
    }
    println!("  {:<54} {:>32}", "kept", f.kept);
    true
}

async fn show_parquet(loc: &Location, rows: usize) -> anyhow::Result<()> {
    let meta = loc
        .store
        .head(&loc.path)
        .await
        .with_context(|| format!("cannot open {}", loc.url))?;
    let reader = ObjectParquetReader::new(loc.store.clone(), loc.path.clone(), meta.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let md = builder.metadata().file_metadata();
    println!("file        {} ({} bytes)", loc.url, meta.size);
    println!(
        "rows        {} in {} row group(s)",
        md.num_rows(),
        builder.metadata().num_row_groups()
    );
    println!("schema");
    for f in builder.schema().fields() {
        println!(
            "  {:<16} {}{}",
            f.name(),
            f.data_type(),
            if f.is_nullable() { "" } else { " not null" }
        );
    }
    let mut stream = builder
        .with_limit(rows)
        .with_batch_size(rows.max(1))
        .build()?;
    if let Some(batch) = stream.next().await {
        print_rows(&batch?, rows);
    }
    Ok(())
}

/// The bytes of a binary column's value (any of Arrow's binary layouts).
fn binary_value(col: &dyn Array, row: usize) -> Option<&[u8]> {
    match col.data_type() {
        DataType::Binary => Some(col.as_binary::<i32>().value(row)),
        DataType::LargeBinary => Some(col.as_binary::<i64>().value(row)),
        DataType::BinaryView => Some(col.as_binary_view().value(row)),
        _ => None,
    }
}

/// Print rows as `column: value` lines, long values cut.
pub fn print_rows(batch: &RecordBatch, limit: usize) {
    let opts = FormatOptions::default().with_null("null");
    for row in 0..batch.num_rows().min(limit) {
        println!("--- row {row}");
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let shown = if col.is_null(row) {
                "null".to_string()
            } else if let Some(v) = binary_value(col.as_ref(), row) {
                format!(
                    "<{} bytes> {:?}",
                    v.len(),
                    cut(&String::from_utf8_lossy(&v[..v.len().min(120)]), 100)
                )
            } else {
                match ArrayFormatter::try_new(col.as_ref(), &opts) {
                    Ok(f) => cut(&f.value(row).to_string(), 100),
                    Err(_) => "?".into(),
                }
            };
            println!("  {:<16} {}", field.name(), shown);
        }
    }
}

fn cut(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', "\\n").replace('\r', "\\r");
    if one_line.chars().count() > n {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    } else {
        one_line
    }
}

async fn show_raw_shard(loc: &Location, args: &InspectArgs) -> Result<(), Failure> {
    let format = match args.format {
        Some(RawFormat::Warc) => InputFormat::Warc,
        Some(RawFormat::Jsonl) => InputFormat::Jsonl,
        None => InputFormat::Auto
            .resolve(&loc.url)
            .map_err(anyhow::Error::msg)?,
    };
    if format == InputFormat::Parquet {
        return Ok(show_parquet(loc, args.rows).await?);
    }
    // Streamed: a multi-GB shard is never held in memory.
    let get = loc
        .store
        .get(&loc.path)
        .await
        .with_context(|| format!("cannot open {}", loc.url))?;
    let body = get.into_stream().map_err(std::io::Error::other);
    let input = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
    let mut opts = IngestOptions::with_inputs(vec![loc.url.clone()]);
    opts.text_field = args.text_field.clone();
    let url = loc.url.clone();
    let limit = args.rows;
    let (sample, data) = tokio::task::spawn_blocking(move || {
        let mut sample: Vec<RecordBatch> = Vec::new();
        let mut emit = |b: RecordBatch| {
            if sample.iter().map(RecordBatch::num_rows).sum::<usize>() < limit {
                sample.push(b);
            }
            Ok(())
        };
        ingest::read_stream(input, &url, format, &opts, &mut emit).map(|d| (sample, d))
    })
    .await
    .context("reader failed")??;
    println!("shard       {} ({:?})", loc.url, format);
    println!(
        "sha256      {}",
        data.input_sha256.as_deref().unwrap_or("-")
    );
    println!("counters");
    for (k, v) in &data.counters {
        println!("  {k:<36} {v}");
    }
    if !data.rejects.is_empty() {
        println!("rejects");
        for r in data.rejects.iter().take(20) {
            println!(
                "  offset {:<10} {:<18} {}",
                r.offset,
                r.reason.as_str(),
                r.detail
            );
        }
    }
    let mut shown = 0;
    for b in &sample {
        let n = (limit - shown).min(b.num_rows());
        print_rows(&b.slice(0, n), n);
        shown += n;
    }
    Ok(())
}

/// A token shard: header, token and document counts, the first documents as text.
async fn show_token_shard(args: &InspectArgs) -> Result<(), Failure> {
    let tok = harman_tokenizer::Tokenizer::load(&args.tokenizer)?;
    let (version, tokens) = super::tokenize::read_shard(&args.url).await?;
    let eot = tok.eot().unwrap_or(u32::MAX);
    let docs = super::tokenize::documents(&tokens, eot);
    println!("token shard {}", args.url);
    println!(
        "format      llm.c, magic {}, version {version} ({})",
        harman_tokenizer::shard::MAGIC,
        if version == 1 { "uint16" } else { "uint32" }
    );
    println!("tokens      {}", tokens.len());
    println!("documents   {} (separated by id {eot})", docs.len());
    if let Some(max) = tokens.iter().max() {
        if *max as usize >= tok.vocab_size() {
            println!(
                "warning     id {max} is outside the {} tokenizer ({} ids)",
                tok.name(),
                tok.vocab_size()
            );
            return Ok(());
        }
    }
    for (i, d) in docs.iter().take(args.rows).enumerate() {
        println!("--- document {i} ({} tokens)", d.len());
        println!("{}", cut(&tok.decode(d)?, 400));
    }
    Ok(())
}
