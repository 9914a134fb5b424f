//! `harman bench tokenize`: GPT-2 encoding checked against tiktoken's reference output
//! (the 259 cases and the whole-file token hashes of `gpt2_bpe`), then MB/s on one thread
//! (per CPU-second and wall) and on all cores (wall), over the same corpora as
//! `shared/anchors/peers/bench_tokenize.py` (MB = 10^6 UTF-8 bytes of input text).

use super::bench::{median, thread_cpu_seconds};
use super::Failure;
use anyhow::Context;
use harman_tokenizer::Tokenizer;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct TokenizeBenchArgs {
    /// Corpora: JSONL(.zst)/Parquet with a `text` column.
    #[arg(long = "input", default_values = [
        "../shared/data/text_corpus/pile_style/shard-00.jsonl.zst",
        "../shared/data/bench/dedup_planted.jsonl.zst",
    ])]
    pub inputs: Vec<PathBuf>,
    /// `gpt2` or a tokenizer.json.
    #[arg(long, default_value = "gpt2")]
    pub tokenizer: String,
    /// The `gpt2_bpe` folder (reference_encodings.jsonl, file_token_counts.jsonl); its file
    /// paths are relative to its parent. Checks are skipped when it does not exist.
    #[arg(long, default_value = "../shared/data/gpt2_bpe")]
    pub reference: PathBuf,
    /// Threads of the all-cores run (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Timed passes (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

fn ids_sha256(ids: &[u32]) -> String {
    let joined = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    hex::encode(Sha256::digest(joined.as_bytes()))
}

/// Checks the reference cases and files; returns a one-line summary.
fn check_reference(tok: &Tokenizer, dir: &Path) -> anyhow::Result<String> {
    let read = |name: &str| -> anyhow::Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("cannot read {}/{name}", dir.display()))?;
        text.lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("{name}: bad line")))
            .collect()
    };
    let cases = read("reference_encodings.jsonl")?;
    let mut bad_cases = 0;
    for c in &cases {
        let want: Vec<u32> = serde_json::from_value(c["ids"].clone())?;
        bad_cases += usize::from(tok.encode(c["text"].as_str().unwrap_or_default()) != want);
    }
    let files = read("file_token_counts.jsonl")?;
    let root = dir.parent().unwrap_or(dir);
    let mut bad_files = Vec::new();
    for f in &files {
        let rel = f["file"].as_str().unwrap_or_default();
        let mut text = std::fs::read_to_string(root.join(rel))
            .with_context(|| format!("cannot read {}", root.join(rel).display()))?;
        // The reference read some files with Python's universal newlines (its n_bytes says
        // which): CRLF and lone CR become LF.
        if f["n_bytes"].as_u64() != Some(text.len() as u64) {
            text = text.replace("\r\n", "\n").replace('\r', "\n");
        }
        if ids_sha256(&tok.encode(&text)) != f["ids_sha256"].as_str().unwrap_or_default() {
            bad_files.push(rel.to_string());
        }
    }
    if bad_cases > 0 || !bad_files.is_empty() {
        anyhow::bail!(
            "ids differ from tiktoken's: {bad_cases} of {} reference cases, files {bad_files:?}",
            cases.len()
        );
    }
    Ok(format!(
        "identical ids: {} of {} reference cases, {} of {} whole files (ids sha256)",
        cases.len(),
        cases.len(),
        files.len(),
        files.len()
    ))
}

pub fn bench_tokenize(args: TokenizeBenchArgs) -> Result<(), Failure> {
    let tok = Tokenizer::load(&args.tokenizer)?;
    if args.tokenizer == "gpt2" && args.reference.exists() {
        println!("{}", check_reference(&tok, &args.reference)?);
    }
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let repeat = args.repeat.max(1);
    println!(
        "{:<28} {:>6} {:>8} {:>10} {:>9} {:>11} {:>9} {:>14}",
        "corpus", "docs", "MB", "tokens", "MB/cpu-s", "MB/s (1 th)", "MB/s", "threads"
    );
    for input in &args.inputs {
        if !input.exists() {
            println!("{:<28} skipped: {} not found", "", input.display());
            continue;
        }
        let cols = super::labeled::Columns {
            id: "id",
            text: "text",
            label: None,
        };
        let docs: Vec<String> = super::labeled::read(input, &cols)?
            .into_iter()
            .map(|r| r.text)
            .collect();
        let mb = docs.iter().map(String::len).sum::<usize>() as f64 / 1e6;
        let (mut cpu, mut wall, mut par) = (Vec::new(), Vec::new(), Vec::new());
        let mut tokens = 0;
        for _ in 0..repeat {
            let (c0, w0) = (thread_cpu_seconds(), Instant::now());
            tokens = docs.iter().map(|d| tok.encode(d).len()).sum::<usize>();
            cpu.push(thread_cpu_seconds() - c0);
            wall.push(w0.elapsed().as_secs_f64());
            let w0 = Instant::now();
            let all = tok.encode_batch(&docs, threads);
            par.push(w0.elapsed().as_secs_f64());
            assert_eq!(all.iter().map(Vec::len).sum::<usize>(), tokens);
        }
        let name = input
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        println!(
            "{:<28} {:>6} {:>8.2} {:>10} {:>9.2} {:>11.2} {:>9.2} {:>14}",
            name,
            docs.len(),
            mb,
            tokens,
            mb / median(cpu),
            mb / median(wall),
            mb / median(par),
            threads
        );
    }
    Ok(())
}
