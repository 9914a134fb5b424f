//! `harman bench dedup`: the dedup stage on the planted near-duplicate benchmark
//! (`dedup_planted.jsonl.zst` + `dedup_truth.jsonl`): removal precision and recall, families
//! that lost every copy, and pair precision and recall at each threshold (the scorer of
//! `shared/anchors/peers/score_dedup.py`, ported), documents/s per core for signatures and
//! for clustering, and peak memory. `--scale N` writes N copies of the corpus whose words
//! carry a copy suffix (so copies share no shingle: N times the documents, the same
//! duplicate structure) to show how memory grows with the corpus.

use super::bench::{cpu_seconds, median, thread_cpu_seconds};
use super::Failure;
use anyhow::Context;
use arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt64Array};
use arrow::datatypes::UInt64Type;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use harman_dedup::{jaccard, MinHasher, Shingler};
use harman_stages::dedup::{DedupOptions, DedupStage};
use harman_stages::{ShardInput, Stage};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct DedupBenchArgs {
    /// Documents: JSONL(.zst) with `id` and `text`.
    #[arg(long, default_value = "../shared/data/bench/dedup_planted.jsonl.zst")]
    pub input: PathBuf,
    /// The truth file (doc and pair rows); scoring is skipped when it does not exist.
    #[arg(long, default_value = "../shared/data/bench/dedup_truth.jsonl")]
    pub truth: PathBuf,
    /// Jaccard thresholds to run and score at (the stage's `threshold` is set to each).
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.7")]
    pub thresholds: Vec<f64>,
    /// Copies of the corpus (1, 4, 16 … to show memory growth).
    #[arg(long, default_value_t = 1)]
    pub scale: usize,
    /// Worker threads of the stage (rates are per CPU-second, i.e. per core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Other stage options as TOML (keys of a `dedup` stage).
    #[arg(long, default_value = "")]
    pub options: String,
    /// Timed passes of the signature function alone and of the stage (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Write `clusters-<t>.jsonl` ({"doc_id","cluster_id"}) here, for the peers' scorer.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// Peak resident memory of this process (MiB), from /proc.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Start a new peak-memory measurement (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// (id, text) of every row of a JSONL(.zst)/Parquet/CSV table with `id` and `text`.
fn read_documents(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let cols = super::labeled::Columns {
        id: "id",
        text: "text",
        label: None,
    };
    Ok(super::labeled::read(path, &cols)?
        .into_iter()
        .map(|r| (r.id, r.text))
        .collect())
}

/// Copy `copy` of a text: every word gets the suffix `q<copy>` (copy 0 is the text itself).
fn scaled_text(text: &str, copy: usize) -> String {
    if copy == 0 {
        return text.to_string();
    }
    let suffix = format!("q{copy}");
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut in_word = false;
    for c in text.chars() {
        let word = c.is_alphanumeric() || c == '_';
        if in_word && !word {
            out.push_str(&suffix);
        }
        in_word = word;
        out.push(c);
    }
    if in_word {
        out.push_str(&suffix);
    }
    out
}

/// Write copy `copy` of the corpus as a `text` table part; returns its shard.
fn write_part(dir: &Path, copy: usize, docs: &[(String, String)]) -> anyhow::Result<ShardInput> {
    let schema = Arc::new(harman_schemas::text_schema());
    let path = dir.join(format!("part-{copy:05}.parquet"));
    let file = std::fs::File::create(&path)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
    for chunk in docs.chunks(4096) {
        let n = chunk.len();
        let texts: Vec<String> = chunk.iter().map(|(_, t)| scaled_text(t, copy)).collect();
        let ids: Vec<String> = chunk
            .iter()
            .map(|(id, _)| {
                if copy == 0 {
                    id.clone()
                } else {
                    format!("{id}~{copy}")
                }
            })
            .collect();
        let nulls = || -> ArrayRef { Arc::new(StringArray::from(vec![None::<&str>; n])) };
        let bytes: ArrayRef = Arc::new(UInt64Array::from_iter_values(
            texts.iter().map(|t| t.len() as u64),
        ));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids)),
            nulls(),
            Arc::new(StringArray::from(vec!["passthrough"; n])),
            nulls(),
            Arc::new(StringArray::from(texts)),
            nulls(),
            nulls(),
            nulls(),
            bytes.clone(),
            bytes,
        ];
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
    }
    writer.close()?;
    let size = std::fs::metadata(&path)?.len();
    let store: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new());
    Ok(ShardInput {
        index: copy,
        url: format!("file://{}", path.display()),
        store,
        path: object_store::path::Path::from_filesystem_path(&path)?,
        size,
        local_path: Some(path),
        origin: None,
    })
}

