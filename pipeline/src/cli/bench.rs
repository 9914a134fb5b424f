//! `harman bench STAGE`: throughput measurements printed as a table (figures for
//! BENCHMARKS.md). `ingest` times the shard reader alone (decompress, parse, build Arrow
//! batches) on one core, then the whole stage (reader + Parquet writing + commit).
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
}

pub async fn bench(args: BenchArgs) -> Result<(), Failure> {
    match args.what {
        BenchWhat::Ingest {
            files,
            repeat,
            batch_bytes,
            reader_only,
        } => bench_ingest(files, repeat.max(1), batch_bytes, reader_only).await,
    }
}

/// CPU time consumed by the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_THREAD_CPUTIME_ID is
    // always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
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
