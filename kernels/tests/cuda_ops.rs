//! Each CUDA kernel against its CPU reference (`harman_kernels::cpu`) on random inputs
//! (never zeros): ‖gpu − cpu‖ / ‖cpu‖ within bf16's tolerance (1e-2; fp32 ops 1e-5), with the
//! CPU fed the same bf16-rounded inputs. Output buffers are poisoned (NaN) first, so an
//! element the kernel does not write fails. Skipped, with the reason printed, where no GPU
//! is usable; with `HARMAN_CUDA_SIM=1` they run on the kernel simulator instead.

use harman_kernels::cpu;
use harman_kernels::cuda::{from_bf16, probe, to_bf16, AttentionKernels, Buf, GemmBackend, Gpu};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// Rounds through bf16 (the values the GPU sees).
fn bf(x: &[f32]) -> Vec<f32> {
    from_bf16(&to_bf16(x))
}

fn rel_err(gpu: &[f32], cpu: &[f32]) -> f64 {
    assert_eq!(gpu.len(), cpu.len());
    assert!(
        gpu.iter().all(|v| v.is_finite()),
        "a non-finite (unwritten?) value"
    );
    let num: f64 = gpu
        .iter()
        .zip(cpu)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let den: f64 = cpu.iter().map(|b| (*b as f64).powi(2)).sum();
    assert!(den > 0.0, "the reference is all zeros");
    (num / den).sqrt()
}

fn gpu() -> Option<Gpu> {
    if let Err(why) = probe() {
        eprintln!("skipped: {why}");
        return None;
    }
    Some(Gpu::new(64).expect("GPU init"))
}

fn poisoned_bf16(g: &Gpu, n: usize) -> Buf<u16> {
    g.upload(&vec![0x7fc0u16; n]).unwrap()
}

fn poisoned_f32(g: &Gpu, n: usize) -> Buf<f32> {
    g.upload(&vec![f32::NAN; n]).unwrap()
}

fn dl16(g: &Gpu, b: &Buf<u16>) -> Vec<f32> {
    from_bf16(&g.download(b).unwrap())
}

const TOL: f64 = 1e-2;

#[test]
fn encoder_forward_and_backward() {
    let Some(g) = gpu() else { return };
    let (b, t, c, v) = (3, 37, 96, 50);
    let mut r = Rng(1);
    let wte = bf(&r.vec(v * c, 1.0));
    let wpe = bf(&r.vec(t * c, 1.0));
    let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 7 + i / 5) % v) as u32).collect();
    let mut want = vec![0f32; b * t * c];
    cpu::encoder::forward(&mut want, &tokens, &wte, &wpe, t, c);
    let out = poisoned_bf16(&g, b * t * c);
    let tok = g
        .upload(&tokens.iter().map(|&x| x as i32).collect::<Vec<_>>())
        .unwrap();
    let (wte_d, wpe_d) = (
        g.upload(&to_bf16(&wte)).unwrap(),
        g.upload(&to_bf16(&wpe)).unwrap(),
    );
    g.encoder_forward(out.ptr(), tok.ptr(), wte_d.ptr(), wpe_d.ptr(), b * t, t, c)
        .unwrap();
    let e = rel_err(&dl16(&g, &out), &want);
    assert!(e < TOL, "encoder forward {e}");

    let dout = bf(&r.vec(b * t * c, 1.0));
    let (mut dwte, mut dwpe) = (r.vec(v * c, 0.1), r.vec(t * c, 0.1));
    let (dwte_d, dwpe_d) = (g.upload(&dwte).unwrap(), g.upload(&dwpe).unwrap());
    let dout_d = g.upload(&to_bf16(&dout)).unwrap();
    g.encoder_backward(dwte_d.ptr(), dwpe_d.ptr(), dout_d.ptr(), &tokens, b, t, c)
        .unwrap();
    cpu::encoder::backward(&mut dwte, &mut dwpe, &dout, &tokens, t, c);
    let e1 = rel_err(&g.download(&dwte_d).unwrap(), &dwte);
    let e2 = rel_err(&g.download(&dwpe_d).unwrap(), &dwpe);
    assert!(e1 < 1e-5 && e2 < 1e-5, "encoder backward {e1} {e2}");
}

