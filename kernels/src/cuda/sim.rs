//! The simulated device (`HARMAN_CUDA_SIM=1`): the CUDA backend without a GPU, for tests.
//! Every kernel file of `kernels/cuda` is compiled by the system's C++ compiler together with
//! `kernels/sim/cuda_sim.hpp` (CUDA threads as coroutines, warp collectives, the PTX
//! instructions' documented semantics) into a shared library, cached on disk beside the
//! PTX and loaded with `libloading`; launches run on the calling thread, one at a time.
//! Device buffers are host allocations addressed by raw pointers, and the GEMMs follow
//! cuBLAS's and cuBLASLt's contracts (column-major, bf16 operands, fp32 accumulation,
//! the epilogues of [`Epilogue`]) in Rust. So the kernels' indexing, masks,
//! synchronization and the launchers' shapes are checked where no GPU is — never their
//! speed, and the PTX semantics only as the simulator models them.

use super::compile::{self, KernelFile, COMMON};
use super::lt::{Epilogue, Shape};
use super::GpuError;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The runtime every kernel file is compiled with instead of `ptx.cuh`.
pub const RUNTIME: &str = include_str!("../../sim/cuda_sim.hpp");

/// Whether `HARMAN_CUDA_SIM` asks for the simulator.
pub fn requested() -> bool {
    std::env::var("HARMAN_CUDA_SIM").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The C++ compiler: `$CXX`, else `c++`.
fn compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "c++".into())
}

