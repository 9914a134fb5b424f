//! The tokenizer commands. `harman tokenize` runs the tokenize stage on JSONL/Parquet
//! tables (ingest → text passed through → tokenize, resumable like any run) and prints the
//! token counts, shards and Chinchilla plan; with `--text FILE --ids` it prints the ids of
//! each line of a plain text file. `harman train-tokenizer` trains a byte-level BPE and
//! writes its `tokenizer.json`; `harman detokenize` prints a token shard's documents as text;
//! `harman plan-model` prints the Chinchilla plan for a token or parameter count.

use super::{options_error, Failure};
use crate::exec::{self, RunOptions};
use crate::progress::Progress;
use crate::store;
use anyhow::{anyhow, Context};
use harman_tokenizer::{chinchilla, hf, shard, train, Tokenizer};
use object_store::ObjectStoreExt;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// JSONL(.zst/.gz) or Parquet files, globs or URLs (s3://…) of documents.
    pub inputs: Vec<String>,
    /// A plain text file: print the ids of each of its lines (with --ids).
    #[arg(long, conflicts_with = "inputs")]
    pub text: Option<PathBuf>,
    /// With --text: one line of space-separated ids per input line.
    #[arg(long, requires = "text")]
    pub ids: bool,
    /// Where to write (path or URL); the shards are in its `tokenize/` folder.
    #[arg(long, required_unless_present = "text")]
    pub output: Option<String>,
    /// `gpt2` (built in) or a tokenizer.json.
    #[arg(long, default_value = "gpt2")]
    pub tokenizer: String,
    /// The column holding each document's id.
    #[arg(long, default_value = "id")]
    pub id_field: String,
    /// The column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Options of the tokenize stage as TOML, e.g. --options 'val_fraction = 0.05
    /// shard_tokens = 10000000'. Keys as in a `tokenize` stage of a config.
    #[arg(long, default_value = "")]
    pub options: String,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Recompute even what is committed.
    #[arg(long)]
    pub force: bool,
}

pub async fn tokenize(args: TokenizeArgs, bars: bool) -> Result<(), Failure> {
    if let Some(path) = &args.text {
        if !args.ids {
            return Err(anyhow!("--text prints ids: add --ids").into());
        }
        return print_ids(path, &args.tokenizer);
    }
    let output = args
        .output
        .clone()
        .ok_or_else(|| anyhow!("--output is required with table inputs"))?;
    if args.inputs.is_empty() {
        return Err(anyhow!("give input files, or --text FILE --ids").into());
    }
    let mut options: toml::Table = toml::from_str(&args.options)
        .map_err(|e| options_error(format!("not valid TOML: {}", e.message()), None))?;
    options
        .entry("tokenizer")
        .or_insert_with(|| args.tokenizer.clone().into());
    options.insert("kind".into(), "tokenize".into());
    let config = super::single_stage_config(
        "tokenize",
        &args.inputs,
        &args.id_field,
        &args.text_field,
        &output,
        options,
    )?;
    let opts = RunOptions {
        output: Some(output),
        threads: args.threads,
        force: args.force,
        ..RunOptions::default()
    };
    let outcomes = exec::run(&config, &opts, &Progress::new(bars)).await?;
    if let Some(o) = outcomes.iter().find(|o| o.manifest.stage == "tokenize") {
        print_summary(&o.manifest.counters);
        for r in &o.manifest.reports {
            if r.path.ends_with(".bin") || r.path == "index.parquet" {
                println!("  {:<22} {:>14} {:>14} bytes", r.path, r.rows, r.bytes);
            }
        }
        if let Some(plan) = super::stage_file(&o.url, "_model_plan.txt").await? {
            print!("{plan}");
        }
        println!("output {}", o.url);
    }
    Ok(())
}

/// Token counts of a tokenize manifest, per split, source and language.
fn print_summary(c: &std::collections::BTreeMap<String, u64>) {
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    println!(
        "documents {}  tokenized {} (train {}, val {})  empty {}  dropped {}",
        get("documents"),
        get("documents.train") + get("documents.val"),
        get("documents.train"),
        get("documents.val"),
        get("documents.empty"),
        get("documents.dropped")
    );
    println!(
        "tokens {} (train {}, val {}) from {} bytes: {:.3} tokens/byte",
        get("tokens"),
        get("tokens.train"),
        get("tokens.val"),
        get("bytes"),
        get("tokens") as f64 / get("bytes").max(1) as f64
    );
    for (prefix, what) in [
        ("tokens.source.", "per source"),
        ("tokens.lang.", "per language"),
    ] {
        let parts: Vec<String> = c
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| format!("{s} {v}")))
            .collect();
        println!("tokens {what}: {}", parts.join(", "));
    }
}