#[test]
fn residual_layernorm_forward_and_backward() {
    let Some(mut g) = gpu() else { return };
    // Widths of 16-byte vectors (the vectorized paths; the fused backward where it is on)
    // and an odd one (the scalar paths); chunks of one row, of several rows per warp,
    // GPT-2's width, and GPT-2 XL's (1600: wider than the forward keeps in registers and
    // than the fused backward takes).
    for fused in [true, false] {
        g.fused_layernorm = fused;
        for (n, c) in [(67, 192), (33, 77), (4000, 768), (9, 1600)] {
            check_layernorm(&g, n, c);
        }
    }
}

fn check_layernorm(g: &Gpu, n: usize, c: usize) {
    let mut r = Rng(2 + c as u64);
    let a = bf(&r.vec(n * c, 2.0));
    let bb = bf(&r.vec(n * c, 1.0));
    let w = bf(&r.vec(c, 1.0));
    let bias = bf(&r.vec(c, 0.5));
    let x: Vec<f32> = bf(&a.iter().zip(&bb).map(|(p, q)| p + q).collect::<Vec<_>>());
    let (mut want, mut mean, mut rstd) = (vec![0f32; n * c], vec![0f32; n], vec![0f32; n]);
    cpu::layernorm::forward(&mut want, &mut mean, &mut rstd, &x, &w, &bias, c);
    let (a_d, b_d) = (
        g.upload(&to_bf16(&a)).unwrap(),
        g.upload(&to_bf16(&bb)).unwrap(),
    );
    let (w_d, bias_d) = (
        g.upload(&to_bf16(&w)).unwrap(),
        g.upload(&to_bf16(&bias)).unwrap(),
    );
    let (res, out) = (poisoned_bf16(g, n * c), poisoned_bf16(g, n * c));
    let (mean_d, rstd_d) = (poisoned_f32(g, n), poisoned_f32(g, n));
    g.residual_layernorm_forward(
        res.ptr(),
        out.ptr(),
        mean_d.ptr(),
        rstd_d.ptr(),
        a_d.ptr(),
        Some(b_d.ptr()),
        w_d.ptr(),
        bias_d.ptr(),
        n,
        c,
    )
    .unwrap();
    assert!(rel_err(&dl16(g, &res), &x) < 1e-6, "C={c}: residual sum");
    let e = rel_err(&dl16(g, &out), &want);
    assert!(e < TOL, "C={c}: layernorm forward {e}");
    let what = format!("C={c} N={n} fused={}", g.fused_layernorm);
    assert!(rel_err(&g.download(&rstd_d).unwrap(), &rstd) < 1e-4);

    let dout = bf(&r.vec(n * c, 1.0));
    let dinp0 = bf(&r.vec(n * c, 0.5));
    let (mut dinp, mut dw, mut db) = (dinp0.clone(), r.vec(c, 0.1), r.vec(c, 0.1));
    let (dw_d, db_d) = (g.upload(&dw).unwrap(), g.upload(&db).unwrap());
    let dinp_d = g.upload(&to_bf16(&dinp0)).unwrap();
    let dout_d = g.upload(&to_bf16(&dout)).unwrap();
    let x_d = g.upload(&to_bf16(&x)).unwrap();
    let scratch = g.scratch(c).unwrap();
    g.layernorm_backward(
        &scratch,
        dinp_d.ptr(),
        dw_d.ptr(),
        db_d.ptr(),
        dout_d.ptr(),
        x_d.ptr(),
        w_d.ptr(),
        mean_d.ptr(),
        rstd_d.ptr(),
        n,
        c,
        true,
    )
    .unwrap();
    cpu::layernorm::backward(
        &mut dinp, &mut dw, &mut db, &dout, &x, &w, &mean, &rstd, c, 1,
    );
    for (name, got, want, tol) in [
        ("dinp", dl16(g, &dinp_d), dinp, TOL),
        ("dweight", g.download(&dw_d).unwrap(), dw, 1e-4),
        ("dbias", g.download(&db_d).unwrap(), db, 1e-5),
    ] {
        let e = rel_err(&got, &want);
        eprintln!("{what}: layernorm backward {name} relative error {e:.2e}");
        assert!(e < tol, "{what}: layernorm backward {name} {e}");
    }
}

