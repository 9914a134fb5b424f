//! The CUDA backend against the CPU backend: one forward/backward of a small model (loss
//! and every parameter gradient within bf16's tolerance), a 20-step run whose losses track
//! the CPU's, a bit-exact resume on the GPU, and checkpoints moving between the devices.
//! Skipped, with the reason printed, where no GPU is usable; with `HARMAN_CUDA_SIM=1` they
//! run on the kernel simulator instead (scripts/test.sh does that where no GPU answers).

use harman_tokenizer::shard;
use harman_train::cpu::{self, Activations};
use harman_train::cuda::GpuModel;
use harman_train::model::{GptConfig, Params};
use harman_train::schedule::{Decay, Schedule};
use harman_train::trainer::{Device, StepLog, TrainOptions, Trainer};
use std::path::{Path, PathBuf};

fn gpu_available() -> bool {
    match harman_kernels::cuda::probe() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn shards(dir: &Path, vocab: u32) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let ids: Vec<u32> = (0..40_000u32)
        .map(|i| (i * 7 + i / 13 + i / 97) % vocab)
        .collect();
    let write = |name: &str, ids: &[u32]| {
        let mut bytes = shard::header(1, ids.len() as u64).to_vec();
        shard::push_tokens(&mut bytes, 1, ids);
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    (
        vec![write("train_000000.bin", &ids[..36_000])],
        vec![write("val_000000.bin", &ids[36_000..])],
    )
}

fn opts(steps: u64) -> TrainOptions {
    TrainOptions {
        batch_size: 4,
        seq_len: 64,
        total_batch_tokens: 512,
        steps,
        schedule: Schedule {
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 2,
            steps,
            decay: Decay::Cosine,
        },
        val_every: 5,
        val_batches: 2,
        checkpoint_every: 5,
        ..Default::default()
    }
}

/// Trains (or resumes) run `name` under `dir` on `device` until `stop` more steps or the end.
#[allow(clippy::too_many_arguments)]
fn train(
    cfg: GptConfig,
    opts: TrainOptions,
    (train, val): (&[PathBuf], &[PathBuf]),
    dir: &Path,
    name: &str,
    device: Device,
    stop: Option<u64>,
) -> Vec<StepLog> {
    let mut tr = Trainer::new(
        cfg,
        opts,
        train.to_vec(),
        val.to_vec(),
        &dir.join(name),
        true,
        2,
    )
    .unwrap();
    eprintln!("{name}: {}", tr.set_device(device).unwrap());
    tr.run(stop, |_| {}).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harman-cuda-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn one_step_matches_the_cpu_backend() {
    if !gpu_available() {
        return;
    }
    // Two layers, two heads of 64, a vocabulary of 1000 (padded to 1024), T not a multiple
    // of the attention tiles.
    let cfg = GptConfig::padded(1000, 96, 2, 2, 128);
    // With every activation kept, with the GELU outputs recomputed in the backward pass, and
    // with dropout (the GPU drops exactly the elements the CPU drops).
    let dropout = cpu::Dropout {
        p: 0.1,
        seed: 7,
        step: 3,
        micro: 1,
    };
    for (recompute, drop) in [(false, None), (true, None), (false, Some(dropout))] {
        check_one_step(cfg, recompute, drop);
    }
}

#[test]
fn a_model_with_heads_of_128_matches_the_cpu_backend() {
    if !gpu_available() {
        return;
    }
    // One layer, two heads of 128 (the attention tiles in dynamic shared memory).
    let cfg = GptConfig::padded(1000, 96, 1, 2, 256);
    assert_eq!(cfg.head_size(), 128);
    check_one_step(cfg, false, None);
}

/// One step of `cfg` (B = 3, T = 80) on the GPU against the CPU backend: the loss and every
/// tensor's gradient; then the same loss and gradients again (deterministic).
fn check_one_step(cfg: GptConfig, recompute: bool, drop: Option<cpu::Dropout>) {
    let mut params = Params::init(cfg, 5);
    // The CPU sees the bf16-rounded weights the GPU computes with.
    params.data = harman_kernels::cuda::from_bf16(&harman_kernels::cuda::to_bf16(&params.data));
    let (b, t) = (3, 80);
    let x: Vec<u32> = (0..b * t)
        .map(|i| ((i * 31 + i / 7) % 1000) as u32)
        .collect();
    let y: Vec<u32> = (0..b * t).map(|i| ((i * 17 + 3) % 1000) as u32).collect();
    let zeros = vec![0f32; params.data.len()];
    let what = format!(
        "head size {}, recompute {recompute}, dropout {}",
        cfg.head_size(),
        drop.map_or(0.0, |d| d.p)
    );
    let mut acts = Activations::new(&cfg, b, t);
    acts.dropout = drop;
    let loss_cpu = cpu::forward(&params, &mut acts, &x, Some(&y), 2).unwrap();
    let mut grads = vec![0f32; params.data.len()];
    cpu::backward(&params, &acts, &mut grads, 1.0, 2);
    let mut gpu = GpuModel::new(&params, &zeros, &zeros, b, t, recompute).unwrap();
    gpu.set_dropout(drop);
    gpu.zero_grads().unwrap();
    let loss_gpu = gpu.forward(&x, &y, 1.0 / (b * t) as f32).unwrap();
    gpu.backward().unwrap();
    let g = gpu.gradients().unwrap();
    eprintln!("{what}: loss cpu {loss_cpu} gpu {loss_gpu}");
    assert!(
        ((loss_gpu - loss_cpu) / loss_cpu).abs() < 1e-2,
        "{what}: loss {loss_gpu} vs {loss_cpu}"
    );
    for (name, _, _) in &params.layout.tensors {
        let r = params.layout.range(name);
        let e = rel_err(&g[r.clone()], &grads[r]);
        eprintln!("{what}: gradient {name}: relative error {e:.2e}");
        assert!(e < 5e-2, "{what}: gradient of {name}: relative error {e}");
    }
    // A forward without gradient gives the same loss, and a second step the same gradients
    // (the recomputed GELU equals the forward's bit for bit).
    let again = gpu.forward(&x, &y, 0.0).unwrap();
    assert_eq!(again.to_bits(), loss_gpu.to_bits(), "deterministic");
    gpu.zero_grads().unwrap();
    gpu.forward(&x, &y, 1.0 / (b * t) as f32).unwrap();
    gpu.backward().unwrap();
    assert_eq!(gpu.gradients().unwrap(), g, "same gradients again");
}

#[test]
fn twenty_steps_track_the_cpu_and_resume_bit_exactly() {
    if !gpu_available() {
        return;
    }
    let dir = tmp("track");
    let (tr, va) = shards(&dir, 1000);
    let cfg = GptConfig::padded(1000, 64, 2, 2, 128);
    let run = |name: &str, device: Device, stop: Option<u64>| {
        train(cfg, opts(20), (&tr, &va), &dir, name, device, stop)
    };
    let cpu_run = run("cpu", Device::Cpu, None);
    let gpu_run = run("gpu", Device::Cuda, None);
    assert_eq!(gpu_run.len(), 20);
    for (c, g) in cpu_run.iter().zip(&gpu_run) {
        eprintln!("step {:2}: cpu {:.4} gpu {:.4}", c.step, c.loss, g.loss);
        assert!((c.loss - g.loss).abs() < 0.05 * c.loss, "step {}", c.step);
    }
    assert!(
        gpu_run[19].loss < gpu_run[0].loss - 0.5,
        "the GPU run learns"
    );
    // Stopped at 10 (a checkpoint), resumed on the GPU: the same losses bit for bit.
    let head = run("parted", Device::Cuda, Some(10));
    let tail = run("parted", Device::Cuda, None);
    let resumed: Vec<u32> = head.iter().chain(&tail).map(|l| l.loss.to_bits()).collect();
    let straight: Vec<u32> = gpu_run.iter().map(|l| l.loss.to_bits()).collect();
    assert_eq!(resumed, straight, "resume on the GPU is bit-exact");
    // A GPU checkpoint continues on the CPU, and a CPU checkpoint on the GPU.
    let head = run("moved", Device::Cuda, Some(10));
    let tail = run("moved", Device::Cpu, None);
    assert_eq!(head.len() + tail.len(), 20);
    assert!((tail[9].loss - gpu_run[19].loss).abs() < 0.05 * gpu_run[19].loss);
    let head = run("back", Device::Cpu, Some(10));
    let tail = run("back", Device::Cuda, None);
    assert!((tail[9].loss - cpu_run[19].loss).abs() < 0.05 * cpu_run[19].loss);
    drop(head);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dropout_trains_on_the_gpu_as_on_the_cpu() {
    if !gpu_available() {
        return;
    }
    let dir = tmp("dropout");
    let (tr, va) = shards(&dir, 1000);
    let cfg = GptConfig::padded(1000, 64, 2, 2, 128);
    let opts = TrainOptions {
        dropout: 0.1,
        ..opts(4)
    };
    let run =
        |name: &str, device: Device| train(cfg, opts.clone(), (&tr, &va), &dir, name, device, None);
    let cpu_run = run("cpu", Device::Cpu);
    let gpu_run = run("gpu", Device::Cuda);
    for (c, g) in cpu_run.iter().zip(&gpu_run) {
        eprintln!(
            "dropout step {:2}: cpu {:.4} gpu {:.4}",
            c.step, c.loss, g.loss
        );
        assert!((c.loss - g.loss).abs() < 0.02 * c.loss, "step {}", c.step);
    }
    assert_eq!(gpu_run.len(), 4);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back() {
    if harman_kernels::cuda::probe().is_ok() {
        eprintln!("skipped: a GPU is present (or HARMAN_CUDA_SIM asks for the simulator)");
        return;
    }
    let dir = tmp("nogpu");
    let (train, val) = shards(&dir, 100);
    let cfg = GptConfig::padded(100, 64, 1, 2, 128);
    let mut tr = Trainer::new(cfg, opts(2), train, val, &dir.join("run"), true, 1).unwrap();
    let err = tr.set_device(Device::Cuda).unwrap_err().to_string();
    assert!(err.contains("no usable CUDA GPU"), "{err}");
    let line = tr.set_device(Device::Auto).unwrap();
    assert!(
        line.starts_with("CPU backend") && line.contains("no GPU"),
        "{line}"
    );
    assert_eq!(tr.run(None, |_| {}).unwrap().len(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_evaluation_forward_refuses_bad_ids_and_shapes_with_the_reason() {
    if !gpu_available() {
        return;
    }
    let cfg = GptConfig::padded(100, 64, 1, 2, 64);
    let params = Params::init(cfg, 3);
    let zeros = vec![0f32; params.data.len()];
    let mut gpu = GpuModel::new(&params, &zeros, &zeros, 2, 32, false).unwrap();
    // An id outside the vocabulary is named (the GPU would read past the embedding table).
    let mut x = vec![1u32; 32];
    x[5] = 100;
    let err = gpu.forward_logits(&x, 1, 32).unwrap_err().to_string();
    assert!(
        err.contains("token id 100") && err.contains("vocabulary of 100"),
        "{err}"
    );
    // More positions than allocated, or a sequence longer than max_seq_len.
    let err = gpu
        .forward_logits(&[1; 65 * 2], 2, 65)
        .unwrap_err()
        .to_string();
    assert!(err.contains("allocated for 64 positions"), "{err}");
    // A valid smaller shape runs, and its logits rows come back.
    gpu.forward_logits(&[1; 40], 1, 40).unwrap();
    let rows = gpu.logits_rows(39, 1).unwrap();
    assert_eq!(rows.len(), cfg.padded_vocab_size);
    assert!(rows[..cfg.vocab_size].iter().all(|v| v.is_finite()));
}
