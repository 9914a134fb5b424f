//! `harman run` and `harman validate`.

use super::{load_config, Failure};
use crate::exec::{self, RunOptions};
use crate::progress::Progress;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The pipeline config (TOML).
    pub config: PathBuf,
    /// Write here instead of the config's `output` (path or URL).
    #[arg(long)]
    pub output: Option<String>,
    /// Run only this stage (its upstream outputs must be committed).
    #[arg(long, conflicts_with = "from")]
    pub only: Option<String>,
    /// Run this stage and everything downstream of it.
    #[arg(long)]
    pub from: Option<String>,
    /// Recompute shards even when their commit markers match.
    #[arg(long)]
    pub force: bool,
    /// Worker threads (default: the config's `threads`, else all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Run a config and print what each stage did: a table, or with `json` one JSON object per
/// stage (for schedulers, e.g. an Airflow task's XCom).
pub async fn run(args: RunArgs, bars: bool, json: bool) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let opts = RunOptions {
        output: args.output,
        only: args.only,
        from: args.from,
        force: args.force,
        threads: args.threads,
    };
    let outcomes = exec::run(&config, &opts, &Progress::new(bars)).await?;
    if json {
        for o in &outcomes {
            let line = serde_json::json!({
                "stage": o.manifest.stage,
                "kind": o.manifest.kind,
                "output": o.url,
                "shards": o.manifest.outputs.len(),
                "shards_skipped": o.shards_skipped,
                "rows": o.manifest.rows(),
                "rejected": o.manifest.rejected(),
                "status": o.manifest.status,
                "config_hash": o.manifest.config_hash,
                "seconds": o.seconds,
            });
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "{:<16} {:>8} {:>12} {:>10} {:>8} {:>9}  output",
        "stage", "shards", "rows", "rejected", "skipped", "seconds"
    );
    for o in &outcomes {
        println!(
            "{:<16} {:>8} {:>12} {:>10} {:>8} {:>9.2}  {}",
            o.manifest.stage,
            o.manifest.outputs.len(),
            o.manifest.rows(),
            o.manifest.rejected(),
            o.shards_skipped,
            o.seconds,
            o.url
        );
    }
    // The Chinchilla plan of each tokenized dataset.
    for o in outcomes.iter().filter(|o| o.manifest.kind == "tokenize") {
        if let Ok(Some(plan)) = super::stage_file(&o.url, "_model_plan.txt").await {
            println!("\n{}: {plan}", o.manifest.stage);
        }
    }
    Ok(())
}

pub fn validate(path: &Path) -> Result<(), Failure> {
    let config = load_config(path)?;
    let order = crate::dag::topo_order(&config).map_err(|e| anyhow::anyhow!(e.2))?;
    println!(
        "{}: ok — pipeline {:?}, {} stage(s): {}",
        path.display(),
        config.name,
        order.len(),
        order
            .iter()
            .map(|s| format!("{} [{}]", s.name, s.kind))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    Ok(())
}