#[test]
fn matmul_forward_and_backward() {
    let Some(mut g) = gpu() else { return };
    for backend in [GemmBackend::Lt, GemmBackend::Cublas] {
        g.gemm_backend = backend;
        check_matmul(&g, &format!("{backend:?}"));
    }
}

fn check_matmul(g: &Gpu, what: &str) {
    let (n, c, oc) = (96, 128, 320);
    let mut r = Rng(3);
    let inp = bf(&r.vec(n * c, 1.0));
    let w = bf(&r.vec(oc * c, 0.2));
    let bias = bf(&r.vec(oc, 0.5));
    let mut want = vec![0f32; n * oc];
    cpu::matmul::forward(&mut want, &inp, &w, &bias, c, oc, 1);
    let (inp_d, w_d, bias_d) = (
        g.upload(&to_bf16(&inp)).unwrap(),
        g.upload(&to_bf16(&w)).unwrap(),
        g.upload(&to_bf16(&bias)).unwrap(),
    );
    let out = poisoned_bf16(g, n * oc);
    g.matmul_forward(
        out.ptr(),
        inp_d.ptr(),
        w_d.ptr(),
        Some(bias_d.ptr()),
        n,
        c,
        oc,
    )
    .unwrap();
    let e = rel_err(&dl16(g, &out), &want);
    eprintln!("{what}: matmul forward relative error {e:.2e}");
    assert!(e < TOL, "{what}: matmul forward {e}");

    let dout = bf(&r.vec(n * oc, 1.0));
    let (mut dinp, mut dw, mut db) = (vec![0f32; n * c], r.vec(oc * c, 0.1), r.vec(oc, 0.1));
    let dinp_d = poisoned_bf16(g, n * c);
    let (dw_d, db_d) = (g.upload(&dw).unwrap(), g.upload(&db).unwrap());
    let dout_d = g.upload(&to_bf16(&dout)).unwrap();
    let scratch = g.scratch(oc).unwrap();
    g.matmul_backward(
        &scratch,
        dinp_d.ptr(),
        dw_d.ptr(),
        Some(db_d.ptr()),
        dout_d.ptr(),
        inp_d.ptr(),
        w_d.ptr(),
        n,
        c,
        oc,
        false,
        None,
    )
    .unwrap();
    cpu::matmul::backward(&mut dinp, &mut dw, &mut db, &dout, &inp, &w, c, oc, 1);
    for (name, got, want, tol) in [
        ("dinp", dl16(g, &dinp_d), dinp, TOL),
        ("dweight", g.download(&dw_d).unwrap(), dw, 1e-4),
        ("dbias", g.download(&db_d).unwrap(), db, 1e-5),
    ] {
        let e = rel_err(&got, &want);
        eprintln!("{what}: matmul backward {name} relative error {e:.2e}");
        assert!(e < tol, "{what}: matmul backward {name} {e}");
    }
}