/// The truth of the planted benchmark: documents and every pair with J ≥ 0.5 (plus planted
/// pairs).
struct Truth {
    docs: BTreeSet<String>,
    pairs: HashMap<(String, String), f64>,
}

fn pair_key(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Truth {
    fn read(path: &Path) -> anyhow::Result<Truth> {
        let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        let mut truth = Truth {
            docs: BTreeSet::new(),
            pairs: HashMap::new(),
        };
        for line in std::io::BufReader::new(file).lines() {
            let v: serde_json::Value = serde_json::from_str(&line?)?;
            match v["type"].as_str() {
                Some("doc") => {
                    truth
                        .docs
                        .insert(v["doc_id"].as_str().unwrap_or_default().to_string());
                }
                Some("pair") => {
                    let (a, b) = (
                        v["a"].as_str().unwrap_or_default(),
                        v["b"].as_str().unwrap_or_default(),
                    );
                    truth
                        .pairs
                        .insert(pair_key(a, b), v["jaccard"].as_f64().unwrap_or(0.0));
                }
                _ => {}
            }
        }
        Ok(truth)
    }

    /// Connected components of the pairs with J ≥ t.
    fn components(&self, t: f64) -> Vec<Vec<String>> {
        let ids: Vec<&String> = self.docs.iter().collect();
        let index: HashMap<&String, u64> = ids
            .iter()
            .enumerate()
            .map(|(i, d)| (*d, i as u64))
            .collect();
        let mut uf = harman_dedup::components::UnionFind::default();
        for ((a, b), &j) in &self.pairs {
            if j >= t {
                if let (Some(&x), Some(&y)) = (index.get(a), index.get(b)) {
                    uf.union(x, y);
                }
            }
        }
        let mut comps: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (node, root) in uf.components() {
            comps
                .entry(root)
                .or_default()
                .push(ids[node as usize].clone());
        }
        comps.into_values().filter(|c| c.len() > 1).collect()
    }
}

/// Scores at one threshold.
#[derive(Debug, Default)]
struct Score {
    removal_precision: f64,
    removal_recall: f64,
    families_lost: usize,
    pair_precision: f64,
    pair_recall: f64,
}

fn score(
    truth: &Truth,
    texts: &HashMap<&str, &str>,
    clusters: &BTreeMap<u64, Vec<(String, bool)>>,
    t: f64,
) -> Score {
    let removed: BTreeSet<&String> = clusters
        .values()
        .flatten()
        .filter(|(id, kept)| !kept && truth.docs.contains(id))
        .map(|(id, _)| id)
        .collect();
    let comps = truth.components(t);
    let has_partner: BTreeSet<&String> = comps.iter().flatten().collect();
    let justified = removed.iter().filter(|d| has_partner.contains(*d)).count();
    let need: usize = comps.iter().map(|c| c.len() - 1).sum();
    let got: usize = comps
        .iter()
        .map(|c| {
            c.iter()
                .filter(|d| removed.contains(d))
                .count()
                .min(c.len() - 1)
        })
        .sum();
    let lost = comps
        .iter()
        .filter(|c| c.iter().all(|d| removed.contains(d)))
        .count();

    // Pairs inside predicted clusters, with their true Jaccard (from the truth, else computed).
    let mut shingler = Shingler::new(5, 0);
    let mut sets: HashMap<String, Vec<u64>> = HashMap::new();
    let mut set_of = |id: &str, sets: &mut HashMap<String, Vec<u64>>| {
        if !sets.contains_key(id) {
            shingler.read(texts.get(id).copied().unwrap_or_default());
            let mut s = Vec::new();
            shingler.shingles(&mut s);
            sets.insert(id.to_string(), s);
        }
    };
    let mut predicted = 0usize;
    let mut predicted_ok = 0usize;
    let mut hit = 0usize;
    for members in clusters.values() {
        let ids: Vec<&String> = members
            .iter()
            .map(|(id, _)| id)
            .filter(|id| truth.docs.contains(*id))
            .collect();
        for i in 0..ids.len() {
            for j in i + 1..ids.len() {
                let key = pair_key(ids[i], ids[j]);
                let jv = match truth.pairs.get(&key) {
                    Some(&jv) => jv,
                    None => {
                        set_of(ids[i], &mut sets);
                        set_of(ids[j], &mut sets);
                        jaccard(&sets[ids[i].as_str()], &sets[ids[j].as_str()])
                    }
                };
                predicted += 1;
                if jv >= t {
                    predicted_ok += 1;
                    if truth.pairs.contains_key(&key) {
                        hit += 1;
                    }
                }
            }
        }
    }
    let truth_t = truth.pairs.values().filter(|&&j| j >= t).count();
    Score {
        removal_precision: if removed.is_empty() {
            1.0
        } else {
            justified as f64 / removed.len() as f64
        },
        removal_recall: if need == 0 {
            1.0
        } else {
            got as f64 / need as f64
        },
        families_lost: lost,
        pair_precision: if predicted == 0 {
            1.0
        } else {
            predicted_ok as f64 / predicted as f64
        },
        pair_recall: if truth_t == 0 {
            1.0
        } else {
            hit as f64 / truth_t as f64
        },
    }
}

/// The rows of the clusters table, by cluster: (id, kept).
fn by_cluster(batches: &[RecordBatch]) -> BTreeMap<u64, Vec<(String, bool)>> {
    let mut clusters: BTreeMap<u64, Vec<(String, bool)>> = BTreeMap::new();
    for batch in batches {
        let id = batch.column(0).as_string::<i32>();
        let cluster = batch.column(1).as_primitive::<UInt64Type>();
        let kept = batch.column(3).as_boolean();
        for i in 0..batch.num_rows() {
            clusters
                .entry(cluster.value(i))
                .or_default()
                .push((id.value(i).to_string(), kept.is_valid(i) && kept.value(i)));
        }
    }
    clusters
}

pub async fn bench_dedup(args: DedupBenchArgs) -> Result<(), Failure> {
    let docs = read_documents(&args.input)?;
    let n = docs.len();
    let bytes: usize = docs.iter().map(|(_, t)| t.len()).sum();
    let base: toml::Table = toml::from_str(&args.options).context("--options: not valid TOML")?;

    // The signature function alone, one thread: tokens, exact hash, shingles, MinHash, bands.
    let defaults = DedupOptions::default();
    let (mut shingler, hasher) = (
        Shingler::new(defaults.ngram, defaults.seed),
        MinHasher::new(defaults.bands, defaults.rows, defaults.seed),
    );
    let mut cpu = Vec::new();
    let (mut set, mut sig, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    let mut checksum = 0u64;
    for _ in 0..args.repeat.max(1) {
        let c0 = thread_cpu_seconds();
        for (_, text) in &docs {
            shingler.read(text);
            checksum ^= shingler.exact_hash() as u64;
            shingler.shingles(&mut set);
            hasher.signature(&set, &mut sig);
            hasher.band_keys(&sig, &mut keys);
            checksum ^= keys.first().copied().unwrap_or(0);
        }
        cpu.push(thread_cpu_seconds() - c0);
    }
    let sig_seconds = median(cpu);
    println!(
        "signature function (1 thread, {} bands x {} rows): {n} docs, {:.1} MB in {sig_seconds:.3} s CPU: {:.0} docs/s, {:.1} MB/s  [checksum {checksum:016x}]",
        defaults.bands,
        defaults.rows,
        bytes as f64 / 1e6,
        n as f64 / sig_seconds,
        bytes as f64 / 1e6 / sig_seconds
    );

    let dir = tempfile::Builder::new()
        .prefix("harman-bench-dedup-")
        .tempdir()?;
    let mut shards = Vec::new();
    for copy in 0..args.scale.max(1) {
        shards.push(write_part(dir.path(), copy, &docs)?);
    }
    let truth = if args.truth.exists() {
        Some(Truth::read(&args.truth)?)
    } else {
        println!("no truth file at {}: speed only", args.truth.display());
        None
    };
    let texts: HashMap<&str, &str> = docs
        .iter()
        .map(|(id, t)| (id.as_str(), t.as_str()))
        .collect();
    println!(
        "\n{:>5} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6} {:>7} {:>7} {:>12} {:>12} {:>10}",
        "t",
        "docs",
        "removed",
        "clusters",
        "rem_P",
        "rem_R",
        "lost",
        "pair_P",
        "pair_R",
        "sig docs/s",
        "clus docs/s",
        "peak MiB"
    );
    let mut last_combined = 0.0;
    for &t in &args.thresholds {
        let mut table = base.clone();
        table.insert("threshold".into(), t.into());
        let json = serde_json::to_value(&table).context("options")?;
        let opts: DedupOptions = harman_stages::OptionError::parse(&json)
            .map_err(|e| anyhow::anyhow!("--options: {e}"))?;
        let stage = DedupStage::new(opts).map_err(|e| anyhow::anyhow!("--options: {e}"))?;
        // Timed runs of the stage's whole-input step; the median rate of each phase is shown.
        reset_peak_rss();
        let (mut sig_rates, mut clus_rates) = (Vec::new(), Vec::new());
        let mut last = None;
        let mut clusters: BTreeMap<u64, Vec<(String, bool)>> = BTreeMap::new();
        for _ in 0..args.repeat.max(1) {
            let c0 = cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID);
            let prepared = stage.prepare(&shards, args.threads).await?;
            // The clusters table is sorted and streamed as it is read: part of clustering.
            let read = Instant::now();
            let mut batches = Vec::new();
            for (_, _, mut stream) in prepared.tables {
                while let Some(batch) = stream.next().await {
                    batches.push(batch?);
                }
            }
            let read = read.elapsed().as_secs_f64();
            let cpu = cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID) - c0;
            clusters = by_cluster(&batches);
            let phase = |name: &str| {
                prepared
                    .timings
                    .iter()
                    .find(|(p, _)| p == name)
                    .map_or(0.0, |(_, s)| *s)
            };
            let (sig_wall, clus_wall) = (phase("signatures"), phase("clustering") + read);
            // CPU seconds split between the phases in proportion to their wall time.
            let docs = prepared
                .counters
                .get("dedup.documents")
                .copied()
                .unwrap_or(0) as f64;
            let wall = sig_wall + clus_wall;
            sig_rates.push(docs / (cpu * sig_wall / wall));
            clus_rates.push(docs / (cpu * clus_wall / wall));
            last = Some(prepared.counters);
        }
        let Some(counters) = last else { continue };
        let docs_total = counters.get("dedup.documents").copied().unwrap_or(0) as f64;
        let (sig_rate, clus_rate) = (median(sig_rates), median(clus_rates));
        let peak = peak_rss_mib();
        let removed = counters.get("dedup.removed").copied().unwrap_or(0);
        let s = truth
            .as_ref()
            .map(|tr| score(tr, &texts, &clusters, t))
            .unwrap_or_default();
        println!(
            "{t:>5} {:>8} {:>8} {:>8} {:>7.4} {:>7.4} {:>6} {:>7.4} {:>7.4} {:>12.0} {:>12.0} {:>10.0}",
            docs_total,
            removed,
            clusters.len(),
            s.removal_precision,
            s.removal_recall,
            s.families_lost,
            s.pair_precision,
            s.pair_recall,
            sig_rate,
            clus_rate,
            peak
        );
        last_combined = 1.0 / (1.0 / sig_rate + 1.0 / clus_rate);
        if let Some(dir) = &args.save {
            std::fs::create_dir_all(dir)?;
            let mut out = String::new();
            for (cluster, members) in &clusters {
                for (id, _) in members {
                    out.push_str(
                        &serde_json::json!({"doc_id": id, "cluster_id": cluster.to_string()})
                            .to_string(),
                    );
                    out.push('\n');
                }
            }
            std::fs::write(dir.join(format!("clusters-{t}.jsonl")), out)?;
        }
    }
    println!(
        "\nsig/clus docs/s: medians over {} runs of the stage's two phases per CPU-second (signatures = read parts, sign, spill; clustering = exact groups, LSH buckets, verification, components, clusters table), threads = {}; sig+clus {:.0} docs/s",
        args.repeat.max(1),
        args.threads,
        last_combined
    );
    Ok(())
}
