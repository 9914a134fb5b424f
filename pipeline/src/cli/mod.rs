//! The command line: argument parsing, logging setup, exit codes, and one module per
//! subcommand.
//!
//! Exit codes: 0 success; 1 failure (bad data over the reject limit, I/O, verification
//! mismatch); 2 usage or config error.

mod bench;
mod bench_dedup;
mod bench_eval;
mod bench_tokenize;
mod bench_train;
mod classify;
mod dedup;
mod eval;
mod extract;
mod inspect;
mod labeled;
mod plan;
mod run;
mod tokenize;
mod train;
mod verify;

use crate::config::ConfigError;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "harman",
    version,
    about = "Raw web crawls → clean datasets → trained and evaluated language models"
)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line (for schedulers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// More log detail (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline (resumable: committed shards are skipped).
    Run(run::RunArgs),
    /// Check a config without reading any data.
    Validate { config: PathBuf },
    /// Print the DAG of a config.
    Plan(plan::PlanArgs),
    /// Show schema, row count, sample rows and manifest of a stage output, a Parquet file, or a
    /// WARC/JSONL shard.
    Inspect(inspect::InspectArgs),
    /// Re-hash a stage's (or a run's) outputs against its manifest.
    Verify {
        /// A stage folder (with `_manifest.json`) or a run folder.
        url: String,
    },
    /// Main text of HTML files or WARC files as JSONL (the `extract` stage's code and options).
    Extract(extract::ExtractArgs),
    /// Fit the toxicity classifier on a labeled CSV/JSONL/Parquet table; save a model file.
    TrainClassifier(classify::TrainArgs),
    /// Score rows (id, text) with a toxicity model; prints `id,score` CSV.
    Classify(classify::ClassifyArgs),
    /// Remove exact and near-duplicate documents (MinHash-LSH) from JSONL/Parquet tables with
    /// an id and a text column; writes the kept rows and a clusters table.
    Dedup(dedup::DedupArgs),
    /// Tokenize JSONL/Parquet tables into llm.c training shards (GPT-2 BPE or a
    /// tokenizer.json), or print the ids of each line of a text file (--text FILE --ids).
    Tokenize(tokenize::TokenizeArgs),
    /// Train a byte-level BPE tokenizer on text; writes a Hugging Face tokenizer.json.
    TrainTokenizer(tokenize::TrainTokenizerArgs),
    /// Print the documents of a token shard as text (or ids).
    Detokenize(tokenize::DetokenizeArgs),
    /// The Chinchilla plan for a number of training tokens or parameters.
    PlanModel(tokenize::PlanModelArgs),
    /// Train a GPT model on llm.c token shards (CPU backend; resumable).
    Train(train::TrainArgs),
    /// Sample text from a checkpoint.
    Generate(train::GenerateArgs),
    /// Write a checkpoint in Hugging Face's GPT-2 layout (config.json + model.safetensors).
    ExportHf(train::ExportArgs),
    /// Evaluate a checkpoint (loss, perplexity, bits per byte, HellaSwag, LAMBADA, multiple
    /// choice) into eval.json + report.md; `harman eval compare RUN…` for several runs.
    Eval(eval::EvalArgs),
    /// Write a checkpoint in llm.c's format (the gpt2_124M.bin that train_gpt2.c reads).
    ExportLlmc(train::ExportLlmcArgs),
    /// Measure throughput (and extraction quality).
    Bench(bench::BenchArgs),
}