#[test]
fn matmul_with_fused_gelu() {
    let Some(mut g) = gpu() else { return };
    for backend in [GemmBackend::Lt, GemmBackend::Cublas] {
        g.gemm_backend = backend;
        let what = format!("{backend:?}");
        let (n, c, oc) = (64, 96, 384);
        let mut r = Rng(30);
        let inp = bf(&r.vec(n * c, 1.0));
        let w = bf(&r.vec(oc * c, 0.2));
        let bias = bf(&r.vec(oc, 0.5));
        let mut pre = vec![0f32; n * oc];
        cpu::matmul::forward(&mut pre, &inp, &w, &bias, c, oc, 1);
        let pre = bf(&pre);
        let mut act = vec![0f32; n * oc];
        cpu::gelu::forward(&mut act, &pre);
        let (inp_d, w_d, bias_d) = (
            g.upload(&to_bf16(&inp)).unwrap(),
            g.upload(&to_bf16(&w)).unwrap(),
            g.upload(&to_bf16(&bias)).unwrap(),
        );
        let (out_d, pre_d) = (poisoned_bf16(&g, n * oc), poisoned_bf16(&g, n * oc));
        g.matmul_forward_gelu(
            out_d.ptr(),
            pre_d.ptr(),
            inp_d.ptr(),
            w_d.ptr(),
            bias_d.ptr(),
            n,
            c,
            oc,
        )
        .unwrap();
        for (name, got, want) in [
            ("pre-activation", dl16(&g, &pre_d), &pre),
            ("gelu", dl16(&g, &out_d), &act),
        ] {
            let e = rel_err(&got, want);
            eprintln!("{what}: matmul + gelu forward {name} relative error {e:.2e}");
            assert!(e < TOL, "{what}: matmul + gelu forward {name} {e}");
        }
        // The next layer's backward through the GELU: a layer act[n, oc] -> [n, c2].
        let c2 = 80;
        let w2 = bf(&r.vec(c2 * oc, 0.2));
        let dout = bf(&r.vec(n * c2, 1.0));
        let (mut dact, mut dw2, mut db2) =
            (vec![0f32; n * oc], vec![0f32; c2 * oc], vec![0f32; c2]);
        cpu::matmul::backward(&mut dact, &mut dw2, &mut db2, &dout, &act, &w2, oc, c2, 1);
        let dact = bf(&dact);
        let mut dpre = vec![0f32; n * oc];
        cpu::gelu::backward(&mut dpre, &pre, &dact);
        let (w2_d, dout_d) = (
            g.upload(&to_bf16(&w2)).unwrap(),
            g.upload(&to_bf16(&dout)).unwrap(),
        );
        let (dw2_d, db2_d) = (
            g.alloc::<f32>(c2 * oc).unwrap(),
            g.alloc::<f32>(c2).unwrap(),
        );
        let dpre_d = poisoned_bf16(&g, n * oc);
        let scratch = g.scratch(c2).unwrap();
        g.matmul_backward(
            &scratch,
            dpre_d.ptr(),
            dw2_d.ptr(),
            Some(db2_d.ptr()),
            dout_d.ptr(),
            out_d.ptr(),
            w2_d.ptr(),
            n,
            oc,
            c2,
            false,
            Some(pre_d.ptr()),
        )
        .unwrap();
        let e = rel_err(&dl16(&g, &dpre_d), &dpre);
        eprintln!("{what}: matmul backward through gelu relative error {e:.2e}");
        assert!(e < 2.0 * TOL, "{what}: matmul backward through gelu {e}");
        let e = rel_err(&g.download(&dw2_d).unwrap(), &dw2);
        assert!(e < TOL, "{what}: dweight {e}");
    }
}

/// The GPU attention implementations `g` has: the mma.sync kernels, the warpgroup-MMA ones
/// (which every Hopper GPU and the simulator must have; elsewhere the reason is printed) and
/// the CUDA-core ones.
fn attention_kernels(g: &Gpu) -> Vec<AttentionKernels> {
    let mut all = vec![AttentionKernels::TensorCores];
    if g.arch == "sm_90" {
        assert!(
            g.has_kernel("flash_forward_wg"),
            "the warpgroup-MMA kernels did not load on {}: {:?}",
            g.name,
            g.optional_failure()
        );
    }
    if g.has_kernel("flash_forward_wg") {
        all.push(AttentionKernels::Warpgroup);
    } else {
        eprintln!(
            "warpgroup-MMA attention not checked: {} is not a Hopper GPU",
            g.name
        );
    }
    all.push(AttentionKernels::CudaCores);
    all
}

