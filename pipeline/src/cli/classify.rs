//! `harman train-classifier` (fit the toxicity classifier on a labeled table and save a
//! versioned model file) and `harman classify` (score a table's rows with a model, the shipped
//! one by default, printing `id,score`). Both use `harman_filters::toxicity`, the code the
//! filter stage scores with.

use super::labeled::{self, Columns};
use super::Failure;
use anyhow::{anyhow, Context};
use harman_filters::toxicity::{self, Classifier, FeatureConfig, TrainConfig, PEERS_SPLIT_SALT};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Labeled rows: CSV (header row), JSONL or Parquet.
    pub input: PathBuf,
    /// Where to write the model.
    #[arg(long, short)]
    pub out: PathBuf,
    /// The model's version label, stored in the file.
    #[arg(long, default_value = "toxicity")]
    pub name: String,
    /// Languages of the training data (ISO 639-1, comma-separated): the filter stage scores
    /// only documents detected as one of them. Default: any language.
    #[arg(long, value_delimiter = ',')]
    pub languages: Vec<String>,
    #[arg(long, default_value = "id")]
    pub id_column: String,
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// 1/0 or true/false per row (1 = toxic).
    #[arg(long, default_value = "toxic")]
    pub label_column: String,
    /// Fraction of rows held out (not trained on) and scored at the end; 0 trains on all.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Salt of the held-out split: a row is held out when sha256(salt + id) / 2^256 <
    /// holdout (the default is the split of the peers' benchmark).
    #[arg(long, default_value = PEERS_SPLIT_SALT)]
    pub split_salt: String,
    /// log2 of the number of hashed feature weights (18 = 256k weights, a 1 MiB model).
    #[arg(long, default_value_t = FeatureConfig::default().bucket_bits)]
    pub bucket_bits: u32,
    /// Word n-grams up to this length.
    #[arg(long, default_value_t = FeatureConfig::default().word_ngrams)]
    pub word_ngrams: u32,
    /// Character n-gram lengths, e.g. 3-5; 0 = none.
    #[arg(long, default_value = "2-5")]
    pub char_ngrams: String,
    /// Only the first this many bytes of a text are used; 0 = all.
    #[arg(long, default_value_t = FeatureConfig::default().max_bytes)]
    pub max_bytes: usize,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: u32,
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    pub learning_rate: f32,
    #[arg(long, default_value_t = TrainConfig::default().l2)]
    pub l2: f32,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
}

#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Rows to score: CSV (header row), JSONL or Parquet with an id and a text column.
    pub input: PathBuf,
    /// A model file from `harman train-classifier` (default: the shipped model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value = "id")]
    pub id_column: String,
    #[arg(long, default_value = "text")]
    pub text_column: String,
}

fn char_range(s: &str) -> anyhow::Result<(u32, u32)> {
    if s.trim() == "0" {
        return Ok((0, 0));
    }
    let parse = |x: &str| {
        x.trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| (1..=12).contains(&n))
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (parse(a), parse(b)),
        None => (parse(s), parse(s)),
    };
    match (a, b) {
        (Some(a), Some(b)) if a <= b => Ok((a, b)),
        _ => Err(anyhow!(
            "--char-ngrams {s:?}: use a range like 3-5 (lengths 1 to 12) or 0 for none"
        )),
    }
}

/// Load the model named on the command line, or the shipped one.
pub fn load_model(path: Option<&PathBuf>) -> anyhow::Result<Classifier> {
    match path {
        Some(p) => Classifier::load(p).with_context(|| format!("model {}", p.display())),
        None => Classifier::shipped().context("the shipped toxicity model"),
    }
}