/// A failure with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let code = if error.downcast_ref::<ConfigError>().is_some() {
            2
        } else {
            1
        };
        Failure { code, error }
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default},datafusion=warn,object_store=warn,hyper=warn,reqwest=warn,h2=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let bars = cli.log_format == LogFormat::Text && !cli.quiet;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args, bars, cli.log_format == LogFormat::Json).await,
            Command::Validate { config } => run::validate(&config),
            Command::Plan(args) => plan::plan(args),
            Command::Inspect(args) => inspect::inspect(args).await,
            Command::Verify { url } => verify::verify(&url).await,
            Command::Extract(args) => extract::extract(args),
            Command::TrainClassifier(args) => classify::train(args),
            Command::Classify(args) => classify::classify(args),
            Command::Dedup(args) => dedup::dedup(args, bars).await,
            Command::Tokenize(args) => tokenize::tokenize(args, bars).await,
            Command::TrainTokenizer(args) => tokenize::train_tokenizer(args),
            Command::Detokenize(args) => tokenize::detokenize(args).await,
            Command::PlanModel(args) => tokenize::plan_model(args),
            Command::Train(args) => train::train(args, bars),
            Command::Generate(args) => train::generate(args),
            Command::ExportHf(args) => train::export_hf(args),
            Command::ExportLlmc(args) => train::export_llmc(args),
            Command::Eval(args) => eval::eval(args),
            Command::Bench(args) => bench::bench(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            if code == 2 {
                eprintln!("config error: {error:#}");
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(code)
        }
    }
}

/// The error of a command's `--options` (TOML of a stage's keys), naming the field when
/// known.
pub(crate) fn options_error(message: String, field: Option<String>) -> ConfigError {
    ConfigError {
        file: PathBuf::from("--options"),
        line: None,
        field,
        message,
    }
}

/// The text of a file a stage wrote next to its manifest (e.g. `_model_plan.txt`), or None
/// when it has none.
pub(crate) async fn stage_file(stage_url: &str, name: &str) -> anyhow::Result<Option<String>> {
    use object_store::ObjectStoreExt;
    let cwd = std::env::current_dir().unwrap_or_default();
    let url = format!("{}/{name}", stage_url.trim_end_matches('/'));
    let loc = crate::store::resolve(&url, &cwd)?;
    let Ok(got) = loc.store.get(&loc.path).await else {
        return Ok(None);
    };
    Ok(Some(
        String::from_utf8_lossy(&got.bytes().await?).into_owned(),
    ))
}

/// The pipeline a single-stage command (`harman dedup`, `harman tokenize`) runs: ingest the
/// JSONL/Parquet `inputs` keeping their ids (`id_field`), pass `text_field` through
/// unchanged (no text fixes), then the stage `stage` (a stage table with its `kind`), writing
/// under `output`.
pub(crate) fn single_stage_config(
    name: &str,
    inputs: &[String],
    id_field: &str,
    text_field: &str,
    output: &str,
    stage: toml::Table,
) -> Result<crate::config::PipelineConfig, Failure> {
    let mut input = toml::Table::new();
    input.insert("kind".into(), "ingest".into());
    input.insert(
        "inputs".into(),
        toml::Value::Array(inputs.iter().map(|s| s.clone().into()).collect()),
    );
    input.insert("id_field".into(), id_field.into());
    input.insert("text_field".into(), text_field.into());
    input.insert("ids_from_field".into(), true.into());
    let mut text = toml::Table::new();
    text.insert("kind".into(), "extract".into());
    text.insert(
        "depends_on".into(),
        toml::Value::Array(vec!["input".into()]),
    );
    let mut fixes = toml::Table::new();
    for fix in ["mojibake", "nfc", "emoji_to_text", "control_chars"] {
        fixes.insert(fix.into(), false.into());
    }
    text.insert("fixes".into(), fixes.into());
    let mut stage = stage;
    stage.insert("depends_on".into(), toml::Value::Array(vec!["text".into()]));
    let mut stages = toml::Table::new();
    stages.insert("input".into(), input.into());
    stages.insert("text".into(), text.into());
    stages.insert(name.into(), stage.into());
    let mut pipeline = toml::Table::new();
    pipeline.insert("name".into(), name.into());
    pipeline.insert("output".into(), output.into());
    pipeline.insert("max_reject_fraction".into(), 1.0.into());
    let mut root = toml::Table::new();
    root.insert("pipeline".into(), pipeline.into());
    root.insert("stages".into(), stages.into());
    let cwd = std::env::current_dir()?;
    Ok(crate::config::parse(
        &toml::to_string(&root)?,
        &cwd.join(format!("harman-{name}.toml")),
        &harman_stages::registry(),
    )?)
}

/// Load a config with the registry of this build, as the commands do.
pub fn load_config(path: &std::path::Path) -> Result<crate::config::PipelineConfig, ConfigError> {
    crate::config::load(path, &harman_stages::registry())
}