#[test]
fn flash_attention_forward_and_backward() {
    let Some(mut g) = gpu() else { return };
    let kernels = attention_kernels(&g);
    // Every GPU implementation; T not a multiple of the 64-row tiles, several heads and
    // sequences, and a longer sequence of whole tiles.
    for &k in &kernels {
        g.attention = k;
        for (b, t, nh, seed) in [(2, 150, 3, 4), (1, 256, 2, 40)] {
            check_attention(&g, b, t, nh, seed, None, &format!("{k:?} B={b} T={t}"));
        }
    }
    // Dropout on the probabilities (tensor-core kernels): the same mask as the CPU's.
    let drop = Some((0.2, 0x5eed_u64));
    let tensor_cores: Vec<_> = kernels
        .iter()
        .copied()
        .filter(|&k| k != AttentionKernels::CudaCores)
        .collect();
    for &k in &tensor_cores {
        g.attention = k;
        check_attention(
            &g,
            2,
            150,
            3,
            5,
            drop,
            &format!("{k:?} dropout 0.2 B=2 T=150"),
        );
    }
    g.attention = AttentionKernels::CudaCores;
    let refused = g.attention_forward(0, 0, 0, 1, 64, 1, drop).unwrap_err();
    assert!(refused.to_string().contains("tensor-core"), "{refused}");
    // The kernels built for head size 32.
    let mut g32 = Gpu::new(32).expect("GPU init (head size 32)");
    for &k in &kernels {
        g32.attention = k;
        check_attention(&g32, 2, 100, 2, 6, None, &format!("{k:?} HS=32 B=2 T=100"));
    }
    for &k in &tensor_cores {
        g32.attention = k;
        let what = format!("{k:?} HS=32 dropout 0.2 B=1 T=130");
        check_attention(&g32, 1, 130, 2, 7, drop, &what);
    }
    // Every other head size (multiples of 16): the wgmma products along the sequence split
    // into the widths wgmma has (48 = 32 + 16, 80 = 64 + 16, 96 = 64 + 32, 112 = 64 + 32 +
    // 16), past 64 the tiles in dynamic shared memory; the CUDA-core kernels up to 64.
    for hs in [16, 48, 80, 96, 112] {
        let mut gh = Gpu::new(hs).expect("GPU init (head size)");
        for &k in &kernels {
            if k == AttentionKernels::CudaCores && hs > 64 {
                continue;
            }
            gh.attention = k;
            check_attention(&gh, 1, 90, 2, 11, None, &format!("{k:?} HS={hs} B=1 T=90"));
        }
    }
    // The kernels built for head size 128: their tiles in dynamic shared memory (more than
    // 48 KB a block), the warpgroup MMA's products along the sequence 128 wide. The CUDA-core
    // kernels are not built for it: refused with the fix named, at open and at launch.
    let mut g128 = Gpu::new(128).expect("GPU init (head size 128)");
    for &k in &tensor_cores {
        g128.attention = k;
        check_attention(
            &g128,
            2,
            100,
            2,
            8,
            None,
            &format!("{k:?} HS=128 B=2 T=100"),
        );
        let what = format!("{k:?} HS=128 dropout 0.2 B=1 T=80");
        check_attention(&g128, 1, 80, 2, 10, drop, &what);
    }
    g128.attention = AttentionKernels::CudaCores;
    let refused = g128.attention_forward(0, 0, 0, 1, 64, 1, None).unwrap_err();
    assert!(
        refused.to_string().contains("HARMAN_ATTENTION=simt")
            && refused.to_string().contains("128"),
        "{refused}"
    );
    let refused = Gpu::open(128, Some(32))
        .err()
        .expect("chunk 32 at head size 128");
    assert!(
        refused.to_string().contains("HARMAN_FLASH_CHUNK=32"),
        "{refused}"
    );
    // The backward kernels built for 32- and 64-row chunks (HARMAN_FLASH_CHUNK).
    for chunk in [32, 64] {
        let mut gc = Gpu::open(64, Some(chunk)).expect("GPU init (chunk)");
        for &k in &tensor_cores {
            gc.attention = k;
            let what = format!("{k:?} chunk {chunk} B=2 T=150");
            check_attention(&gc, 2, 150, 3, 4, None, &what);
            let what = format!("{k:?} chunk {chunk} dropout 0.2 B=1 T=200");
            check_attention(&gc, 1, 200, 2, 9, drop, &what);
        }
    }
}

