//! `harman bench STAGE`: throughput measurements printed as a table (figures for
//! BENCHMARKS.md). `ingest` times the shard reader alone (decompress, parse, build Arrow
//! batches) on one core, then the whole stage (reader + Parquet writing + commit). `extract`
//! times main-text extraction on the two shared extraction benchmarks on one core and scores
//! the output with their metrics.
//!
//! Rates are per CPU-second of the measuring thread (wall time is shown too): on shared
//! virtual machines wall time includes time stolen by neighbours, CPU time does not.

use super::Failure;
use crate::exec::{self, RunOptions};
use crate::progress::Progress;
use anyhow::Context;
use arrow::record_batch::RecordBatch;
use harman_stages::ingest::{self, IngestOptions, InputFormat};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchWhat {
    /// WARC/JSONL ingest throughput (default input: ../shared/data/bench/pages.warc.gz).
    Ingest {
        files: Vec<PathBuf>,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Payload bytes per record batch (the stage's `batch_bytes`; default: its default).
        #[arg(long)]
        batch_bytes: Option<usize>,
        /// Time the reader only, not the whole stage (for profiling).
        #[arg(long)]
        reader_only: bool,
    },
    /// HTML extraction quality (F1) and speed on the AEB and trafilatura benchmark pages.
    Extract {
        /// The ScrapingHub article-extraction benchmark folder (html/, ground-truth.json).
        #[arg(long, default_value = "../shared/data/html_extraction_aeb")]
        aeb: PathBuf,
        /// The trafilatura evaluation folder (html/, evaldata.json).
        #[arg(long, default_value = "../shared/data/html_extraction_trafilatura")]
        trafilatura: PathBuf,
        /// Timed passes over each set (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Extraction options as TOML (the keys of an `extract` stage table).
        #[arg(long)]
        options: Option<String>,
        /// Write each set's output as JSONL `{"id","text"}` into this folder (for the peers'
        /// scorer).
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Toxicity: the LDNOOBW word-list rule and the classifier on the held-out 20% of the
    /// labeled data (the peers' split): precision, recall, F1, AUC, docs/s.
    Toxicity {
        /// `combined.jsonl` of toxicity_labeled (id, text, toxic, source).
        #[arg(long, default_value = "../shared/data/toxicity_labeled/combined.jsonl")]
        data: PathBuf,
        /// A model file (default: the shipped model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Timed passes (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Write the predictions as JSONL {"id","score"} / {"id","label"} into this folder
        /// (for the peers' scorer).
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// The dedup stage on the planted near-duplicate benchmark: removal and pair
    /// precision/recall at each threshold, docs/s per core, peak memory.
    Dedup(super::bench_dedup::DedupBenchArgs),
    /// GPT-2 BPE encoding: identical ids to tiktoken's reference, MB/s on one thread and on
    /// all cores.
    Tokenize(super::bench_tokenize::TokenizeBenchArgs),
    /// Training throughput of the CPU backend (tokens/s) on synthetic batches.
    Train(super::bench_train::TrainBenchArgs),
    /// Log-likelihood scoring throughput (HellaSwag items) of the eval stage.
    Eval(super::bench_eval::EvalBenchArgs),
    /// The filter stage's annotation (language, quality rules, PII, bad words, toxicity)
    /// on a `text` table part or folder: documents/s and MB/s on one core.
    Filter {
        /// `text` table Parquet files or stage folders (default: the quickstart's, out/quickstart/text).
        inputs: Vec<PathBuf>,
        /// Stage options as TOML (the keys of a `filter` stage table).
        #[arg(long)]
        options: Option<String>,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

pub async fn bench(args: BenchArgs) -> Result<(), Failure> {
    match args.what {
        BenchWhat::Ingest {
            files,
            repeat,
            batch_bytes,
            reader_only,
        } => bench_ingest(files, repeat.max(1), batch_bytes, reader_only).await,
        BenchWhat::Extract {
            aeb,
            trafilatura,
            repeat,
            options,
            save,
        } => bench_extract(&aeb, &trafilatura, repeat.max(1), options, save),
        BenchWhat::Toxicity {
            data,
            model,
            repeat,
            save,
        } => bench_toxicity(&data, model.as_ref(), repeat.max(1), save),
        BenchWhat::Filter {
            inputs,
            options,
            repeat,
        } => bench_filter(&inputs, options, repeat.max(1)),
        BenchWhat::Dedup(args) => super::bench_dedup::bench_dedup(args).await,
        BenchWhat::Tokenize(args) => super::bench_tokenize::bench_tokenize(args),
        BenchWhat::Train(args) => super::bench_train::bench_train(args),
        BenchWhat::Eval(args) => super::bench_eval::bench_eval(args),
    }
}

/// One benchmark page: id, HTML bytes.
struct BenchPage {
    id: String,
    html: Vec<u8>,
}

/// Time extraction over `pages` (`repeat` passes, median CPU seconds) and return the texts
/// of the first pass.
fn time_pages(
    pages: &[BenchPage],
    opts: &harman_extract::ExtractOptions,
    repeat: usize,
) -> (Vec<Option<String>>, f64, f64) {
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    let mut first = None;
    for _ in 0..repeat {
        let (c0, w0) = (thread_cpu_seconds(), Instant::now());
        let texts: Vec<Option<String>> = pages
            .iter()
            .map(|p| harman_extract::extract_html(&p.html, None, None, opts).text)
            .collect();
        cpu.push(thread_cpu_seconds() - c0);
        wall.push(w0.elapsed().as_secs_f64());
        first.get_or_insert(texts);
    }
    (first.unwrap_or_default(), median(cpu), median(wall))
}

fn save_jsonl(
    dir: &Option<PathBuf>,
    name: &str,
    pages: &[BenchPage],
    texts: &[Option<String>],
) -> anyhow::Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir)?;
    let mut out = String::new();
    for (p, t) in pages.iter().zip(texts) {
        out.push_str(&serde_json::json!({"id": p.id, "text": t}).to_string());
        out.push('\n');
    }
    std::fs::write(dir.join(name), out)?;
    Ok(())
}

fn bench_extract(
    aeb: &std::path::Path,
    traf: &std::path::Path,
    repeat: usize,
    options: Option<String>,
    save: Option<PathBuf>,
) -> Result<(), Failure> {
    use harman_extract::eval;
    let opts = super::extract::parse_options(options.as_deref())?;
    println!(
        "{:<22} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8} {:>9}",
        "set", "pages", "F1", "P", "R", "cpu s", "pages/s", "MB/s"
    );
    let row = |name: &str, pages: &[BenchPage], s: eval::Scores, cpu: f64| {
        let mb: f64 = pages.iter().map(|p| p.html.len() as f64).sum::<f64>() / 1e6;
        println!(
            "{:<22} {:>6} {:>6.3} {:>6.3} {:>6.3} {:>8.3} {:>8.1} {:>9.1}",
            name,
            pages.len(),
            s.f1,
            s.precision,
            s.recall,
            cpu,
            pages.len() as f64 / cpu,
            mb / cpu
        );
    };

    // AEB: ground-truth.json {id: {articleBody}}, html/<id>.html.gz.
    let truth: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(
        &std::fs::read(aeb.join("ground-truth.json"))
            .with_context(|| format!("cannot read {}/ground-truth.json", aeb.display()))?,
    )
    .context("ground-truth.json")?;
    let mut pages = Vec::new();
    for id in truth.keys() {
        let html = super::extract::read_maybe_gz(&aeb.join("html").join(format!("{id}.html.gz")))?;
        pages.push(BenchPage {
            id: id.clone(),
            html,
        });
    }
    let (texts, cpu, _) = time_pages(&pages, &opts, repeat);
    let counts: Vec<_> = pages
        .iter()
        .zip(&texts)
        .map(|(p, t)| {
            let body = truth[&p.id]["articleBody"].as_str().unwrap_or("");
            eval::aeb_page(body, t.as_deref())
        })
        .collect();
    row("aeb", &pages, eval::aeb_scores(&counts), cpu);
    save_jsonl(&save, "aeb.jsonl", &pages, &texts)?;

    // trafilatura: evaldata.json {url: {file, html_file, with, without}}.
    let ev: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(
        &std::fs::read(traf.join("evaldata.json"))
            .with_context(|| format!("cannot read {}/evaldata.json", traf.display()))?,
    )
    .context("evaldata.json")?;
    let mut keys: Vec<&String> = ev.keys().collect();
    keys.sort_by_key(|k| ev[*k]["html_file"].as_str().unwrap_or("").to_string());
    let mut pages = Vec::new();
    for k in &keys {
        let file = ev[*k]["html_file"].as_str().unwrap_or("");
        let html = super::extract::read_maybe_gz(&traf.join(file))?;
        pages.push(BenchPage {
            id: (*k).clone(),
            html,
        });
    }
    let (texts, cpu, _) = time_pages(&pages, &opts, repeat);
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    for (p, t) in pages.iter().zip(&texts) {
        let e = &ev[&p.id];
        let (a, b, c) =
            eval::snippet_page(&strings(&e["with"]), &strings(&e["without"]), t.as_deref());
        tp += a;
        fp += b;
        fn_ += c;
    }
    row(
        "trafilatura-eval",
        &pages,
        eval::snippet_scores(tp, fp, fn_),
        cpu,
    );
    save_jsonl(&save, "trafilatura.jsonl", &pages, &texts)?;
    Ok(())
}

/// CPU time consumed by the calling thread, in seconds.
pub(super) fn thread_cpu_seconds() -> f64 {
    cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time on one of the CPU-time clocks (thread, process), in seconds.
pub(super) fn cpu_seconds(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the CPU-time clocks are always
    // available on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn bench_ingest(
    mut files: Vec<PathBuf>,
    repeat: usize,
    batch_bytes: Option<usize>,
    reader_only: bool,
) -> Result<(), Failure> {
    if files.is_empty() {
        let default = PathBuf::from("../shared/data/bench/pages.warc.gz");
        if !default.exists() {
            return Err(
                anyhow::anyhow!("no input given and {} not found", default.display()).into(),
            );
        }
        files.push(default);
    }
    println!(
        "{:<28} {:>8} {:>9} {:>8} {:>8} {:>12} {:>12}",
        "input / mode", "records", "file MB", "wall s", "cpu s", "records/s", "file MB/s"
    );
    for file in files {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let format = InputFormat::Auto
            .resolve(&name)
            .map_err(anyhow::Error::msg)?;
        let mut opts = IngestOptions::with_inputs(vec![name.clone()]);
        if let Some(b) = batch_bytes {
            opts.batch_bytes = b;
        }
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        let mut records = 0u64;
        for _ in 0..repeat {
            let start = Instant::now();
            let cpu_start = thread_cpu_seconds();
            let mut rows = 0usize;
            let mut emit = |b: RecordBatch| {
                rows += b.num_rows();
                Ok(())
            };
            let data = ingest::read_stream(&bytes[..], &name, format, &opts, &mut emit)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            cpu.push(thread_cpu_seconds() - cpu_start);
            times.push(start.elapsed().as_secs_f64());
            records = data
                .counters
                .get("records_read")
                .copied()
                .unwrap_or_default();
        }
        let (wall, t) = (median(times), median(cpu));
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "{:<28} {:>8} {:>9.1} {:>8.3} {:>8.3} {:>12.0} {:>12.1}",
            format!("{} (reader, 1 core)", cut(&name, 10)),
            records,
            mb,
            wall,
            t,
            records as f64 / t,
            mb / t
        );
        if reader_only {
            continue;
        }

        // The whole stage on one thread, into a scratch folder.
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("bench.toml");
        let abs = std::path::absolute(&file)?;
        std::fs::write(
            &config_path,
            format!(
                "[pipeline]\nname = \"bench\"\noutput = \"out\"\nmax_reject_fraction = 1.0\n\n[stages.ingest]\nkind = \"ingest\"\ninputs = [{:?}]\nbatch_bytes = {}\n",
                abs.display().to_string(),
                opts.batch_bytes
            ),
        )?;
        let config = super::load_config(&config_path)?;
        let mut times = Vec::new();
        for _ in 0..repeat.min(3) {
            let opts = RunOptions {
                force: true,
                threads: Some(1),
                ..Default::default()
            };
            let start = Instant::now();
            exec::run(&config, &opts, &Progress::hidden()).await?;
            times.push(start.elapsed().as_secs_f64());
        }
        // The stage runs on the runtime's threads: report wall time.
        let t = median(times);
        println!(
            "{:<28} {:>8} {:>9.1} {:>8.3} {:>8} {:>12.0} {:>12.1}",
            format!("{} (stage→Parquet)", cut(&name, 10)),
            records,
            mb,
            t,
            "-",
            records as f64 / t,
            mb / t
        );
    }
    Ok(())
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// One scored method of the toxicity benchmark.
fn toxicity_row(
    name: &str,
    rows: &[super::labeled::Row],
    sources: &[String],
    scores: &[f64],
    cpu: f64,
) -> String {
    use harman_filters::toxicity::metrics;
    let labels: Vec<bool> = rows.iter().map(|r| r.label.unwrap_or(false)).collect();
    let m = metrics(&labels, scores, 0.5);
    let (wl, ws): (Vec<bool>, Vec<f64>) = labels
        .iter()
        .zip(scores)
        .zip(sources)
        .filter(|(_, s)| s.as_str() == "wiki_toxicity")
        .map(|((l, s), _)| (*l, *s))
        .unzip();
    let wiki = metrics(&wl, &ws, 0.5);
    format!(
        "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} |",
        m.precision,
        m.recall,
        m.f1,
        m.auc,
        wiki.f1,
        rows.len() as f64 / cpu
    )
}

fn bench_toxicity(
    data: &std::path::Path,
    model: Option<&PathBuf>,
    repeat: usize,
    save: Option<PathBuf>,
) -> Result<(), Failure> {
    use harman_filters::badwords::WordList;
    use harman_filters::toxicity::{is_held_out, PEERS_SPLIT_SALT};
    let rows = super::labeled::read(
        data,
        &super::labeled::Columns {
            id: "id",
            text: "text",
            label: Some("toxic"),
        },
    )?;
    let test: Vec<super::labeled::Row> = rows
        .into_iter()
        .filter(|r| is_held_out(&r.id, PEERS_SPLIT_SALT, 0.2))
        .collect();
    // The source is the id's prefix (`wiki_toxicity:123`).
    let sources: Vec<String> = test
        .iter()
        .map(|r| r.id.split(':').next().unwrap_or_default().to_string())
        .collect();
    let model = super::classify::load_model(model)?;
    let words = WordList::shipped("en").context("the English LDNOOBW list")?;
    let time = |f: &dyn Fn(&str) -> f64| {
        let mut cpu = Vec::new();
        let mut out = Vec::new();
        for _ in 0..repeat {
            let c0 = thread_cpu_seconds();
            out = test.iter().map(|r| f(&r.text)).collect();
            cpu.push(thread_cpu_seconds() - c0);
        }
        (out, median(cpu))
    };
    let (list_scores, list_cpu) = time(&|t| (words.count(t) > 0) as u8 as f64);
    let (clf_scores, clf_cpu) = time(&|t| model.score(t) as f64);
    println!(
        "held-out 20% of {}: {} rows ({} toxic); model {}",
        data.display(),
        test.len(),
        test.iter().filter(|r| r.label == Some(true)).count(),
        model.header.name
    );
    println!("| method | P | R | F1 | AUC | wiki_toxicity F1 | docs/s (1 core) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "{}",
        toxicity_row(
            "LDNOOBW en, C4 rule (any match)",
            &test,
            &sources,
            &list_scores,
            list_cpu
        )
    );
    println!(
        "{}",
        toxicity_row(
            &format!("classifier {}", model.header.name),
            &test,
            &sources,
            &clf_scores,
            clf_cpu
        )
    );
    if let Some(dir) = save {
        std::fs::create_dir_all(&dir)?;
        let mut a = String::new();
        let mut b = String::new();
        for ((r, l), s) in test.iter().zip(&list_scores).zip(&clf_scores) {
            a.push_str(&serde_json::json!({"id": r.id, "label": *l as u8}).to_string());
            a.push('\n');
            b.push_str(&serde_json::json!({"id": r.id, "score": s}).to_string());
            b.push('\n');
        }
        std::fs::write(dir.join("harman_ldnoobw.jsonl"), a)?;
        std::fs::write(dir.join("harman_classifier.jsonl"), b)?;
    }
    Ok(())
}

/// The `text` column of `text` table parts (files, or stage folders' `part-*.parquet`).
fn read_text_parts(inputs: &[PathBuf]) -> anyhow::Result<Vec<Option<String>>> {
    use arrow::array::{Array, AsArray};
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut parts: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
                })
                .collect();
            parts.sort();
            files.extend(parts);
        } else {
            files.push(p.clone());
        }
    }
    let mut texts = Vec::new();
    for f in &files {
        let file = std::fs::File::open(f).with_context(|| format!("{}", f.display()))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .build()?;
        for batch in reader {
            let batch = batch?;
            let col = batch
                .column_by_name("text")
                .with_context(|| format!("{}: no `text` column", f.display()))?;
            let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8)?;
            let col = col.as_string::<i32>();
            texts.extend((0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i).to_string())));
        }
    }
    Ok(texts)
}

