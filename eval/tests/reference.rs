//! harman's scoring against an independent implementation: `scripts/make_eval_reference.py`
//! (PyTorch + transformers' GPT2LMHeadModel and GPT2Tokenizer, lm-evaluation-harness'
//! request building re-implemented in Python) scored the same weights — a small GPT-2 built
//! here deterministically and exported with `export_hf` — on the bundled samples, once;
//! `tests/data/eval/reference.json` holds its log-likelihoods, choices, greedy flags and
//! bits per byte. harman must pick the same choices and match every log-likelihood to 1e-4.

use harman_eval::intrinsic;
use harman_eval::loglik::Scorer;
use harman_eval::tasks;
use harman_tokenizer::Tokenizer;
use harman_train::model::{GptConfig, ParamLayout, Params};
use harman_train::trainer::Device;
use std::path::{Path, PathBuf};

/// A file of tests/data/eval (or of `$HARMAN_EVAL_DATA`, where the test binary runs away
/// from the source tree: scripts/gpu_check.sh).
fn data(name: &str) -> PathBuf {
    std::env::var_os("HARMAN_EVAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/eval"))
        .join(name)
}

/// The reference model: GPT-2's vocabulary, 2 layers, 2 heads, 32 channels, 48 positions,
/// GPT-2 initialization (seed 2024) with matrices and embeddings scaled by 5 so that its
/// predictions are far from uniform.
fn model() -> Params {
    let cfg = GptConfig::padded(50257, 48, 2, 2, 32);
    let mut p = Params::init(cfg, 2024);
    for (name, _, _) in p.layout.tensors.clone() {
        if ParamLayout::decayed(name) {
            let r = p.layout.range(name);
            for x in &mut p.data[r] {
                *x *= 5.0;
            }
        }
    }
    p
}

#[test]
#[ignore = "writes the model scripts/make_eval_reference.py scores (HARMAN_EVAL_MODEL_OUT)"]
fn write_reference_model() {
    let out = std::env::var("HARMAN_EVAL_MODEL_OUT").expect("HARMAN_EVAL_MODEL_OUT");
    harman_train::checkpoint::export_hf(&model(), Path::new(&out)).unwrap();
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-4, "{what}: harman {a} vs PyTorch {b}");
}

#[test]
fn scores_match_the_pytorch_reference() {
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("reference.json")).unwrap()).unwrap();
    let params = model();
    let tok = Tokenizer::gpt2();
    for threads in [1, 2] {
        let scorer = Scorer::new(&params, &tok, 3, threads);
        let n = reference["items"].as_u64().unwrap() as usize;
        for (task, items) in [
            (
                "hellaswag",
                tasks::hellaswag(&data("hellaswag_sample.jsonl"), Some(n)).unwrap(),
            ),
            (
                "mc",
                tasks::multiple_choice(&data("mc_sample.jsonl"), Some(n)).unwrap(),
            ),
        ] {
            let got = tasks::score_choices(&scorer, &items).unwrap();
            let want = &reference[task];
            for (i, lls) in got.lls.iter().enumerate() {
                for (j, ll) in lls.iter().enumerate() {
                    close(
                        *ll,
                        want["lls"][i][j].as_f64().unwrap(),
                        &format!("{task} item {i} choice {j}"),
                    );
                }
            }
            close(
                got.acc,
                want["acc"].as_f64().unwrap(),
                &format!("{task} acc"),
            );
            close(
                got.acc_norm,
                want["acc_norm"].as_f64().unwrap(),
                &format!("{task} acc_norm"),
            );
        }
        let requests = tasks::lambada(&data("lambada_sample.jsonl"), Some(n)).unwrap();
        let got = scorer.score(&requests).unwrap();
        let want = &reference["lambada"];
        for (i, r) in got.iter().enumerate() {
            close(
                r.ll,
                want["lls"][i].as_f64().unwrap(),
                &format!("lambada item {i}"),
            );
            assert_eq!(
                r.greedy,
                want["greedy"][i].as_bool().unwrap(),
                "lambada item {i} greedy"
            );
        }
        let text = intrinsic::on_text(&scorer, &data("lambada_sample.jsonl"), Some(n)).unwrap();
        let want = &reference["text"];
        assert_eq!(text.tokens, want["tokens"].as_u64().unwrap());
        assert_eq!(text.bytes, want["bytes"].as_u64().unwrap());
        close(
            text.bits_per_byte,
            want["bits_per_byte"].as_f64().unwrap(),
            "bits per byte",
        );
        close(text.loss, want["loss"].as_f64().unwrap(), "text loss");
    }
}

/// The GPU's scores (CUDA backend, or the kernel simulator with `HARMAN_CUDA_SIM=1`) against
/// the CPU's, which match PyTorch above: the same model with bf16 weights on both, the GPU
/// computing in bf16. Skipped, with the reason printed, where no GPU is usable.
#[test]
fn gpu_scores_track_the_cpu() {
    if let Err(why) = harman_kernels::cuda::probe() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut params = model();
    params.data = harman_kernels::cuda::from_bf16(&harman_kernels::cuda::to_bf16(&params.data));
    let tok = Tokenizer::gpt2();
    let cpu = Scorer::new(&params, &tok, 3, 2);
    let mut gpu = Scorer::new(&params, &tok, 3, 2);
    let line = gpu.on_device(Device::Cuda).unwrap();
    assert!(gpu.on_gpu(), "{line}");
    let n = 12;
    let items = tasks::hellaswag(&data("hellaswag_sample.jsonl"), Some(n)).unwrap();
    let (want, got) = (
        tasks::score_choices(&cpu, &items).unwrap(),
        tasks::score_choices(&gpu, &items).unwrap(),
    );
    let mut worst = 0f64;
    for (i, (w, g)) in want.lls.iter().zip(&got.lls).enumerate() {
        for (j, (a, b)) in w.iter().zip(g).enumerate() {
            let e = (a - b).abs() / a.abs().max(1.0);
            worst = worst.max(e);
            assert!(
                e < 5e-3,
                "hellaswag item {i} choice {j}: gpu {b} vs cpu {a}"
            );
        }
    }
    eprintln!("hellaswag: worst relative difference {worst:.2e}");
    let requests = tasks::lambada(&data("lambada_sample.jsonl"), Some(n)).unwrap();
    let (want, got) = (cpu.score(&requests).unwrap(), gpu.score(&requests).unwrap());
    for (i, (a, b)) in want.iter().zip(&got).enumerate() {
        assert_eq!(a.tokens, b.tokens, "lambada item {i}");
        let e = (a.ll - b.ll).abs() / a.ll.abs().max(1.0);
        assert!(e < 5e-3, "lambada item {i}: gpu {} vs cpu {}", b.ll, a.ll);
    }
    // Rolling windows over raw text: every token scored once, bits per byte close.
    let path = data("lambada_sample.jsonl");
    let (a, b) = (
        intrinsic::on_text(&cpu, &path, Some(n)).unwrap(),
        intrinsic::on_text(&gpu, &path, Some(n)).unwrap(),
    );
    assert_eq!((a.tokens, a.bytes), (b.tokens, b.bytes));
    let e = (a.bits_per_byte - b.bits_per_byte).abs() / a.bits_per_byte;
    eprintln!(
        "bits per byte: gpu {} vs cpu {} ({e:.2e})",
        b.bits_per_byte, a.bits_per_byte
    );
    assert!(
        e < 2e-3,
        "bits per byte {} vs {}",
        b.bits_per_byte,
        a.bits_per_byte
    );
}
