//! The CUDA backend of the GPT model: parameters as fp32 master weights plus the bf16 copy
//! the passes read, fp32 parameter gradients and AdamW moments, bf16 activations and
//! activation gradients; forward and backward through the hand-written kernels and cuBLAS of
//! `harman_kernels::cuda`, in the CPU backend's op order ([`crate::cpu`]). The trainer moves
//! a model here with [`GpuModel::new`] and back with [`GpuModel::download`], so checkpoints
//! are the same files on either device.

use crate::cpu::Dropout;
use crate::model::{GptConfig, ParamLayout, Params};
use crate::trainer::Device;
use harman_kernels::cpu::adamw::AdamW;
use harman_kernels::cuda::{Buf, Gpu, GpuError, Scratch};

/// Per-layer activations saved for the backward pass, each `[L, N, width]` in one buffer.
struct Acts {
    encoded: Buf<u16>,
    ln1: Buf<u16>,
    ln1_mean: Buf<f32>,
    ln1_rstd: Buf<f32>,
    qkv: Buf<u16>,
    atty: Buf<u16>,
    lse: Buf<f32>,
    residual2: Buf<u16>,
    ln2: Buf<u16>,
    ln2_mean: Buf<f32>,
    ln2_rstd: Buf<f32>,
    fch: Buf<u16>,
    /// gelu(fch): every layer's, or (recomputing) one layer's, rebuilt in the backward pass.
    fch_gelu: Buf<u16>,
    residual3: Buf<u16>,
    lnf: Buf<u16>,
    lnf_mean: Buf<f32>,
    lnf_rstd: Buf<f32>,
    logits: Buf<u16>,
    losses: Buf<f32>,
    /// The projections' outputs before their residual add (transient).
    proj: Buf<u16>,
    // Gradients of activations (transient, reused by every layer).
    dres: Buf<u16>,
    dbuf: Buf<u16>,
    dqkv: Buf<u16>,
    dfch: Buf<u16>,
    dsum: Buf<f32>,
}

/// Where `device` puts a model: on the GPU, or on the CPU (for `auto`, with why not the GPU).
pub enum Placement {
    Gpu(Box<GpuModel>),
    Cpu(Option<String>),
}

/// Places a model on `device`: `cpu` on the CPU; `cuda` on the GPU that `open` opens, or
/// `open`'s error; `auto` on the GPU where one is usable and `open` succeeds, else on the
/// CPU with the reason.
pub fn place(
    device: Device,
    open: impl FnOnce() -> Result<GpuModel, GpuError>,
) -> Result<Placement, GpuError> {
    match device {
        Device::Cpu => Ok(Placement::Cpu(None)),
        Device::Cuda => Ok(Placement::Gpu(Box::new(open()?))),
        Device::Auto => Ok(match harman_kernels::cuda::probe() {
            Err(why) => Placement::Cpu(Some(format!("no GPU: {why}"))),
            Ok(()) => match open() {
                Ok(gpu) => Placement::Gpu(Box::new(gpu)),
                Err(e) => Placement::Cpu(Some(format!("the GPU could not be used: {e}"))),
            },
        }),
    }
}

/// A model, its optimizer state and its activations on the GPU, for batches of B×T.
pub struct GpuModel {
    pub gpu: Gpu,
    pub config: GptConfig,
    layout: ParamLayout,
    /// The batch's shape: B×T as allocated for training; an evaluation's forward pass
    /// ([`GpuModel::forward_logits`]) takes any shape of at most `capacity` positions.
    b: usize,
    t: usize,
    capacity: usize,
    master: Buf<f32>,
    params: Buf<u16>,
    grads: Buf<f32>,
    m: Buf<f32>,
    v: Buf<f32>,
    acts: Acts,
    scratch: Scratch,
    tokens: Buf<i32>,
    targets: Buf<i32>,
    /// The last forward pass's input ids (the encoder's backward groups rows by token).
    last_tokens: Vec<u32>,
    /// Recompute the GELU outputs in the backward pass instead of keeping them (saves
    /// L·B·T·4C bf16 values for one extra GELU pass per layer).
    recompute: bool,
    /// The next forward/backward's dropout (masks as the CPU backend's: same sites, same
    /// keys, same elements dropped).
    dropout: Option<Dropout>,
}

