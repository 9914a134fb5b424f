//! `harman dedup INPUT… --output URL`: the dedup stage alone on JSONL(.zst) or Parquet tables
//! with an id and a text column. It runs a three-stage pipeline — ingest the files, pass
//! their text through unchanged, dedup — like any config, so it resumes, is deterministic
//! and writes manifests; the deduplicated rows and `clusters.parquet` are in `OUTPUT/dedup/`.

use super::Failure;
use crate::config::ConfigError;
use crate::exec::{self, RunOptions};
use crate::progress::Progress;
use harman_stages::dedup::{DedupOptions, DedupStage};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DedupArgs {
    /// JSONL(.zst/.gz) or Parquet files, globs or URLs (s3://…) of documents.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Where to write (path or URL); the stage's output is in its `dedup/` folder.
    #[arg(long)]
    pub output: String,
    /// The column holding each document's id.
    #[arg(long, default_value = "id")]
    pub id_field: String,
    /// The column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Options of the dedup stage as TOML, e.g. --options 'threshold = 0.7
    /// bands = 20'. Keys as in a `dedup` stage of a config.
    #[arg(long, default_value = "")]
    pub options: String,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Recompute even what is committed.
    #[arg(long)]
    pub force: bool,
    /// Print the S-curve of the banding and exit.
    #[arg(long)]
    pub s_curve: bool,
}

fn options_error(message: String, field: Option<String>) -> ConfigError {
    ConfigError {
        file: PathBuf::from("--options"),
        line: None,
        field,
        message,
    }
}

/// The stage options from `--options`, checked as the stage checks them.
pub fn stage_options(text: &str) -> Result<(toml::Table, DedupStage), ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| options_error(format!("not valid TOML: {}", e.message()), None))?;
    let json = serde_json::to_value(&table).map_err(|e| options_error(e.to_string(), None))?;
    let opts: DedupOptions =
        harman_stages::OptionError::parse(&json).map_err(|e| options_error(e.message, e.field))?;
    let stage = DedupStage::new(opts).map_err(|e| options_error(e.message, e.field))?;
    Ok((table, stage))
}

pub async fn dedup(args: DedupArgs, bars: bool) -> Result<(), Failure> {
    let (options, stage) = stage_options(&args.options)?;
    if stage.options().near {
        print!("{}", stage.s_curve());
    }
    if args.s_curve {
        return Ok(());
    }
    let cwd = std::env::current_dir()?;
    let mut pipeline = toml::Table::new();
    pipeline.insert("name".into(), "dedup".into());
    pipeline.insert("output".into(), args.output.clone().into());
    pipeline.insert("max_reject_fraction".into(), 1.0.into());
    let mut input = toml::Table::new();
    input.insert("kind".into(), "ingest".into());
    input.insert(
        "inputs".into(),
        toml::Value::Array(args.inputs.iter().map(|s| s.clone().into()).collect()),
    );
    input.insert("id_field".into(), args.id_field.clone().into());
    input.insert("text_field".into(), args.text_field.clone().into());
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
    let mut dedup = options;
    dedup.insert("kind".into(), "dedup".into());
    dedup.insert("depends_on".into(), toml::Value::Array(vec!["text".into()]));
    let mut stages = toml::Table::new();
    stages.insert("input".into(), input.into());
    stages.insert("text".into(), text.into());
    stages.insert("dedup".into(), dedup.into());
    let mut root = toml::Table::new();
    root.insert("pipeline".into(), pipeline.into());
    root.insert("stages".into(), stages.into());
    let config_text = toml::to_string(&root)?;
    let config = crate::config::parse(
        &config_text,
        &cwd.join("harman-dedup.toml"),
        &harman_stages::registry(),
    )?;
    let opts = RunOptions {
        output: Some(args.output.clone()),
        threads: args.threads,
        force: args.force,
        ..RunOptions::default()
    };
    let outcomes = exec::run(&config, &opts, &Progress::new(bars)).await?;
    if let Some(o) = outcomes.iter().find(|o| o.manifest.stage == "dedup") {
        let c = &o.manifest.counters;
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        println!(
            "documents {}  exact duplicates {}  near duplicates {}  clusters {}  removed {}  written {}",
            get("documents"),
            get("dedup.exact_duplicates"),
            get("dedup.near_duplicates"),
            get("dedup.clusters"),
            get("removed"),
            get("written")
        );
        let sizes: Vec<String> = c
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("dedup.cluster_size.").map(|s| (s, v)))
            .map(|(s, v)| format!("{s}: {v}"))
            .collect();
        if !sizes.is_empty() {
            println!("cluster sizes  {}", sizes.join("  "));
        }
        println!("output {}  (clusters: {}/clusters.parquet)", o.url, o.url);
    }
    Ok(())
}
