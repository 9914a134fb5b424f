//! `harman dedup INPUT… --output URL`: the dedup stage alone on JSONL(.zst) or Parquet tables
//! with an id and a text column. It runs a three-stage pipeline — ingest the files, pass
//! their text through unchanged, dedup — like any config, so it resumes, is deterministic
//! and writes manifests; the deduplicated rows and `clusters.parquet` are in `OUTPUT/dedup/`.

use super::{options_error, Failure};
use crate::config::ConfigError;
use crate::exec::{self, RunOptions};
use crate::progress::Progress;
use harman_stages::dedup::{DedupOptions, DedupStage};

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
    let mut dedup = options;
    dedup.insert("kind".into(), "dedup".into());
    let config = super::single_stage_config(
        "dedup",
        &args.inputs,
        &args.id_field,
        &args.text_field,
        &args.output,
        dedup,
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