impl GpuModel {
    /// Uploads `params` (and AdamW's `m`, `v`) and allocates activations for B×T batches;
    /// `recompute` trades memory for a recomputed GELU per layer in the backward pass.
    pub fn new(
        params: &Params,
        m: &[f32],
        v: &[f32],
        b: usize,
        t: usize,
        recompute: bool,
    ) -> Result<GpuModel, GpuError> {
        let cfg = params.config;
        let gpu = Gpu::new(cfg.head_size())?;
        let (l, c, n) = (cfg.num_layers, cfg.channels, b * t);
        let nh = cfg.num_heads;
        let total = params.data.len();
        let master = gpu.upload(&params.data)?;
        let bf: Buf<u16> = gpu.alloc(total)?;
        gpu.cast_to_bf16(bf.ptr(), master.ptr(), total)?;
        let acts = Acts {
            encoded: gpu.alloc(n * c)?,
            ln1: gpu.alloc(l * n * c)?,
            ln1_mean: gpu.alloc(l * n)?,
            ln1_rstd: gpu.alloc(l * n)?,
            qkv: gpu.alloc(l * n * 3 * c)?,
            atty: gpu.alloc(l * n * c)?,
            lse: gpu.alloc(l * b * nh * t)?,
            residual2: gpu.alloc(l * n * c)?,
            ln2: gpu.alloc(l * n * c)?,
            ln2_mean: gpu.alloc(l * n)?,
            ln2_rstd: gpu.alloc(l * n)?,
            fch: gpu.alloc(l * n * 4 * c)?,
            fch_gelu: gpu.alloc(if recompute { 1 } else { l } * n * 4 * c)?,
            residual3: gpu.alloc(l * n * c)?,
            lnf: gpu.alloc(n * c)?,
            lnf_mean: gpu.alloc(n)?,
            lnf_rstd: gpu.alloc(n)?,
            logits: gpu.alloc(n * cfg.padded_vocab_size)?,
            losses: gpu.alloc(n)?,
            proj: gpu.alloc(n * c)?,
            dres: gpu.alloc(n * c)?,
            dbuf: gpu.alloc(n * c)?,
            dqkv: gpu.alloc(n * 3 * c)?,
            dfch: gpu.alloc(n * 4 * c)?,
            dsum: gpu.alloc(b * nh * t)?,
        };
        let scratch = gpu.scratch(4 * c)?;
        let model = GpuModel {
            config: cfg,
            layout: params.layout.clone(),
            b,
            t,
            capacity: n,
            grads: gpu.alloc(total)?,
            m: gpu.upload(m)?,
            v: gpu.upload(v)?,
            master,
            params: bf,
            acts,
            scratch,
            tokens: gpu.alloc(n)?,
            targets: gpu.alloc(n)?,
            last_tokens: Vec::new(),
            recompute,
            dropout: None,
            gpu,
        };
        model.gpu.synchronize()?;
        Ok(model)
    }

    /// Offset of layer `l`'s slice of parameter tensor `name` in the flat layout.
    fn offset(&self, name: &str, l: usize) -> usize {
        let r = self.layout.range(name);
        r.start + l * (r.end - r.start) / self.layers_of(name)
    }

    /// Address of layer `l`'s slice of parameter tensor `name` in the bf16 copy.
    fn p(&self, name: &str, l: usize) -> u64 {
        self.params.at(self.offset(name, l))
    }

    /// Address of layer `l`'s slice of the gradient of `name`.
    fn g(&self, name: &str, l: usize) -> u64 {
        self.grads.at(self.offset(name, l))
    }