fn bench_filter(inputs: &[PathBuf], options: Option<String>, repeat: usize) -> Result<(), Failure> {
    use harman_filters::{badwords, langid, pii, quality};
    use harman_stages::filter::{FilterOptions, FilterStage};
    let inputs = if inputs.is_empty() {
        vec![PathBuf::from("out/quickstart/text")]
    } else {
        inputs.to_vec()
    };
    let texts = read_text_parts(&inputs)?;
    // The stage itself, built from the options as a config would build it.
    let opts: FilterOptions = super::extract::parse_options(options.as_deref())?;
    let stage =
        FilterStage::new(opts.clone(), &harman_stages::StageContext::default()).map_err(|e| {
            super::extract::cfg_err(
                std::path::Path::new("--options"),
                e.field.as_deref().unwrap_or("--options"),
                e.message,
            )
        })?;
    let annotator = stage.annotator().clone();
    let model = annotator.classifier().clone();
    let docs: Vec<&str> = texts.iter().map(|t| t.as_deref().unwrap_or("")).collect();
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    let with_text = texts.iter().filter(|t| t.is_some()).count();
    println!(
        "{} rows ({} with text, {:.1} MB, mean {:.0} bytes) from {}",
        docs.len(),
        with_text,
        bytes as f64 / 1e6,
        bytes as f64 / with_text.max(1) as f64,
        inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let en = badwords::WordList::shipped("en").context("English word list")?;
    let qp = opts.quality.clone();
    let po = opts.pii_placeholders.clone();
    let max_chars = opts.lang_max_chars;
    type Part<'a> = (&'a str, Box<dyn Fn(&str) -> usize>);
    let parts: Vec<Part> = vec![
        (
            "pii redaction",
            Box::new(move |t: &str| pii::redact(t, &po).1.emails as usize),
        ),
        (
            "language id",
            Box::new(move |t: &str| langid::detect(t, max_chars).is_some() as usize),
        ),
        (
            "quality rules",
            Box::new(move |t: &str| quality::assess(t, &qp).failed.len()),
        ),
        ("bad words (en list)", Box::new(move |t: &str| en.count(t))),
        (
            "toxicity classifier",
            Box::new(move |t: &str| (model.score(t) > 0.5) as usize),
        ),
        (
            "annotate (all of it)",
            Box::new(move |t: &str| annotator.annotate(t).badwords as usize),
        ),
    ];
    println!("| part | docs/s (1 core) | MB/s | µs/doc |");
    println!("|---|---|---|---|");
    for (name, f) in &parts {
        let mut cpu = Vec::new();
        let mut sink = 0usize;
        for _ in 0..repeat {
            let c0 = thread_cpu_seconds();
            for d in &docs {
                sink = sink.wrapping_add(f(d));
            }
            cpu.push(thread_cpu_seconds() - c0);
        }
        let s = median(cpu);
        std::hint::black_box(sink);
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} |",
            docs.len() as f64 / s,
            bytes as f64 / 1e6 / s,
            s * 1e6 / docs.len().max(1) as f64
        );
    }
    Ok(())
}
