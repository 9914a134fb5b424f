//! The CUDA backend's device layer: finding a GPU (every entry guarded, since cudarc panics
//! when libcuda or libnvrtc is absent), one context and stream, the kernels of
//! `kernels/cuda/*.cu` compiled by NVRTC ([`compile`]) and loaded, cuBLASLt (`lt.rs`) and
//! cuBLAS for the GEMMs, device buffers addressed by raw pointers, and one typed launcher
//! per kernel ([`Gpu`]'s methods in `ops.rs`). bf16 values are `u16` words on the host
//! (`half::bf16` bits). With `HARMAN_CUDA_SIM=1` the same [`Gpu`] runs on the kernel
//! simulator ([`sim`]) instead: no GPU needed, for tests.

pub mod compile;
mod lt;
mod ops;
pub mod sim;
pub use ops::Scratch;

use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why the GPU path cannot run or failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no usable CUDA GPU: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Compile(#[from] compile::CompileError),
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    #[error("cuBLAS: {0:?}")]
    Blas(cudarc::cublas::result::CublasError),
    #[error("cuBLASLt: {0:?}")]
    BlasLt(cudarc::cublaslt::result::CublasError),
    #[error("{0}")]
    Unsupported(String),
    #[error("kernel simulator: {0}")]
    Simulator(String),
}

impl From<cudarc::cublaslt::result::CublasError> for GpuError {
    fn from(e: cudarc::cublaslt::result::CublasError) -> Self {
        GpuError::BlasLt(e)
    }
}

impl From<cudarc::cublas::result::CublasError> for GpuError {
    fn from(e: cudarc::cublas::result::CublasError) -> Self {
        GpuError::Blas(e)
    }
}

/// Whether a GPU can be used here, or why not (no libcuda, no libnvrtc, no device). With
/// `HARMAN_CUDA_SIM=1`: whether the kernel simulator can (a C++ compiler).
pub fn probe() -> Result<(), String> {
    if sim::requested() {
        return sim::probe();
    }
    // SAFETY: only probe for the shared libraries.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("libcuda not found (no NVIDIA driver on this machine)".into());
    }
    if !compile::nvrtc_present() {
        return Err("libnvrtc not found (put the CUDA toolkit's lib64 on LD_LIBRARY_PATH)".into());
    }
    match CudaContext::device_count() {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err("the driver reports no CUDA device".into()),
        Err(e) => Err(format!("the driver did not start: {e}")),
    }
}

/// A device buffer: its allocation and raw address.
pub struct Buf<T> {
    mem: Mem<T>,
    ptr: u64,
    len: usize,
    /// The device's count of live buffer bytes, which this one leaves when dropped.
    usage: Arc<Usage>,
}

impl<T> Drop for Buf<T> {
    fn drop(&mut self) {
        self.usage.release(self.len * std::mem::size_of::<T>());
    }
}

/// Bytes of the buffers a [`Gpu`] allocated that are live now, and their high-water mark:
/// the peak memory a run of the backend needs (the driver's and libraries' own memory
/// aside, which [`Gpu::memory`] includes).
#[derive(Debug, Default)]
struct Usage {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Usage {
    fn take(&self, bytes: usize) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn release(&self, bytes: usize) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

enum Mem<T> {
    Device(CudaSlice<T>),
    Host(sim::HostMem),
}

impl<T> Buf<T> {
    /// The device address of element `i`.
    pub fn at(&self, i: usize) -> u64 {
        self.ptr + (i * std::mem::size_of::<T>()) as u64
    }

    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The architecture name NVRTC compiles for, from the compute capability.
fn arch_name(cc: (i32, i32)) -> Option<&'static str> {
    Some(match cc {
        (7, 0) => "sm_70",
        (7, 5) => "sm_75",
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 9) => "sm_89",
        (9, 0) => "sm_90",
        (10, 0) => "sm_100",
        (12, 0) => "sm_120",
        _ => return None,
    })
}

/// Bytes of cuBLAS workspace.
const BLAS_WORKSPACE: usize = 32 << 20;

/// Which attention kernels run: the tensor-core ones (`flash.cu` on `mma.sync`, the
/// default), the same on Hopper's warpgroup MMA (`flash.cu -DWGMMA`, `sm_90` GPUs and the
/// simulator; `HARMAN_ATTENTION=wgmma`) or the CUDA-core ones (`attention.cu`, a second GPU
/// implementation the tests compare; `HARMAN_ATTENTION=simt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernels {
    TensorCores,
    Warpgroup,
    CudaCores,
}