pub fn train(args: TrainArgs) -> Result<(), Failure> {
    let (min_char_n, max_char_n) = char_range(&args.char_ngrams).map_err(usage)?;
    if !(1..=28).contains(&args.bucket_bits) {
        return Err(usage(anyhow!(
            "--bucket-bits {}: use 1 to 28 (18 = 256k weights, 1 MiB)",
            args.bucket_bits
        )));
    }
    if !(0.0..1.0).contains(&args.holdout) {
        return Err(usage(anyhow!(
            "--holdout {}: use a fraction in [0, 1)",
            args.holdout
        )));
    }
    let rows = labeled::read(
        &args.input,
        &Columns {
            id: &args.id_column,
            text: &args.text_column,
            label: Some(&args.label_column),
        },
    )?;
    let (test, train): (Vec<_>, Vec<_>) = rows
        .iter()
        .partition(|r| toxicity::is_held_out(&r.id, &args.split_salt, args.holdout));
    if train.is_empty() {
        return Err(anyhow!("{}: no rows to train on", args.input.display()).into());
    }
    let features = FeatureConfig {
        bucket_bits: args.bucket_bits,
        word_ngrams: args.word_ngrams,
        min_char_n,
        max_char_n,
        max_bytes: args.max_bytes,
    };
    let training = TrainConfig {
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        l2: args.l2,
        seed: args.seed,
    };
    let file_name = args.input.file_name().map_or_else(
        || args.input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let trained_on = if args.holdout > 0.0 {
        format!(
            "{file_name}: {} rows, minus the {} rows with sha256({:?} + id) / 2^256 < {}",
            rows.len(),
            test.len(),
            args.split_salt,
            args.holdout
        )
    } else {
        format!("{file_name}: all {} rows", rows.len())
    };
    let start = std::time::Instant::now();
    let model = Classifier::train(
        &args.name,
        &args.languages,
        train
            .iter()
            .map(|r| (r.text.as_str(), r.label.unwrap_or(false))),
        features,
        training,
        &trained_on,
    );
    let fit_s = start.elapsed().as_secs_f64();
    model.save(&args.out)?;
    println!(
        "trained {} on {} rows ({} toxic) in {fit_s:.2} s → {}",
        args.name,
        model.header.train_rows,
        model.header.train_positives,
        args.out.display()
    );
    if !test.is_empty() {
        let labels: Vec<bool> = test.iter().map(|r| r.label.unwrap_or(false)).collect();
        let scores: Vec<f64> = test.iter().map(|r| model.score(&r.text) as f64).collect();
        let m = toxicity::metrics(&labels, &scores, 0.5);
        println!(
            "held out {} rows ({} toxic): precision {:.4}  recall {:.4}  F1 {:.4}  AUC {:.4}  accuracy {:.4}",
            m.n, m.positives, m.precision, m.recall, m.f1, m.auc, m.accuracy
        );
    }
    Ok(())
}

pub fn classify(args: ClassifyArgs) -> Result<(), Failure> {
    let model = load_model(args.model.as_ref()).map_err(usage)?;
    let stdout = std::io::stdout();
    let mut out = csv::Writer::from_writer(std::io::BufWriter::new(stdout.lock()));
    out.write_record(["id", "score"])?;
    // Streamed: one row in memory at a time (a Parquet batch at most). A bad row is reported
    // with its location and skipped; the rest is still scored.
    let mut bad = 0u64;
    let result = labeled::for_each(
        &args.input,
        &Columns {
            id: &args.id_column,
            text: &args.text_column,
            label: None,
        },
        &mut |r| {
            match r {
                Ok(r) => {
                    out.write_record([r.id.as_str(), &format!("{:.6}", model.score(&r.text))])?
                }
                Err(e) => {
                    bad += 1;
                    tracing::warn!("skipped: {e}");
                }
            }
            Ok(())
        },
    )
    .and_then(|()| Ok(out.flush()?));
    match result {
        // A reader that stopped early (`| head`) is not a failure.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(()) if bad > 0 => Err(anyhow!(
            "{bad} row(s) of {} could not be read (listed above); the others were scored",
            args.input.display()
        )
        .into()),
        Ok(()) => Ok(()),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|ce| {
                matches!(ce.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

fn usage(e: anyhow::Error) -> Failure {
    Failure { code: 2, error: e }
}
