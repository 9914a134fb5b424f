//! One launcher per kernel of `kernels/cuda/*.cu` and the GEMMs (cuBLASLt with fused
//! epilogues, or cuBLAS GemmEx plus the separate kernels with `HARMAN_GEMM=cublas`), on raw device
//! addresses (`u64`, from [`Buf::at`]). Shapes as the CPU reference: rows N = B·T, row-major
//! `[N, C]` activations, `[OC, C]` weights. bf16 buffers are `u16`, fp32 `f32`, ids `i32`.

use super::lt::{Epilogue, Shape};
use super::{compile, AttentionKernels, Buf, Device, GemmBackend, Gpu, GpuError};
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use std::ffi::c_void;

/// A kernel argument: a device address, an int, a 64-bit int or a float.
#[derive(Debug, Clone, Copy)]
enum Arg {
    P(u64),
    I(i32),
    L(i64),
    F(f32),
}
use Arg::{F, I, L, P};

const THREADS: u32 = 256;
/// Rows per chunk of the column sums (bias and LayerNorm parameter gradients).
const COLUMN_CHUNKS: usize = 128;
/// The widest row layernorm_backward_fused takes (LN_VMAX 16-byte vectors per lane).
const LN_FUSED_MAX_COLS: usize = 32 * 8 * 4;
/// Blocks of the sum-of-squares pass (fixed, so the sum's order is too).
const NORM_BLOCKS: usize = 512;

/// p · 2^64: the mask drops element i when SplitMix64(key, i) is below it (as the CPU's
/// `dropout::factor` computes it).
fn dropout_threshold(p: f32) -> u64 {
    (p as f64 * 2f64.powi(64)) as u64
}

fn blocks(n: usize, per: u32) -> u32 {
    n.div_ceil(per as usize).max(1) as u32
}

fn int(v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::Unsupported(format!("{v} exceeds a 32-bit size")))
}

/// The rows per chunk and the chunk count for column sums over `n` rows.
fn chunking(n: usize) -> (usize, usize) {
    let per = n.div_ceil(COLUMN_CHUNKS).max(1);
    (per, n.div_ceil(per).max(1))
}

/// Scratch space the backward launchers need (column-sum partials, sums of squares).
pub struct Scratch {
    pub partial: Buf<f32>,
    pub total: Buf<f32>,
}