impl AttentionKernels {
    /// The kernels `HARMAN_ATTENTION` names (`mma` or unset, `wgmma`, `simt`), or why the
    /// value is refused.
    pub fn from_env(value: Option<&str>) -> Result<AttentionKernels, String> {
        match value.map(str::trim) {
            None | Some("" | "mma") => Ok(AttentionKernels::TensorCores),
            Some("wgmma") => Ok(AttentionKernels::Warpgroup),
            Some("simt") => Ok(AttentionKernels::CudaCores),
            Some(v) => Err(format!(
                "HARMAN_ATTENTION={v}: use mma (the default), wgmma (Hopper) or simt"
            )),
        }
    }
}

/// Which library runs the GEMMs: cuBLASLt (the default, bias in the epilogue) or cuBLAS's
/// GemmEx (`HARMAN_GEMM=cublas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmBackend {
    Lt,
    Cublas,
}

/// One GPU (context, stream, cuBLAS handles and the loaded kernels), or the simulator.
pub struct Gpu {
    device: Device,
    pub gemm_backend: GemmBackend,
    /// The head size the attention kernels were built for.
    pub head_size: usize,
    pub arch: &'static str,
    pub name: String,
    pub attention: AttentionKernels,
    /// LayerNorm's backward in one pass (`layernorm_backward_fused`, the default where the
    /// row width allows) or as separate input- and parameter-gradient kernels
    /// (`HARMAN_LN_FUSED=0`, and rows wider than 1024 or not a multiple of 8).
    pub fused_layernorm: bool,
    /// Per-kernel device time when `HARMAN_CUDA_PROFILE` is set ([`Gpu::profile_table`]).
    profile: Option<Mutex<BTreeMap<String, (u64, f64)>>>,
    /// The bytes of this device's buffers (and cuBLAS's workspace).
    usage: Arc<Usage>,
}

enum Device {
    Cuda(Box<Cuda>),
    Sim(sim::Simulator),
}

/// What a real GPU holds.
struct Cuda {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    lt: lt::LtGemm,
    /// cuBLAS's workspace (32 MiB, NVIDIA's advice for Hopper), owned here (dropped after
    /// the handles above, fields dropping in declaration order).
    _blas_workspace: CudaSlice<u8>,
    functions: HashMap<&'static str, CudaFunction>,
    /// Why an optional kernel file (the warpgroup-MMA attention) did not load, if one failed.
    optional_failed: Option<String>,
}

impl Gpu {
    /// Device 0 with every kernel loaded (attention for `head_size`); the simulator
    /// instead when `HARMAN_CUDA_SIM=1`; `HARMAN_FLASH_CHUNK` picks the flash backward
    /// kernels' chunk of rows ([`compile::flash_chunk`]).
    pub fn new(head_size: usize) -> Result<Gpu, GpuError> {
        let chunk = compile::flash_chunk().map_err(GpuError::Unsupported)?;
        Gpu::open(head_size, chunk)
    }

    /// As [`Gpu::new`], with the flash backward kernels built for `chunk` rows at a time
    /// (None: the default, 16).
    pub fn open(head_size: usize, chunk: Option<usize>) -> Result<Gpu, GpuError> {
        if !compile::HEAD_SIZES.contains(&head_size) {
            return Err(GpuError::Unsupported(format!(
                "head size {head_size}: the CUDA attention kernels are built for {:?}",
                compile::HEAD_SIZES
            )));
        }
        let built = |rows| rows == 16 || compile::chunks_for(head_size).contains(&Some(rows));
        if let Some(rows) = chunk.filter(|&rows| !built(rows)) {
            return Err(GpuError::Unsupported(format!(
                "HARMAN_FLASH_CHUNK={rows}: at head size {head_size} the flash backward kernels \
                 are built for 16-row chunks only (32 and 64 at head sizes 32 and 64); unset it"
            )));
        }
        let (device, arch, name) = if sim::requested() {
            let name = "kernel simulator (HARMAN_CUDA_SIM, no GPU)".to_string();
            let sim = sim::Simulator::new(&compile::FILES, head_size, chunk)?;
            (Device::Sim(sim), "sim", name)
        } else {
            probe().map_err(GpuError::Unavailable)?;
            let (cuda, arch) = Cuda::new(head_size, chunk)?;
            let name = cuda.ctx.name().unwrap_or_else(|_| "CUDA device".into());
            (Device::Cuda(Box::new(cuda)), arch, name)
        };
        let gpu = Gpu {
            device,
            gemm_backend: match std::env::var("HARMAN_GEMM").as_deref() {
                Ok("cublas") => GemmBackend::Cublas,
                _ => GemmBackend::Lt,
            },
            head_size,
            arch,
            name,
            attention: AttentionKernels::from_env(
                std::env::var("HARMAN_ATTENTION").ok().as_deref(),
            )
            .map_err(GpuError::Unsupported)?,
            fused_layernorm: std::env::var("HARMAN_LN_FUSED").as_deref() != Ok("0"),
            profile: std::env::var_os("HARMAN_CUDA_PROFILE").map(|_| Mutex::default()),
            usage: Arc::default(),
        };
        if !gpu.is_simulated() {
            gpu.usage.take(BLAS_WORKSPACE);
        }
        gpu.attention_available(gpu.attention)?;
        Ok(gpu)
    }

