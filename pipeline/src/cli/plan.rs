//! `harman plan`: the DAG as text, Mermaid or Graphviz.

use super::{load_config, Failure};
use crate::dag;
use std::path::PathBuf;

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum PlanFormat {
    Text,
    Mermaid,
    Dot,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    pub config: PathBuf,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Output location to show (default: the config's).
    #[arg(long)]
    pub output: Option<String>,
}

pub fn plan(args: PlanArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let opts = crate::exec::RunOptions {
        output: args.output,
        ..Default::default()
    };
    let output = crate::exec::output_location(&config, &opts)?;
    let text = match args.format {
        PlanFormat::Text => dag::render_text(&config, &output.url),
        PlanFormat::Mermaid => dag::render_mermaid(&config),
        PlanFormat::Dot => dag::render_dot(&config),
    };
    print!("{text}");
    Ok(())
}