/// The compiler's version line (part of the cache key), or why it cannot run.
fn compiler_version() -> Result<String, String> {
    let cxx = compiler();
    let out = Command::new(&cxx)
        .arg("--version")
        .output()
        .map_err(|e| format!("no C++ compiler ({cxx}: {e}); install g++ or set CXX"))?;
    if !out.status.success() {
        return Err(format!("{cxx} --version failed"));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// Whether the simulator can run here (a working C++ compiler), or why not.
pub fn probe() -> Result<(), String> {
    compiler_version().map(|_| ())
}

/// `int harman_sim_launch(name, grid[3], block[3], shared_bytes, args, err, err_len)`.
type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    *const u32,
    *const u32,
    u32,
    *mut *mut c_void,
    *mut c_char,
    usize,
) -> i32;

/// The C++ source of one kernel file for the simulator: the runtime, the common helpers,
/// the file, and a dispatcher from kernel name to kernel.
fn source(file: &KernelFile) -> String {
    let mut s = format!("{RUNTIME}\n{COMMON}\n{}\n", file.source);
    s += "extern \"C\" __attribute__((visibility(\"default\"))) int harman_sim_launch(const char* name, const unsigned* grid, \
          const unsigned* block, unsigned shared_bytes, void** args, char* err, size_t err_len) {\n";
    for k in file.kernels {
        s += &format!(
            "    if (std::strcmp(name, \"{k}\") == 0) return sim::launch({k}, grid, block, \
             shared_bytes, args, err, err_len);\n"
        );
    }
    s += "    std::snprintf(err, err_len, \"no kernel %s\", name);\n    return 1;\n}\n";
    s
}

static BUILD: Mutex<()> = Mutex::new(());

/// Extra compiler flags from `HARMAN_SIM_CXXFLAGS` (e.g. `-fsanitize=address -g` to find a
/// kernel's out-of-bounds access; run with libasan preloaded).
fn extra_flags() -> Vec<String> {
    std::env::var("HARMAN_SIM_CXXFLAGS")
        .map(|f| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Compiles `file` (with `-D` defines) to a shared library, or takes it from the cache.
fn build(file: &KernelFile, defines: &[String], version: &str) -> Result<PathBuf, GpuError> {
    let src = source(file);
    let flags = extra_flags();
    let parts = defines
        .iter()
        .chain(&flags)
        .map(String::as_str)
        .chain(std::iter::once(version));
    let key = compile::cache_key(file.name, &src, parts);
    let dir = compile::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("sim");
    let lib = dir.join(format!("{key}.so"));
    // One build at a time in this process (tests open simulators in parallel); another
    // process's build lands atomically (rename).
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if lib.exists() {
        return Ok(lib);
    }
    let fail = |why: String| GpuError::Simulator(format!("kernels/cuda/{}.cu: {why}", file.name));
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let tag = format!("{key}.tmp{}", std::process::id());
    let cpp = dir.join(format!("{tag}.cpp"));
    let tmp = dir.join(format!("{tag}.so"));
    std::fs::write(&cpp, src).map_err(|e| fail(format!("{}: {e}", cpp.display())))?;
    let out = Command::new(compiler())
        .args(["-std=c++17", "-O2", "-fPIC", "-shared", "-w"])
        // The kernels read bf16 arrays through u32 / uint4 pointers, as CUDA code does.
        .arg("-fno-strict-aliasing")
        // Each library its own runtime state: no symbol shared between them.
        .args([
            "-fvisibility=hidden",
            "-fvisibility-inlines-hidden",
            "-fno-gnu-unique",
        ])
        // Coroutines switch stacks with _longjmp, which the fortified variant refuses.
        .arg("-U_FORTIFY_SOURCE")
        .args(defines.iter().map(|d| format!("-D{d}")))
        .args(&flags)
        .arg("-o")
        .arg(&tmp)
        .arg(&cpp)
        .output()
        .map_err(|e| fail(format!("{}: {e}", compiler())))?;
    let _ = std::fs::remove_file(&cpp);
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    std::fs::rename(&tmp, &lib).map_err(|e| fail(format!("{}: {e}", lib.display())))?;
    Ok(lib)
}

/// One launch at a time in the process: the runtime's scheduler and the kernels'
/// `__shared__` arrays are process-wide statics.
static LAUNCH: Mutex<()> = Mutex::new(());

/// The loaded kernel libraries.
pub struct Simulator {
    /// Kept loaded: the launchers point into them.
    _libs: Vec<libloading::Library>,
    launchers: HashMap<&'static str, LaunchFn>,
    /// Bytes of live host buffers (reported as the device's used memory).
    allocated: Arc<AtomicUsize>,
}

impl Simulator {
    /// `files` (the backend's are [`compile::FILES`]) built (attention for `head_size`,
    /// flash's backward with `chunk` rows at a time) and loaded.
    pub fn new(
        files: &[KernelFile],
        head_size: usize,
        chunk: Option<usize>,
    ) -> Result<Simulator, GpuError> {
        let version = compiler_version().map_err(GpuError::Unavailable)?;
        let mut libs = Vec::new();
        let mut launchers = HashMap::new();
        for file in files.iter().filter(|f| compile::built_for(f, head_size)) {
            let path = build(file, &compile::defines(file, head_size, chunk), &version)?;
            let lib = load(&path)?;
            // SAFETY: the library was built from `source`, which defines this symbol with
            // the LaunchFn signature.
            let f: LaunchFn = unsafe {
                *lib.get::<LaunchFn>(b"harman_sim_launch\0")
                    .map_err(|e| GpuError::Simulator(format!("{}: {e}", path.display())))?
            };
            for &k in file.kernels {
                launchers.insert(k, f);
            }
            libs.push(lib);
        }
        Ok(Simulator {
            _libs: libs,
            launchers,
            allocated: Arc::default(),
        })
    }

    /// Whether kernel `name` is loaded.
    pub fn has_kernel(&self, name: &str) -> bool {
        self.launchers.contains_key(name)
    }

    /// Runs kernel `name` to completion with `shared_bytes` of dynamic shared memory; `args`
    /// as cuLaunchKernel takes them.
    pub fn launch(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: u32,
        shared_bytes: u32,
        args: &mut [*mut c_void],
    ) -> Result<(), GpuError> {
        let f = self
            .launchers
            .get(name)
            .ok_or_else(|| GpuError::Simulator(format!("no kernel {name}")))?;
        let cname = CString::new(name).map_err(|e| GpuError::Simulator(e.to_string()))?;
        let grid = [grid.0, grid.1, grid.2];
        let block = [block, 1, 1];
        let mut err = vec![0u8; 512];
        let _one = LAUNCH.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `args` holds one pointer per kernel parameter to a value of its type
        // (the launchers' contract, as for cuLaunchKernel); the buffers they address are
        // live host allocations of the sizes the launch reads and writes.
        let rc = unsafe {
            f(
                cname.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                shared_bytes,
                args.as_mut_ptr(),
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        Err(GpuError::Simulator(format!(
            "{name}: {}",
            String::from_utf8_lossy(&err[..end])
        )))
    }

    /// A zeroed host buffer of `bytes` (16-byte aligned, as device allocations are at least).
    pub fn alloc(&self, bytes: usize) -> HostMem {
        HostMem::new(bytes.max(1), self.allocated.clone())
    }

    /// Bytes of live buffers.
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    /// C = op(A)·op(B) + beta·C and `s.epilogue`, as cuBLASLt computes it (column-major,
    /// A and B bf16, C bf16 or fp32, fp32 accumulation); `bias` is the bias vector (Bias,
    /// GeluBias: bf16, length m) or the bias gradient's output (BiasGradB: fp32, length
    /// n), `aux` the pre-activation (bf16, leading dimension m).
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
    ) -> Result<(), GpuError> {
        let missing = |what: &str| GpuError::Simulator(format!("{s}: no {what} pointer"));
        if s.m == 0 || s.n == 0 || s.k == 0 {
            return Err(GpuError::Simulator(format!("{s}: an empty dimension")));
        }
        // op(A) as a row-major [m, k] matrix, op(B) as [k, n].
        let (am, ak) = if s.trans_a { (s.k, s.m) } else { (s.m, s.k) };
        let (bk, bn) = if s.trans_b { (s.n, s.k) } else { (s.k, s.n) };
        // SAFETY: A and B are bf16 column-major matrices of ld × cols elements (the
        // callers' contract, as for cuBLAS).
        let a_vals = unsafe { read_bf16(a, s.lda * (ak - 1) + am) };
        let b_vals = unsafe { read_bf16(b, s.ldb * (bn - 1) + bk) };
        // Column-major X[i, j] at i + j·ld is row-major with strides (1, ld); transposing
        // swaps them.
        let (rsa, csa) = if s.trans_a { (s.lda, 1) } else { (1, s.lda) };
        let (rsb, csb) = if s.trans_b { (s.ldb, 1) } else { (1, s.ldb) };
        let mut acc = vec![0f32; s.m * s.n]; // row-major [m, n]
                                             // SAFETY: the strides address inside a_vals / b_vals (sizes computed above).
        unsafe {
            matrixmultiply::sgemm(
                s.m,
                s.k,
                s.n,
                1.0,
                a_vals.as_ptr(),
                rsa as isize,
                csa as isize,
                b_vals.as_ptr(),
                rsb as isize,
                csb as isize,
                0.0,
                acc.as_mut_ptr(),
                s.n as isize,
                1,
            );
        }
        let bias_bf16 = match (s.epilogue, bias) {
            (Epilogue::Bias | Epilogue::GeluBias, Some(p)) => {
                // SAFETY: a bf16 vector of m elements.
                Some(unsafe { read_bf16(p, s.m) })
            }
            (Epilogue::Bias | Epilogue::GeluBias, None) => return Err(missing("bias")),
            _ => None,
        };
        let aux_ptr = match (s.epilogue, aux) {
            (Epilogue::GeluBias | Epilogue::GeluGrad, Some(p)) => p as *mut u16,
            (Epilogue::GeluBias | Epilogue::GeluGrad, None) => return Err(missing("aux")),
            _ => std::ptr::null_mut(),
        };
        for j in 0..s.n {
            for i in 0..s.m {
                let mut v = acc[i * s.n + j];
                let at = i + j * s.ldc;
                // SAFETY: C holds ldc × n elements of its type, aux m × n bf16 (the
                // callers' contract).
                unsafe {
                    if beta != 0.0 {
                        let old = if s.c_f32 {
                            *(c as *const f32).add(at)
                        } else {
                            bf16_to_f32(*(c as *const u16).add(at))
                        };
                        v += beta * old;
                    }
                    match s.epilogue {
                        Epilogue::Bias => v += bias_bf16.as_ref().map_or(0.0, |b| b[i]),
                        Epilogue::GeluBias => {
                            v += bias_bf16.as_ref().map_or(0.0, |b| b[i]);
                            *aux_ptr.add(i + j * s.m) = f32_to_bf16(v);
                            v = gelu(v);
                        }
                        Epilogue::GeluGrad => {
                            v *= gelu_grad(bf16_to_f32(*aux_ptr.add(i + j * s.m)));
                        }
                        Epilogue::None | Epilogue::BiasGradB => {}
                    }
                    if s.c_f32 {
                        *(c as *mut f32).add(at) = v;
                    } else {
                        *(c as *mut u16).add(at) = f32_to_bf16(v);
                    }
                }
            }
        }
        if s.epilogue == Epilogue::BiasGradB {
            let out = bias.ok_or_else(|| missing("bias gradient"))? as *mut f32;
            for j in 0..s.n {
                let sum: f32 = (0..s.k).map(|p| b_vals[p * rsb + j * csb]).sum();
                // SAFETY: an fp32 vector of n elements.
                unsafe { *out.add(j) = sum };
            }
        }
        Ok(())
    }
}

fn load(path: &Path) -> Result<libloading::Library, GpuError> {
    // SAFETY: the library is one this module compiled; its initializers only set up
    // statics of the runtime.
    unsafe { libloading::Library::new(path) }
        .map_err(|e| GpuError::Simulator(format!("{}: {e}", path.display())))
}

/// `n` bf16 values at `p`, as f32.
///
/// # Safety
/// `p` addresses `n` readable u16 values.
unsafe fn read_bf16(p: u64, n: usize) -> Vec<f32> {
    std::slice::from_raw_parts(p as *const u16, n)
        .iter()
        .map(|&v| bf16_to_f32(v))
        .collect()
}

fn bf16_to_f32(v: u16) -> f32 {
    half::bf16::from_bits(v).to_f32()
}

fn f32_to_bf16(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// GPT-2's tanh GELU and its derivative (cuBLASLt's GELU epilogues).
fn gelu(x: f32) -> f32 {
    let k = (2.0f32 / std::f32::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

fn gelu_grad(x: f32) -> f32 {
    let k = (2.0f32 / std::f32::consts::PI).sqrt();
    let th = (k * (x + 0.044715 * x * x * x)).tanh();
    0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x)
}

/// A zeroed, 16-byte aligned host allocation standing in for device memory.
pub struct HostMem {
    ptr: *mut u8,
    layout: std::alloc::Layout,
    allocated: Arc<AtomicUsize>,
}

// SAFETY: HostMem owns its allocation; the simulator's launches (one at a time) are the
// only writers through the raw pointer.
unsafe impl Send for HostMem {}
// SAFETY: as above; shared references only hand out the address.
unsafe impl Sync for HostMem {}

impl HostMem {
    fn new(bytes: usize, allocated: Arc<AtomicUsize>) -> HostMem {
        let layout = std::alloc::Layout::from_size_align(bytes, 256).unwrap_or_else(|_| {
            std::alloc::Layout::new::<u8>() // unreachable for sizes a Vec could hold
        });
        // SAFETY: the layout has a nonzero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        allocated.fetch_add(layout.size(), Ordering::Relaxed);
        HostMem {
            ptr,
            layout,
            allocated,
        }
    }

    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// Copies `src` to the start.
    pub fn write<T>(&mut self, src: &[T]) {
        let bytes = std::mem::size_of_val(src).min(self.layout.size());
        // SAFETY: both ranges hold `bytes` bytes and do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr() as *const u8, self.ptr, bytes) };
    }

    /// The first `n` elements (bitwise copies: T is plain data, a `DeviceRepr`).
    pub fn read<T>(&self, n: usize) -> Vec<T> {
        self.read_range(0, n)
    }

    /// Elements `first .. first + n` (as many of them as the allocation holds).
    pub fn read_range<T>(&self, first: usize, n: usize) -> Vec<T> {
        let held = self.layout.size() / std::mem::size_of::<T>().max(1);
        let first = first.min(held);
        let n = n.min(held - first);
        let mut v = Vec::with_capacity(n);
        // SAFETY: the allocation holds first + n Ts (checked above) and is aligned for T
        // (256).
        unsafe {
            std::ptr::copy_nonoverlapping((self.ptr as *const T).add(first), v.as_mut_ptr(), n);
            v.set_len(n);
        }
        v
    }

    pub fn zero(&mut self) {
        // SAFETY: the allocation is layout.size() bytes.
        unsafe { std::ptr::write_bytes(self.ptr, 0, self.layout.size()) };
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        self.allocated
            .fetch_sub(self.layout.size(), Ordering::Relaxed);
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}