fn check_attention(
    g: &Gpu,
    b: usize,
    t: usize,
    nh: usize,
    seed: u64,
    drop: Option<(f32, u64)>,
    what: &str,
) {
    let c = nh * g.head_size;
    let mut r = Rng(seed);
    let qkv = bf(&r.vec(b * t * 3 * c, 1.0));
    let (mut want, mut att) = (vec![0f32; b * t * c], vec![0f32; b * nh * t * t]);
    cpu::attention::forward(&mut want, &mut att, &qkv, b, t, c, nh, drop, 1);
    let qkv_d = g.upload(&to_bf16(&qkv)).unwrap();
    let out = poisoned_bf16(g, b * t * c);
    let lse = poisoned_f32(g, b * nh * t);
    g.attention_forward(out.ptr(), lse.ptr(), qkv_d.ptr(), b, t, nh, drop)
        .unwrap();
    let e = rel_err(&dl16(g, &out), &want);
    eprintln!("{what}: attention forward relative error {e:.2e}");
    assert!(e < TOL, "{what}: attention forward {e}");

    let dout = bf(&r.vec(b * t * c, 1.0));
    let mut dqkv = vec![0f32; b * t * 3 * c];
    cpu::attention::backward(&mut dqkv, &dout, &qkv, &att, b, t, c, nh, drop, 1);
    let dout_d = g.upload(&to_bf16(&dout)).unwrap();
    let dqkv_d = poisoned_bf16(g, b * t * 3 * c);
    let dsum = poisoned_f32(g, b * nh * t);
    g.attention_backward(
        dqkv_d.ptr(),
        dsum.ptr(),
        dout_d.ptr(),
        qkv_d.ptr(),
        out.ptr(),
        lse.ptr(),
        b,
        t,
        nh,
        drop,
    )
    .unwrap();
    let got = dl16(g, &dqkv_d);
    for (part, name) in ["dq", "dk", "dv"].iter().enumerate() {
        let pick = |x: &[f32]| -> Vec<f32> {
            x.chunks_exact(3 * c)
                .flat_map(|row| row[part * c..(part + 1) * c].to_vec())
                .collect()
        };
        let e = rel_err(&pick(&got), &pick(&dqkv));
        eprintln!("{what}: attention backward {name} relative error {e:.2e}");
        assert!(e < 2.0 * TOL, "{what}: attention backward {name} {e}");
    }
}

#[test]
fn buffers_are_counted_and_their_peak_kept() {
    let Some(g) = gpu() else { return };
    let base = g.live_memory();
    let a: Buf<f32> = g.alloc(1000).unwrap();
    assert_eq!(g.live_memory(), base + 4000);
    {
        let _b = g.upload(&[1u16; 500]).unwrap();
        assert_eq!(g.live_memory(), base + 5000);
    }
    assert_eq!(
        g.live_memory(),
        base + 4000,
        "a dropped buffer leaves the count"
    );
    assert!(g.peak_memory() >= base + 5000, "the peak stays");
    drop(a);
    assert_eq!(g.live_memory(), base);
}