/// `--text FILE --ids`: the ids of each line (without its line ending), one line each. A
/// line that is not UTF-8 gets an empty output line (so lines stay aligned), is reported with
/// its number and byte offset, and makes the command exit 1 after the rest is printed.
fn print_ids(path: &std::path::Path, tokenizer: &str) -> Result<(), Failure> {
    let tok = Tokenizer::load(tokenizer)?;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::new();
    let (mut number, mut offset, mut bad) = (0usize, 0u64, 0usize);
    let mut ids = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        number += 1;
        let mut content = line.as_slice();
        if let Some(s) = content.strip_suffix(b"\n") {
            content = s.strip_suffix(b"\r").unwrap_or(s);
        }
        ids.clear();
        match std::str::from_utf8(content) {
            Ok(text) => tok.encode_into(text, &mut ids),
            Err(e) => {
                bad += 1;
                eprintln!(
                    "{}: line {number} (byte {}) is not UTF-8: {e}; printed as an empty line",
                    path.display(),
                    offset + e.valid_up_to() as u64
                );
            }
        }
        offset += n as u64;
        let strs: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "{}", strs.join(" "))?;
    }
    out.flush()?;
    if bad > 0 {
        return Err(anyhow!("{bad} line(s) of {} are not UTF-8", path.display()).into());
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct TrainTokenizerArgs {
    /// JSONL(.zst/.gz)/Parquet/CSV tables with a text column, or plain .txt files (one
    /// document each).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Ids in the vocabulary, special tokens included.
    #[arg(long)]
    pub vocab_size: usize,
    /// Where to write the tokenizer.json.
    #[arg(long)]
    pub output: PathBuf,
    /// The column holding the text (tables).
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Train on this fraction of the documents, chosen by a hash of seed and position.
    #[arg(long, default_value_t = 1.0)]
    pub sample: f64,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pairs seen fewer times are never merged.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// Worker threads for counting (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Counts the pieces of `docs` on `threads` threads.
fn count_parallel(docs: &[String], threads: usize) -> train::WordCounts {
    let chunk = docs.len().div_ceil(threads.max(1)).max(1);
    let partial: Vec<train::WordCounts> = std::thread::scope(|s| {
        let handles: Vec<_> = docs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut c = train::WordCounts::default();
                    for d in part {
                        c.add(d);
                    }
                    c
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut total = train::WordCounts::default();
    for p in partial {
        total.merge(p);
    }
    total
}

pub fn train_tokenizer(args: TrainTokenizerArgs) -> Result<(), Failure> {
    if !(args.sample > 0.0 && args.sample <= 1.0) {
        return Err(anyhow!("--sample {} must be in (0, 1]", args.sample).into());
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let keep_below = (args.sample * 2f64.powi(64)).min(u64::MAX as f64) as u64;
    let mut counts = train::WordCounts::default();
    let mut docs_used = 0u64;
    let mut batch: Vec<String> = Vec::new();
    let mut batch_bytes = 0usize;
    const BATCH_BYTES: usize = 64 << 20;
    for input in &args.inputs {
        let name = input.display().to_string();
        let mut position = 0u64;
        let mut take = |text: String, batch: &mut Vec<String>, batch_bytes: &mut usize| {
            let key = format!("{name}:{position}");
            position += 1;
            let (h, _) = harman_stages::tokenize::split_and_order(args.seed, &key);
            if args.sample >= 1.0 || h < keep_below {
                *batch_bytes += text.len();
                batch.push(text);
            }
        };
        if input.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(input)
                .with_context(|| format!("cannot read {} as UTF-8 text", input.display()))?;
            take(text, &mut batch, &mut batch_bytes);
        } else {
            let cols = super::labeled::Columns {
                id: "id",
                text: &args.text_field,
                label: None,
            };
            super::labeled::for_each(input, &cols, &mut |row| {
                let row = row.map_err(|e| anyhow!(e))?;
                take(row.text, &mut batch, &mut batch_bytes);
                if batch_bytes >= BATCH_BYTES {
                    docs_used += batch.len() as u64;
                    counts.merge(count_parallel(&batch, threads));
                    batch.clear();
                    batch_bytes = 0;
                }
                Ok(())
            })?;
        }
    }
    docs_used += batch.len() as u64;
    counts.merge(count_parallel(&batch, threads));
    drop(batch);
    let counted = started.elapsed().as_secs_f64();
    let opts = train::TrainOptions {
        vocab_size: args.vocab_size,
        min_frequency: args.min_frequency,
        ..Default::default()
    };
    let tok = train::train(&counts, &opts)?;
    let json = hf::to_tokenizer_json(&tok)?;
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = args.output.with_extension("json.tmp");
    std::fs::write(&tmp, &json).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output)?;
    println!(
        "trained on {docs_used} documents, {} bytes, {} distinct pieces (counted in {counted:.2}s)",
        counts.bytes,
        counts.distinct()
    );
    println!(
        "vocabulary {} ids ({} merges + 256 bytes + {} special) in {:.2}s; wrote {}",
        tok.vocab_size(),
        tok.bpe().merges().len(),
        tok.specials().len(),
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    if tok.vocab_size() < args.vocab_size {
        println!(
            "note: the data has no more pairs seen {} times; the vocabulary is smaller than asked",
            args.min_frequency
        );
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct DetokenizeArgs {
    /// A token shard (`train_000000.bin`; path or URL).
    pub shard: String,
    /// `gpt2` or the tokenizer.json the shard was written with.
    #[arg(long, default_value = "gpt2")]
    pub tokenizer: String,
    /// Documents to print (0 = all).
    #[arg(long, default_value_t = 0)]
    pub docs: usize,
    /// Print ids instead of text.
    #[arg(long)]
    pub ids: bool,
}

/// The tokens of a shard at a path or URL.
pub async fn read_shard(url: &str) -> anyhow::Result<(i32, Vec<u32>)> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let loc = store::resolve(url, &cwd)?;
    let bytes = loc
        .store
        .get(&loc.path)
        .await
        .with_context(|| format!("cannot read {url}"))?
        .bytes()
        .await?;
    let (version, _) = shard::read_header(&bytes).with_context(|| url.to_string())?;
    let tokens = shard::read_tokens(&bytes).with_context(|| url.to_string())?;
    Ok((version, tokens))
}

/// Documents of a shard: the runs between end-of-text tokens (a first run without one
/// continues a document of the previous shard).
pub fn documents(tokens: &[u32], eot: u32) -> Vec<&[u32]> {
    let mut docs: Vec<&[u32]> = tokens.split(|&t| t == eot).collect();
    if docs.first().is_some_and(|d| d.is_empty()) {
        docs.remove(0);
    }
    docs
}

pub async fn detokenize(args: DetokenizeArgs) -> Result<(), Failure> {
    let tok = Tokenizer::load(&args.tokenizer)?;
    let eot = tok
        .eot()
        .ok_or_else(|| anyhow!("{} has no end-of-text token", args.tokenizer))?;
    let (_, tokens) = read_shard(&args.shard).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, doc) in documents(&tokens, eot).into_iter().enumerate() {
        if args.docs > 0 && i >= args.docs {
            break;
        }
        writeln!(out, "=== document {i} ({} tokens)", doc.len())?;
        if args.ids {
            let strs: Vec<String> = doc.iter().map(u32::to_string).collect();
            writeln!(out, "{}", strs.join(" "))?;
        } else {
            writeln!(out, "{}", tok.decode(doc)?)?;
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PlanModelArgs {
    /// Training tokens (e.g. 1.4e12, 300B, 9.8M).
    #[arg(long, conflicts_with = "params", required_unless_present = "params")]
    pub tokens: Option<String>,
    /// Model parameters (e.g. 124M, 7e9).
    #[arg(long)]
    pub params: Option<String>,
}

/// 124M, 1.4T, 7e9, 300000 → a number.
pub fn parse_count(s: &str) -> anyhow::Result<f64> {
    let t = s.trim().replace('_', "");
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('B') | Some('G') => (&t[..t.len() - 1], 1e9),
        Some('T') => (&t[..t.len() - 1], 1e12),
        _ => (t.as_str(), 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a count (e.g. 124M, 1.4e12, 300B)"))?;
    if !(v * mult).is_finite() || v <= 0.0 {
        return Err(anyhow!("{s:?} must be a positive count"));
    }
    Ok(v * mult)
}

pub fn plan_model(args: PlanModelArgs) -> Result<(), Failure> {
    let plan = match (&args.tokens, &args.params) {
        (Some(t), _) => chinchilla::Plan::for_tokens(parse_count(t)?),
        (None, Some(p)) => chinchilla::Plan::for_params(parse_count(p)?),
        (None, None) => return Err(anyhow!("give --tokens N or --params N").into()),
    };
    print!("{}", plan.render());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_with_suffixes() {
        assert_eq!(parse_count("124M").unwrap(), 124e6);
        assert_eq!(parse_count("1.4T").unwrap(), 1.4e12);
        assert_eq!(parse_count("7e9").unwrap(), 7e9);
        assert_eq!(parse_count("300b").unwrap(), 300e9);
        assert!(parse_count("lots").is_err());
        assert!(parse_count("-5").is_err());
    }

    #[test]
    fn documents_split_at_end_of_text() {
        let t = [50256, 1, 2, 50256, 3, 50256, 4];
        assert_eq!(documents(&t, 50256), vec![&[1, 2][..], &[3][..], &[4][..]]);
        // A shard starting inside a document.
        assert_eq!(documents(&[9, 50256, 1], 50256), vec![&[9][..], &[1][..]]);
    }
}
