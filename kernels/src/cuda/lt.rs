//! GEMMs through cuBLASLt: one plan per distinct shape (operation descriptor, matrix
//! layouts and the algorithm cuBLASLt's heuristic ranks first), built on first use and
//! reused; the bias of a forward GEMM is added in its epilogue. The algorithm choice is the
//! heuristic's, not a timed search, and split-K reductions that accumulate in place are
//! excluded, so a given GPU and library give bit-identical results run to run.

use super::GpuError;
use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys::{
    cublasComputeType_t, cublasLtEpilogue_t, cublasLtHandle_t, cublasLtMatmulAlgo_t,
    cublasLtMatmulDescAttributes_t as Desc, cublasLtMatmulDesc_t,
    cublasLtMatmulPreferenceAttributes_t as Pref, cublasLtMatmulPreference_t,
    cublasLtMatrixLayout_t, cublasLtReductionScheme_t as Reduction, cudaDataType, cudaStream_t,
};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// What runs on the product before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    None,
    /// + bias[m] over the columns.
    Bias,
    /// aux = product + bias, C = gelu(aux) (GPT-2's tanh GELU).
    GeluBias,
    /// C = product · gelu'(aux), aux the forward pass's pre-activation.
    GeluGrad,
    /// bias[n] = Σ over k of op(B) (fp32): a bias gradient, written, not added.
    BiasGradB,
}

/// What a plan depends on: C[m, n] = op(A)·op(B) (column-major terms, as cuBLAS), the
/// leading dimensions, the output type and the epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub c_f32: bool,
    pub epilogue: Epilogue,
}

impl std::fmt::Display for Shape {
    /// As the profile names it, e.g. "gemm TN 2304x32768x768 -> bf16 + bias".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |x: bool| if x { "T" } else { "N" };
        let out = if self.c_f32 { "f32" } else { "bf16" };
        let plus = match self.epilogue {
            Epilogue::None => "",
            Epilogue::Bias => " + bias",
            Epilogue::GeluBias => " + bias, gelu",
            Epilogue::GeluGrad => ", gelu'",
            Epilogue::BiasGradB => ", bias gradient",
        };
        write!(
            f,
            "gemm {}{} {}x{}x{} -> {out}{plus}",
            t(self.trans_a),
            t(self.trans_b),
            self.m,
            self.n,
            self.k
        )
    }
}

struct Plan {
    desc: cublasLtMatmulDesc_t,
    layouts: [cublasLtMatrixLayout_t; 3],
    algo: cublasLtMatmulAlgo_t,
}

/// A cuBLASLt handle and its plans.
pub struct LtGemm {
    handle: cublasLtHandle_t,
    /// Each shape's plan, or None where cuBLASLt has no algorithm for it (asked once).
    plans: Mutex<HashMap<Shape, Option<Plan>>>,
    workspace: u64,
    workspace_bytes: usize,
}

// SAFETY: the handle and plans are only used under the plans' mutex or by the owning Gpu on
// its one stream.
unsafe impl Send for LtGemm {}
unsafe impl Sync for LtGemm {}

/// Sets attribute `attr` of a matmul descriptor to `value` (of the attribute's documented
/// type).
///
/// # Safety
/// `desc` is a live descriptor and `T` the type cuBLASLt documents for `attr`.
unsafe fn set_desc<T>(desc: cublasLtMatmulDesc_t, attr: Desc, value: &T) -> Result<(), GpuError> {
    lt::set_matmul_desc_attribute(
        desc,
        attr,
        value as *const T as *const c_void,
        std::mem::size_of::<T>(),
    )?;
    Ok(())
}

/// Sets attribute `attr` of a matmul preference to `value`.
///
/// # Safety
/// As [`set_desc`], for a preference.
unsafe fn set_pref<T>(
    pref: cublasLtMatmulPreference_t,
    attr: Pref,
    value: &T,
) -> Result<(), GpuError> {
    lt::set_matmul_pref_attribute(
        pref,
        attr,
        value as *const T as *const c_void,
        std::mem::size_of::<T>(),
    )?;
    Ok(())
}

/// cublasOperation_t as the descriptor stores it (a 32-bit int: 0 = N, 1 = T).
fn op(t: bool) -> i32 {
    i32::from(t)
}

impl LtGemm {
    /// A handle using `workspace` (a device buffer of `workspace_bytes`, which must outlive
    /// this value).
    pub fn new(workspace: u64, workspace_bytes: usize) -> Result<LtGemm, GpuError> {
        Ok(LtGemm {
            handle: lt::create_handle()?,
            plans: Mutex::default(),
            workspace,
            workspace_bytes,
        })
    }