impl Gpu {
    fn launch(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: u32,
        args: &[Arg],
    ) -> Result<(), GpuError> {
        let mut slots: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                P(p) => p,
                I(i) => i as u32 as u64,
                L(l) => l as u64,
                F(f) => f.to_bits() as u64,
            })
            .collect();
        let mut ptrs: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        let shared = compile::dynamic_shared_bytes(name, self.head_size);
        self.timed(
            || name.to_string(),
            || match &self.device {
                // SAFETY: each slot holds one argument in its low bytes (little-endian), in
                // the kernel's parameter order; the addresses are live device buffers of the
                // right size (the callers' contract).
                Device::Cuda(g) => unsafe {
                    cudarc::driver::result::launch_kernel(
                        g.functions[name].cu_function(),
                        grid,
                        (block, 1, 1),
                        shared,
                        g.stream.cu_stream(),
                        &mut ptrs,
                    )
                    .map_err(GpuError::from)
                },
                Device::Sim(sim) => sim.launch(name, grid, block, shared, &mut ptrs),
            },
        )
    }

    /// Scratch sized for rows of up to `max_cols` columns.
    pub fn scratch(&self, max_cols: usize) -> Result<Scratch, GpuError> {
        Ok(Scratch {
            partial: self.alloc((COLUMN_CHUNKS * 2 * max_cols).max(NORM_BLOCKS))?,
            total: self.alloc(1)?,
        })
    }

    /// out[n, c] = wte[tokens] + wpe[t].
    #[allow(clippy::too_many_arguments)]
    pub fn encoder_forward(
        &self,
        out: u64,
        tokens: u64,
        wte: u64,
        wpe: u64,
        n: usize,
        t: usize,
        c: usize,
    ) -> Result<(), GpuError> {
        self.launch(
            "encoder_forward",
            (blocks(n * c, THREADS), 1, 1),
            THREADS,
            &[
                P(out),
                P(tokens),
                P(wte),
                P(wpe),
                I(int(n)?),
                I(int(t)?),
                I(int(c)?),
            ],
        )
    }

    /// dwte[token] += Σ dout over the token's rows, dwpe[t] += Σ_b dout[b, t]; `tokens` are
    /// the batch's ids on the host (the per-token row lists are built here).
    #[allow(clippy::too_many_arguments)]
    pub fn encoder_backward(
        &self,
        dwte: u64,
        dwpe: u64,
        dout: u64,
        tokens: &[u32],
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<(), GpuError> {
        self.launch(
            "encoder_backward_wpe",
            (blocks(t * c, THREADS), 1, 1),
            THREADS,
            &[P(dwpe), P(dout), I(int(b)?), I(int(t)?), I(int(c)?)],
        )?;
        let mut order: Vec<u32> = (0..tokens.len() as u32).collect();
        order.sort_by_key(|&i| (tokens[i as usize], i));
        let (mut token_of, mut offsets) = (Vec::new(), Vec::new());
        for (k, &row) in order.iter().enumerate() {
            let tok = tokens[row as usize];
            if token_of.last() != Some(&(tok as i32)) {
                token_of.push(tok as i32);
                offsets.push(k as i32);
            }
        }
        offsets.push(order.len() as i32);
        let positions: Vec<i32> = order.iter().map(|&r| r as i32).collect();
        let tok = self.upload(&token_of)?;
        let off = self.upload(&offsets)?;
        let pos = self.upload(&positions)?;
        self.launch(
            "encoder_backward_wte",
            (token_of.len() as u32, 1, 1),
            THREADS,
            &[
                P(dwte),
                P(dout),
                P(tok.ptr()),
                P(off.ptr()),
                P(pos.ptr()),
                I(int(c)?),
            ],
        )?;
        // The index buffers are freed when the stream reaches this point.
        self.synchronize()
    }

    /// residual = a + b (when `b` is Some), out = LayerNorm(residual or a); mean, rstd saved.
    #[allow(clippy::too_many_arguments)]
    pub fn residual_layernorm_forward(
        &self,
        residual: u64,
        out: u64,
        mean: u64,
        rstd: u64,
        a: u64,
        b: Option<u64>,
        weight: u64,
        bias: u64,
        n: usize,
        c: usize,
    ) -> Result<(), GpuError> {
        self.launch(
            "residual_layernorm_forward",
            (blocks(n, 4), 1, 1),
            128,
            &[
                P(residual),
                P(out),
                P(mean),
                P(rstd),
                P(a),
                P(b.unwrap_or(0)),
                P(weight),
                P(bias),
                I(int(n)?),
                I(int(c)?),
            ],
        )
    }

    /// dinp (+)= LayerNorm backward; dweight += Σ norm·dout, dbias += Σ dout (fp32).
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_backward(
        &self,
        scratch: &Scratch,
        dinp: u64,
        dweight: u64,
        dbias: u64,
        dout: u64,
        inp: u64,
        weight: u64,
        mean: u64,
        rstd: u64,
        n: usize,
        c: usize,
        accumulate: bool,
    ) -> Result<(), GpuError> {
        let (per, chunks) = chunking(n);
        let fused = self.fused_layernorm
            && c % 8 == 0
            && c <= LN_FUSED_MAX_COLS
            && [dinp, dout, inp, weight].iter().all(|p| p % 16 == 0);
        if fused {
            self.launch(
                "layernorm_backward_fused",
                (chunks as u32, 1, 1),
                THREADS,
                &[
                    P(dinp),
                    P(scratch.partial.ptr()),
                    P(dout),
                    P(inp),
                    P(weight),
                    P(mean),
                    P(rstd),
                    I(int(n)?),
                    I(int(c)?),
                    I(int(per)?),
                    I(accumulate as i32),
                ],
            )?;
            return self.layernorm_params_sums(scratch, dweight, dbias, chunks, c);
        }
        // Two columns a thread when c is even and the rows 4-byte aligned (4-byte loads).
        let pairs = c % 2 == 0 && dout % 4 == 0 && inp % 4 == 0;
        let threads_x = if pairs { c / 2 } else { c };
        self.launch(
            "layernorm_backward_params",
            (blocks(threads_x, THREADS), chunks as u32, 1),
            THREADS,
            &[
                P(scratch.partial.ptr()),
                P(dout),
                P(inp),
                P(mean),
                P(rstd),
                I(int(n)?),
                I(int(c)?),
                I(int(per)?),
                I(pairs as i32),
            ],
        )?;
        self.layernorm_params_sums(scratch, dweight, dbias, chunks, c)?;
        self.launch(
            "layernorm_backward_input",
            (blocks(n, 4), 1, 1),
            128,
            &[
                P(dinp),
                P(dout),
                P(inp),
                P(weight),
                P(mean),
                P(rstd),
                I(int(n)?),
                I(int(c)?),
                I(accumulate as i32),
            ],
        )
    }

    /// dweight += Σ_chunks partial[chunk, 0:c], dbias += Σ_chunks partial[chunk, c:2c], the
    /// chunks in order.
    fn layernorm_params_sums(
        &self,
        scratch: &Scratch,
        dweight: u64,
        dbias: u64,
        chunks: usize,
        c: usize,
    ) -> Result<(), GpuError> {
        for (dst, offset) in [(dweight, 0), (dbias, c)] {
            self.launch(
                "sum_partials",
                (blocks(c, THREADS), 1, 1),
                THREADS,
                &[
                    P(dst),
                    P(scratch.partial.at(offset)),
                    I(int(chunks)?),
                    I(int(2 * c)?),
                    I(int(c)?),
                ],
            )?;
        }
        Ok(())
    }

    /// dbias += Σ_rows x (x: bf16 [n, c]).
    pub fn bias_backward(
        &self,
        scratch: &Scratch,
        dbias: u64,
        x: u64,
        n: usize,
        c: usize,
    ) -> Result<(), GpuError> {
        let (per, chunks) = chunking(n);
        self.launch(
            "column_sums",
            (blocks(c, THREADS), chunks as u32, 1),
            THREADS,
            &[
                P(scratch.partial.ptr()),
                P(x),
                I(int(n)?),
                I(int(c)?),
                I(int(per)?),
            ],
        )?;
        self.launch(
            "sum_partials",
            (blocks(c, THREADS), 1, 1),
            THREADS,
            &[
                P(dbias),
                P(scratch.partial.ptr()),
                I(int(chunks)?),
                I(int(c)?),
                I(int(c)?),
            ],
        )
    }

    /// Runs `s` through cuBLASLt (with its epilogue; `aux` is the GELU epilogues' buffer)
    /// when cuBLASLt is the GEMM library and has an algorithm for the shape; Ok(false) when
    /// not, so the caller falls back to cuBLAS and the separate kernels.
    #[allow(clippy::too_many_arguments)]
    fn lt_gemm(
        &self,
        s: &Shape,
        a: u64,
        b: u64,
        c: u64,
        beta: f32,
        bias: Option<u64>,
        aux: Option<u64>,
    ) -> Result<bool, GpuError> {
        if self.gemm_backend != GemmBackend::Lt {
            return Ok(false);
        }
        match &self.device {
            Device::Cuda(g) => {
                if !g.lt.supports(s) {
                    return Ok(false);
                }
                let stream = g.stream.cu_stream() as _;
                self.timed(
                    || s.to_string(),
                    || g.lt.gemm(s, a, b, c, beta, bias, aux, stream),
                )?;
            }
            Device::Sim(sim) => sim.gemm(s, a, b, c, beta, bias, aux)?,
        }
        Ok(true)
    }

    /// GEMM in column-major terms: C[m, n] = op(A)·op(B) + beta·C (+ bias[m] over n), A and B
    /// bf16, C bf16 or fp32 (`s.c_f32`), fp32 accumulation; through cuBLASLt (the bias in
    /// its epilogue), or cuBLAS's GemmEx and the add_bias kernel (`HARMAN_GEMM=cublas`, or
    /// a shape cuBLASLt has no algorithm for). `s.epilogue` is None or Bias here.
    fn gemm(
        &self,
        s: Shape,
        a: u64,
        b: u64,
        c: u64,
        beta: f32,
        bias: Option<u64>,
    ) -> Result<(), GpuError> {
        if self.lt_gemm(&s, a, b, c, beta, bias, None)? {
            return Ok(());
        }
        let op = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let alpha = 1.0f32;
        let c_type = if s.c_f32 {
            cudaDataType::CUDA_R_32F
        } else {
            cudaDataType::CUDA_R_16BF
        };
        let plain = Shape {
            epilogue: Epilogue::None,
            ..s
        };
        let g = match &self.device {
            Device::Cuda(g) => g,
            Device::Sim(sim) => {
                sim.gemm(&plain, a, b, c, beta, None, None)?;
                return self.add_bias(&s, c, bias);
            }
        };
        // SAFETY: the addresses are device buffers holding the shapes described by
        // (m, n, k, ld*), which the callers derive from the same sizes they allocated.
        self.timed(
            || plain.to_string(),
            || unsafe {
                cudarc::cublas::result::gemm_ex(
                    *g.blas.handle(),
                    op(s.trans_a),
                    op(s.trans_b),
                    int(s.m)?,
                    int(s.n)?,
                    int(s.k)?,
                    &alpha as *const f32 as *const c_void,
                    a as *const c_void,
                    cudaDataType::CUDA_R_16BF,
                    int(s.lda)?,
                    b as *const c_void,
                    cudaDataType::CUDA_R_16BF,
                    int(s.ldb)?,
                    &beta as *const f32 as *const c_void,
                    c as *mut c_void,
                    c_type,
                    int(s.ldc)?,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )?;
                Ok(())
            },
        )?;
        self.add_bias(&s, c, bias)
    }

    /// c[m, n] (column-major) += bias[m] over the columns, when there is a bias.
    fn add_bias(&self, s: &Shape, c: u64, bias: Option<u64>) -> Result<(), GpuError> {
        if let Some(bias) = bias {
            self.launch(
                "add_bias",
                (blocks((s.m * s.n).div_ceil(8), THREADS), 1, 1),
                THREADS,
                &[P(c), P(bias), L(s.n as i64), I(int(s.m)?)],
            )?;
        }
        Ok(())
    }

    /// The forward GEMM's shape: out[n, oc] = inp[n, c] · weight[oc, c]ᵀ.
    fn forward_shape(n: usize, c: usize, oc: usize, epilogue: Epilogue) -> Shape {
        Shape {
            trans_a: true,
            trans_b: false,
            m: oc,
            n,
            k: c,
            lda: c,
            ldb: c,
            ldc: oc,
            c_f32: false,
            epilogue,
        }
    }

    /// out[n, oc] = inp[n, c] · weight[oc, c]ᵀ (+ bias), bf16.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_forward(
        &self,
        out: u64,
        inp: u64,
        weight: u64,
        bias: Option<u64>,
        n: usize,
        c: usize,
        oc: usize,
    ) -> Result<(), GpuError> {
        let epilogue = if bias.is_some() {
            Epilogue::Bias
        } else {
            Epilogue::None
        };
        let s = Self::forward_shape(n, c, oc, epilogue);
        self.gemm(s, weight, inp, out, 0.0, bias)
    }

    /// pre[n, oc] = inp · weightᵀ + bias and out = gelu(pre): one cuBLASLt GEMM with a GELU
    /// epilogue where the library has one for the shape, else the GEMM and gelu_forward.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_forward_gelu(
        &self,
        out: u64,
        pre: u64,
        inp: u64,
        weight: u64,
        bias: u64,
        n: usize,
        c: usize,
        oc: usize,
    ) -> Result<(), GpuError> {
        let s = Self::forward_shape(n, c, oc, Epilogue::GeluBias);
        if self.lt_gemm(&s, weight, inp, out, 0.0, Some(bias), Some(pre))? {
            return Ok(());
        }
        self.matmul_forward(pre, inp, weight, Some(bias), n, c, oc)?;
        self.gelu_forward(out, pre, n * oc)
    }

    /// dinp (+)= dout · weight (bf16; added when `accumulate`), dweight += doutᵀ · inp (fp32),
    /// dbias += Σ dout. With `gelu_pre` (a layer whose input was gelu(pre)), dinp = (dout ·
    /// weight) · gelu'(pre) instead, overwritten: the GELU's backward in the GEMM's epilogue
    /// where cuBLASLt has one, else gelu_backward after it. The bias gradient comes from the
    /// weight gradient's GEMM (cuBLASLt's BGRADB epilogue writes Σ dout into scratch, then
    /// added to dbias), else from the column sums.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_backward(
        &self,
        scratch: &Scratch,
        dinp: u64,
        dweight: u64,
        dbias: Option<u64>,
        dout: u64,
        inp: u64,
        weight: u64,
        n: usize,
        c: usize,
        oc: usize,
        accumulate: bool,
        gelu_pre: Option<u64>,
    ) -> Result<(), GpuError> {
        let dinp_shape = Shape {
            trans_a: false,
            trans_b: false,
            m: c,
            n,
            k: oc,
            lda: c,
            ldb: oc,
            ldc: c,
            c_f32: false,
            epilogue: Epilogue::None,
        };
        match gelu_pre {
            Some(pre) => {
                let fused = Shape {
                    epilogue: Epilogue::GeluGrad,
                    ..dinp_shape
                };
                if !self.lt_gemm(&fused, weight, dout, dinp, 0.0, None, Some(pre))? {
                    self.gemm(dinp_shape, weight, dout, dinp, 0.0, None)?;
                    self.gelu_backward(dinp, pre, dinp, n * c)?;
                }
            }
            None => {
                let beta = if accumulate { 1.0 } else { 0.0 };
                self.gemm(dinp_shape, weight, dout, dinp, beta, None)?;
            }
        }
        let dweight_shape = Shape {
            trans_a: false,
            trans_b: true,
            m: c,
            n: oc,
            k: n,
            lda: c,
            ldb: oc,
            ldc: c,
            c_f32: true,
            epilogue: Epilogue::None,
        };
        if let Some(dbias) = dbias {
            let fused = Shape {
                epilogue: Epilogue::BiasGradB,
                ..dweight_shape
            };
            let partial = scratch.partial.ptr();
            if self.lt_gemm(&fused, inp, dout, dweight, 1.0, Some(partial), None)? {
                return self.launch(
                    "sum_partials",
                    (blocks(oc, THREADS), 1, 1),
                    THREADS,
                    &[P(dbias), P(partial), I(1), I(int(oc)?), I(int(oc)?)],
                );
            }
        }
        self.gemm(dweight_shape, inp, dout, dweight, 1.0, None)?;
        if let Some(dbias) = dbias {
            self.bias_backward(scratch, dbias, dout, n, oc)?;
        }
        Ok(())
    }

    fn attention_grid(&self, b: usize, t: usize, nh: usize) -> (u32, u32, u32) {
        (blocks(t, 64), (b * nh) as u32, 1)
    }

    /// The grid and block of the kernels that own query rows (the forward pass and dQ): the
    /// warpgroup-MMA build runs two warpgroups on 128 query rows a block (flash.cu's
    /// QGROUPS), the others one block per 64 rows.
    fn query_tile_launch(
        &self,
        b: usize,
        t: usize,
        nh: usize,
        threads: u32,
    ) -> ((u32, u32, u32), u32) {
        match self.attention {
            AttentionKernels::Warpgroup => ((blocks(t, 128), (b * nh) as u32, 1), 256),
            _ => (self.attention_grid(b, t, nh), threads),
        }
    }

    /// The attention kernels to launch (forward, dK/dV, dQ), their block size and their
    /// dropout arguments: `drop` = (p, key) of the probabilities' mask, tensor-core
    /// kernels only.
    fn attention_kernels(
        &self,
        drop: Option<(f32, u64)>,
    ) -> Result<([&'static str; 3], u32, Vec<Arg>), GpuError> {
        let (threshold, scale, key) = match drop {
            Some((p, key)) if p > 0.0 => (dropout_threshold(p), 1.0 / (1.0 - p), key),
            _ => (0, 1.0, 0),
        };
        let extra = vec![L(threshold as i64), F(scale), L(key as i64)];
        self.attention_available(self.attention)?;
        Ok(match (self.attention, threshold > 0) {
            (AttentionKernels::TensorCores, false) => (
                ["flash_forward", "flash_backward_dkdv", "flash_backward_dq"],
                128,
                extra,
            ),
            (AttentionKernels::TensorCores, true) => (
                [
                    "flash_forward_dropout",
                    "flash_backward_dkdv_dropout",
                    "flash_backward_dq_dropout",
                ],
                128,
                extra,
            ),
            (AttentionKernels::Warpgroup, false) => (
                [
                    "flash_forward_wg",
                    "flash_backward_dkdv_wg",
                    "flash_backward_dq_wg",
                ],
                128,
                extra,
            ),
            (AttentionKernels::Warpgroup, true) => (
                [
                    "flash_forward_dropout_wg",
                    "flash_backward_dkdv_dropout_wg",
                    "flash_backward_dq_dropout_wg",
                ],
                128,
                extra,
            ),
            (AttentionKernels::CudaCores, false) => (
                [
                    "attention_forward",
                    "attention_backward_dkdv",
                    "attention_backward_dq",
                ],
                64,
                Vec::new(),
            ),
            (AttentionKernels::CudaCores, true) => {
                return Err(GpuError::Unsupported(
                    "attention dropout runs in the tensor-core kernels only (unset \
                     HARMAN_ATTENTION=simt)"
                        .into(),
                ))
            }
        })
    }

    /// out[b, t, C] and lse[b, h, t] from qkv[b, t, 3C] (causal, no T×T buffer); `drop` =
    /// (p, key) drops attention probabilities (the normalizer counts them all).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_forward(
        &self,
        out: u64,
        lse: u64,
        qkv: u64,
        b: usize,
        t: usize,
        nh: usize,
        drop: Option<(f32, u64)>,
    ) -> Result<(), GpuError> {
        let ([name, _, _], threads, extra) = self.attention_kernels(drop)?;
        let mut args = vec![P(out), P(lse), P(qkv), I(int(t)?), I(int(nh)?)];
        args.extend(extra);
        let (grid, threads) = self.query_tile_launch(b, t, nh, threads);
        self.launch(name, grid, threads, &args)
    }

    /// dqkv (overwritten) from dout, the forward's qkv, out and lse; `dsum` holds b·nh·t
    /// floats of scratch; `drop` as the forward's.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        &self,
        dqkv: u64,
        dsum: u64,
        dout: u64,
        qkv: u64,
        out: u64,
        lse: u64,
        b: usize,
        t: usize,
        nh: usize,
        drop: Option<(f32, u64)>,
    ) -> Result<(), GpuError> {
        let ([_, dkdv, dq], threads, extra) = self.attention_kernels(drop)?;
        self.launch(
            "flash_backward_d",
            (blocks(b * nh * t, THREADS), 1, 1),
            THREADS,
            &[
                P(dsum),
                P(dout),
                P(out),
                I(int(b)?),
                I(int(t)?),
                I(int(nh)?),
            ],
        )?;
        let mut args = vec![
            P(dqkv),
            P(qkv),
            P(dout),
            P(lse),
            P(dsum),
            I(int(t)?),
            I(int(nh)?),
        ];
        args.extend(extra);
        self.launch(dkdv, self.attention_grid(b, t, nh), threads, &args)?;
        let (grid, threads) = self.query_tile_launch(b, t, nh, threads);
        self.launch(dq, grid, threads, &args)
    }

    /// out[i] = inp[i] · (0 or 1 / (1 − p)), bf16, the mask a pure function of (key, i)
    /// (the CPU's `dropout::apply`); in place when out == inp.
    pub fn dropout(&self, out: u64, inp: u64, n: usize, p: f32, key: u64) -> Result<(), GpuError> {
        self.launch(
            "dropout",
            (blocks(n, THREADS), 1, 1),
            THREADS,
            &[
                P(out),
                P(inp),
                L(n as i64),
                L(dropout_threshold(p) as i64),
                F(1.0 / (1.0 - p)),
                L(key as i64),
            ],
        )
    }

    pub fn gelu_forward(&self, out: u64, inp: u64, n: usize) -> Result<(), GpuError> {
        self.launch(
            "gelu_forward",
            (blocks(n.div_ceil(8), THREADS), 1, 1),
            THREADS,
            &[P(out), P(inp), L(n as i64)],
        )
    }

    /// dinp = gelu'(inp)·dout (dinp may be dout).
    pub fn gelu_backward(&self, dinp: u64, inp: u64, dout: u64, n: usize) -> Result<(), GpuError> {
        self.launch(
            "gelu_backward",
            (blocks(n.div_ceil(8), THREADS), 1, 1),
            THREADS,
            &[P(dinp), P(inp), P(dout), L(n as i64)],
        )
    }

    /// losses[row] = cross-entropy of softmax(logits[row, :v]); when dloss != 0 the logits
    /// become their gradient (softmax − onehot)·dloss, padded columns 0.
    #[allow(clippy::too_many_arguments)]
    pub fn fused_classifier(
        &self,
        logits: u64,
        losses: u64,
        targets: u64,
        n: usize,
        v: usize,
        vp: usize,
        dloss: f32,
    ) -> Result<(), GpuError> {
        self.launch(
            "fused_classifier",
            (n as u32, 1, 1),
            1024,
            &[
                P(logits),
                P(losses),
                P(targets),
                I(int(v)?),
                I(int(vp)?),
                F(dloss),
            ],
        )
    }

    /// AdamW at step `t` (from 1) over n values: fp32 master and moments, the bf16 copy
    /// rewritten, gradients scaled by `grad_scale` first.
    #[allow(clippy::too_many_arguments)]
    pub fn adamw(
        &self,
        master: u64,
        params: u64,
        grads: u64,
        m: u64,
        v: u64,
        n: usize,
        h: &crate::cpu::adamw::AdamW,
        t: u32,
        grad_scale: f32,
    ) -> Result<(), GpuError> {
        let c1 = 1.0 - h.beta1.powi(t as i32);
        let c2 = 1.0 - h.beta2.powi(t as i32);
        self.launch(
            "adamw",
            (blocks(n, THREADS), 1, 1),
            THREADS,
            &[
                P(master),
                P(params),
                P(grads),
                P(m),
                P(v),
                L(n as i64),
                F(h.lr),
                F(h.beta1),
                F(h.beta2),
                F(h.eps),
                F(h.weight_decay),
                F(c1),
                F(c2),
                F(grad_scale),
            ],
        )
    }

    /// Σ x² over n fp32 values (fixed grid and order; waits for the result).
    pub fn sum_squares(&self, scratch: &Scratch, x: u64, n: usize) -> Result<f32, GpuError> {
        self.launch(
            "sum_squares",
            (NORM_BLOCKS as u32, 1, 1),
            THREADS,
            &[P(scratch.partial.ptr()), P(x), L(n as i64)],
        )?;
        self.launch(
            "sum_all",
            (1, 1, 1),
            1024,
            &[
                P(scratch.total.ptr()),
                P(scratch.partial.ptr()),
                I(NORM_BLOCKS as i32),
            ],
        )?;
        Ok(self.download(&scratch.total)?[0])
    }

    pub fn cast_to_bf16(&self, out: u64, inp: u64, n: usize) -> Result<(), GpuError> {
        self.launch(
            "cast_to_bf16",
            (blocks(n, THREADS), 1, 1),
            THREADS,
            &[P(out), P(inp), L(n as i64)],
        )
    }

    pub fn cast_to_f32(&self, out: u64, inp: u64, n: usize) -> Result<(), GpuError> {
        self.launch(
            "cast_to_f32",
            (blocks(n, THREADS), 1, 1),
            THREADS,
            &[P(out), P(inp), L(n as i64)],
        )
    }
}
