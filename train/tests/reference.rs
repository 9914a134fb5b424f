//! harman's CPU backend against the independent reference (tests/data/train, made once by
//! scripts/make_train_reference.py with PyTorch autograd on a tiny GPT2LMHeadModel that
//! `transformers` saved): the weights import from Hugging Face's layout, and the loss, the
//! logits and every parameter's gradient on the reference batch match to 1e-5.

use harman_train::checkpoint::{hf_tensors, import_hf};
use harman_train::cpu::{self, Activations};
use safetensors::tensor::Dtype;
use std::path::PathBuf;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/train")
}

#[test]
fn train_matches_the_pytorch_reference() {
    let params = import_hf(&data().join("model")).unwrap();
    let cfg = params.config;
    assert_eq!(
        (cfg.vocab_size, cfg.padded_vocab_size, cfg.num_layers),
        (96, 128, 2)
    );
    let bytes = std::fs::read(data().join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ints = |name: &str| -> Vec<u32> {
        let v = st.tensor(name).unwrap();
        assert_eq!(v.dtype(), Dtype::I64);
        v.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    };
    let floats = |name: &str| -> Vec<f32> {
        let v = st.tensor(name).unwrap();
        assert_eq!(v.dtype(), Dtype::F32, "{name}");
        v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let want_loss: f64 = meta.metadata().as_ref().unwrap()["loss"].parse().unwrap();
    let (x, y) = (ints("inputs"), ints("targets"));
    let (b, t) = (2, 16);
    let mut acts = Activations::new(&cfg, b, t);
    let loss = cpu::forward(&params, &mut acts, &x, Some(&y), 2).unwrap();
    assert!(
        (loss as f64 - want_loss).abs() < 1e-5,
        "loss {loss} vs PyTorch {want_loss}"
    );
    // Probabilities from the reference logits, against ours.
    let logits = floats("logits");
    let mut worst = 0f64;
    for (n, row) in logits.chunks_exact(96).enumerate() {
        let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
        let z: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
        for (i, &l) in row.iter().enumerate() {
            let p = (l as f64 - max).exp() / z;
            worst = worst.max((p - acts.probs[n * cfg.padded_vocab_size + i] as f64).abs());
        }
    }
    assert!(worst < 1e-5, "probabilities differ by {worst}");
    let mut grads = vec![0f32; params.data.len()];
    cpu::backward(&params, &acts, &mut grads, 1.0, 2);
    for tensor in hf_tensors(&cfg) {
        let reference = tensor.to_ours(&floats(&format!("grad.{}", tensor.name)));
        let ours = &grads[tensor.range(&params.layout)];
        let diff: f64 = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = reference
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(norm > 0.0, "{}: zero reference gradient", tensor.name);
        assert!(
            diff / norm < 1e-5,
            "{}: relative error {}",
            tensor.name,
            diff / norm
        );
    }
    // The padded vocabulary rows get no gradient.
    let wte = params.layout.range("wte");
    assert!(grads[wte.start + 96 * cfg.channels..wte.end]
        .iter()
        .all(|&g| g == 0.0));
}