    fn plan(&self, s: &Shape) -> Result<Plan, GpuError> {
        let out = if s.c_f32 {
            cudaDataType::CUDA_R_32F
        } else {
            cudaDataType::CUDA_R_16BF
        };
        let desc = lt::create_matmul_desc(
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cudaDataType::CUDA_R_32F,
        )?;
        let (ta, tb) = (op(s.trans_a), op(s.trans_b));
        let epilogue = match s.epilogue {
            Epilogue::None => cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Bias => cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            Epilogue::GeluBias => cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_AUX_BIAS,
            Epilogue::GeluGrad => cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DGELU,
            Epilogue::BiasGradB => cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BGRADB,
        };
        let has_bias = matches!(
            s.epilogue,
            Epilogue::Bias | Epilogue::GeluBias | Epilogue::BiasGradB
        );
        let aux_ld = s.ldc as i64;
        let (ar, ac) = if s.trans_a { (s.k, s.m) } else { (s.m, s.k) };
        let (br, bc) = if s.trans_b { (s.n, s.k) } else { (s.k, s.n) };
        let layouts = [
            lt::create_matrix_layout(
                cudaDataType::CUDA_R_16BF,
                ar as u64,
                ac as u64,
                s.lda as i64,
            )?,
            lt::create_matrix_layout(
                cudaDataType::CUDA_R_16BF,
                br as u64,
                bc as u64,
                s.ldb as i64,
            )?,
            lt::create_matrix_layout(out, s.m as u64, s.n as u64, s.ldc as i64)?,
        ];
        let pref = lt::create_matmul_pref()?;
        let ws = self.workspace_bytes as u64;
        // Deterministic reductions only (no in-place split-K accumulation).
        let schemes = Reduction::CUBLASLT_REDUCTION_SCHEME_NONE as u32
            | Reduction::CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE as u32
            | Reduction::CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE as u32;
        // SAFETY: each attribute is given a value of its documented type; the descriptors
        // were just created.
        let found = unsafe {
            (|| {
                set_desc(desc, Desc::CUBLASLT_MATMUL_DESC_TRANSA, &ta)?;
                set_desc(desc, Desc::CUBLASLT_MATMUL_DESC_TRANSB, &tb)?;
                set_desc(desc, Desc::CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue)?;
                if has_bias {
                    let bias_type = if s.epilogue == Epilogue::BiasGradB {
                        cudaDataType::CUDA_R_32F
                    } else {
                        cudaDataType::CUDA_R_16BF
                    };
                    set_desc(desc, Desc::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type)?;
                }
                if matches!(s.epilogue, Epilogue::GeluBias | Epilogue::GeluGrad) {
                    set_desc(desc, Desc::CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld)?;
                }
                set_pref(pref, Pref::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws)?;
                set_pref(
                    pref,
                    Pref::CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                    &schemes,
                )?;
                lt::get_matmul_algo_heuristic(
                    self.handle,
                    desc,
                    layouts[0],
                    layouts[1],
                    layouts[2],
                    layouts[2],
                    pref,
                )
                .map_err(|e| {
                    GpuError::Unsupported(format!("cuBLASLt has no algorithm for {s:?}: {e:?}"))
                })
            })()
        };
        // SAFETY: the preference is not used again; on failure neither are the descriptors.
        unsafe {
            let _ = lt::destroy_matmul_pref(pref);
            if found.is_err() {
                let _ = lt::destroy_matmul_desc(desc);
                for l in layouts {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
        }
        Ok(Plan {
            desc,
            layouts,
            algo: found?.algo,
        })
    }

    /// Whether this library has an algorithm for `s` (plans it if not yet planned).
    pub fn supports(&self, s: &Shape) -> bool {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans
            .entry(*s)
            .or_insert_with(|| self.plan(s).ok())
            .is_some()
    }

    /// C = op(A)·op(B) + beta·C, then the shape's epilogue: `bias` is the bias vector
    /// (Bias, GeluBias), `aux` the pre-activation buffer (GeluBias writes it, GeluGrad
    /// reads it).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        s: &Shape,
        a: u64,
        b: u64,
        c: u64,
        beta: f32,
        bias: Option<u64>,
        aux: Option<u64>,
        stream: cudaStream_t,
    ) -> Result<(), GpuError> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if !plans.contains_key(s) {
            let p = self.plan(s)?;
            plans.insert(*s, Some(p));
        }
        let Some(p) = &plans[s] else {
            return Err(GpuError::Unsupported(format!(
                "cuBLASLt has no algorithm for {s:?}"
            )));
        };
        let alpha = 1.0f32;
        // SAFETY: the plan was built for this shape; a, b, c (and bias) are device buffers
        // of the sizes the shape describes (the callers' contract); the workspace is live.
        unsafe {
            if let Some(bias) = bias {
                set_desc(p.desc, Desc::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias)?;
            }
            if let Some(aux) = aux {
                set_desc(
                    p.desc,
                    Desc::CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                    &aux,
                )?;
            }
            lt::matmul(
                self.handle,
                p.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                a as *const c_void,
                p.layouts[0],
                b as *const c_void,
                p.layouts[1],
                c as *const c_void,
                p.layouts[2],
                c as *mut c_void,
                p.layouts[2],
                &p.algo,
                self.workspace as *mut c_void,
                self.workspace_bytes,
                stream,
            )?;
        }
        Ok(())
    }
}

impl Drop for LtGemm {
    fn drop(&mut self) {
        let plans = self.plans.get_mut().unwrap_or_else(|e| e.into_inner());
        // SAFETY: nothing uses the plans or the handle after this.
        unsafe {
            for p in plans.drain().filter_map(|(_, p)| p) {
                let _ = lt::destroy_matmul_desc(p.desc);
                for l in p.layouts {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
            let _ = lt::destroy_handle(self.handle);
        }
    }
}