    /// Whether the attention kernels `kernels` are loaded here, or why not with the fix: the
    /// CUDA-core ones are built for head sizes up to 64, the warpgroup-MMA ones for Hopper
    /// (and may have failed to build). Checked at open for `HARMAN_ATTENTION` and at every
    /// launch (the field is public).
    pub fn attention_available(&self, kernels: AttentionKernels) -> Result<(), GpuError> {
        match kernels {
            AttentionKernels::CudaCores if !self.has_kernel("attention_forward") => {
                Err(GpuError::Unsupported(simt_head_size(self.head_size)))
            }
            AttentionKernels::Warpgroup if !self.has_kernel("flash_forward_wg") => {
                let why = self
                    .optional_failure()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!(
                            "it needs a Hopper GPU (sm_90; {} is {})",
                            self.name, self.arch
                        )
                    });
                Err(GpuError::Unsupported(format!(
                    "HARMAN_ATTENTION=wgmma: {why}; unset it for the mma.sync kernels"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whether this is the simulator.
    pub fn is_simulated(&self) -> bool {
        matches!(self.device, Device::Sim(_))
    }

    /// Why an optional kernel file (the warpgroup-MMA attention) failed to compile or load
    /// on this GPU, if one did.
    pub fn optional_failure(&self) -> Option<&str> {
        match &self.device {
            Device::Cuda(c) => c.optional_failed.as_deref(),
            Device::Sim(_) => None,
        }
    }

    /// Whether kernel `name` is loaded (the warpgroup-MMA builds are on Hopper only).
    pub fn has_kernel(&self, name: &str) -> bool {
        match &self.device {
            Device::Cuda(g) => g.functions.contains_key(name),
            Device::Sim(s) => s.has_kernel(name),
        }
    }

    /// Runs `launch`; when profiling, synchronizes around it and adds its time to `key`'s
    /// entry (so a profiled run is slower, but each kernel's share is its own).
    pub(crate) fn timed<R>(
        &self,
        key: impl FnOnce() -> String,
        launch: impl FnOnce() -> Result<R, GpuError>,
    ) -> Result<R, GpuError> {
        let Some(profile) = &self.profile else {
            return launch();
        };
        self.synchronize()?;
        let start = Instant::now();
        let r = launch()?;
        self.synchronize()?;
        let s = start.elapsed().as_secs_f64();
        let mut map = profile.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(key()).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += s;
        Ok(r)
    }

    /// Forgets the profile so far (after warm-up steps).
    pub fn profile_reset(&self) {
        if let Some(p) = &self.profile {
            p.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// The profile so far (kernel or GEMM shape, calls, total and share of time), largest
    /// first; None unless `HARMAN_CUDA_PROFILE` was set when the GPU was opened.
    pub fn profile_table(&self) -> Option<String> {
        let map = self
            .profile
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let total: f64 = map.values().map(|v| v.1).sum();
        let mut rows: Vec<_> = map.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let mut out = format!("{:<44} {:>7} {:>11} {:>6}\n", "kernel", "calls", "ms", "%");
        for (k, (calls, s)) in rows {
            out += &format!(
                "{k:<44} {calls:>7} {:>11.2} {:>6.1}\n",
                s * 1e3,
                100.0 * s / total.max(1e-12)
            );
        }
        Some(out)
    }

    /// A zeroed buffer of `n` elements.
    pub fn alloc<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<Buf<T>, GpuError> {
        Ok(match &self.device {
            Device::Cuda(g) => {
                let slice = g.stream.alloc_zeros::<T>(n.max(1))?;
                let ptr = slice.device_ptr(&g.stream).0;
                self.tracked(Mem::Device(slice), ptr, n.max(1))
            }
            Device::Sim(s) => {
                let mem = s.alloc(n.max(1) * std::mem::size_of::<T>());
                let ptr = mem.addr();
                self.tracked(Mem::Host(mem), ptr, n.max(1))
            }
        })
    }

    /// A buffer holding `data`.
    pub fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<Buf<T>, GpuError> {
        Ok(match &self.device {
            Device::Cuda(g) => {
                let slice = g.stream.clone_htod(data)?;
                let ptr = slice.device_ptr(&g.stream).0;
                self.tracked(Mem::Device(slice), ptr, data.len())
            }
            Device::Sim(s) => {
                let mut mem = s.alloc(std::mem::size_of_val(data).max(1));
                mem.write(data);
                let ptr = mem.addr();
                self.tracked(Mem::Host(mem), ptr, data.len())
            }
        })
    }

    /// A buffer of `len` elements counted in the device's usage until dropped.
    fn tracked<T>(&self, mem: Mem<T>, ptr: u64, len: usize) -> Buf<T> {
        self.usage.take(len * std::mem::size_of::<T>());
        Buf {
            mem,
            ptr,
            len,
            usage: self.usage.clone(),
        }
    }

    /// The most bytes this device's buffers (and cuBLAS's workspace) have held at once since
    /// it opened: what a run needs beyond the driver's own memory.
    pub fn peak_memory(&self) -> usize {
        self.usage.peak.load(Ordering::Relaxed)
    }

    /// The bytes they hold now.
    pub fn live_memory(&self) -> usize {
        self.usage.live.load(Ordering::Relaxed)
    }

    /// Overwrites the start of `buf` with `data`.
    pub fn write<T: DeviceRepr>(&self, buf: &mut Buf<T>, data: &[T]) -> Result<(), GpuError> {
        match (&self.device, &mut buf.mem) {
            (Device::Cuda(g), Mem::Device(slice)) => {
                let mut view = slice.slice_mut(0..data.len());
                g.stream.memcpy_htod(data, &mut view)?;
            }
            (Device::Sim(_), Mem::Host(mem)) => mem.write(data),
            _ => return Err(foreign()),
        }
        Ok(())
    }

    /// The buffer's contents.
    pub fn download<T: DeviceRepr>(&self, buf: &Buf<T>) -> Result<Vec<T>, GpuError> {
        match (&self.device, &buf.mem) {
            (Device::Cuda(g), Mem::Device(slice)) => Ok(g.stream.clone_dtoh(slice)?),
            (Device::Sim(_), Mem::Host(mem)) => Ok(mem.read(buf.len)),
            _ => Err(foreign()),
        }
    }

    /// Elements `range` of the buffer.
    pub fn download_range<T: DeviceRepr>(
        &self,
        buf: &Buf<T>,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<T>, GpuError> {
        if range.start > range.end || range.end > buf.len {
            return Err(GpuError::Unsupported(format!(
                "elements {range:?} of a buffer of {}",
                buf.len
            )));
        }
        match (&self.device, &buf.mem) {
            (Device::Cuda(g), Mem::Device(slice)) => {
                Ok(g.stream.clone_dtoh(&slice.slice(range))?)
            }
            (Device::Sim(_), Mem::Host(mem)) => Ok(mem.read_range(range.start, range.len())),
            _ => Err(foreign()),
        }
    }

    /// Zeroes the buffer.
    pub fn zero<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        buf: &mut Buf<T>,
    ) -> Result<(), GpuError> {
        match (&self.device, &mut buf.mem) {
            (Device::Cuda(g), Mem::Device(slice)) => g.stream.memset_zeros(slice)?,
            (Device::Sim(_), Mem::Host(mem)) => mem.zero(),
            _ => return Err(foreign()),
        }
        Ok(())
    }

    pub fn synchronize(&self) -> Result<(), GpuError> {
        match &self.device {
            Device::Cuda(g) => Ok(g.stream.synchronize()?),
            Device::Sim(_) => Ok(()), // launches run to completion
        }
    }

    /// (free, total) device memory in bytes; the simulator counts its live buffers as used
    /// (of a nominal total of usize::MAX).
    pub fn memory(&self) -> Result<(usize, usize), GpuError> {
        match &self.device {
            Device::Cuda(g) => Ok(g.ctx.mem_get_info()?),
            Device::Sim(s) => Ok((usize::MAX - s.allocated(), usize::MAX)),
        }
    }
}

/// Why `HARMAN_ATTENTION=simt` is refused for a model of head size `head_size`.
pub(crate) fn simt_head_size(head_size: usize) -> String {
    format!(
        "HARMAN_ATTENTION=simt: the CUDA-core attention kernels are built for head sizes {:?}, \
         this model's is {head_size}; unset it for the tensor-core kernels",
        compile::SIMT_HEAD_SIZES
    )
}

/// A buffer used with a device other than its own.
fn foreign() -> GpuError {
    GpuError::Unsupported("a buffer of another device (GPU vs simulator)".into())
}

impl Cuda {
    /// Device 0: context, stream, cuBLAS and cuBLASLt sharing one workspace, and every
    /// kernel file compiled (attention for `head_size`, flash's backward with `chunk` rows
    /// at a time) and loaded; with its arch name.
    fn new(head_size: usize, chunk: Option<usize>) -> Result<(Cuda, &'static str), GpuError> {
        let ctx = CudaContext::new(0)?;
        // One stream: cudarc's cross-stream event tracking is not needed.
        // SAFETY: nothing here uses a second stream.
        unsafe { ctx.disable_event_tracking() };
        let cc = ctx.compute_capability()?;
        let arch = arch_name(cc).ok_or_else(|| {
            GpuError::Unsupported(format!("compute capability {}.{}", cc.0, cc.1))
        })?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())?;
        let blas_workspace = stream.alloc_zeros::<u8>(BLAS_WORKSPACE)?;
        // SAFETY: the handle is live and the buffer outlives it (both owned by Cuda; the
        // buffer is dropped after the handle, fields dropping in declaration order).
        unsafe {
            cudarc::cublas::sys::cublasSetWorkspace_v2(
                *blas.handle(),
                blas_workspace.device_ptr(&stream).0 as *mut std::ffi::c_void,
                BLAS_WORKSPACE,
            )
            .result()?;
        }
        // The two libraries share the workspace: they run one after another on one stream.
        let lt = lt::LtGemm::new(blas_workspace.device_ptr(&stream).0, BLAS_WORKSPACE)?;
        let mut functions = HashMap::new();
        let mut optional_failed = None;
        for file in compile::FILES {
            if compile::hopper_only(&file) && arch != "sm_90" {
                continue; // wgmma is Hopper's (HARMAN_ATTENTION=wgmma reports it)
            }
            if !compile::built_for(&file, head_size) {
                continue; // the CUDA-core attention at head size 128 (refused at open)
            }
            let defines = compile::defines(&file, head_size, chunk);
            let loaded = (|| -> Result<Vec<(&'static str, CudaFunction)>, GpuError> {
                let ptx = compile::cached(&file, compile::arch_for(&file, arch), &defines)?;
                let module = ctx.load_module(ptx)?;
                file.kernels
                    .iter()
                    .map(|&k| {
                        let f = module.load_function(k)?;
                        // Tiles beyond the default cap (head size 128) need it raised.
                        let bytes = compile::dynamic_shared_bytes(k, head_size);
                        if bytes > compile::DEFAULT_DYNAMIC_SHARED {
                            f.set_attribute(
                                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                bytes as i32,
                            )?;
                        }
                        Ok((k, f))
                    })
                    .collect()
            })();
            match loaded {
                Ok(kernels) => functions.extend(kernels),
                // The warpgroup-MMA kernels are an option: without them the default ones run
                // and HARMAN_ATTENTION=wgmma reports why they are missing.
                Err(e) if compile::hopper_only(&file) => {
                    optional_failed = Some(format!("kernels/cuda/{}.cu: {e}", file.name));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((
            Cuda {
                ctx,
                stream,
                blas,
                lt,
                _blas_workspace: blas_workspace,
                functions,
                optional_failed,
            },
            arch,
        ))
    }
}

/// fp32 → bf16 bits (round to nearest even), as the kernels round.
pub fn to_bf16(x: &[f32]) -> Vec<u16> {
    x.iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect()
}

/// bf16 bits → fp32.
pub fn from_bf16(x: &[u16]) -> Vec<f32> {
    x.iter()
        .map(|&v| half::bf16::from_bits(v).to_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::AttentionKernels;

    #[test]
    fn harman_attention_names_the_kernels_or_the_fix() {
        assert_eq!(
            AttentionKernels::from_env(None),
            Ok(AttentionKernels::TensorCores)
        );
        assert_eq!(
            AttentionKernels::from_env(Some("mma")),
            Ok(AttentionKernels::TensorCores)
        );
        assert_eq!(
            AttentionKernels::from_env(Some("wgmma")),
            Ok(AttentionKernels::Warpgroup)
        );
        assert_eq!(
            AttentionKernels::from_env(Some("simt")),
            Ok(AttentionKernels::CudaCores)
        );
        let err = AttentionKernels::from_env(Some("flash3")).unwrap_err();
        assert!(
            err.contains("HARMAN_ATTENTION=flash3") && err.contains("wgmma"),
            "{err}"
        );
    }
}
