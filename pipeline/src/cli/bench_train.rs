//! `harman bench train`: training throughput on synthetic batches (random token ids; speed
//! does not depend on the values): a warm-up step, then the median of timed steps (forward,
//! backward, AdamW), as tokens/s and ms per step — on the CPU with the split between passes,
//! on the GPU (`--device cuda`, or `auto` where one is usable) with MFU and device memory.

use super::bench::median;
use super::Failure;
use anyhow::anyhow;
use harman_kernels::cpu::adamw::{self, AdamW};
use harman_train::cpu::{self, Activations};
use harman_train::model::Params;
use harman_train::rng::Rng;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct TrainBenchArgs {
    #[command(flatten)]
    pub model: super::train::ModelArgs,
    /// Sequences per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    pub seq: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write the initial model in llm.c's format (gpt2_124M.bin), so llm.c's
    /// train_gpt2.c can time the same model (scripts/bench_llmc.sh).
    #[arg(long)]
    pub export_llmc: Option<std::path::PathBuf>,
    /// auto (the GPU when usable), cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: harman_train::trainer::Device,
    /// Peak bf16 dense TFLOP/s of the GPU, for MFU (H100/H200 SXM: 989).
    #[arg(long, default_value_t = 989.0)]
    pub peak_tflops: f64,
    /// On the GPU, recompute the GELU outputs in the backward pass (less memory).
    #[arg(long)]
    pub recompute: bool,
}