    /// Address of layer `l`'s GELU output (one shared buffer when recomputing).
    fn fch_gelu(&self, l: usize) -> u64 {
        let n = self.b * self.t;
        let layer = if self.recompute { 0 } else { l };
        self.acts.fch_gelu.at(layer * n * 4 * self.config.channels)
    }

    fn layers_of(&self, name: &str) -> usize {
        match name {
            "wte" | "wpe" | "lnfw" | "lnfb" => 1,
            _ => self.config.num_layers,
        }
    }

    /// Forward pass over one batch; returns the mean loss. With `dloss` != 0 the logits are
    /// replaced by their gradient scaled by `dloss` (per position), ready for [`backward`].
    ///
    /// [`backward`]: GpuModel::backward
    pub fn forward(&mut self, x: &[u32], y: &[u32], dloss: f32) -> Result<f32, GpuError> {
        self.forward_pass(x, Some(y), dloss)
    }

    /// The forward pass to the logits, then (with targets `y`) the classifier's losses (and,
    /// with `dloss` != 0, the logits' gradient); the mean loss, or 0 without targets.
    fn forward_pass(&mut self, x: &[u32], y: Option<&[u32]>, dloss: f32) -> Result<f32, GpuError> {
        let cfg = self.config;
        let (l_n, c, nh) = (cfg.num_layers, cfg.channels, cfg.num_heads);
        let (b, t) = (self.b, self.t);
        let n = b * t;
        if x.len() != n || y.is_some_and(|y| y.len() != n) {
            return Err(GpuError::Unsupported(format!(
                "a batch of {} ids for a model allocated for {b}×{t}",
                x.len()
            )));
        }
        let xi: Vec<i32> = x.iter().map(|&v| v as i32).collect();
        self.gpu.write(&mut self.tokens, &xi)?;
        if let Some(y) = y {
            let yi: Vec<i32> = y.iter().map(|&v| v as i32).collect();
            self.gpu.write(&mut self.targets, &yi)?;
        }
        self.last_tokens = x.to_vec();
        let g = &self.gpu;
        let a = &self.acts;
        g.encoder_forward(
            a.encoded.ptr(),
            self.tokens.ptr(),
            self.p("wte", 0),
            self.p("wpe", 0),
            n,
            t,
            c,
        )?;
        let drop = self.dropout;
        // Dropout in place on an [n, c] buffer: the embeddings (site 0) or a residual branch.
        let drop_in_place = |buf: u64, site: u64| -> Result<(), GpuError> {
            match drop {
                Some(d) => g.dropout(buf, buf, n * c, d.p, d.key(site)),
                None => Ok(()),
            }
        };
        drop_in_place(a.encoded.ptr(), 0)?;
        g.residual_layernorm_forward(
            0,
            a.ln1.ptr(),
            a.ln1_mean.ptr(),
            a.ln1_rstd.ptr(),
            a.encoded.ptr(),
            None,
            self.p("ln1w", 0),
            self.p("ln1b", 0),
            n,
            c,
        )?;
        for l in 0..l_n {
            let res_in = if l == 0 {
                a.encoded.ptr()
            } else {
                a.residual3.at((l - 1) * n * c)
            };
            let qkv = a.qkv.at(l * n * 3 * c);
            let atty = a.atty.at(l * n * c);
            g.matmul_forward(
                qkv,
                a.ln1.at(l * n * c),
                self.p("qkvw", l),
                Some(self.p("qkvb", l)),
                n,
                c,
                3 * c,
            )?;
            let att_drop = drop.map(|d| d.attention(l));
            g.attention_forward(atty, a.lse.at(l * b * nh * t), qkv, b, t, nh, att_drop)?;
            g.matmul_forward(
                a.proj.ptr(),
                atty,
                self.p("attprojw", l),
                Some(self.p("attprojb", l)),
                n,
                c,
                c,
            )?;
            drop_in_place(a.proj.ptr(), 1 + 2 * l as u64)?;
            g.residual_layernorm_forward(
                a.residual2.at(l * n * c),
                a.ln2.at(l * n * c),
                a.ln2_mean.at(l * n),
                a.ln2_rstd.at(l * n),
                res_in,
                Some(a.proj.ptr()),
                self.p("ln2w", l),
                self.p("ln2b", l),
                n,
                c,
            )?;
            let fch = a.fch.at(l * n * 4 * c);
            let fch_gelu = self.fch_gelu(l);
            if self.recompute {
                // The GELU as the backward pass will recompute it (same kernel, same bits).
                g.matmul_forward(
                    fch,
                    a.ln2.at(l * n * c),
                    self.p("fcw", l),
                    Some(self.p("fcb", l)),
                    n,
                    c,
                    4 * c,
                )?;
                g.gelu_forward(fch_gelu, fch, n * 4 * c)?;
            } else {
                g.matmul_forward_gelu(
                    fch_gelu,
                    fch,
                    a.ln2.at(l * n * c),
                    self.p("fcw", l),
                    self.p("fcb", l),
                    n,
                    c,
                    4 * c,
                )?;
            }
            g.matmul_forward(
                a.proj.ptr(),
                fch_gelu,
                self.p("fcprojw", l),
                Some(self.p("fcprojb", l)),
                n,
                4 * c,
                c,
            )?;
            drop_in_place(a.proj.ptr(), 2 + 2 * l as u64)?;
            let (out, mean, rstd, w, bias) = if l + 1 < l_n {
                (
                    a.ln1.at((l + 1) * n * c),
                    a.ln1_mean.at((l + 1) * n),
                    a.ln1_rstd.at((l + 1) * n),
                    self.p("ln1w", l + 1),
                    self.p("ln1b", l + 1),
                )
            } else {
                (
                    a.lnf.ptr(),
                    a.lnf_mean.ptr(),
                    a.lnf_rstd.ptr(),
                    self.p("lnfw", 0),
                    self.p("lnfb", 0),
                )
            };
            g.residual_layernorm_forward(
                a.residual3.at(l * n * c),
                out,
                mean,
                rstd,
                a.residual2.at(l * n * c),
                Some(a.proj.ptr()),
                w,
                bias,
                n,
                c,
            )?;
        }
        g.matmul_forward(
            a.logits.ptr(),
            a.lnf.ptr(),
            self.p("wte", 0),
            None,
            n,
            c,
            cfg.padded_vocab_size,
        )?;
        if y.is_none() {
            return Ok(0.0);
        }
        g.fused_classifier(
            a.logits.ptr(),
            a.losses.ptr(),
            self.targets.ptr(),
            n,
            cfg.vocab_size,
            cfg.padded_vocab_size,
            dloss,
        )?;
        let losses = g.download_range(&a.losses, 0..n)?;
        Ok((losses.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32)
    }

    /// An evaluation's forward pass over `x`, `b` sequences of `t` ids (b·t at most the
    /// B×T the model was allocated for, t at most max_seq_len), without dropout or gradient:
    /// the logits stay on the device for [`GpuModel::logits_rows`], row `i·t + p` for
    /// sequence `i`, position `p`. The training shape is kept for the next step.
    pub fn forward_logits(&mut self, x: &[u32], b: usize, t: usize) -> Result<(), GpuError> {
        if b * t > self.capacity || t > self.config.max_seq_len || x.len() != b * t || t == 0 {
            return Err(GpuError::Unsupported(format!(
                "{} ids as {b}×{t} for a model allocated for {} positions of at most {} each",
                x.len(),
                self.capacity,
                self.config.max_seq_len
            )));
        }
        let vocab = self.config.vocab_size;
        if let Some(bad) = x.iter().find(|&&id| id as usize >= vocab) {
            return Err(GpuError::Unsupported(format!(
                "token id {bad} is outside the model's vocabulary of {vocab}"
            )));
        }
        let shape = (self.b, self.t);
        let dropout = self.dropout.take();
        (self.b, self.t) = (b, t);
        let done = self.forward_pass(x, None, 0.0);
        (self.b, self.t) = shape;
        self.dropout = dropout;
        done.map(|_| ())
    }

    /// Rows `first .. first + rows` of the last forward pass's logits, each the padded
    /// vocabulary wide (fp32 from the bf16 the pass computed).
    pub fn logits_rows(&self, first: usize, rows: usize) -> Result<Vec<f32>, GpuError> {
        let vp = self.config.padded_vocab_size;
        let bits = self
            .gpu
            .download_range(&self.acts.logits, first * vp..(first + rows) * vp)?;
        Ok(harman_kernels::cuda::from_bf16(&bits))
    }

    /// Backward pass of the last forward (which must have had dloss != 0): adds the
    /// parameter gradients into the gradient buffer.
    pub fn backward(&mut self) -> Result<(), GpuError> {
        let cfg = self.config;
        let (l_n, c, nh) = (cfg.num_layers, cfg.channels, cfg.num_heads);
        let (b, t) = (self.b, self.t);
        let n = b * t;
        let g = &self.gpu;
        let a = &self.acts;
        let s = &self.scratch;
        let drop = self.dropout;
        // The gradient into a dropped residual branch (`site`): dres masked into the free
        // `proj` buffer, or dres itself without dropout.
        let branch = |site: u64| -> Result<u64, GpuError> {
            match drop {
                Some(d) => {
                    g.dropout(a.proj.ptr(), a.dres.ptr(), n * c, d.p, d.key(site))?;
                    Ok(a.proj.ptr())
                }
                None => Ok(a.dres.ptr()),
            }
        };
        g.matmul_backward(
            s,
            a.dbuf.ptr(),
            self.g("wte", 0),
            None,
            a.logits.ptr(),
            a.lnf.ptr(),
            self.p("wte", 0),
            n,
            c,
            cfg.padded_vocab_size,
            false,
            None,
        )?;
        g.layernorm_backward(
            s,
            a.dres.ptr(),
            self.g("lnfw", 0),
            self.g("lnfb", 0),
            a.dbuf.ptr(),
            a.residual3.at((l_n - 1) * n * c),
            self.p("lnfw", 0),
            a.lnf_mean.ptr(),
            a.lnf_rstd.ptr(),
            n,
            c,
            false,
        )?;
        for l in (0..l_n).rev() {
            let res_in = if l == 0 {
                a.encoded.ptr()
            } else {
                a.residual3.at((l - 1) * n * c)
            };
            if self.recompute {
                g.gelu_forward(self.fch_gelu(l), a.fch.at(l * n * 4 * c), n * 4 * c)?;
            }
            let dfcproj = branch(2 + 2 * l as u64)?;
            g.matmul_backward(
                s,
                a.dfch.ptr(),
                self.g("fcprojw", l),
                Some(self.g("fcprojb", l)),
                dfcproj,
                self.fch_gelu(l),
                self.p("fcprojw", l),
                n,
                4 * c,
                c,
                false,
                Some(a.fch.at(l * n * 4 * c)),
            )?;
            g.matmul_backward(
                s,
                a.dbuf.ptr(),
                self.g("fcw", l),
                Some(self.g("fcb", l)),
                a.dfch.ptr(),
                a.ln2.at(l * n * c),
                self.p("fcw", l),
                n,
                c,
                4 * c,
                false,
                None,
            )?;
            g.layernorm_backward(
                s,
                a.dres.ptr(),
                self.g("ln2w", l),
                self.g("ln2b", l),
                a.dbuf.ptr(),
                a.residual2.at(l * n * c),
                self.p("ln2w", l),
                a.ln2_mean.at(l * n),
                a.ln2_rstd.at(l * n),
                n,
                c,
                true,
            )?;
            let dattproj = branch(1 + 2 * l as u64)?;
            g.matmul_backward(
                s,
                a.dbuf.ptr(),
                self.g("attprojw", l),
                Some(self.g("attprojb", l)),
                dattproj,
                a.atty.at(l * n * c),
                self.p("attprojw", l),
                n,
                c,
                c,
                false,
                None,
            )?;
            g.attention_backward(
                a.dqkv.ptr(),
                a.dsum.ptr(),
                a.dbuf.ptr(),
                a.qkv.at(l * n * 3 * c),
                a.atty.at(l * n * c),
                a.lse.at(l * b * nh * t),
                b,
                t,
                nh,
                drop.map(|d| d.attention(l)),
            )?;
            g.matmul_backward(
                s,
                a.dbuf.ptr(),
                self.g("qkvw", l),
                Some(self.g("qkvb", l)),
                a.dqkv.ptr(),
                a.ln1.at(l * n * c),
                self.p("qkvw", l),
                n,
                c,
                3 * c,
                false,
                None,
            )?;
            g.layernorm_backward(
                s,
                a.dres.ptr(),
                self.g("ln1w", l),
                self.g("ln1b", l),
                a.dbuf.ptr(),
                res_in,
                self.p("ln1w", l),
                a.ln1_mean.at(l * n),
                a.ln1_rstd.at(l * n),
                n,
                c,
                true,
            )?;
        }
        if let Some(d) = drop {
            g.dropout(a.dres.ptr(), a.dres.ptr(), n * c, d.p, d.key(0))?;
        }
        g.encoder_backward(
            self.g("wte", 0),
            self.g("wpe", 0),
            a.dres.ptr(),
            &self.last_tokens,
            b,
            t,
            c,
        )
    }

    /// Dropout for the next forward and backward passes (None: off, as for validation).
    pub fn set_dropout(&mut self, dropout: Option<Dropout>) {
        self.dropout = dropout.filter(|d| d.p > 0.0);
    }

    pub fn zero_grads(&mut self) -> Result<(), GpuError> {
        self.gpu.zero(&mut self.grads)
    }

    /// The gradients' global L2 norm.
    pub fn grad_norm(&self) -> Result<f32, GpuError> {
        let n = self.grads.len();
        Ok(self
            .gpu
            .sum_squares(&self.scratch, self.grads.ptr(), n)?
            .sqrt())
    }

    /// AdamW step `t` (from 1) on every tensor (decay on matrices and embeddings only, as
    /// [`ParamLayout::decayed`]), gradients scaled by `grad_scale` (clipping).
    pub fn update(&mut self, h: &AdamW, t: u32, grad_scale: f32) -> Result<(), GpuError> {
        for (name, _, _) in &self.layout.tensors {
            let r = self.layout.range(name);
            let hp = ParamLayout::adamw_for(name, h);
            self.gpu.adamw(
                self.master.at(r.start),
                self.params.at(r.start),
                self.grads.at(r.start),
                self.m.at(r.start),
                self.v.at(r.start),
                r.end - r.start,
                &hp,
                t,
                grad_scale,
            )?;
        }
        Ok(())
    }

    /// The fp32 master weights and the moments, back on the host.
    pub fn download(
        &self,
        params: &mut Params,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
    ) -> Result<(), GpuError> {
        params.data = self.gpu.download(&self.master)?;
        *m = self.gpu.download(&self.m)?;
        *v = self.gpu.download(&self.v)?;
        Ok(())
    }

    /// The parameter gradients (fp32), for tests.
    pub fn gradients(&self) -> Result<Vec<f32>, GpuError> {
        self.gpu.download(&self.grads)
    }

    /// The logits (or, after a forward with dloss != 0, their gradient) as fp32, for tests.
    pub fn logits(&self) -> Result<Vec<f32>, GpuError> {
        Ok(harman_kernels::cuda::from_bf16(
            &self.gpu.download(&self.acts.logits)?,
        ))
    }

    /// Peak-free device memory in use now, in bytes.
    pub fn memory_used(&self) -> Result<usize, GpuError> {
        let (free, total) = self.gpu.memory()?;
        Ok(total - free)
    }
}