#[test]
fn dropout_matches_the_cpu_mask() {
    let Some(g) = gpu() else { return };
    let n = 20_011;
    let x = bf(&Rng(8).vec(n, 1.0));
    let key = cpu::dropout::key(1, 2, 3, 4);
    let mut want = x.clone();
    cpu::dropout::apply(&mut want, 0.25, key);
    let inp = g.upload(&to_bf16(&x)).unwrap();
    let out = poisoned_bf16(&g, n);
    g.dropout(out.ptr(), inp.ptr(), n, 0.25, key).unwrap();
    let got = dl16(&g, &out);
    // The same elements dropped; the kept ones scaled (then rounded to bf16).
    for (i, (a, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(*a == 0.0, *w == 0.0, "element {i}: {a} vs {w}");
    }
    let e = rel_err(&got, &bf(&want));
    assert!(e < 1e-2, "dropout {e}");
    // In place.
    g.dropout(inp.ptr(), inp.ptr(), n, 0.25, key).unwrap();
    assert_eq!(dl16(&g, &inp), got);
}

#[test]
fn gelu_forward_and_backward() {
    let Some(g) = gpu() else { return };
    let n = 10_001;
    let mut r = Rng(5);
    let x = bf(&r.vec(n, 4.0));
    let dout = bf(&r.vec(n, 1.0));
    let (mut want, mut dwant) = (vec![0f32; n], vec![0f32; n]);
    cpu::gelu::forward(&mut want, &x);
    cpu::gelu::backward(&mut dwant, &x, &dout);
    let (x_d, dout_d) = (
        g.upload(&to_bf16(&x)).unwrap(),
        g.upload(&to_bf16(&dout)).unwrap(),
    );
    let out = poisoned_bf16(&g, n);
    g.gelu_forward(out.ptr(), x_d.ptr(), n).unwrap();
    let e = rel_err(&dl16(&g, &out), &want);
    assert!(e < TOL, "gelu forward {e}");
    g.gelu_backward(dout_d.ptr(), x_d.ptr(), dout_d.ptr(), n)
        .unwrap();
    let e = rel_err(&dl16(&g, &dout_d), &dwant);
    assert!(e < TOL, "gelu backward (in place) {e}");
}

#[test]
fn fused_classifier_matches_softmax_crossentropy() {
    let Some(g) = gpu() else { return };
    // Rows held in registers (Vp ≤ 65536: one vector a thread, several), one too wide for
    // them (read twice), and a width not a multiple of 8 (the scalar path).
    let shapes = [
        (33, 1000, 1024),
        (9, 20_000, 20_008),
        (3, 70_000, 70_016),
        (7, 999, 1001),
    ];
    for (n, v, vp) in shapes {
        check_classifier(&g, n, v, vp);
    }
}

fn check_classifier(g: &Gpu, n: usize, v: usize, vp: usize) {
    let mut r = Rng(6 + vp as u64);
    let mut logits = bf(&r.vec(n * vp, 4.0));
    for row in logits.chunks_exact_mut(vp) {
        row[v..].fill(0.0);
    }
    let targets: Vec<u32> = (0..n).map(|i| ((i * 37) % v) as u32).collect();
    let mut probs = vec![0f32; n * vp];
    cpu::loss::softmax_forward(&mut probs, &logits, v, vp, 1);
    let mut losses = vec![0f32; n];
    cpu::loss::crossentropy_forward(&mut losses, &probs, &targets, vp);
    let dloss = 1.0 / n as f32;
    let mut dlogits = vec![0f32; n * vp];
    cpu::loss::crossentropy_softmax_backward(
        &mut dlogits,
        &vec![dloss; n],
        &probs,
        &targets,
        v,
        vp,
        1,
    );
    let l_d = g.upload(&to_bf16(&logits)).unwrap();
    let losses_d = poisoned_f32(g, n);
    let t_d = g
        .upload(&targets.iter().map(|&x| x as i32).collect::<Vec<_>>())
        .unwrap();
    g.fused_classifier(l_d.ptr(), losses_d.ptr(), t_d.ptr(), n, v, vp, dloss)
        .unwrap();
    let e = rel_err(&g.download(&losses_d).unwrap(), &losses);
    assert!(e < 1e-5, "Vp={vp}: losses {e}");
    let e = rel_err(&dl16(g, &l_d), &dlogits);
    assert!(e < TOL, "Vp={vp}: dlogits {e}");
}

#[test]
fn adamw_and_gradient_norm_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let n = 100_003;
    let mut r = Rng(7);
    let mut p = r.vec(n, 1.0);
    let grads = r.vec(n, 0.1);
    let (mut m, mut v) = (
        r.vec(n, 0.01),
        r.vec(n, 0.01).iter().map(|x| x * x).collect::<Vec<_>>(),
    );
    let (p_d, g_d, m_d, v_d) = (
        g.upload(&p).unwrap(),
        g.upload(&grads).unwrap(),
        g.upload(&m).unwrap(),
        g.upload(&v).unwrap(),
    );
    let bf_d = poisoned_bf16(&g, n);
    let h = cpu::adamw::AdamW::default();
    let scale = 0.5;
    g.adamw(
        p_d.ptr(),
        bf_d.ptr(),
        g_d.ptr(),
        m_d.ptr(),
        v_d.ptr(),
        n,
        &h,
        3,
        scale,
    )
    .unwrap();
    let scaled: Vec<f32> = grads.iter().map(|x| x * scale).collect();
    cpu::adamw::update(&mut p, &scaled, &mut m, &mut v, &h, 3);
    assert!(rel_err(&g.download(&p_d).unwrap(), &p) < 1e-6, "master");
    assert!(rel_err(&g.download(&m_d).unwrap(), &m) < 1e-6, "m");
    assert!(rel_err(&g.download(&v_d).unwrap(), &v) < 1e-6, "v");
    assert!(rel_err(&dl16(&g, &bf_d), &p) < 1e-2, "bf16 copy");
    let scratch = g.scratch(1).unwrap();
    let ss = g.sum_squares(&scratch, g_d.ptr(), n).unwrap() as f64;
    let want: f64 = grads.iter().map(|x| (*x as f64).powi(2)).sum();
    assert!(
        (ss - want).abs() / want < 1e-5,
        "sum of squares {ss} vs {want}"
    );
    // The same sum again, bit for bit.
    assert_eq!(g.sum_squares(&scratch, g_d.ptr(), n).unwrap() as f64, ss);
}