pub fn bench_train(args: TrainBenchArgs) -> Result<(), Failure> {
    let mut spec = args.model.spec();
    // Room for the benchmark's sequence length.
    let preset_len = harman_train::model::GptConfig::preset(&spec.preset, spec.vocab_size)
        .map_or(0, |c| c.max_seq_len);
    spec.max_seq_len = Some(spec.max_seq_len.unwrap_or(preset_len).max(args.seq));
    let cfg = spec
        .config()
        .map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (b, t) = (args.batch, args.seq);
    let mut params = Params::init(cfg, 0);
    if let Some(path) = &args.export_llmc {
        harman_train::checkpoint::export_llmc(&params, path)?;
        println!("wrote {} (llm.c checkpoint of this model)", path.display());
    }
    let mut rng = Rng::new(1);
    let tokens: Vec<u32> = (0..b * t + 1)
        .map(|_| (rng.next_u64() % cfg.vocab_size as u64) as u32)
        .collect();
    let (x, y) = (&tokens[..b * t], &tokens[1..]);
    use harman_train::trainer::Device;
    let on_gpu = match args.device {
        Device::Cpu => false,
        Device::Cuda => true,
        Device::Auto => harman_kernels::cuda::probe().is_ok(),
    };
    if on_gpu {
        return bench_gpu(&params, x, y, &args);
    }
    let mut acts = Activations::new(&cfg, b, t);
    let mut grads = vec![0f32; params.data.len()];
    let (mut m, mut v) = (vec![0f32; grads.len()], vec![0f32; grads.len()]);
    let h = AdamW::default();
    let (mut fwd, mut bwd, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut loss = 0.0;
    for step in 0..=args.steps {
        let t0 = Instant::now();
        loss = cpu::forward(&params, &mut acts, x, Some(y), threads)?;
        let t1 = Instant::now();
        grads.fill(0.0);
        cpu::backward(&params, &acts, &mut grads, 1.0, threads);
        let t2 = Instant::now();
        adamw::update(
            &mut params.data,
            &grads,
            &mut m,
            &mut v,
            &h,
            step as u32 + 1,
        );
        let t3 = Instant::now();
        if step > 0 {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            total.push((t3 - t0).as_secs_f64());
        }
    }
    let step_s = median(total);
    println!(
        "model {} layers × {} channels, {} heads, vocabulary {} (padded {}): {:.1}M parameters; B={b} T={t}, {threads} threads",
        cfg.num_layers,
        cfg.channels,
        cfg.num_heads,
        cfg.vocab_size,
        cfg.padded_vocab_size,
        cfg.num_parameters() as f64 / 1e6
    );
    println!(
        "{:.0} tokens/s  ({:.1} ms/step: forward {:.1}, backward {:.1}; loss {loss:.3})",
        (b * t) as f64 / step_s,
        step_s * 1e3,
        median(fwd) * 1e3,
        median(bwd) * 1e3
    );
    Ok(())
}

/// The GPU run of the benchmark: same model and batch, bf16 kernels + cuBLAS.
fn bench_gpu(params: &Params, x: &[u32], y: &[u32], args: &TrainBenchArgs) -> Result<(), Failure> {
    let (b, t, steps, peak_tflops) = (args.batch, args.seq, args.steps, args.peak_tflops);
    let cfg = params.config;
    let zeros = vec![0f32; params.data.len()];
    let started = Instant::now();
    let mut gpu = harman_train::cuda::GpuModel::new(params, &zeros, &zeros, b, t, args.recompute)
        .map_err(|e| anyhow!("{e}"))?;
    let setup = started.elapsed().as_secs_f64();
    let h = AdamW::default();
    let dloss = 1.0 / (b * t) as f32;
    let mut total = Vec::new();
    let mut loss = 0.0;
    let mut used = 0;
    for step in 0..=steps {
        let t0 = Instant::now();
        let step_result = (|| {
            gpu.zero_grads()?;
            let l = gpu.forward(x, y, dloss)?;
            gpu.backward()?;
            let norm = gpu.grad_norm()?;
            let scale = harman_train::trainer::clip_scale(norm, 1.0);
            gpu.update(&h, step as u32 + 1, scale)?;
            gpu.gpu.synchronize()?;
            Ok::<f32, harman_kernels::cuda::GpuError>(l)
        })();
        loss = step_result.map_err(|e| anyhow!("{e}"))?;
        if step > 0 {
            total.push(t0.elapsed().as_secs_f64());
        } else {
            // Lazy module loads and GEMM plans belong to the warm-up, not the profile.
            gpu.gpu.profile_reset();
        }
        used = used.max(gpu.memory_used().map_err(|e| anyhow!("{e}"))?);
    }
    let step_s = median(total);
    let tok_s = (b * t) as f64 / step_s;
    let (l, c) = (cfg.num_layers as f64, cfg.channels as f64);
    // Training FLOPs per token as PaLM counts them (and ../shared/anchors/torch_gpt2_bench.py).
    let flops_per_token = 6.0 * cfg.num_parameters() as f64 + 12.0 * l * c * t as f64;
    let mfu = tok_s * flops_per_token / (peak_tflops * 1e12);
    println!(
        "model {} layers × {} channels, {} heads, vocabulary {} (padded {}): {:.1}M parameters; B={b} T={t}, CUDA on {} ({}), attention kernels {:?}, kernels ready in {setup:.1} s",
        cfg.num_layers,
        cfg.channels,
        cfg.num_heads,
        cfg.vocab_size,
        cfg.padded_vocab_size,
        cfg.num_parameters() as f64 / 1e6,
        gpu.gpu.name,
        gpu.gpu.arch,
        gpu.gpu.attention,
    );
    println!(
        "{tok_s:.0} tokens/s  ({:.1} ms/step; MFU {:.1}% of {peak_tflops} TFLOP/s; peak GPU memory {:.2} GiB of buffers, {:.2} GiB in use on the device; loss {loss:.3})",
        step_s * 1e3,
        mfu * 100.0,
        gpu.gpu.peak_memory() as f64 / (1u64 << 30) as f64,
        used as f64 / (1u64 << 30) as f64
    );
    if let Some(table) = gpu.gpu.profile_table() {
        println!("per-kernel time over {steps} steps after warm-up (HARMAN_CUDA_PROFILE; synchronized, so slower):\n{table}");
    }
    Ok(())
}
